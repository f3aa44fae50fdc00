"""Fail closed everywhere: bad monspecs, fuzzed input, and faults injected into real parts.
docs/reliability.md lists every fault tried here with its outcome; a test checks that table
against this suite."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_perfsig.errors import LoadError, MonspecError, StoreError
from pytest_perfsig.load.runner import LoadSpec, run_load
from pytest_perfsig.monspec import MAX_MONSPEC_BYTES, load_monspec, parse_monspec
from pytest_perfsig.store import SqliteStore
from sample_app.launcher import RunningApp
from tests.stored import stored_rows
from tests.waiting import when_stored

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "data" / "monspecs" / "bad"
EXPECTED: dict[str, list[str]] = json.loads((BAD / "expected.json").read_text())


# ---------------------------------------------------------------------------- bad input


def test_the_corpus_is_large_enough() -> None:
    assert len(EXPECTED) >= 30
    assert sorted(EXPECTED) == sorted(p.name for p in BAD.iterdir() if p.name != "expected.json")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_monspec_is_a_message_naming_where(name: str) -> None:
    with pytest.raises(MonspecError) as excinfo:
        load_monspec(BAD / name)
    message = str(excinfo.value)
    assert message.startswith(str(BAD / name))
    for fragment in EXPECTED[name]:
        assert fragment in message, message
    assert "Traceback" not in message


def test_bad_monspecs_through_pytest_collect_nothing_that_passes(pytester: pytest.Pytester) -> None:
    for name in sorted(EXPECTED):
        result = pytester.runpytest_inprocess(f"--monspec={BAD / name}", "--stage=Staging")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, name
        assert "passed" not in result.stdout.str()
        assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_huge_monspec_is_refused_with_its_size(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    huge.write_text('{"Svc": {"name": "' + "x" * (MAX_MONSPEC_BYTES + 10) + '"}}')
    with pytest.raises(MonspecError, match="too large to be a monspec"):
        load_monspec(huge)


def test_large_but_valid_monspec_loads(tmp_path: Path) -> None:
    entities = {
        f"Svc{i}": {
            "environments": {"Staging": {}, "Production": {}},
            "comparisons": [{"name": "C", "source": "Staging", "compare": "Production"}],
            "perfsignature": [{"timeseries": "service.responsetime", "aggregate": "p90"}],
        }
        for i in range(2000)
    }
    path = tmp_path / "large.json"
    path.write_text(json.dumps(entities))
    started = time.perf_counter()
    assert len(load_monspec(path).entities) == 2000
    assert time.perf_counter() - started < 10


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "etype",
                    "environments",
                    "comparisons",
                    "perfsignature",
                    "servicemethods",
                    "name",
                    "source",
                    "compare",
                    "scalefactorperc",
                    "timeseries",
                    "aggregate",
                    "validate",
                    "_upperlimit",
                    "tags",
                    "url",
                    "baseline",
                    "judge",
                    "logrules",
                    "pattern",
                    "Staging",
                    "default",
                    "shiftcomparetimeframe",
                    "_comment",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3))
def test_fuzzed_documents_load_or_fail_with_monspec_error(document: dict[str, object]) -> None:
    text = json.dumps(document)
    try:
        parse_monspec(text, "fuzz.json")
    except MonspecError as exc:
        assert str(exc).startswith("fuzz.json") and "Traceback" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzzed_text_loads_or_fails_with_monspec_error(text: str) -> None:
    with contextlib.suppress(MonspecError):
        parse_monspec(text, "fuzz.json")


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=4000), junk=st.text(min_size=1, max_size=3))
def test_damaged_seed_loads_or_fails_with_monspec_error(cut: int, junk: str) -> None:
    seed = (ROOT / "tests" / "data" / "monspecs" / "seed-monspec.json").read_text()
    cut = cut % len(seed)
    with contextlib.suppress(MonspecError):
        parse_monspec(seed[:cut] + junk + seed[cut + 1 :], "damaged.json")


# ---------------------------------------------------------------------------- faults


def locust_spec(url: str, locustfile: Path | str, duration_s: float = 4, **env: str) -> LoadSpec:
    return LoadSpec(
        service="Svc",
        env="Staging",
        url=url,
        locustfile=str(locustfile),
        users=4,
        spawn_rate=4,
        duration_s=duration_s,
        extra_env={"PERFSIG_THINK_S": "0.05", **env},
    )


@pytest.mark.e2e
def test_stage_dying_mid_run_is_a_violation_and_keeps_the_samples(
    gate_dir: pytest.Pytester, sample_app: Callable[..., RunningApp]
) -> None:
    staging, production = sample_app("Staging"), sample_app("Production")
    gate_dir.makefile(
        ".json",
        monspec=json.dumps(
            {
                "Svc": {
                    "environments": {"Staging": {}, "Production": {}},
                    "comparisons": [
                        {
                            "name": "StagingToProduction",
                            "source": "Staging",
                            "compare": "Production",
                            "scalefactorperc": {"default": 30},
                        }
                    ],
                    "perfsignature": [{"timeseries": "service.failurerate", "aggregate": "avg"}],
                }
            }
        ),
    )
    # It dies once the load has stored 100 of its requests, however slow the machine is.
    killer = when_stored(gate_dir.path / ".perfsig" / "perfsig.db", "Staging", 100, staging.stop)
    result = gate_dir.runpytest_subprocess(
        "--monspec=monspec.json",
        "--stage=Staging",
        "--perfsig-duration=5",
        f"--perfsig-url=Staging={staging.url}",
        f"--perfsig-url=Production={production.url}",
        "--perfsig-warmup=0",
    )
    killer.join()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "passed" not in result.parseoutcomes()
    result.stdout.fnmatch_lines(["*service.failurerate avg: Staging * > limit*"])
    staging = stored_rows(gate_dir.path / ".perfsig" / "perfsig.db", "Staging")
    ok = sum(success for *_, success in staging)
    assert ok > 0 and len(staging) - ok > 0  # what was measured before and after the death is all there


@pytest.mark.e2e
def test_load_process_crashing_mid_run_is_a_load_error_and_keeps_the_samples(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    app = sample_app("Staging")
    crashing = tmp_path / "crashing.py"
    crashing.write_text(
        "import os, threading\n"
        "from locust import FastHttpUser, constant, task, events\n"
        "@events.test_start.add_listener\n"
        "def crash_later(**kwargs):\n"
        "    import gevent\n"
        "    gevent.spawn_later(1.5, os._exit, 3)\n"
        "class U(FastHttpUser):\n"
        "    wait_time = constant(0.01)\n"
        "    @task\n"
        "    def hit(self):\n"
        "        self.client.get('/version')\n"
    )
    with SqliteStore(tmp_path / "s.db") as store:
        with pytest.raises(LoadError, match="Locust exited with code 3"):
            run_load([locust_spec(app.url, crashing)], store)
        ((run_id, status),) = [(run.run_id, run.status) for run in store.runs()]
        assert status == "error"
        assert store.run_counts(run_id)[0] > 0  # flushed before the crash: kept


def hold_lock(path: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Another process holding an exclusive lock on the store."""
    code = (
        f"import sqlite3, time; db = sqlite3.connect({str(path)!r}, isolation_level=None); "
        f"db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep({seconds}); db.execute('COMMIT')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline().strip() == b"locked"
    return process


def test_locked_store_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    holder = hold_lock(path, 3)
    try:
        with pytest.raises(StoreError, match="database is locked"):
            SqliteStore(path, timeout_s=0.5).add_samples([("r", 1.0, "S", "E", "/", 1.0, 1, 200)])
    finally:
        holder.wait()
    assert SqliteStore(path).run_counts("r") == (0, 0)


def test_capture_keeps_samples_while_the_store_is_locked(tmp_path: Path) -> None:
    from tests.capturing import Piped

    path = tmp_path / "s.db"
    SqliteStore(path).close()
    os.environ["PERFSIG_STORE_TIMEOUT"] = "0.2"
    try:
        piped = Piped(path, "r", "S", "E")
        capture, writer = piped.capture, piped.writer
        holder = hold_lock(path, 2)
        for k in range(5):
            capture.on_request(
                request_type="GET", name="/", response_time=1.0, response_length=0, start_time=1.0 + k
            )
        capture.flush()  # into the pipe at once: Locust never waits
        assert capture.buffer == [] and capture.captured == 5
        deadline = time.monotonic() + 2.0
        while not writer.failed_writes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.failed_writes >= 1 and writer.queued == 5
        holder.wait()
        assert piped.close()  # the writer kept the rows and stored them once the lock was gone
    finally:
        del os.environ["PERFSIG_STORE_TIMEOUT"]
    assert writer.dropped == 0 and SqliteStore(path).run_counts("r") == (5, 0)


def test_gate_whose_verdicts_cannot_be_stored_is_an_error(tmp_path: Path) -> None:
    from tests.test_baselines import add_run, gate_over, monspec, only_verdict

    store = SqliteStore(tmp_path / "s.db", timeout_s=0.3)
    add_run(store, "current", "Staging", 1_800_000_000.0, [10.0] * 40)
    add_run(store, "prod", "Production", 1_800_000_000.0, [10.0] * 40)
    gate = gate_over(store, monspec({"compare": "Production"}))
    holder = hold_lock(tmp_path / "s.db", 2)
    try:
        verdict = only_verdict(gate)
        assert verdict.status == "pass"  # the measurement stands...
        assert gate.status() == "error"  # ...but a gate whose results were not kept is no pass
        assert any("not stored" in p for p in gate.outcome().problems)
    finally:
        holder.wait()


# ---------------------------------------------------------------------------- the table


def test_reliability_table_names_only_existing_tests() -> None:
    table = (ROOT / "docs" / "reliability.md").read_text()
    referenced = re.findall(r"`(tests/test_\w+\.py)::(\w+)`", table)
    assert len(referenced) >= 25
    for path, name in referenced:
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name} is not a test"


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_monspec_that_is_not_a_regular_file_is_a_usage_error(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "monspec.json"
        os.mkfifo(path)  # nothing ever writes: reading it would block forever
    elif kind == "device":
        path = Path("/dev/zero")  # never ends: reading it would fill the memory
    else:
        path = tmp_path
    with pytest.raises(MonspecError, match="not a regular file"):
        load_monspec(path)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", f"--monspec={path}", "--stage=Staging", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "not a regular file" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_store_is_one_usage_error_before_any_load(tmp_path: Path) -> None:
    (tmp_path / "monspec.json").write_text((ROOT / "monspec.json").read_text())
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's folder should be")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--monspec=monspec.json",
            "--stage=Staging",
            f"--perfsig-store={blocker}/perfsig.db",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) <= 2 and "cannot open store" in result.stderr, lines
    assert "perfsig load" not in result.stdout  # no load was started
