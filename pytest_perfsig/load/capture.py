"""Raw-sample capture inside the Locust processes.

Locust's own statistics round response times into buckets; the gate needs each request's
exact latency and start time, so this listener keeps every request event. It is set up by
:mod:`pytest_perfsig.load.locust_main` from environment variables the runner passes.

Where the samples go depends on the Locust process:
- a single process (local runner) or a master sends batches through a pipe to the runner's
  process (:mod:`.channel`), which stores them (:mod:`.receiver`, :mod:`.writer`): nothing that
  writes SQLite shares the interpreter of Locust's gevent hub, which runs every user, and the
  hub never waits for the pipe; both sides are bounded: what does not fit is dropped, counted
  and the count stored with the run, and the gate makes every check that reads the run an
  error (never a silent gap);
- a worker (``--processes N``, or ``--worker`` on another machine) sends its batches to the
  master with Locust's own messaging, and the master sends them on to the runner. So no
  sample is lost and none is counted twice, whatever the topology, and only the master talks
  to the runner (a worker forked by ``--processes`` closes its inherited end of the pipe).

Open load model: a request whose ``context`` carries ``perfsig_intended`` (the epoch time it
was scheduled for) is recorded with its latency measured from that intended time, so a slow
stage cannot hide its latency by slowing the load (coordinated omission). Tasks of a user's
locustfile cannot set that context, so the scheduler (:mod:`.arrivals`) leaves the intended
time with the task's greenlet instead (:func:`intend`); the first request that greenlet
completes takes it, and the task's later requests, which wait for that one, count as usual.
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Any

from greenlet import getcurrent

from ..store.sqlite import SampleRow
from .channel import ENV_FD, PipeSender, queue_capacity

ENV_RUN_ID = "PERFSIG_RUN_ID"
ENV_SERVICE = "PERFSIG_SERVICE"
ENV_ENV = "PERFSIG_ENV"
ENV_NO_CAPTURE = "PERFSIG_NO_CAPTURE"  # benchmarks: measure the harness without the capture
ENV_WORKER = "PERFSIG_CAPTURE_WORKER"  # a remote worker: capture and send to the master

MESSAGE = "perfsig_samples"
INTENDED = "perfsig_intended"
FLUSH_EVERY_ROWS = 500
FLUSH_EVERY_S = 0.5
CLOSE_S = 10.0  # for the runner to read the last batches (it never waits for the store)

# Intended send times of scheduled tasks, per greenlet (a greenlet runs one task at a time).
_intended: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def intend(when: float) -> None:
    """The next request this greenlet completes was meant to leave at ``when`` (epoch s)."""
    _intended[getcurrent()] = when


def _plain(name: str) -> str:
    """The name as a plain str: a locustfile may name requests with a str subclass (an Enum of
    endpoints), which the pipe cannot carry; its value is the name (``str()`` of an Enum is not)."""
    return name if type(name) is str else str.__str__(name)


def forget_intended() -> None:
    _intended.pop(getcurrent(), None)


def _take_intended() -> float | None:
    return _intended.pop(getcurrent(), None) if _intended else None


class SampleCapture:
    """Buffers request events and hands batches on: to the runner through the pipe, or, in a
    worker, to the master."""

    def __init__(self, run_id: str, service: str, env: str, sender: PipeSender | None) -> None:
        self.run_id = run_id
        self.service = service
        self.env = env
        self.sender = sender  # None: a remote worker, which sends everything to its master
        self.buffer: list[SampleRow] = []
        self.last_flush = time.monotonic()
        self.runner: Any = None  # set on init; a WorkerRunner sends to the master
        self.environment: Any = None
        self.sent = 0  # rows sent to the master (a worker)

    @property
    def captured(self) -> int:
        """Samples handed to the runner (or, by a worker, sent to the master)."""
        return (self.sender.sent if self.sender else 0) + self.sent

    @property
    def dropped(self) -> int:
        return self.sender.dropped if self.sender else 0

    def on_init(self, environment: Any, **_: Any) -> None:
        from locust.runners import MasterRunner, WorkerRunner

        self.environment = environment
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            self.runner = runner
            if self.sender is not None:
                # A worker forked by ``--processes`` inherited its master's end of the pipe;
                # it sends to the master, and the stream must end when the master's does.
                self.sender.abandon()
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
            (
                self.run_id,
                started,
                self.service,
                self.env,
                _plain(name),
                latency,
                0 if exception else 1,
                status,
            )
        )
        if len(self.buffer) >= FLUSH_EVERY_ROWS or time.monotonic() - self.last_flush >= FLUSH_EVERY_S:
            self.flush()

    def on_worker_batch(self, environment: Any, msg: Any, **_: Any) -> None:
        # The master names the run: a remote worker does not know it.
        rows = [
            (self.run_id, ts, self.service, self.env, name, latency, ok, status)
            for _, ts, _, _, name, latency, ok, status in msg.data["rows"]
        ]
        self._send(rows)

    def flush(self, **_: Any) -> None:
        """Hand the buffered rows on (to the runner, or to the master); never waits."""
        if self.buffer:
            rows, self.buffer = self.buffer, []
            if self.runner is not None:
                self.runner.send_message(MESSAGE, {"rows": [list(row) for row in rows]})
                self.sent += len(rows)
            else:
                self._send(rows)
        self.last_flush = time.monotonic()

    def _send(self, rows: list[SampleRow]) -> None:
        if self.sender is not None:
            self.sender.put(rows)

    def close(self, environment: Any = None, **_: Any) -> bool:
        """At the end of the load: hand on what is buffered and wait until the runner has read
        it. If it did not in time, Locust exits with an error: the runner reports it (the drop
        count may not have reached it)."""
        self.flush()
        if self.sender is None or self.runner is not None:
            return True  # a worker: the master has every batch it sent
        complete = self.sender.close(CLOSE_S)
        environment = environment or self.environment
        if not complete and environment is not None:
            environment.process_exit_code = 3
        return complete

    def finish(self) -> bool:
        """At exit: hand on the rows of requests that finished after ``quitting`` and end the
        stream with its end mark. Too late for an exit code: if this fails, the stream lacks
        the mark (or disagrees with it), and the runner fails the load."""
        self.flush()
        if self.sender is None or self.runner is not None:
            return True
        return self.sender.finish(CLOSE_S)


def install_from_environment(events: Any) -> SampleCapture | None:
    """Hook a capture into Locust's events when the runner asked for one."""
    fd = os.environ.get(ENV_FD)
    if os.environ.get(ENV_NO_CAPTURE) or not (fd or os.environ.get(ENV_WORKER)):
        return None
    if fd:
        # Only this process writes to the runner: a process the locustfile starts must not
        # inherit the pipe (it would hold the stream open past Locust's exit).
        os.set_inheritable(int(fd), False)
        os.environ.pop(ENV_FD, None)
        sender = PipeSender(int(fd), queue_capacity())
        capture = SampleCapture(os.environ[ENV_RUN_ID], os.environ[ENV_SERVICE], os.environ[ENV_ENV], sender)
    else:
        capture = SampleCapture("remote", "remote", "remote", None)  # sends everything to its master
    events.init.add_listener(capture.on_init)
    events.request.add_listener(capture.on_request)
    events.test_stop.add_listener(capture.flush)
    events.quitting.add_listener(capture.close)
    return capture
