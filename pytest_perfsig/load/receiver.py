"""The runner's end of the capture's pipe: reads a Locust process's samples and hands them to
a :class:`~.writer.SampleWriter`, from a thread of its own (the runner's loop watches the load
meanwhile). It never waits for the store: the writer's queue is bounded, so the pipe drains as
fast as the Locust process fills it."""

from __future__ import annotations

import os
import threading

from .channel import DROPPED, END, ROWS, read_frames, rows_of
from .writer import SampleWriter

END_S = 10.0  # for the stream to end once the Locust process has exited


class SampleReceiver:
    """Reads frames from ``fd`` (the pipe's read end, which it closes) until the stream ends."""

    def __init__(self, fd: int, writer: SampleWriter) -> None:
        self.fd = fd
        self.writer = writer
        self.received = 0  # rows read from the pipe
        self.problem: str | None = None  # why the stream cannot be trusted to be whole
        self.ended: tuple[int, int] | None = None  # the end mark: (rows sent, dropped), in all
        self.sender_dropped = 0  # samples the Locust process dropped, as it last told
        self._thread = threading.Thread(target=self._run, name="perfsig-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for kind, payload in read_frames(self.fd):
                if self.ended is not None:
                    raise ValueError("a frame after the end mark")
                if kind == ROWS:
                    rows = rows_of(payload)
                    self.writer.put(rows)
                    self.received += len(rows)  # after the put: a reader of both sees it queued
                elif kind == DROPPED:
                    self._told(int(payload))
                elif kind == END:
                    sent, dropped = (int(n) for n in payload.split())
                    self._told(dropped)
                    self.ended = (sent, dropped)
                else:
                    raise ValueError(f"a frame of unknown kind {kind!r}")
            self.problem = self._incomplete()
        except BaseException as exc:  # whatever stops the reading, the stream is not whole
            self.problem = f"the capture's stream broke: {type(exc).__name__}: {exc}"
        finally:
            os.close(self.fd)

    def _told(self, dropped: int) -> None:
        # The sender's count is in all: the writer counts what is new.
        self.writer.count_dropped(dropped - self.sender_dropped)
        self.sender_dropped = max(self.sender_dropped, dropped)

    def _incomplete(self) -> str | None:
        """Why a stream that ended is not whole, if it is not."""
        if self.ended is None:
            if self.received == 0 and self.sender_dropped == 0:
                return None  # nothing was captured at all (no capture, or no request)
            return (
                f"the capture's stream ended without its end mark after {self.received} samples: "
                "the Locust process did not send its last ones"
            )
        sent, _ = self.ended
        if sent != self.received:
            return f"the capture's stream lost samples: {sent} sent, {self.received} received"
        return None

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
