"""From pip install to a gate, seen from outside the source tree: the wheel is built, installed
with the ``app`` extra into a fresh virtualenv in a temporary directory, the sample app is
started from that virtualenv with ``python -m sample_app``, and the gate runs in an empty
directory holding only the original seed monspec: no locustfile anywhere, so the built-in load
profile drives both stages. The sdist is checked to carry what ``make test`` needs."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "fixtures" / "seed-monspec.json"
if not SEED.exists():
    SEED = ROOT / "tests" / "data" / "monspecs" / "seed-monspec.json"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# What the copy of the source tree leaves out: local state, never part of a distribution.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".perfsig", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.pyc"
)
# Build requirements that cannot be had here are a reason to skip; any other failure is a bug.
CANNOT_BUILD = re.compile(
    r"No matching distribution found|Could not find a version that satisfies|No module named pip"
)
STARTUP = re.compile(r"listening on (http://\S+)")


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def outside_env(venv: Path) -> dict[str, str]:
    """The environment of a user's shell with the fresh virtualenv first on PATH: nothing
    from this test run (PYTHONPATH, pytest's or the gate's variables) leaks in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "PYTHON", "PERFSIG_", "VIRTUAL_ENV", "COV_"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy: a build writes build/ and *.egg-info next to the sources.
    copy = tmp_path_factory.mktemp("src") / "pytest-perfsig"
    shutil.copytree(ROOT, copy, ignore=NOT_SOURCE)
    return copy


@pytest.fixture(scope="module")
def wheel(source_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source_copy)])
    if built.returncode != 0 and CANNOT_BUILD.search(built.stdout + built.stderr):
        pytest.skip(f"pip wheel cannot run here (build requirements unavailable): {built.stderr[-500:]}")
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = dist.glob("pytest_perfsig-*.whl")
    return path


@dataclass(frozen=True)
class Installed:
    venv: Path
    python: Path
    seconds: float


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """One fresh virtualenv outside the source tree with ``pytest-perfsig[app]`` from the wheel,
    shared by the gate runs below."""
    started = time.monotonic()
    venv = tmp_path_factory.mktemp("venv") / "venv"
    created = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    # This pip installs into the new virtualenv (--python): offline-friendly, it uses the local
    # wheel cache and the configured indexes, and skips seeding pip into the venv.
    install = run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-compile",
            f"{wheel}[app]",
        ],
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return Installed(venv, python, time.monotonic() - started)


@dataclass
class App:
    url: str
    process: subprocess.Popen[str]


@pytest.fixture
def start_app(installed: Installed, tmp_path: Path) -> Iterator[Callable[[str, int], App]]:
    """``python -m sample_app`` from the installed virtualenv, on a free loopback port."""
    started: list[App] = []

    def start(stage: str, build: int) -> App:
        process = subprocess.Popen(
            [str(installed.python), "-m", "sample_app", "--stage", stage, "--build", str(build), "--port", "0",
             "--log-file", str(tmp_path / f"service-{stage}.log")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
            env=outside_env(installed.venv),
        )  # fmt: skip
        app = App("", process)
        started.append(app)
        assert process.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        for line in process.stdout:  # the app prints its URL once it listens
            seen.append(line)
            if match := STARTUP.search(line):
                app.url = match.group(1)
                break
            assert time.monotonic() < deadline, "".join(seen)
        assert app.url, "".join(seen)
        return app

    yield start
    for app in started:
        app.process.terminate()
        try:
            app.process.wait(10)
        except subprocess.TimeoutExpired:
            app.process.kill()
            app.process.wait()


def run_gate(
    installed: Installed, workdir: Path, staging: App, production: App, *extra: str
) -> subprocess.CompletedProcess[str]:
    workdir.mkdir()
    shutil.copy(SEED, workdir / "seed-monspec.json")  # the original seed monspec, and nothing else
    # The seed's comparison in the same window: its time-shifted ones need data from a day and an
    # hour ago, which a fresh store cannot have (they fail closed: tests/test_e2e.py).
    command = [
        str(installed.python), "-m", "pytest", "--monspec=seed-monspec.json", "--stage=Staging",
        "--perfsig-comparison=StagingToProduction",
        "--perfsig-url", f"Staging={staging.url}", "--perfsig-url", f"Production={production.url}",
        "-p", "no:cacheprovider", "-rA", *extra,
    ]  # fmt: skip
    return run(command, cwd=workdir, env=outside_env(installed.venv), timeout=300)


def outcomes(output: str) -> dict[str, list[str]]:
    """Item ids by outcome, from the -rA summary."""
    found: dict[str, list[str]] = {}
    for status, item in re.findall(r"^(PASSED|FAILED|ERROR) seed-monspec\.json::(\S+)", output, re.M):
        found.setdefault(status, []).append(item)
    return found


def stored_profiles(workdir: Path) -> dict[str, str]:
    with sqlite3.connect(workdir / ".perfsig" / "perfsig.db") as db:
        return dict(db.execute("SELECT env, locustfile FROM runs"))


def test_wheel_ships_the_plugin_the_sample_app_and_the_licence(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = archive.read(metadata).decode()
        licence = archive.read(next(n for n in names if n.endswith("licenses/LICENSE"))).decode()
    assert {"pytest_perfsig/load/builtin.py", "pytest_perfsig/report/templates/report.html.j2"} <= names
    assert {"sample_app/__main__.py", "sample_app/app.py"} <= names
    assert not any(n.startswith(("tests/", "loadtests/")) for n in names)
    assert "License-Expression: Apache-2.0" in meta and "License-File: LICENSE" in meta
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert re.search(r"^Requires-Dist: uvicorn.*extra == \"app\"", meta, re.M)
    assert not re.search(r"moto\[[^\]]*codedeploy", meta)  # moto has no such extra


def test_sdist_carries_what_the_tests_need(source_copy: Path, tmp_path: Path) -> None:
    built = run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(source_copy)], timeout=300
    )
    if built.returncode != 0 and (
        CANNOT_BUILD.search(built.stdout + built.stderr) or "No module named build" in built.stderr
    ):
        pytest.skip(f"python -m build cannot run here: {built.stderr[-500:]}")
    assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = tmp_path.glob("pytest_perfsig-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {
        "LICENSE", "Makefile", "conftest.py", "monspec.json", "pyproject.toml", ".ci/run",
        "tests/test_packaging.py", "tests/data/monspecs/seed-monspec.json", "loadtests/staging.py",
        "loadtests/production.py", "sample_app/__main__.py", "docs/architecture.md", "docs/reliability.md",
        "deploy/pipeline.yaml", "scripts/demo.py",
    }  # fmt: skip
    assert expected <= names, sorted(expected - names)
    assert not any("__pycache__" in n or n.startswith((".venv/", ".perfsig/")) for n in names)


