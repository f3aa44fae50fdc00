"""The writer thread that stores captured samples, in the runner's process.

The Locust process hands its samples through a pipe (:mod:`.channel`); the runner's receiver
(:mod:`.receiver`) passes them to a :class:`SampleWriter`, whose own thread stores them. So
nothing that writes SQLite shares Locust's interpreter, and its GIL, with the gevent hub that
runs every user: the hub only packs each batch and writes it to the pipe.

The queue between the receiver and the writer thread is bounded: when the store falls behind
(locked by another process) for longer than the queue lasts, samples are dropped, counted, and
the count stored with the run; the gate then makes every check that reads the run an error
(never a silent gap). Each write is one batch of columns (:meth:`SqliteStore.add_samples`). On
Linux the writer can run at idle priority while it keeps up (opt-in,
see :func:`_only_on_idle_cpu`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping

from ..errors import StoreError
from ..store.sqlite import DEFAULT_TIMEOUT_S, SampleRow, SqliteStore
from .channel import Bounded

ENV_PRIORITY = "PERFSIG_CAPTURE_PRIORITY"  # "idle": the writer at idle priority (opt-in)

WRITE_ROWS = 1000  # samples per stored batch at most (one insert each: bench/sample_insert.py)
# An idle writer sleeps until a batch (or the close) wakes it; this is only a safety net. It
# used to poll every 20 ms: 50 wake-ups a second, a quarter of what the capture cost the
# runner at a few thousand requests a second, on a core that the load needs.
IDLE_WAIT_S = 1.0
RETRY_S = 0.2  # after a failed write (the store locked longer than its busy timeout)
CLOSE_GRACE_S = 5.0  # beyond the store's busy timeout, for the last rows at the end
HANDOVER_FRACTION = 0.25  # of the queue: an idle-priority writer this far behind hands over
HANDOVER_LAG_S = 2.0  # or with a batch waiting this long: the gate reads samples as they come


def store_timeout_s() -> float:
    try:
        return float(os.environ.get("PERFSIG_STORE_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def idle_priority_asked(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``PERFSIG_CAPTURE_PRIORITY=idle`` asks for the writer at idle priority."""
    return (os.environ if env is None else env).get(ENV_PRIORITY, "normal") == "idle"


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
    waits for a free core, and every other thread of the runner's process waits with it: the
    receiver (the pipe backs up into Locust's bounded backlog) and the loop that notes when
    Locust exited, against which the gate measures whether the stage stopped answering. (When
    the writer shared Locust's interpreter, the same stall reached the latencies Locust
    measured: 32 ms against 23 ms for the same build beside two CPU burners.)"""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))  # 0: this thread
    except OSError:
        return False
    return True


class SampleWriter(Bounded):
    """Stores batches of rows from its own thread, through a queue of at most ``capacity``
    samples (written or not, in memory).

    ``put`` never blocks: what does not fit in the queue is dropped and counted, with what the
    Locust process dropped before (``count_dropped``); the thread stores the count with the run
    (``runs.dropped``) at its next chance. Counters are each written by one thread only (the
    receiver: ``submitted``, ``dropped``; the writer: ``written``), so the two share no lock."""

    def __init__(self, store_path: str, run_id: str, capacity: int, idle: bool | None = None) -> None:
        self.store_path = store_path
        self.wants_idle = idle_priority_asked() if idle is None else idle
        self.run_id = run_id
        self.capacity = capacity
        self._queue: deque[tuple[float, list[SampleRow]]] = deque()  # (queued at, rows)
        self.submitted = self.written = self.dropped = self.recorded = 0
        self.failed_writes = 0
        self._closing = self._running = self._full = False
        self.store: SqliteStore | None = None  # the writer thread's connection
        self.idle = False  # the writer thread runs at idle priority
        self.thread_id = 0  # the writer thread's native id (diagnostics, tests)
        self.handovers = 0  # from an idle-priority writer to a normal one
        self._carry: list[SampleRow] = []  # rows a writer that handed over had taken
        self._starting = threading.Lock()
        self._wake = threading.Event()  # set by whatever gives the writer work: rows, drops, the close

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
        kept = self._admit(
            rows,
            lambda: (
                f"the store fell behind ({self.queued} samples queued, {self.failed_writes} failed writes)"
            ),
        )
        if kept:
            self._queue.append((time.monotonic(), kept))
            self.submitted += len(kept)
        self._wake.set()  # rows to store, or a drop count to record
        return len(kept) == len(rows)

    def count_dropped(self, samples: int) -> None:
        """Samples lost before they reached this writer (the Locust process's pipe backlog was
        full): counted with the run like the writer's own."""
        if samples > 0:
            self.dropped += samples
            self._start()  # the thread records the count
            self._wake.set()

    def _start(self) -> None:
        # The receiver and a closing thread may both come here: one writer at a time.
        with self._starting:
            if self._running:
                return
            # Also after a close: rows may come after it (a test, or a late batch).
            # Started from the receiver (or the closing thread), never from a writer: a thread
            # inherits its creator's priority, and an idle one could not raise it.
            self._running, self._closing = True, False
            idle = self.wants_idle and self.handovers == 0
            threading.Thread(target=self._run, args=(idle,), name="perfsig-writer", daemon=True).start()

    def _run(self, idle: bool) -> None:
        """Store what is queued until closed. An idle-priority writer that falls behind (see
        :meth:`_behind`) ends and leaves its rows to the next writer, at normal priority, which
        the receiver starts with its next batch (or the close at once)."""
        self.idle = idle and _only_on_idle_cpu()  # before thread_id: tests watch thread_id
        self.thread_id = threading.get_native_id()
        pending, self._carry = self._carry, []
        since = time.monotonic()  # when the oldest pending row was queued (about)
        try:
            while True:
                if self.idle and self._behind(since if pending else None):
                    self._carry, pending = pending, []
                    self.handovers += 1
                    return
                while self._queue and len(pending) < WRITE_ROWS:
                    queued_at, rows = self._queue.popleft()
                    since = since if pending else queued_at
                    pending.extend(rows)
                batch = pending[:WRITE_ROWS]
                if batch and not self._write(batch):
                    time.sleep(RETRY_S)
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
                    # Cleared after the wait: work that comes meanwhile is seen at the top.
                    # A drop count that could not be recorded is tried again after
                    # IDLE_WAIT_S, or at the next batch: it is the run's, not the rows'.
                    self._wake.wait(IDLE_WAIT_S)
                    self._wake.clear()
        finally:
            if pending:  # an unexpected error: the rows go to the next writer, or count at the close
                self._carry = pending + self._carry
            if self.store is not None:
                self.store.close()
                self.store = None
            self._running = False

    def _behind(self, pending_since: float | None) -> bool:
        """Time to hand over to a normal-priority writer: a quarter of the queue is waiting, or
        a batch has waited for longer than ``HANDOVER_LAG_S`` (the machine is busy with more
        than the load: the gate, which watches the samples as they come, would see them late),
        or rows are left at the close (which the runner now waits for)."""
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
        deadline = time.monotonic() + timeout_s
        while self.queued and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.queued == 0

    def close(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued is stored and the drop count recorded; False when the
        store did not take it in time (what was left is counted as dropped)."""
        deadline = time.monotonic() + (store_timeout_s() + CLOSE_GRACE_S if timeout_s is None else timeout_s)
        while True:
            self._closing = True
            self._wake.set()
            while self._running and time.monotonic() < deadline:
                time.sleep(0.01)
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
