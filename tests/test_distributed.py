"""Load topologies and models against the real sample app: Locust's --processes, remote
workers started with `perfsig load-worker`, and the open model (built-in profile and a user's
locustfile, alone and over workers). Every request Locust counted is stored once, whatever
process sent it, and every task the open model scheduled is accounted for."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pytest_perfsig.load.profiles import BUILTIN_LOCUSTFILE, builtin_env, describe_builtin
from pytest_perfsig.load.runner import LoadSpec, run_load
from pytest_perfsig.store import SqliteStore
from sample_app.launcher import RunningApp

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def locust_count(log: Path) -> int:
    match = re.search(r"Aggregated\s+(\d+)", log.read_text())
    assert match, log.read_text()
    return int(match.group(1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spec(url: str, **kwargs: object) -> LoadSpec:
    base = dict(
        service="Svc",
        env="Staging",
        url=url,
        locustfile=str(ROOT / "loadtests" / "staging.py"),
        users=6,
        spawn_rate=6,
        duration_s=4,
        extra_env={"PERFSIG_THINK_S": "0.05"},
    )
    return LoadSpec(**{**base, **kwargs})  # type: ignore[arg-type]


def test_two_local_processes_store_every_request_once(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    app = sample_app("Staging")
    with SqliteStore(tmp_path / "s.db") as store:
        (result,) = run_load([spec(app.url, processes=2)], store)
        stored = store.run_counts(result.run_id)[0]
    assert stored == locust_count(result.log_path) > 100


def test_remote_workers_send_their_samples_to_the_master(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    app = sample_app("Staging")
    port = free_port()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_perfsig.cli",
                "load-worker",
                "--master",
                "127.0.0.1",
                "--master-port",
                str(port),
                "-f",
                str(ROOT / "loadtests" / "staging.py"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PERFSIG_THINK_S": "0.05"},
        )
        for _ in range(2)
    ]
    try:
        with SqliteStore(tmp_path / "s.db") as store:
            (result,) = run_load([spec(app.url, workers=2, master_port=port)], store)
            stored = store.run_counts(result.run_id)[0]
            endpoints = {e for e in store.samples("Svc", "Staging", 0, time.time() + 60).endpoint}
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(10)
    assert stored == locust_count(result.log_path) > 100
    assert endpoints == {"/", "/version", "/api/echo", "/api/invoke"}


def builtin(url: str, endpoints: list[str], **kwargs: object) -> LoadSpec:
    """A spec of the built-in profile with these endpoints."""
    env = {**builtin_env(endpoints, "test-loop"), "PERFSIG_THINK_S": "0.05", **kwargs.pop("env", {})}  # type: ignore[dict-item]
    return spec(
        url,
        locustfile=BUILTIN_LOCUSTFILE,
        profile=describe_builtin(endpoints, "test-loop"),
        extra_env=env,
        **kwargs,
    )


def test_open_model_keeps_its_rate_and_measures_from_the_intended_time(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    slow = sample_app("Staging", latency_ms=150)  # slower than the 10 ms between starts
    endpoints = ["/", "/version", "/api/echo?text=open", "/api/invoke"]
    with SqliteStore(tmp_path / "s.db") as store:
        (result,) = run_load([builtin(slow.url, endpoints, arrival_rate=100)], store)
        run = store.run(result.run_id)
        samples = store.samples("Svc", "Staging", 0, time.time() + 60)
    assert run is not None and run.load_model == "open 100 tasks/s" and run.users is None
    assert run.locustfile == "built-in test loop: /, /version, /api/echo?text=open, /api/invoke"
    # 100 requests a second were started, however slow the answers: a closed model with one
    # user would have sent about 6 a second.
    rate = len(samples) / (samples.ts.max() - samples.ts.min())
    assert 85 <= rate <= 110, rate
    assert set(samples.endpoint) == {"/", "/version", "/api/echo", "/api/invoke"}
    # Start times are the intended ones: evenly spaced, 10 ms apart.
    gaps = np.diff(np.sort(samples.ts))
    assert float(np.median(gaps)) == pytest.approx(0.01, rel=0.05)
    assert float(samples.latency_ms.min()) >= 100  # every latency includes the 150 ms service time (±20 %)
    # Nothing scheduled vanished: every task finished and is one stored request.
    assert run.detail is not None and re.search(
        r"open model: 400 tasks scheduled, 400 finished \(0 with an error\), "
        r"0 unfinished",
        run.detail,
    ), run.detail
    assert len(samples) == 400 and result.detail == run.detail


def test_open_model_schedules_the_tasks_of_a_users_own_locustfile(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    slow = sample_app("Staging", latency_ms=150)
    # staging.py's task requests /, /version, /api/echo and /api/invoke in turn: 20 tasks a second
    # are 80 requests, and each task takes longer than the 50 ms between starts.
    open_spec = spec(slow.url, duration_s=3, arrival_rate=20)
    with SqliteStore(tmp_path / "s.db") as store:
        (result,) = run_load([open_spec], store)
        run = store.run(result.run_id)
        samples = store.samples("Svc", "Staging", 0, time.time() + 60)
    assert run is not None and run.load_model == "open 20 tasks/s" and run.locustfile == open_spec.locustfile
    first = np.sort(samples.ts[np.array(samples.endpoint) == "/"])
    assert len(first) == 60 and len(samples) == 240
    # The first request of every task is stamped with the task's intended start: 50 ms apart.
    assert float(np.median(np.diff(first))) == pytest.approx(0.05, rel=0.05)
    assert run.detail is not None and "open model: 60 tasks scheduled, 60 finished" in run.detail


def test_open_model_counts_tasks_still_unanswered_at_the_end(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    slow = sample_app("Staging", latency_ms=400)  # /api/invoke: about 0.8 s
    open_spec = builtin(
        slow.url, ["/api/invoke"], duration_s=2, arrival_rate=20, env={"PERFSIG_DRAIN_S": "0.2"}
    )
    with SqliteStore(tmp_path / "s.db") as store:
        (result,) = run_load([open_spec], store)
        stored, failed = store.run_counts(result.run_id)
        samples = store.samples("Svc", "Staging", 0, time.time() + 60)
    match = re.search(
        r"open model: (\d+) tasks scheduled, (\d+) finished \(0 with an error\), "
        r"(\d+) unfinished 0.2 s after the schedule",
        result.detail,
    )
    assert match, result.detail
    scheduled, finished, unfinished = map(int, match.groups())
    assert scheduled == 40 and unfinished > 0 and finished + unfinished == scheduled
    # Every finished task's request is stored as answered; a stopped task whose request was in
    # flight is stored as a failure, its latency at least the time it was outstanding (the
    # drain after a 2 s schedule). A task stopped before it sent anything stores nothing.
    assert stored - failed == finished
    assert 0 < failed <= unfinished
    assert float(samples.latency_ms[~samples.success].min()) >= 200.0


def test_open_model_with_remote_workers_shares_the_rate(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    app = sample_app("Staging")
    port = free_port()
    # No locustfile on the workers: `perfsig load-worker` runs the built-in profile, and the
    # master hands it the endpoints and the open model's rate.
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_perfsig.cli",
                "load-worker",
                "--master",
                "127.0.0.1",
                "--master-port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    try:
        with SqliteStore(tmp_path / "s.db") as store:
            (result,) = run_load(
                [
                    builtin(
                        app.url,
                        ["/", "/api/invoke"],
                        workers=2,
                        master_port=port,
                        arrival_rate=40,
                        duration_s=3,
                    )
                ],
                store,
            )
            stored = store.run_counts(result.run_id)[0]
            endpoints = {e for e in store.samples("Svc", "Staging", 0, time.time() + 60).endpoint}
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(10)
    assert stored == locust_count(result.log_path) == 120
    assert endpoints == {"/", "/api/invoke"}
    assert (
        "open model: 120 tasks scheduled, 120 finished" in result.detail
        and "counts from" not in result.detail
    )