def test_bad_build_is_rejected_from_an_installed_wheel(
    installed: Installed, start_app: Callable[[str, int], App], tmp_path: Path
) -> None:
    started = time.monotonic()
    staging, production = start_app("Staging", 2), start_app("Production", 1)
    result = run_gate(installed, tmp_path / "gate", staging, production, "--perfsig-optional=smartscape")
    print(f"install {installed.seconds:.0f} s, gate with build 2 {time.monotonic() - started:.0f} s")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    found = outcomes(output)
    assert sorted(found.get("FAILED", [])) == [
        "StagingToProduction::/api/invoke::servicemethod.failurerate[avg]",
        "StagingToProduction::service.failurerate[avg]",
    ], output
    assert re.search(r"^VIOLATION\s+failurerate\[avg\]\s", output, re.M), output  # the table, 80 columns
    assert stored_profiles(tmp_path / "gate") == {
        "Staging": "built-in test loop: /, /api/invoke",
        "Production": "built-in real users: /, /api/invoke",
    }


def test_good_build_is_approved_and_without_the_opt_in_only_smartscape_errs(
    installed: Installed, start_app: Callable[[str, int], App], tmp_path: Path
) -> None:
    started = time.monotonic()
    staging, production = start_app("Staging", 1), start_app("Production", 1)
    approved = run_gate(installed, tmp_path / "gate", staging, production, "--perfsig-optional=smartscape")
    output = approved.stdout + approved.stderr
    found = outcomes(output)
    assert approved.returncode == 0, output
    assert len(found.get("PASSED", [])) == 7 and not found.get("FAILED") and not found.get("ERROR"), output
    assert len(re.findall(r"^SKIPPED \[1\].*no topology.*\(optional\)$", output, re.M)) == 2, output
    # Without the opt-in, the smartscape entries are the only items that do not pass: errors that
    # say how to opt in.
    strict = run_gate(installed, tmp_path / "strict", staging, production)
    print(f"gates with build 1 {time.monotonic() - started:.0f} s")
    output = strict.stdout + strict.stderr
    found = outcomes(output)
    assert strict.returncode == 1, output
    assert len(found.get("PASSED", [])) == 7 and not found.get("FAILED"), output
    assert sorted(found.get("ERROR", [])) == [
        "StagingToProduction::smartscape.fromRelationships:runsOn[count]",
        "StagingToProduction::smartscape.toRelationships:calls[count]",
    ], output
    assert (
        output.count(
            'mark the entry "optional": true in the monspec, or run with --perfsig-optional smartscape'
        )
        >= 2
    )
