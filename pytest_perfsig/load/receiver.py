"""The runner's end of the capture's pipe: reads a Locust process's samples and hands them to
a :class:`~.writer.SampleWriter`, from a thread of its own (the runner's loop watches the load
meanwhile). It never waits for the store: the writer's queue is bounded, so the pipe drains as
fast as the Locust process fills it."""

from __future__ import annotations

import os
import threading
import time

from .channel import DROPPED, ROWS, read_frames, rows_of
from .writer import SampleWriter

END_S = 10.0  # for the stream to end once the Locust process has exited


class SampleReceiver:
    """Reads frames from ``fd`` (the pipe's read end, which it closes) until the stream ends."""

    def __init__(self, fd: int, writer: SampleWriter) -> None:
        self.fd = fd
        self.writer = writer
        self.received = 0  # rows read from the pipe
        self.problem: str | None = None  # why the stream cannot be trusted to be whole
        self.sender_dropped = 0  # samples the Locust process dropped, as it last told
        self._thread = threading.Thread(target=self._run, name="perfsig-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for kind, payload in read_frames(self.fd):
                if kind == ROWS:
                    rows = rows_of(payload)
                    self.writer.put(rows)
                    self.received += len(rows)  # after the put: a reader of both sees it queued
                elif kind == DROPPED:
                    # The sender's count, in all: the writer counts what is new.
                    total = int(payload)
                    self.writer.count_dropped(total - self.sender_dropped)
                    self.sender_dropped = max(self.sender_dropped, total)
                else:
                    raise ValueError(f"a frame of unknown kind {kind!r}")
        except (OSError, EOFError, ValueError, TypeError) as exc:
            self.problem = f"the capture's stream broke: {exc}"
        finally:
            os.close(self.fd)

    def wait_for(self, rows: int, timeout_s: float = 10.0) -> bool:
        """Wait until ``rows`` rows have been read and stored (tests, diagnostics)."""
        deadline = time.monotonic() + timeout_s
        while self.received < rows and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.received >= rows and self.writer.drain(max(0.0, deadline - time.monotonic()))

    def close(self, timeout_s: float | None = None) -> bool:
        """Once the Locust process has exited: wait for the end of the stream, then until the
        writer has stored everything and the drop count; False when either did not happen
        (``problem`` says why; what arrived is stored all the same)."""
        self._thread.join(END_S)
        if self._thread.is_alive() and self.problem is None:
            self.problem = f"the capture's stream did not end within {END_S:g} s of the load"
        stored = self.writer.close(timeout_s)
        if not stored and self.problem is None:
            self.problem = (
                f"the store did not take the last samples in time: {self.writer.dropped} samples dropped"
            )
        return stored and self.problem is None
