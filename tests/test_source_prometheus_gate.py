"""The Prometheus source through the command line, against the real thing: a Prometheus server
(Debian's ``prometheus`` package) scrapes the sample app's Staging and Production every second;
``pytest --monspec … --stage=Staging`` runs as a subprocess and judges from it.

Production is judged from its monitoring, as in the original pipeline: it gets no synthetic
load (its numbers come from a remote source), and its traffic comes from a steady client
standing in for its real users. Staging takes the gate's Locust load. Build 2 (every second
``/api/invoke`` fails) is rejected on failure rate — violations, not errors — and build 1 is
approved. Scrapes are waited for by data: the source waits until Prometheus holds samples past
the window's end (``settle``), the fixture until both targets are up.

Skips without /usr/bin/prometheus, except in CI (env CI set), where it fails."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_perfsig.store import SqliteStore
from sample_app.launcher import RunningApp, start_app
from tests.loopback import free_port

pytestmark = pytest.mark.e2e

PROMETHEUS_BIN = Path("/usr/bin/prometheus")
SVC = "SampleJSonService"
# 10 s: Locust takes a second or two to send its first request on a busy machine, and the gate's
# window (first request + duration) must still end with requests in its last third.
LOAD = ["--perfsig-duration=10", "--perfsig-warmup=1", "--perfsig-users=5", "--perfsig-spawn-rate=5"]
USER_PATHS = ("/api/invoke", "/", "/api/invoke", "/api/echo?text=user")  # half of them invokes
USER_PAUSE_S = 0.03  # some 25 requests a second, whatever the gate does


@dataclass
class Monitored:
    prometheus: str  # host:port
    staging: RunningApp
    production: RunningApp

    @property
    def source(self) -> str:
        return f"prometheus://{self.prometheus}"


def _binary() -> Path:
    if PROMETHEUS_BIN.is_file():
        return PROMETHEUS_BIN
    reason = f"{PROMETHEUS_BIN} not installed (Debian package prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must install it")
    pytest.skip(reason)


def _until(what: str, check: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if check():
                return
        except (httpx.HTTPError, ValueError, KeyError):  # starting: no answer, or not JSON yet
            pass
        time.sleep(0.25)
    pytest.fail(f"prometheus: {what} within 30 s; log: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    binary = _binary()
    tmp = tmp_path_factory.mktemp("prometheus-gate")
    apps: list[RunningApp] = []
    process = None
    try:
        apps = [start_app("Staging", 2, tmp / "apps"), start_app("Production", 1, tmp / "apps")]
        port = free_port()
        config = tmp / "prometheus.yml"
        targets = json.dumps([app.url.removeprefix("http://") for app in apps])
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"scrape_configs:\n  - job_name: sample_app\n    static_configs:\n      - targets: {targets}\n"
        )
        log = tmp / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

        def both_up() -> bool:
            answer = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up == 1"}, timeout=5
            )
            return len(answer.json()["data"]["result"]) == 2

        _until("both targets up", both_up, process, log)
        yield Monitored(f"127.0.0.1:{port}", apps[0], apps[1])
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for app in apps:
            app.stop()


@pytest.fixture
def real_users(monitored: Monitored) -> Iterator[list[int]]:
    """Production's real users: a client requesting its pages at a steady pace for as long as
    the test runs. Yields the statuses seen (Production is healthy: all 200)."""
    statuses: list[int] = []
    stop = threading.Event()

    def visit() -> None:
        with httpx.Client(base_url=monitored.production.url, timeout=5) as client:
            k = 0
            while not stop.is_set():
                try:
                    statuses.append(client.get(USER_PATHS[k % len(USER_PATHS)]).status_code)
                except httpx.HTTPError:
                    statuses.append(0)
                k += 1
                stop.wait(USER_PAUSE_S)

    thread = threading.Thread(target=visit, daemon=True)
    thread.start()
    yield statuses
    stop.set()
    thread.join(10)


def monspec(directory: Path, production_url: str, sources: dict[str, str]) -> Path:
    """Failure rate, average response time, request rate, one service method; the smartscape
    entry, which Prometheus cannot answer, is optional. Response times compare a client-side
    number (local) with a server-side one (Prometheus) in one variant: a wide tolerance.
    Production has a URL: with the local source the gate would load it."""
    environments: dict[str, Any] = {
        env: {"tags": [{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": env}]}
        for env in ("Staging", "Production")
    }
    environments["Production"]["url"] = production_url
    for env, url in sources.items():
        environments[env]["source"] = url
    path = directory / "monspec.json"
    path.write_text(
        json.dumps(
            {
                SVC: {
                    "environments": environments,
                    "comparisons": [
                        {
                            "name": "StagingToProduction",
                            "source": "Staging",
                            "compare": "Production",
                            "scalefactorperc": {
                                "default": 30,
                                "service.responsetime": 100,
                                "service.requestspermin": 90,
                                "servicemethod.responsetime": 100,
                            },
                            "abstolerance": {
                                "service.failurerate": 0.5,
                                "servicemethod.failurerate": 0.5,
                                "service.responsetime": 100,
                                "servicemethod.responsetime": 100,
                            },
                        }
                    ],
                    "perfsignature": [
                        {"timeseries": "service.failurerate", "aggregate": "avg"},
                        {"timeseries": "service.responsetime", "aggregate": "avg"},
                        {"timeseries": "service.requestspermin", "aggregate": "count", "validate": "lower"},
                        {
                            "smartscape": "toRelationships:calls",
                            "aggregate": "count",
                            "validate": "lower",
                            "optional": True,
                        },
                    ],
                    "servicemethods": [
                        {
                            "name": "/api/invoke",
                            "perfsignature": [
                                {"timeseries": "servicemethod.failurerate", "aggregate": "avg"},
                                {"timeseries": "servicemethod.responsetime", "aggregate": "avg"},
                            ],
                        }
                    ],
                }
            }
        )
    )
    return path


def set_build(app: RunningApp, build: int) -> None:
    httpx.get(f"{app.url}/api/version", params={"newBuildNumber": build}, timeout=5).raise_for_status()


FAILURE_RATE_ITEMS = (
    "FAILED *monspec.json::StagingToProduction::service.failurerate[[]avg[]]*",
    "FAILED *monspec.json::StagingToProduction::/api/invoke::servicemethod.failurerate[[]avg[]]*",
)


def run_gate(
    gate_dir: pytest.Pytester, monitored: Monitored, build: int, how: str
) -> tuple[pytest.RunResult, str]:
    set_build(monitored.staging, build)
    if how == "--perfsig-source":  # both environments read from Prometheus
        path, extra = (
            monspec(gate_dir.path, monitored.production.url, {}),
            [f"--perfsig-source={monitored.source}"],
        )
    else:  # only Production's monitoring is Prometheus; Staging is judged from its load's samples
        path, extra = monspec(gate_dir.path, monitored.production.url, {"Production": monitored.source}), []
    result = gate_dir.runpytest_subprocess(
        f"--monspec={path}",
        "--stage=Staging",
        f"--perfsig-url=Staging={monitored.staging.url}",
        f"--perfsig-build={build}",
        "--perfsig-html=report.html",
        "-rA",
        *LOAD,
        *extra,
    )
    return result, result.stdout.str()


@pytest.mark.parametrize("how", ["--perfsig-source", "environments.Production.source"])
def test_build_2_is_rejected_on_failure_rate_and_build_1_approved(
    gate_dir: pytest.Pytester, monitored: Monitored, real_users: list[int], how: str
) -> None:
    rejected, out = run_gate(gate_dir, monitored, 2, how)
    assert rejected.ret == pytest.ExitCode.TESTS_FAILED, out
    rejected.stdout.fnmatch_lines_random(list(FAILURE_RATE_ITEMS))
    outcomes = rejected.parseoutcomes()
    assert outcomes.get("failed") == 2 and "errors" not in outcomes and "error" not in outcomes, out
    assert outcomes.get("skipped") == 1, out  # the optional smartscape entry
    assert f"perfsig: Production: not loaded (its numbers come from {monitored.source})" in out
    assert "perfsig: Production:" not in out.replace("perfsig: Production: not loaded", "")  # no Locust run
    assert "Production not loaded" in out  # on the progress line too
    assert "for Staging: VIOLATION" in out
    html = (gate_dir.path / "report.html").read_text()
    assert f"not loaded: measured by {monitored.source}" in html

    approved, out = run_gate(gate_dir, monitored, 1, how)
    assert approved.ret == pytest.ExitCode.OK, out
    outcomes = approved.parseoutcomes()
    assert outcomes.get("passed") == 5 and outcomes.get("skipped") == 1 and "failed" not in outcomes, out
    assert "for Staging: PASS" in out
    # Production's traffic was its users' alone, and healthy: the gates recorded it as not loaded.
    assert len(real_users) > 100 and set(real_users) == {200}
    with SqliteStore(gate_dir.path / ".perfsig" / "perfsig.db") as store:
        runs = [(run.env, run.status) for run in store.runs()]
    assert sorted(runs) == [("Production", "not_loaded")] * 2 + [("Staging", "completed")] * 2
