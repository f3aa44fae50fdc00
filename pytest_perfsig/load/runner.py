"""Runs Locust headless in child processes, one per environment, in the same time window."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..errors import LoadError
from ..store.sqlite import RunRecord, SqliteStore
from . import capture

# Locust needs a moment to start and to stop its users after --run-time.
STARTUP_GRACE_S = 30.0
WORKER_WAIT_S = 60.0
CHECKPOINT_EVERY_S = 2.0
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class LoadSpec:
    """One environment to drive: where, with what, how hard, for how long."""

    service: str
    env: str
    url: str
    locustfile: str
    users: int
    spawn_rate: float
    duration_s: float
    extra_env: dict[str, str] = field(default_factory=dict)
    build: str | None = None  # label of what is deployed there, when known
    processes: int = 1  # Locust worker processes on this machine (--processes)
    workers: int = 0  # remote workers to wait for (master mode; `perfsig load-worker`)
    master_bind: str = "127.0.0.1"
    master_port: int = 5557
    load_model: str = "closed"

    @property
    def grace_s(self) -> float:
        # Remote workers may take a while to connect; the master waits for them.
        return STARTUP_GRACE_S + (WORKER_WAIT_S if self.workers else 0.0)


@dataclass(frozen=True)
class LoadResult:
    spec: LoadSpec
    run_id: str
    requests: int
    failures: int
    window: tuple[float, float]
    log_path: Path


Progress = Callable[[float, float, list[tuple[LoadSpec, int, int]]], None]
"""(elapsed_s, duration_s, [(spec, requests, failures)]) while load runs."""


def check_reachable(spec: LoadSpec, timeout_s: float = 5.0) -> None:
    """Fail before any load when a stage does not answer at all (any HTTP status will do)."""
    try:
        httpx.get(spec.url, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise LoadError(f"{spec.env} at {spec.url} is unreachable: {reason}") from None


def _locust_command(spec: LoadSpec) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest_perfsig.load.locust_main",
        "-f",
        spec.locustfile,
        "--headless",
        "--host",
        spec.url,
        "--users",
        str(spec.users),
        "--spawn-rate",
        f"{spec.spawn_rate:g}",
        "--run-time",
        f"{max(1, round(spec.duration_s))}s",
        # Failed requests are data for the gate, not a reason for Locust to report an error.
        "--exit-code-on-error",
        "0",
        "--only-summary",
        "--loglevel",
        "WARNING",
        *_topology(spec),
    ]


def _topology(spec: LoadSpec) -> list[str]:
    if spec.workers:
        return [
            "--master",
            "--expect-workers",
            str(spec.workers),
            "--expect-workers-max-wait",
            f"{WORKER_WAIT_S:g}",
            "--master-bind-host",
            spec.master_bind,
            "--master-bind-port",
            str(spec.master_port),
        ]
    if spec.processes > 1:
        return ["--processes", str(spec.processes)]
    return []


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


class _Child:
    def __init__(self, spec: LoadSpec, run_id: str, store_path: Path, log_dir: Path) -> None:
        self.spec = spec
        self.run_id = run_id
        self.log_path = log_dir / f"{run_id}.log"
        env = dict(os.environ)
        env.update(spec.extra_env)
        env.update(
            {
                capture.ENV_STORE: str(store_path),
                capture.ENV_RUN_ID: run_id,
                capture.ENV_SERVICE: spec.service,
                capture.ENV_ENV: spec.env,
            }
        )
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                _locust_command(spec), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_load(
    specs: Sequence[LoadSpec],
    store: SqliteStore,
    *,
    gate_id: str | None = None,
    log_dir: Path | None = None,
    progress: Progress | None = None,
    progress_every_s: float = 2.0,
) -> list[LoadResult]:
    """Drive every spec at once and wait for all; raise LoadError naming what went wrong.

    Runs are recorded in the store before they start and closed with their outcome, and
    samples are stored as they arrive, so a failed load still leaves its data behind.
    """
    for spec in specs:
        check_reachable(spec)
    log_dir = log_dir or store.path.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    children: list[_Child] = []
    try:
        for spec in specs:
            run_id = f"{spec.env}-{uuid.uuid4().hex[:12]}"
            store.create_run(
                RunRecord(
                    run_id=run_id,
                    service=spec.service,
                    env=spec.env,
                    url=spec.url,
                    gate_id=gate_id,
                    build=spec.build,
                    locustfile=spec.locustfile,
                    users=spec.users,
                    spawn_rate=spec.spawn_rate,
                    duration_s=spec.duration_s,
                    load_model=spec.load_model,
                )
            )
            children.append(_Child(spec, run_id, store.path, log_dir))
        _wait(children, store, progress, progress_every_s)
    except BaseException as exc:
        for child in children:
            child.stop()
            store.finish_run(child.run_id, "error", f"{type(exc).__name__}: {exc}")
        raise
    return [_collect(child, store) for child in children]


def _wait(children: list[_Child], store: SqliteStore, progress: Progress | None, every_s: float) -> None:
    duration = max(child.spec.duration_s for child in children)
    started = time.monotonic()
    grace = max(child.spec.grace_s for child in children)
    deadline = started + duration + grace
    next_report = started + every_s
    next_checkpoint = started + CHECKPOINT_EVERY_S
    while any(child.process.poll() is None for child in children):
        now = time.monotonic()
        if now > deadline:
            raise LoadError(
                f"Locust did not finish within {duration + grace:.0f} s "
                f"(logs: {', '.join(str(c.log_path) for c in children)})"
            )
        if now >= next_checkpoint:
            next_checkpoint = now + CHECKPOINT_EVERY_S
            store.checkpoint()  # the Locust processes leave this to us (no stalls in their hub)
        if progress is not None and now >= next_report:
            next_report = now + every_s
            progress(
                min(now - started, duration),
                duration,
                [(child.spec, *store.run_counts(child.run_id)) for child in children],
            )
        time.sleep(0.1)


def _collect(child: _Child, store: SqliteStore) -> LoadResult:
    code = child.process.returncode
    store.compact_run(child.run_id)  # the Locust process has exited: every sample is in
    requests, failures = store.run_counts(child.run_id)
    window = store.run_window(child.run_id)
    spec = child.spec
    if code != 0:
        detail = f"Locust exited with code {code}"
        store.finish_run(child.run_id, "error", detail)
        raise LoadError(
            f"load on {spec.env} ({spec.url}) failed: {detail}; last lines of "
            f"{child.log_path}:\n{_tail(child.log_path)}"
        )
    if window is None:
        store.finish_run(child.run_id, "error", "no requests")
        raise LoadError(
            f"Locust sent no requests to {spec.env} ({spec.url}) with {spec.locustfile}; "
            f"last lines of {child.log_path}:\n{_tail(child.log_path)}"
        )
    store.finish_run(child.run_id, "completed", f"{requests} requests, {failures} failed")
    return LoadResult(spec, child.run_id, requests, failures, window, child.log_path)
