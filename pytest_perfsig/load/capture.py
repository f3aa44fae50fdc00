"""Raw-sample capture inside the Locust processes.

Locust's own statistics round response times into buckets; the gate needs each request's
exact latency and start time, so this listener keeps every request event. It is set up by
:mod:`pytest_perfsig.load.locust_main` from environment variables the runner passes.

Where the samples go depends on the Locust process:
- a single process (local runner) or a master hands batches to a writer thread that stores them
  (:class:`SampleWriter`), so that Locust's gevent hub, which runs every user, never waits for
  SQLite; the queue between them is bounded: when the store falls behind for longer than the
  queue lasts, samples are dropped, counted and the count stored with the run, and the gate
  makes every check that reads the run an error (never a silent gap). On Linux the writer can
  run at idle priority while it keeps up (opt-in, see :func:`_only_on_idle_cpu`);
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

import importlib
import os
import sys
import time
import weakref
from collections import deque
from typing import Any

from greenlet import getcurrent

from ..errors import StoreError
from ..store.sqlite import DEFAULT_TIMEOUT_S, SampleRow, SqliteStore

ENV_STORE = "PERFSIG_STORE"
ENV_RUN_ID = "PERFSIG_RUN_ID"
ENV_SERVICE = "PERFSIG_SERVICE"
ENV_ENV = "PERFSIG_ENV"
ENV_NO_CAPTURE = "PERFSIG_NO_CAPTURE"  # benchmarks: measure the harness without the capture
ENV_WORKER = "PERFSIG_CAPTURE_WORKER"  # a remote worker: capture and send to the master
ENV_QUEUE = "PERFSIG_CAPTURE_QUEUE"  # samples the writer's queue holds at most
ENV_PRIORITY = "PERFSIG_CAPTURE_PRIORITY"  # "idle": the writer at idle priority (opt-in)

MESSAGE = "perfsig_samples"
INTENDED = "perfsig_intended"
FLUSH_EVERY_ROWS = 500
FLUSH_EVERY_S = 0.5
QUEUE_SAMPLES = 200_000  # about a minute at 3,000 req/s, some 40 MB of rows
WRITE_ROWS = 200  # rows per transaction at most: a short hold of the GIL (json.dumps) if preempted
POLL_S = 0.02  # the writer's sleep when the queue is empty
RETRY_S = 0.2  # after a failed write (the store locked longer than its busy timeout)
CLOSE_GRACE_S = 5.0  # beyond the store's busy timeout, for the last rows at the end
HANDOVER_FRACTION = 0.25  # of the queue: an idle-priority writer this far behind hands over
HANDOVER_LAG_S = 2.0  # or with a batch waiting this long: the gate reads samples as they come

# Intended send times of scheduled tasks, per greenlet (a greenlet runs one task at a time).
_intended: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def intend(when: float) -> None:
    """The next request this greenlet completes was meant to leave at ``when`` (epoch s)."""
    _intended[getcurrent()] = when


def forget_intended() -> None:
    _intended.pop(getcurrent(), None)


def _take_intended() -> float | None:
    return _intended.pop(getcurrent(), None) if _intended else None


def _native(module: str, name: str) -> Any:
    """The operating system's thread primitive, not gevent's green one: Locust patches its
    process, and a green "thread" would run on the hub it must not block."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent comes with Locust
        return getattr(importlib.import_module(module), name)
    return monkey.get_original(module, name)


