"""Load topologies and models against the real sample app: Locust's --processes, remote
workers started with `perfsig load-worker`, and the open model. Every request Locust counted
is stored once, whatever process sent it."""

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
    base = dict(service="Svc", env="Staging", url=url, locustfile=str(ROOT / "loadtests" / "staging.py"), users=6,
                spawn_rate=6, duration_s=4, extra_env={"PERFSIG_THINK_S": "0.05"})
    return LoadSpec(**{**base, **kwargs})  # type: ignore[arg-type]


def test_two_local_processes_store_every_request_once(tmp_path: Path,
                                                      sample_app: Callable[..., RunningApp]) -> None:
    app = sample_app("Staging")
    with SqliteStore(tmp_path / "s.db") as store:
        (result,) = run_load([spec(app.url, processes=2)], store)
        stored = store.run_counts(result.run_id)[0]
    assert stored == locust_count(result.log_path) > 100


def test_remote_workers_send_their_samples_to_the_master(tmp_path: Path,
                                                         sample_app: Callable[..., RunningApp]) -> None:
    app = sample_app("Staging")
    port = free_port()
    workers = [subprocess.Popen([sys.executable, "-m", "pytest_perfsig.cli", "load-worker", "--master", "127.0.0.1",
                                 "--master-port", str(port), "-f", str(ROOT / "loadtests" / "staging.py")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PERFSIG_THINK_S": "0.05"}) for _ in range(2)]
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


def test_open_model_keeps_its_rate_and_measures_from_the_intended_time(
        tmp_path: Path, sample_app: Callable[..., RunningApp]) -> None:
    slow = sample_app("Staging", latency_ms=150)  # slower than the 40 ms between sends
    open_spec = spec(slow.url, locustfile=str(ROOT / "loadtests" / "open.py"), users=1, spawn_rate=1,
                     duration_s=4, load_model="open 25/s per endpoint",
                     extra_env={"PERFSIG_ARRIVAL_RATE": "25"})
    with SqliteStore(tmp_path / "s.db") as store:
        (result,) = run_load([open_spec], store)
        run = store.run(result.run_id)
        samples = store.samples("Svc", "Staging", 0, time.time() + 60)
    assert run is not None and run.load_model == "open 25/s per endpoint"
    # 100 requests a second were scheduled, however slow the answers: a closed model with one
    # user would have sent about 6 a second.
    rate = len(samples) / (samples.ts.max() - samples.ts.min())
    assert 70 <= rate <= 115, rate
    # Start times are the intended ones: evenly spaced, 10 ms apart.
    gaps = np.diff(np.sort(samples.ts))
    assert float(np.median(gaps)) == pytest.approx(0.01, rel=0.05)
    assert float(samples.latency_ms.min()) >= 100  # every latency includes the 150 ms service time (±20 %)
