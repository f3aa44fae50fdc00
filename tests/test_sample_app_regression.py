"""The sample app's regression knob (/api/regression): slower and failing requests of a chosen
size, for the verdict bench's regression cells."""

from __future__ import annotations

import time
from pathlib import Path

from tests.test_sample_app import make_config, running_app


def test_injected_latency_applies_to_every_request(tmp_path: Path) -> None:
    with running_app(make_config(tmp_path, latency_ms=40)) as client:
        assert client.get("/api/regression").json() == {"latencyPerc": 0.0, "failurePerc": 0.0}
        set_to = client.get("/api/regression", params={"latencyperc": "100"})
        assert set_to.json() == {"latencyPerc": 100.0, "failurePerc": 0.0}
        for path in ("/", "/version", "/api/echo"):
            start = time.perf_counter()
            client.get(path).raise_for_status()
            assert time.perf_counter() - start >= 0.064  # 2 × 40 ms × at least 0.8
        # The build switch itself is not slowed down or failed: the bench relies on it.
        start = time.perf_counter()
        client.get("/api/version", params={"newBuildNumber": "1"}).raise_for_status()
        assert time.perf_counter() - start < 0.064


def test_injected_failures_and_their_reset(tmp_path: Path) -> None:
    with running_app(make_config(tmp_path, latency_ms=0)) as client:
        client.get("/api/regression", params={"failureperc": "100"}).raise_for_status()
        assert {client.get(p).status_code for p in ("/", "/version", "/api/echo", "/api/login")} == {500}
        assert client.get("/health").status_code == 200
        client.get("/api/regression", params={"failureperc": "30"}).raise_for_status()
        failed = sum(client.get("/api/echo").status_code == 500 for _ in range(300))
        assert 50 <= failed <= 130
        assert client.get("/api/regression", params={"failureperc": "0"}).json()["failurePerc"] == 0.0
        assert all(client.get("/api/echo").status_code == 200 for _ in range(50))


def test_out_of_range_values_are_refused(tmp_path: Path) -> None:
    with running_app(make_config(tmp_path, latency_ms=0)) as client:
        for name, bad in (
            ("latencyperc", "-1"),
            ("latencyperc", "1001"),
            ("failureperc", "101"),
            ("failureperc", "x"),
        ):
            response = client.get("/api/regression", params={name: bad})
            assert response.status_code == 400 and name in response.json()["error"]
        assert client.get("/api/regression").json() == {"latencyPerc": 0.0, "failurePerc": 0.0}
