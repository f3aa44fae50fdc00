"""Faults on both sides of a comparison, as real processes: a baseline that dies mid-window, a
stage that stops answering behind a proxy. A verdict that depends on either is an error, never
a pass. Faults are triggered by stored sample counts, not by wall-clock guesses."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from sample_app.launcher import RunningApp
from tests.stored import stored_rows
from tests.waiting import when_stored

pytestmark = pytest.mark.e2e

MONSPEC = json.dumps(
    {
        "Svc": {
            "environments": {"Staging": {}, "Production": {}},
            "comparisons": [
                {
                    "name": "StagingToProduction",
                    "source": "Staging",
                    "compare": "Production",
                    "scalefactorperc": {"default": 30},
                    "abstolerance": {"service.failurerate": 0.5},
                }
            ],
            "perfsignature": [
                {"timeseries": "service.failurerate", "aggregate": "avg"},
                {"timeseries": "service.responsetime", "aggregate": "avg"},
                {"timeseries": "service.requestspermin", "aggregate": "count", "validate": "lower"},
            ],
            "servicemethods": [
                {
                    "name": "/api/invoke",
                    "perfsignature": [{"timeseries": "servicemethod.failurerate", "aggregate": "avg"}],
                }
            ],
        }
    }
)


def test_a_baseline_that_dies_mid_window_makes_its_checks_errors(
    gate_dir: pytest.Pytester, sample_app: Callable[..., RunningApp]
) -> None:
    gate_dir.makefile(".json", monspec=MONSPEC)
    staging, production = sample_app("Staging", build=2), sample_app("Production", build=1)
    db = gate_dir.path / ".perfsig" / "perfsig.db"
    killer = when_stored(db, "Production", 400, production.process.kill)  # kill -9
    result = gate_dir.runpytest_subprocess(
        "--monspec=monspec.json",
        "--stage=Staging",
        f"--perfsig-url=Staging={staging.url}",
        f"--perfsig-url=Production={production.url}",
        "--perfsig-duration=10",
        "--perfsig-max-duration=12",
        "--perfsig-users=5",
        "-rA",
    )
    killer.join()
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    outcomes = result.parseoutcomes()
    assert "passed" not in outcomes and outcomes.get("errors") == 4, text
    assert "Production broke during its window" in text or "Production stopped answering" in text, text
    result.stdout.fnmatch_lines(["*gate * for Staging: ERROR*"])


class HangingProxy:
    """Forwards ``answer`` HTTP requests to the target, then holds every connection open
    without answering: a stage that hangs instead of refusing."""

    def __init__(self, target_port: int, answer: int) -> None:
        self.target_port, self.answer, self.forwarded = target_port, answer, 0
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        while data := self._recv(client):
            with self.lock:
                requests = data.count(b"\r\n\r\n")
                if self.forwarded + requests > self.answer:
                    continue  # held: read, never forwarded, never answered
                self.forwarded += requests
            upstream.sendall(data)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        while data := self._recv(source):
            try:
                sink.sendall(data)
            except OSError:
                return

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def close(self) -> None:
        self.server.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def hanging(sample_app: Callable[..., RunningApp]) -> Iterator[HangingProxy]:
    staging = sample_app("Staging", build=1)
    proxy = HangingProxy(int(staging.url.rsplit(":", 1)[1]), answer=150)
    yield proxy
    proxy.close()


def test_a_stage_that_stops_answering_is_never_a_pass(
    gate_dir: pytest.Pytester, sample_app: Callable[..., RunningApp], hanging: HangingProxy
) -> None:
    gate_dir.makefile(".json", monspec=MONSPEC)
    production = sample_app("Production", build=1)
    result = gate_dir.runpytest_subprocess(
        "--monspec=monspec.json",
        "--stage=Staging",
        f"--perfsig-url=Staging=http://127.0.0.1:{hanging.port}",
        f"--perfsig-url=Production={production.url}",
        "--perfsig-duration=10",
        "--perfsig-max-duration=12",
        "--perfsig-users=5",
        "-rA",
    )
    text = result.stdout.str()
    assert hanging.forwarded == 150, text
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert "passed" not in result.parseoutcomes(), text
    assert "Staging stopped answering during the window" in text, text
    # The requests held when the load stopped count: one per user, failed, outstanding for seconds.
    failed = [
        latency
        for *_, latency, success in stored_rows(gate_dir.path / ".perfsig" / "perfsig.db", "Staging")
        if not success
    ]
    unanswered, shortest = len(failed), min(failed, default=None)
    assert unanswered == 5 and shortest >= 2000.0, (unanswered, shortest)
