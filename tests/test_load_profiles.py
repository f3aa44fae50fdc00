"""Which locustfile each environment gets (option, monspec, conventional file, built-in profile),
the built-in profile's settings, the open model's load spec, and which locustfiles the open
model can schedule (asked of a child process, as the runner does: Locust stays out of this one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_perfsig.errors import UsageError
from pytest_perfsig.gate import GateOptions, plan_checks
from pytest_perfsig.gate.plan import plan_load
from pytest_perfsig.load import profiles
from pytest_perfsig.load.profiles import BUILTIN_LOCUSTFILE, OpenCounts
from pytest_perfsig.load.runner import LoadSpec, check_schedulable
from pytest_perfsig.monspec import Monspec, parse_monspec

ROOT = Path(__file__).resolve().parents[1]


def monspec(tmp_path: Path, methods: list[str] = ["/api/invoke"], **locustfiles: str) -> Monspec:  # noqa: B006
    envs = {
        env: {
            "url": f"http://127.0.0.1:{port}",
            **({"locustfile": locustfiles[env]} if env in locustfiles else {}),
        }
        for env, port in (("Staging", 8081), ("Production", 8082))
    }
    doc = {
        "Svc": {
            "environments": envs,
            "comparisons": [
                {"name": "S2P", "source": "Staging", "compare": "Production"},
                {"name": "P2S", "source": "Production", "compare": "Staging"},
            ],
            "perfsignature": [{"timeseries": "service.responsetime", "aggregate": "avg"}],
            "servicemethods": [
                {
                    "name": m,
                    "perfsignature": [{"timeseries": "servicemethod.responsetime", "aggregate": "avg"}],
                }
                for m in methods
            ],
        }
    }
    path = tmp_path / "monspec.json"
    path.write_text(json.dumps(doc))
    return parse_monspec(path.read_text(), str(path))


def plan(spec: Monspec, tmp_path: Path, stage: str = "Staging", **options: object) -> dict[str, LoadSpec]:
    gate = GateOptions(stage=stage, loadtests_dir=tmp_path / "loadtests", **options)  # type: ignore[arg-type]
    return {s.env: s for s in plan_load(spec, gate, plan_checks(spec, gate))}


def test_builtin_profile_requests_root_and_every_path_method() -> None:
    assert profiles.builtin_endpoints(
        ["/api/invoke", "checkout", "//evil.example/x", "/a b", "/api/invoke", "/api/echo?text=x"]
    ) == ["/", "/api/invoke", "/api/echo?text=x"]
    assert profiles.builtin_endpoints(["checkout", "GET /x"]) == ["/"]
    assert (
        profiles.endpoint_name("/api/echo?text=x") == "/api/echo" and profiles.endpoint_name("/?a=1") == "/"
    )
    assert profiles.visit(["/", "/api/invoke"], profiles.TEST_LOOP) == ["/", "/api/invoke"]
    assert profiles.visit(["/", "/api/invoke"], profiles.REAL_USERS) == ["/", "/api/invoke", "/api/invoke"]
    assert (
        profiles.pace_for("Production-eu") == profiles.REAL_USERS
        and profiles.pace_for("Staging") == "test-loop"
    )
    assert profiles.parse_endpoints('["/", "/x", 3, "nope"]') == ["/", "/x"]
    assert profiles.parse_endpoints("not json") == ["/"] and profiles.parse_endpoints(None) == ["/"]
    assert (
        profiles.parse_think("0.2") == 0.2
        and profiles.parse_think("-1") == 0.5
        and profiles.parse_think("x") == 0.5
    )


def test_no_locustfile_anywhere_gives_the_builtin_profile(tmp_path: Path) -> None:
    specs = plan(monspec(tmp_path, ["/api/invoke", "checkout"]), tmp_path)
    staging, production = specs["Staging"], specs["Production"]
    assert staging.locustfile == production.locustfile == BUILTIN_LOCUSTFILE
    assert Path(BUILTIN_LOCUSTFILE).is_file()
    assert staging.profile == "built-in test loop: /, /api/invoke"
    assert production.profile == "built-in real users: /, /api/invoke"
    assert json.loads(staging.extra_env[profiles.ENV_ENDPOINTS]) == ["/", "/api/invoke"]
    assert staging.extra_env[profiles.ENV_PACE] == "test-loop"
    assert production.extra_env[profiles.ENV_PACE] == "real-users"
    assert staging.described == staging.profile and staging.load_model == "closed"


def test_conventional_loadtests_files_are_kept_when_they_exist(tmp_path: Path) -> None:
    (tmp_path / "loadtests").mkdir()
    (tmp_path / "loadtests" / "staging.py").write_text("# staging\n")
    specs = plan(monspec(tmp_path), tmp_path)
    assert specs["Staging"].locustfile == str(tmp_path / "loadtests" / "staging.py")
    assert specs["Staging"].profile == specs["Staging"].locustfile and not specs["Staging"].extra_env
    assert specs["Production"].locustfile == BUILTIN_LOCUSTFILE  # no production.py: built-in


def test_option_then_monspec_then_conventional(tmp_path: Path) -> None:
    (tmp_path / "loadtests").mkdir()
    for name in ("staging.py", "production.py", "mine.py", "prod.py"):
        (tmp_path / ("loadtests" if name in ("staging.py", "production.py") else ".") / name).write_text(
            "#\n"
        )
    spec = monspec(tmp_path, Staging="mine.py", Production="prod.py")
    specs = plan(spec, tmp_path, locustfile=str(tmp_path / "loadtests" / "staging.py"))
    assert specs["Staging"].locustfile == str(tmp_path / "loadtests" / "staging.py")  # the option wins
    assert specs["Production"].locustfile == str(tmp_path / "prod.py")  # the option is the stage's only
    specs = plan(spec, tmp_path)
    assert specs["Staging"].locustfile == str(tmp_path / "mine.py")


def test_missing_locustfile_named_by_the_option_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match=r"--perfsig-locustfile nope\.py: no such file \(for the stage under test Staging\)"
    ):
        plan(monspec(tmp_path), tmp_path, locustfile="nope.py")


def test_missing_locustfile_named_by_the_monspec_names_the_field(tmp_path: Path) -> None:
    spec = monspec(tmp_path, Staging="gone.py", Production="gone-too.py")
    with pytest.raises(UsageError) as staging:
        plan(spec, tmp_path)
    assert "environments.Staging.locustfile 'gone.py'" in str(staging.value)
    assert "or pass --perfsig-locustfile for Staging" in str(staging.value)
    (tmp_path / "gone.py").write_text("#\n")
    with pytest.raises(UsageError) as production:
        plan(spec, tmp_path)  # Production is loaded beside the stage: the option cannot help it
    assert "environments.Production.locustfile 'gone-too.py'" in str(production.value)
    assert "--perfsig-locustfile" not in str(production.value)
    with pytest.raises(UsageError) as stage:
        plan(spec, tmp_path, stage="Production")  # nor when Production is the stage: it is named in the file
    assert "environments.Production.locustfile" in str(stage.value)


def test_open_model_spec_is_labelled_by_its_rate_and_keeps_the_profile(tmp_path: Path) -> None:
    specs = plan(monspec(tmp_path), tmp_path, arrival_rate=25.0)
    staging = specs["Staging"]
    assert staging.arrival_rate == 25.0 and staging.load_model == "open 25 tasks/s"
    assert staging.locustfile == BUILTIN_LOCUSTFILE and staging.users == 10
    with pytest.raises(UsageError, match="--perfsig-arrival-rate must be a positive number"):
        plan(monspec(tmp_path), tmp_path, arrival_rate=0.0)
    with pytest.raises(ValueError, match="needs an arrival rate"):
        LoadSpec("Svc", "Staging", "http://x", "f.py", 1, 1, 1, load_model="open 5/s")
    with pytest.raises(ValueError, match="positive"):
        LoadSpec("Svc", "Staging", "http://x", "f.py", 1, 1, 1, arrival_rate=0)


def test_open_counts_describe_what_vanished() -> None:
    counts = OpenCounts(scheduled=10, started=9, dropped=1, finished=7, errors=1, unfinished=2, schedulers=1)
    text = counts.describe(2, 3)
    assert text == (
        "open model: 10 tasks scheduled, 7 finished (1 with an error), 2 unfinished 3 s after the "
        "schedule, 1 dropped (too many in flight); counts from 1 of 2 schedulers"
    )
    assert OpenCounts.from_json(counts.to_json()) == counts


def tasks_of(locustfile: Path, **env: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest_perfsig.load.arrivals", "--check", str(locustfile)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**__import__("os").environ, **env},
    )
    return {t["task"]: t["weight"] for t in json.loads(out.stdout.splitlines()[-1])["tasks"]}


def test_schedulable_tasks_of_user_classes_tasksets_and_the_builtin_profile(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.py"
    mixed.write_text(
        "from locust import HttpUser, TaskSet, task\n"
        "class Browse(TaskSet):\n"
        "    @task\n    def page(self): pass\n"
        "class Shopper(HttpUser):\n"
        "    tasks = [Browse]\n"
        "    @task(3)\n    def buy(self): pass\n"
    )
    # Shares of the class's weight: Locust repeats buy 3 times and the TaskSet once, and the
    # TaskSet's single task inherits the TaskSet's share.
    assert tasks_of(mixed) == {"Shopper.Browse.page": 0.25, "Shopper.buy": 0.75}
    assert tasks_of(ROOT / "loadtests" / "staging.py") == {"StagingUser.main_loop": 1.0}
    # The built-in profile: one task per endpoint; real users call the service methods twice.
    endpoints = '["/", "/api/invoke"]'
    assert tasks_of(Path(BUILTIN_LOCUSTFILE), PERFSIG_ENDPOINTS=endpoints, PERFSIG_PACE="real-users") == {
        "/": pytest.approx(1 / 3),
        "/api/invoke": pytest.approx(2 / 3),
    }
    assert tasks_of(Path(BUILTIN_LOCUSTFILE), PERFSIG_ENDPOINTS=endpoints) == {"/": 0.5, "/api/invoke": 0.5}


def test_locustfile_without_tasks_is_refused_before_any_load(tmp_path: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("from locust import HttpUser\nclass Idle(HttpUser):\n    pass\n")
    spec = LoadSpec("Svc", "Staging", "http://127.0.0.1:9", str(empty), 1, 1, 1, arrival_rate=5)
    with pytest.raises(UsageError, match=r"empty\.py for Staging has no task the open model can schedule"):
        check_schedulable([spec])
    closed = LoadSpec("Svc", "Staging", "http://127.0.0.1:9", str(empty), 1, 1, 1)
    check_schedulable([closed])  # the closed model asks nothing
