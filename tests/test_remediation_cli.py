"""`perfsig remediate serve` as a real process on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SECRET = "s3cret-for-tests-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_authenticated_notifications_only(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_perfsig.cli",
            "remediate",
            "serve",
            "--port",
            str(port),
            "--store",
            str(tmp_path / "s.db"),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "PERFSIG_WEBHOOK_SECRET": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        problem = {
            "PID": "42",
            "ProblemTitle": "Response time degradation",
            "State": "OPEN",
            "ImpactedEntities": [],
            "Tags": "DeploymentGroup:Production",
        }
        assert httpx.post(f"{url}/problems", json=problem, timeout=5).status_code == 401
        answer = httpx.post(
            f"{url}/problems", json=problem, headers={"Authorization": f"Bearer {SECRET}"}, timeout=5
        )
        assert answer.status_code == 200, answer.text
        assert "deployment" in answer.text.lower()  # nothing deployed yet: skipped, with the reason
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert SECRET not in output


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PERFSIG_WEBHOOK_SECRET"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_perfsig.cli",
            "remediate",
            "serve",
            "--port",
            "0",
            "--store",
            str(tmp_path / "s.db"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        result.returncode == 2
        and "PERFSIG_WEBHOOK_SECRET" in result.stderr
        and "Traceback" not in result.stderr
    )
