"""Runs Locust headless in child processes, one per environment, in the same time window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from ..errors import LoadError, UsageError
from ..store.sqlite import RunRecord, SqliteStore
from . import capture, channel
from .profiles import (
    ARG_DRAIN,
    ARG_DURATION,
    ARG_RATE,
    ARG_SCHEDULERS,
    ENV_SUMMARY,
    OpenCounts,
)
from .receiver import SampleReceiver
from .spec import WORKER_WAIT_S
from .spec import LoadResult as LoadResult  # re-exported: the runner's public API
from .spec import LoadSpec as LoadSpec
from .writer import SampleWriter, idle_priority_asked

CHECKPOINT_EVERY_S = 2.0
LOG_TAIL_LINES = 15
CHECK_TIMEOUT_S = 60.0


Enough = Callable[[Mapping[tuple[str, str], str]], bool]
"""({(service, env): run_id}) -> whether the samples stored so far suffice (run_load stops)."""

Progress = Callable[[float, float, list[tuple[LoadSpec, int, int]]], None]
"""(elapsed_s, duration_s, [(spec, requests, failures)]) while load runs."""


def check_reachable(spec: LoadSpec, timeout_s: float = 5.0) -> None:
    """Fail before any load when a stage does not answer at all (any HTTP status will do)."""
    try:
        httpx.get(spec.url, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise LoadError(f"{spec.env} at {spec.url} is unreachable: {reason}") from None


def check_schedulable(specs: Sequence[LoadSpec]) -> None:
    """Refuse, before any load, an open model whose locustfile has no task to schedule.

    The locustfile is imported in a child process (Locust must stay out of this one)."""
    checks = []
    for spec in specs:
        if spec.arrival_rate is None:
            continue
        command = [sys.executable, "-m", "pytest_perfsig.load.arrivals", "--check", spec.locustfile]
        env = {**os.environ, **spec.extra_env}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        checks.append((spec, process))
    for spec, process in checks:
        try:
            out, err = process.communicate(timeout=CHECK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise LoadError(f"{spec.described} did not load within {CHECK_TIMEOUT_S:g} s") from None
        if process.returncode != 0:
            tail = "\n".join(err.decode(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            raise LoadError(f"{spec.described} for {spec.env} could not be loaded:\n{tail}")
        if not json.loads(out.decode().strip().splitlines()[-1])["tasks"]:
            raise UsageError(
                f"{spec.described} for {spec.env} has no task the open model can schedule "
                "(--perfsig-arrival-rate starts @task functions of its User classes)"
            )


def _locust_command(spec: LoadSpec) -> list[str]:
    users, spawn_rate, run_time = spec.users, spec.spawn_rate, spec.run_time_s
    if spec.arrival_rate is not None:
        users = spawn_rate = spec.schedulers  # one scheduler per load process
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
        str(users),
        "--spawn-rate",
        f"{spawn_rate:g}",
        "--run-time",
        f"{max(1, round(run_time))}s",
        # Failed requests are data for the gate, not a reason for Locust to report an error.
        "--exit-code-on-error",
        "0",
        "--only-summary",
        "--loglevel",
        "WARNING",
        *_topology(spec),
        *_open_model(spec),
    ]


def _open_model(spec: LoadSpec) -> list[str]:
    if spec.arrival_rate is None:
        return []
    return [
        ARG_RATE,
        f"{spec.arrival_rate:g}",
        ARG_DURATION,
        f"{spec.duration_s:g}",
        ARG_SCHEDULERS,
        str(spec.schedulers),
        ARG_DRAIN,
        f"{spec.drain_s:g}",
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
        self.exited_at: float | None = None
        self.log_path = log_dir / f"{run_id}.log"
        self.summary_path = log_dir / f"{run_id}.open.json"
        env = dict(os.environ)
        env.update(spec.extra_env)
        # The samples come back through a pipe; this process stores them (see .channel).
        read_end, write_end = os.pipe()
        channel.widen(write_end)
        writer = SampleWriter(str(store_path), run_id, channel.queue_capacity(env), idle_priority_asked(env))
        self.receiver = SampleReceiver(read_end, writer)
        env.update(
            {
                channel.ENV_FD: str(write_end),
                capture.ENV_RUN_ID: run_id,
                capture.ENV_SERVICE: spec.service,
                capture.ENV_ENV: spec.env,
                ENV_SUMMARY: str(self.summary_path),
            }
        )
        try:
            with self.log_path.open("w") as log:
                self.process = subprocess.Popen(
                    _locust_command(spec),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    pass_fds=(write_end,),
                )
        finally:
            os.close(write_end)  # the child's copy is the stream's only writer: its exit ends it

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.receiver.close()  # what the process had sent is stored, even now


def run_load(
    specs: Sequence[LoadSpec],
    store: SqliteStore,
    *,
    gate_id: str | None = None,
    log_dir: Path | None = None,
    progress: Progress | None = None,
    progress_every_s: float = 2.0,
    enough: Enough | None = None,
    enough_from_s: float | None = None,
    enough_every_s: float = 1.0,
) -> list[LoadResult]:
    """Drive every spec at once and wait for all; raise LoadError naming what went wrong.

    With ``enough``, loads whose spec has a ``max_duration_s`` go on past their duration until
    ``enough`` says the samples suffice (asked every ``enough_every_s``), then stop together.
    With ``enough_from_s`` it is asked from that many seconds on instead of from the duration
    on, so a sequential gate can stop the loads before their duration.

    Runs are recorded in the store before they start and closed with their outcome, and
    samples are stored as they arrive, so a failed load still leaves its data behind.
    """
    for spec in specs:
        check_reachable(spec)
    check_schedulable(specs)
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
                    locustfile=spec.described,
                    # The open model has no fixed users: its rate is in load_model.
                    users=spec.users if spec.arrival_rate is None else None,
                    spawn_rate=spec.spawn_rate if spec.arrival_rate is None else None,
                    duration_s=spec.duration_s,
                    load_model=spec.load_model,
                )
            )
            children.append(_Child(spec, run_id, store.path, log_dir))
        _wait(children, store, progress, progress_every_s, enough, enough_from_s, enough_every_s)
    except BaseException as exc:
        for child in children:
            child.stop()
            store.finish_run(child.run_id, "error", f"{type(exc).__name__}: {exc}")
        raise
    # Every child's samples are stored and its run finished, even when another one failed.
    results: list[LoadResult] = []
    failures: list[LoadError] = []
    for child in children:
        try:
            results.append(_collect(child, store))
        except LoadError as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise LoadError("\n\n".join(str(exc) for exc in failures))
    return results


def _wait(
    children: list[_Child],
    store: SqliteStore,
    progress: Progress | None,
    every_s: float,
    enough: Enough | None = None,
    enough_from_s: float | None = None,
    enough_every_s: float = 1.0,
) -> None:
    duration = max(child.spec.duration_s for child in children)
    run_time = max(child.spec.run_time_s for child in children)
    started = time.monotonic()
    grace = max(child.spec.grace_s for child in children)
    deadline = started + run_time + grace
    next_enough = started + (duration if enough_from_s is None else enough_from_s)
    stopping = enough is None or (run_time <= duration and enough_from_s is None)
    next_report = started + every_s
    next_checkpoint = started + CHECKPOINT_EVERY_S
    while not _note_exits(children):
        now = time.monotonic()
        if now > deadline:
            raise LoadError(
                f"Locust did not finish within {duration + grace:.0f} s "
                f"(logs: {', '.join(str(c.log_path) for c in children)})"
            )
        if now >= next_checkpoint:
            next_checkpoint = now + CHECKPOINT_EVERY_S
            store.checkpoint()  # the Locust processes leave this to us (no stalls in their hub)
        if not stopping and enough is not None and now >= next_enough:
            next_enough = now + enough_every_s
            if enough({(c.spec.service, c.spec.env): c.run_id for c in children}):
                stopping = True
                for child in children:
                    child.process.terminate()  # Locust stops its users and exits 0 on SIGTERM
        if progress is not None and now >= next_report:
            next_report = now + every_s
            progress(
                min(now - started, run_time),
                duration,
                [(child.spec, *store.run_counts(child.run_id)) for child in children],
            )
        time.sleep(0.1)


def _note_exits(children: list[_Child]) -> bool:
    """Record when each Locust process exited; True once all have."""
    for child in children:
        if child.exited_at is None and child.process.poll() is not None:
            child.exited_at = time.time()
    return all(child.exited_at is not None for child in children)


def _collect(child: _Child, store: SqliteStore) -> LoadResult:
    code = child.process.returncode
    captured = child.receiver.close()  # every sample the Locust process sent is stored
    store.compact_run(child.run_id)
    requests, failures = store.run_counts(child.run_id)
    window = store.run_window(child.run_id)
    spec = child.spec
    if code == 0 and not captured:
        detail = f"capture incomplete: {child.receiver.problem}"
        store.finish_run(child.run_id, "error", detail)
        raise LoadError(f"load on {spec.env} ({spec.url}): {detail}; log: {child.log_path}")
    if code != 0:
        detail = f"Locust exited with code {code}"
        store.finish_run(child.run_id, "error", detail)
        raise LoadError(
            f"load on {spec.env} ({spec.url}) failed: {detail}; last lines of "
            f"{child.log_path}:\n{_tail(child.log_path)}"
        )
    detail = f"{requests} requests, {failures} failed"
    if spec.arrival_rate is not None:
        detail += "; " + _open_counts(child)
    if window is None:
        run = store.run(child.run_id)
        if run is not None and run.dropped:
            # Locust did send requests: the capture could not keep any of them.
            store.finish_run(child.run_id, "error", f"capture fell behind; {detail}")
            raise LoadError(
                f"capture fell behind: {run.dropped} samples dropped, none stored "
                f"({spec.env} run {child.run_id}); last lines of {child.log_path}:\n{_tail(child.log_path)}"
            )
        store.finish_run(child.run_id, "error", f"no requests; {detail}")
        raise LoadError(
            f"Locust sent no requests to {spec.env} ({spec.url}) with {spec.described}; "
            f"last lines of {child.log_path}:\n{_tail(child.log_path)}"
        )
    store.finish_run(child.run_id, "completed", detail)
    return LoadResult(spec, child.run_id, requests, failures, window, child.log_path, detail, child.exited_at)


def _open_counts(child: _Child) -> str:
    """The open model's counts as the Locust process left them: scheduled, finished, unfinished."""
    try:
        counts = OpenCounts.from_json(child.summary_path.read_text())
    except (OSError, ValueError, TypeError) as exc:
        return f"open model: no counts from the schedulers ({type(exc).__name__})"
    return counts.describe(child.spec.schedulers, child.spec.drain_s)
