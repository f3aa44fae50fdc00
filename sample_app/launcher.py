"""Start the sample app as a child process and wait until it listens (demo and tests)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

_STARTUP_RE = re.compile(r"listening on (http://\S+)")


@dataclass
class RunningApp:
    stage: str
    build: int
    url: str
    log_file: Path
    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> RunningApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_app(
    stage: str, build: int, log_dir: Path, *, latency_ms: float = 5.0, port: int = 0, timeout_s: float = 20.0
) -> RunningApp:
    """Start ``python -m sample_app`` on a free loopback port; raise RuntimeError if it
    does not print its startup line in time."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"serviceoutput-{stage}.log"
    command = [
        sys.executable,
        "-m",
        "sample_app",
        "--stage",
        stage,
        "--build",
        str(build),
        "--port",
        str(port),
        "--latency-ms",
        f"{latency_ms:g}",
        "--log-file",
        str(log_file),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    found: list[str] = []
    seen: list[str] = []

    def read_startup() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line.rstrip())
            match = _STARTUP_RE.search(line)
            if match:
                found.append(match.group(1))
                break

    reader = threading.Thread(target=read_startup, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not found:
        process.kill()
        process.wait()
        raise RuntimeError(
            f"sample_app {stage} build {build} did not start within {timeout_s:g} s: " + " | ".join(seen[-5:])
        )
    # Keep draining stdout so the child never blocks on a full pipe.
    threading.Thread(target=lambda: process.stdout and process.stdout.read(), daemon=True).start()
    return RunningApp(stage, build, found[0], log_file, process)