def _only_on_idle_cpu() -> bool:
    """Let the calling thread run only on CPU time no other thread wants (Linux ``SCHED_IDLE``);
    True when it does.

    Why: when the load saturates the machine, the generator's hub and the target each hold a
    core. A writer thread at normal priority preempts one of them on every wake-up for a whole
    transaction, and every request in flight waits that long: the tail the gate measures grows
    with the capture. At idle priority the writer yields at once to the hub and the target and
    stores in the gaps they leave. It is never starved for long (an idle thread still gets a
    sliver of CPU), and a writer that falls behind hands over to one at normal priority
    (:meth:`SampleWriter._run`): an unprivileged thread cannot raise its own priority again.

    Opt-in (``PERFSIG_CAPTURE_PRIORITY=idle``), for a load machine with nothing else on it:
    when other processes keep every core busy, an idle writer preempted while it holds the GIL
    waits for a free core, and the hub waits for the GIL with it, so the latencies Locust
    measures grow (seen beside two CPU burners: 32 ms against 23 ms for the same build)."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None or os.environ.get(ENV_PRIORITY, "normal") != "idle":
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))  # 0: this thread
    except OSError:
        return False
    return True


def _store_timeout_s() -> float:
    try:
        return float(os.environ.get("PERFSIG_STORE_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


class SampleWriter:
    """Stores batches of rows from its own thread, through a queue of at most ``capacity``
    samples (written or not, in memory).

    ``put`` never blocks: what does not fit in the queue is dropped and counted; the thread
    stores the count with the run (``runs.dropped``) at its next chance. Counters are each
    written by one thread only (the hub: ``submitted``, ``dropped``; the writer: ``written``),
    so the two threads share no lock."""

    def __init__(self, store_path: str, run_id: str, capacity: int) -> None:
        self.store_path = store_path
        self.run_id = run_id
        self.capacity = capacity
        self._queue: deque[tuple[float, list[SampleRow]]] = deque()  # (queued at, rows)
        self.submitted = self.written = self.dropped = self.recorded = 0
        self.failed_writes = 0
        self._closing = self._running = self._full = False
        self._pid = 0
        self.store: SqliteStore | None = None  # the writer thread's connection
        self.idle = False  # the writer thread runs at idle priority
        self.thread_id = 0  # the writer thread's native id (diagnostics, tests)
        self.handovers = 0  # from an idle-priority writer to a normal one
        self._carry: list[SampleRow] = []  # rows a writer that handed over had taken

    @property
    def queued(self) -> int:
        return self.submitted - self.written

    @property
    def running(self) -> bool:
        """A writer thread is at work: the next batch starts none."""
        return self._running

    def put(self, rows: list[SampleRow]) -> bool:
        """Queue rows for the store, as many as the queue has room for; False when some were
        dropped (counted in ``dropped``)."""
        if not rows:
            return True
        self._start()
        # Keep what fits: a batch larger than the whole queue still leaves samples stored.
        room = max(0, self.capacity - self.queued)
        lost = max(0, len(rows) - room)
        if lost:
            rows = rows[:room]
            self.dropped += lost
            if not self._full:  # said once per spell of falling behind
                sys.stderr.write(
                    f"perfsig capture: the store fell behind ({self.queued} samples queued, "
                    f"{self.failed_writes} failed writes): dropping samples; the gate's checks "
                    "of this run will be errors\n"
                )
        self._full = lost > 0
        if rows:
            self._queue.append((time.monotonic(), rows))
            self.submitted += len(rows)
        return not lost

    def _start(self) -> None:
        if self._pid != os.getpid():
            # First batch of this process (a fork, --processes, has no thread of its parent's).
            self._queue.clear()
            self._carry = []
            self.submitted = self.written = self.dropped = self.recorded = self.handovers = 0
            self._running = False
            self._pid = os.getpid()
        if not self._running:
            # Also after a close: requests still in flight when Locust quits finish later.
            # Started from the hub (or the closing thread), never from a writer: a thread
            # inherits its creator's priority, and an idle one could not raise it.
            self._running, self._closing = True, False
            _native("_thread", "start_new_thread")(self._run, (self.handovers == 0,))

    def _run(self, idle: bool) -> None:
        """Store what is queued until closed. An idle-priority writer that falls behind (see
        :meth:`_behind`) ends and leaves its rows to the next writer, at normal priority, which
        the hub starts with its next batch (or the close at once)."""
        sleep = _native("time", "sleep")
        self.idle = idle and _only_on_idle_cpu()  # before thread_id: tests watch thread_id
        self.thread_id = _native("threading", "get_native_id")()
        pending, self._carry = self._carry, []
        since = time.monotonic()  # when the oldest pending row was queued (about)
        try:
            while True:
                if self.idle and self._behind(since if pending else None):
                    self._carry = pending
                    self.handovers += 1
                    return
                while self._queue and len(pending) < WRITE_ROWS:
                    queued_at, rows = self._queue.popleft()
                    since = since if pending else queued_at
                    pending.extend(rows)
                batch = pending[:WRITE_ROWS]
                if batch and not self._write(batch):
                    sleep(RETRY_S)
                    continue
                if batch:
                    self.written += len(batch)
                    del pending[: len(batch)]
                dropped = self.dropped
                if dropped != self.recorded and self._record(dropped):
                    self.recorded = dropped
                if not self._queue and not pending:
                    if self._closing and self.recorded == self.dropped:
                        return
                    sleep(POLL_S)
        finally:
            if self.store is not None:
                self.store.close()
                self.store = None
            self._running = False

    def _behind(self, pending_since: float | None) -> bool:
        """Time to hand over to a normal-priority writer: a quarter of the queue is waiting, or
        a batch has waited for longer than ``HANDOVER_LAG_S`` (the machine is busy with more
        than the load: the gate, which watches the samples as they come, would see them late),
        or rows are left at the close (which the hub now waits for)."""
        if (self._closing and self.queued > 0) or self.queued > self.capacity * HANDOVER_FRACTION:
            return True
        oldest = pending_since
        if oldest is None:
            try:
                oldest = self._queue[0][0]
            except IndexError:  # nothing waits
                return False
        return time.monotonic() - oldest > HANDOVER_LAG_S

    def _write(self, rows: list[SampleRow]) -> bool:
        try:
            if self.store is None:
                self.store = SqliteStore(self.store_path)
                self.store.leave_checkpoints_to_others()  # the pytest process checkpoints
            self.store.add_samples(rows)
        except StoreError as exc:
            # Busy (locked by another process for longer than the busy timeout) or gone: the
            # rows stay here and are tried again; the queue absorbs what comes meanwhile.
            self.failed_writes += 1
            if self.failed_writes == 1 or self.failed_writes % 10 == 0:
                sys.stderr.write(f"perfsig capture: {exc}; {len(rows)} samples kept for the next try\n")
            return False
        return True

    def _record(self, dropped: int) -> bool:
        try:
            if self.store is None:
                self.store = SqliteStore(self.store_path)
            self.store.record_dropped(self.run_id, dropped)
        except StoreError:
            return False
        return True

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait (at most ``timeout_s``) until everything queued so far is stored."""
        sleep = _native("time", "sleep")
        deadline = time.monotonic() + timeout_s
        while self.queued and time.monotonic() < deadline:
            sleep(0.005)
        return self.queued == 0

    def close(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued is stored and the drop count recorded; False when the
        store did not take it in time (what was left is counted as dropped)."""
        if self._pid != os.getpid():
            return True  # nothing was ever queued in this process
        sleep = _native("time", "sleep")
        deadline = time.monotonic() + (_store_timeout_s() + CLOSE_GRACE_S if timeout_s is None else timeout_s)
        while True:
            self._closing = True
            while self._running and time.monotonic() < deadline:
                sleep(0.01)
            if self.queued == 0 and self.recorded == self.dropped:
                return True
            if self._running or time.monotonic() >= deadline:
                break
            self._start()  # rows came after the thread had finished: one more round
        lost = self.queued
        self.dropped += lost
        sys.stderr.write(
            f"perfsig capture: the store did not take the last {lost} samples in time; "
            f"{self.dropped} samples dropped in all, and the store may not know it\n"
        )
        return False


class SampleCapture:
    """Buffers request events and hands batches to a sink: the writer, or the master."""

    def __init__(self, store_path: str, run_id: str, service: str, env: str) -> None:
        self.store_path = store_path
        self.run_id = run_id
        self.service = service
        self.env = env
        self.buffer: list[SampleRow] = []
        self.last_flush = time.monotonic()
        self.runner: Any = None  # set on init; a WorkerRunner sends to the master
        self.environment: Any = None
        try:
            capacity = int(os.environ.get(ENV_QUEUE, QUEUE_SAMPLES))
        except ValueError:
            capacity = QUEUE_SAMPLES
        self.writer = SampleWriter(store_path, run_id, max(1, capacity))
        self.sent = 0  # rows sent to the master (a worker)

    @property
    def captured(self) -> int:
        """Samples stored (or, by a worker, sent to the master)."""
        return self.writer.written + self.sent

    @property
    def dropped(self) -> int:
        return self.writer.dropped

    def on_init(self, environment: Any, **_: Any) -> None:
        from locust.runners import MasterRunner, WorkerRunner

        self.environment = environment
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
        self.writer.put(rows)

    def flush(self, **_: Any) -> None:
        """Hand the buffered rows on (to the writer, or to the master); never waits."""
        if self.buffer:
            rows, self.buffer = self.buffer, []
            if self.runner is not None:
                self.runner.send_message(MESSAGE, {"rows": [list(row) for row in rows]})
                self.sent += len(rows)
            else:
                self.writer.put(rows)
        self.last_flush = time.monotonic()

    def close(self, environment: Any = None, **_: Any) -> bool:
        """At the end of the load: hand on what is buffered and wait until it is stored. If
        the store did not take it in time, Locust exits with an error: the runner reports it
        (the drop count may not have reached the store)."""
        self.flush()
        stored = self.writer.close()
        environment = environment or self.environment
        if not stored and environment is not None:
            environment.process_exit_code = 3
        return stored


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
    events.quitting.add_listener(capture.close)
    return capture
