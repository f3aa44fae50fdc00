"""Raw-sample capture inside the Locust processes.

Locust's own statistics round response times into buckets; the gate needs each request's
exact latency and start time, so this listener keeps every request event. It is set up by
:mod:`pytest_perfsig.load.locust_main` from environment variables the runner passes.

Where the samples go depends on the Locust process:
- a single process (local runner) or a master writes batches to the SQLite store;
- a worker (``--processes N``, or ``--worker`` on another machine) sends its batches to the
  master with Locust's own messaging, and the master stores them. So no sample is lost and
  none is counted twice, whatever the topology, and only the master needs the store.

Open load model: a request whose ``context`` carries ``perfsig_intended`` (the epoch time it
was scheduled for) is recorded with its latency measured from that intended time, so a slow
stage cannot hide its latency by slowing the load (coordinated omission). Tasks of a user's
locustfile cannot set that context, so the scheduler (:mod:`.arrivals`) leaves the intended
time with the task's greenlet instead (:func:`intend`); the first request that greenlet
completes takes it, and the task's later requests, which wait for that one, count as usual.
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from typing import Any

from greenlet import getcurrent

from ..errors import StoreError
from ..store.sqlite import SampleRow, SqliteStore

ENV_STORE = "PERFSIG_STORE"
ENV_RUN_ID = "PERFSIG_RUN_ID"
ENV_SERVICE = "PERFSIG_SERVICE"
ENV_ENV = "PERFSIG_ENV"
ENV_NO_CAPTURE = "PERFSIG_NO_CAPTURE"  # benchmarks: measure the harness without the capture
ENV_WORKER = "PERFSIG_CAPTURE_WORKER"  # a remote worker: capture and send to the master

MESSAGE = "perfsig_samples"
INTENDED = "perfsig_intended"
FLUSH_EVERY_ROWS = 500
FLUSH_EVERY_S = 0.5

# Intended send times of scheduled tasks, per greenlet (a greenlet runs one task at a time).
_intended: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def intend(when: float) -> None:
    """The next request this greenlet completes was meant to leave at ``when`` (epoch s)."""
    _intended[getcurrent()] = when


def forget_intended() -> None:
    _intended.pop(getcurrent(), None)


def _take_intended() -> float | None:
    return _intended.pop(getcurrent(), None) if _intended else None


class SampleCapture:
    """Buffers request events and hands batches to a sink: the store, or the master."""

    def __init__(self, store_path: str, run_id: str, service: str, env: str) -> None:
        self.store_path = store_path
        self.run_id = run_id
        self.service = service
        self.env = env
        self.buffer: list[SampleRow] = []
        self.last_flush = time.monotonic()
        self.captured = 0
        self.runner: Any = None  # set on init; a WorkerRunner sends to the master
        self._store: SqliteStore | None = None
        self._store_pid = 0
        self.failed_flushes = 0

    @property
    def store(self) -> SqliteStore:
        # One connection per process: a connection must not cross a fork (--processes).
        if self._store is None or self._store_pid != os.getpid():
            self._store, self._store_pid = SqliteStore(self.store_path), os.getpid()
            self._store.leave_checkpoints_to_others()
        return self._store

    def on_init(self, environment: Any, **_: Any) -> None:
        from locust.runners import MasterRunner, WorkerRunner

        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            self.runner = runner
        elif isinstance(runner, MasterRunner):
            runner.register_message(MESSAGE, self.on_worker_batch)

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None = None,
        response: Any = None,
        start_time: float | None = None,
        context: Any = None,
        **_: Any,
    ) -> None:
        started = start_time if start_time is not None else time.time() - response_time / 1000.0
        latency = float(response_time)
        intended = context.get(INTENDED) if isinstance(context, dict) else None
        scheduled = _take_intended()  # taken even when the context names one: it is spent
        if intended is None:
            intended = scheduled
        if intended is not None:
            latency = (started - float(intended)) * 1000.0 + latency
            started = float(intended)
        status = int(getattr(response, "status_code", 0) or 0)
        self.buffer.append(
            (self.run_id, started, self.service, self.env, name, latency, 0 if exception else 1, status)
        )
        if len(self.buffer) >= FLUSH_EVERY_ROWS or time.monotonic() - self.last_flush >= FLUSH_EVERY_S:
            self.flush()

    def on_worker_batch(self, environment: Any, msg: Any, **_: Any) -> None:
        # The master names the run: a remote worker does not know it.
        rows = [
            (self.run_id, ts, self.service, self.env, name, latency, ok, status)
            for _, ts, _, _, name, latency, ok, status in msg.data["rows"]
        ]
        self.store.add_samples(rows)
        self.captured += len(rows)

    def flush(self, **_: Any) -> None:
        if self.buffer:
            rows = self.buffer
            if self.runner is not None:
                self.runner.send_message(MESSAGE, {"rows": [list(row) for row in rows]})
            else:
                try:
                    self.store.add_samples(rows)
                except StoreError as exc:
                    # The store is busy (locked by another process): keep the rows and try
                    # again at the next flush; nothing measured is dropped.
                    self.failed_flushes += 1
                    sys.stderr.write(f"perfsig capture: {exc}; {len(rows)} samples kept for the next try\n")
                    self.last_flush = time.monotonic()
                    return
            self.buffer = []
            self.captured += len(rows)
        self.last_flush = time.monotonic()


def install_from_environment(events: Any) -> SampleCapture | None:
    """Hook a capture into Locust's events when the runner asked for one."""
    store_path = os.environ.get(ENV_STORE)
    if os.environ.get(ENV_NO_CAPTURE) or not (store_path or os.environ.get(ENV_WORKER)):
        return None
    if store_path:
        capture = SampleCapture(
            store_path, os.environ[ENV_RUN_ID], os.environ[ENV_SERVICE], os.environ[ENV_ENV]
        )
    else:
        capture = SampleCapture("", "remote", "remote", "remote")  # sends everything to its master
    events.init.add_listener(capture.on_init)
    events.request.add_listener(capture.on_request)
    events.test_stop.add_listener(capture.flush)
    events.quitting.add_listener(capture.flush)
    return capture
