"""The Locust runner against the real sample app: what it records (also with the built-in
profile), and how it fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_perfsig.errors import LoadError
from pytest_perfsig.load.profiles import BUILTIN_LOCUSTFILE, REAL_USERS, builtin_env, describe_builtin
from pytest_perfsig.load.runner import LoadSpec, check_reachable, run_load
from pytest_perfsig.store import SqliteStore
from sample_app.launcher import RunningApp

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def spec(url: str, locustfile: Path | str, duration_s: float = 2, build: str | None = None) -> LoadSpec:
    return LoadSpec(
        service="Svc",
        env="Staging",
        url=url,
        locustfile=str(locustfile),
        users=3,
        spawn_rate=3,
        duration_s=duration_s,
        extra_env={"PERFSIG_THINK_S": "0.1"},
        build=build,
    )


def test_run_records_samples_and_reports_progress(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    app = sample_app("Staging", build=2)
    seen: list[tuple[float, int]] = []
    with SqliteStore(tmp_path / "s.db") as store:
        (result,) = run_load(
            [spec(app.url, ROOT / "loadtests" / "staging.py", 3, build="2")],
            store,
            gate_id="g1",
            progress=lambda e, d, runs: seen.append((e, runs[0][1])),
            progress_every_s=0.5,
        )
        run = store.run(result.run_id)
    assert run is not None and run.status == "completed" and run.gate_id == "g1" and run.build == "2"
    assert result.requests > 50 and 0.05 < result.failures / result.requests < 0.2
    assert result.window[1] - result.window[0] > 1.5
    assert len(seen) >= 3 and seen[-1][1] > 0  # progress saw samples arrive while load ran


def test_crashing_locustfile_is_a_load_error_with_its_log(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    app = sample_app("Staging")
    broken = tmp_path / "broken.py"
    broken.write_text("from locust import HttpUser\nraise RuntimeError('locustfile exploded')\n")
    with SqliteStore(tmp_path / "s.db") as store, pytest.raises(LoadError) as excinfo:
        run_load([spec(app.url, broken)], store)
    message = str(excinfo.value)
    assert "load on Staging" in message and "Locust exited with code" in message
    assert "locustfile exploded" in message
    with SqliteStore(tmp_path / "s.db") as store:
        statuses = [(run.status, run.detail) for run in store.runs()]
    assert statuses[0][0] == "error" and "exited" in statuses[0][1]


def test_locustfile_sending_nothing_is_a_load_error(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    app = sample_app("Staging")
    idle = tmp_path / "idle.py"
    idle.write_text(
        "from locust import HttpUser, task, constant\n"
        "class Idle(HttpUser):\n    wait_time = constant(1)\n"
        "    @task\n    def nothing(self):\n        pass\n"
    )
    with (
        SqliteStore(tmp_path / "s.db") as store,
        pytest.raises(LoadError, match="Locust sent no requests to Staging"),
    ):
        run_load([spec(app.url, idle)], store)


def test_unreachable_stage_fails_before_any_load(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"Staging at http://127\.0\.0\.1:9 is unreachable"):
        check_reachable(spec("http://127.0.0.1:9", ROOT / "loadtests" / "staging.py"))
    with SqliteStore(tmp_path / "s.db") as store:
        with pytest.raises(LoadError):
            run_load([spec("http://127.0.0.1:9", ROOT / "loadtests" / "staging.py")], store)
        assert store.runs() == []


def test_builtin_profile_requests_the_monspec_endpoints_at_its_pace(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    app = sample_app("Production")
    endpoints = ["/", "/api/invoke", "/api/echo?text=x"]
    builtin = LoadSpec(
        service="Svc",
        env="Production",
        url=app.url,
        locustfile=BUILTIN_LOCUSTFILE,
        users=3,
        spawn_rate=3,
        duration_s=2,
        profile=describe_builtin(endpoints, REAL_USERS),
        extra_env={**builtin_env(endpoints, REAL_USERS), "PERFSIG_THINK_S": "0.1"},
    )
    with SqliteStore(tmp_path / "s.db") as store:
        (result,) = run_load([builtin], store)
        run = store.run(result.run_id)
        samples = store.samples("Svc", "Production", 0, time.time() + 60)
    assert run is not None and run.locustfile == "built-in real users: /, /api/invoke, /api/echo?text=x"
    assert run.load_model == "closed" and result.detail == f"{result.requests} requests, 0 failed"
    names = list(samples.endpoint)
    # Endpoint names carry no query string; real users call the service methods twice a visit.
    assert set(names) == {"/", "/api/invoke", "/api/echo"}
    assert names.count("/api/invoke") == pytest.approx(2 * names.count("/"), abs=6)
    assert names.count("/api/echo") == pytest.approx(2 * names.count("/"), abs=6)


def test_the_load_goes_on_until_the_gate_has_enough_samples_and_stops_then(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    app = sample_app("Staging")
    asks: list[int] = []

    def enough_after_three_asks(run_ids: object) -> bool:
        asks.append(1)
        return len(asks) >= 3  # the samples suffice at the third question, about 2 s past the duration

    slow = LoadSpec(
        "Svc", "Staging", app.url, str(ROOT / "loadtests" / "staging.py"), 2, 2.0, 2.0, max_duration_s=30.0
    )
    with SqliteStore(tmp_path / "s.db") as store:
        started = time.monotonic()
        (result,) = run_load([slow], store, enough=enough_after_three_asks)
        took = time.monotonic() - started
        run = store.run(result.run_id)
    assert len(asks) == 3
    assert took < 25.0  # stopped when enough, long before the 30 s maximum
    assert run is not None and run.status == "completed" and result.requests > 0
    assert result.ended is not None and result.ended >= result.window[1]
