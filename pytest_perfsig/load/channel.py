"""The pipe that carries captured samples from the Locust process to the runner's process.

Why a pipe: whatever stores the samples costs CPU and, in Python, the GIL. Inside the Locust
process it would share the interpreter with the gevent hub that runs every user, and each of
its turns with the GIL would hold up requests in flight (the tail the gate measures grew by
a quarter with a writer thread there). So the hub only packs each batch (``marshal``, in C, a
fraction of a microsecond per row) and writes it, without ever waiting, to a pipe whose other
end the runner reads and stores (:mod:`.receiver`, :mod:`.writer`).

The stream is a sequence of frames, each a 5-byte header (kind, payload length) and a payload:
- ``ROWS``: a batch of sample rows, ``marshal``-ed (the reader is the writer's own parent);
- ``DROPPED``: how many samples the sender has dropped so far, in all (a decimal number);
- ``END``: the last frame, ``"<rows sent> <dropped>"`` in all. The pipe then ends (every write
  end closed). A stream that ends without it (the Locust process died, or could not send its
  last rows), or whose counts disagree with what arrived, is not whole.

The sender is bounded like the writer's queue: rows the pipe does not take at once wait in a
backlog of at most ``capacity`` samples; what does not fit is dropped, counted and the count
sent, so the run's checks become errors, never a silent gap.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping

from ..store.sqlite import SampleRow

ENV_FD = "PERFSIG_CAPTURE_FD"  # the pipe's write end, in the Locust process
ENV_QUEUE = "PERFSIG_CAPTURE_QUEUE"  # samples each queue of the capture holds at most
QUEUE_SAMPLES = 200_000  # about a minute at 3,000 req/s, some 40 MB of rows

ROWS = b"R"
DROPPED = b"D"
END = b"E"
HEADER = struct.Struct("<cI")
PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process: ~12,000 rows
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux)
READ_BYTES = 1 << 20


def queue_capacity(env: Mapping[str, str] | None = None) -> int:
    """Samples a queue of the capture holds at most (``PERFSIG_CAPTURE_QUEUE``, at least 1)."""
    try:
        return max(1, int((os.environ if env is None else env).get(ENV_QUEUE, QUEUE_SAMPLES)))
    except ValueError:
        return QUEUE_SAMPLES


def _native_sleep() -> Callable[[float], None]:
    """The operating system's sleep, not gevent's: the close runs while Locust quits (and at
    exit), when its hub may no longer switch to other greenlets."""
    monkey = sys.modules.get("gevent.monkey")
    sleep: Callable[[float], None] = monkey.get_original("time", "sleep") if monkey else time.sleep
    return sleep


def frame(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def widen(fd: int) -> None:
    """Let the pipe hold ``PIPE_BYTES`` (from 64 KiB): fewer writes that find it full."""
    try:
        import fcntl

        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, OSError):  # not Linux, or above the system's limit: the default
        pass


def read_frames(fd: int) -> Iterator[tuple[bytes, bytes]]:
    """(kind, payload) of each whole frame until the pipe ends; raises ``EOFError`` when it
    ends inside a frame (the sender died while writing)."""
    buffer = bytearray()
    while chunk := os.read(fd, READ_BYTES):
        buffer += chunk
        start = 0
        while len(buffer) - start >= HEADER.size:
            kind, length = HEADER.unpack_from(buffer, start)
            end = start + HEADER.size + length
            if end > len(buffer):
                break
            yield kind, bytes(buffer[start + HEADER.size : end])
            start = end
        del buffer[:start]
    if buffer:
        raise EOFError(f"the capture's stream ended inside a frame ({len(buffer)} bytes)")


def rows_of(payload: bytes) -> list[SampleRow]:
    rows: list[SampleRow] = marshal.loads(payload)
    return rows


class Bounded:
    """A queue of at most ``capacity`` samples that drops, and counts, what does not fit."""

    capacity: int
    dropped: int
    _full: bool  # dropping now: said once per spell of falling behind

    @property
    def queued(self) -> int:
        raise NotImplementedError

    def _admit(self, rows: list[SampleRow], why: Callable[[], str]) -> list[SampleRow]:
        """The rows that fit (a batch larger than the whole queue still leaves some stored);
        the rest dropped and counted."""
        room = max(0, self.capacity - self.queued)
        lost = max(0, len(rows) - room)
        if lost:
            self.dropped += lost
            if not self._full:
                sys.stderr.write(
                    f"perfsig capture: {why()}: dropping samples; "
                    "the gate's checks of this run will be errors\n"
                )
        self._full = lost > 0
        return rows[:room] if lost else rows


class PipeSender(Bounded):
    """The Locust process's end: ``put`` never waits for the reader."""

    def __init__(self, fd: int, capacity: int) -> None:
        self.fd = fd
        self._pid = os.getpid()  # the process whose stream this is: only it ends the stream
        os.set_blocking(fd, False)
        self.capacity = capacity
        # (rows, bytes not yet written, the drop count the frame tells or None)
        self._backlog: deque[tuple[int, memoryview, int | None]] = deque()
        self.submitted = self.sent = self.dropped = 0
        self._told_dropped = 0
        self._full = False
        self.closed = False

    @property
    def queued(self) -> int:
        """Samples in the backlog: put, not yet in the pipe."""
        return self.submitted - self.sent

    def put(self, rows: list[SampleRow]) -> bool:
        """Send rows, or keep them in the backlog as far as it has room; False when some were
        dropped (counted in ``dropped``)."""
        if not rows:
            return True
        if self.closed:  # the reader is gone: nothing can arrive, not even the count
            self.dropped += len(rows)
            return False
        kept = self._admit(rows, lambda: f"the runner fell behind reading the samples ({self.queued} queued)")
        if kept:
            try:
                data = frame(ROWS, marshal.dumps(kept))
            except ValueError as exc:  # a value marshal cannot carry: never a silent gap
                self.dropped += len(kept)
                sys.stderr.write(
                    f"perfsig capture: a batch could not be packed ({exc}): {len(kept)} dropped\n"
                )
                self.pump()
                return False
            self._backlog.append((len(kept), memoryview(data), None))
            self.submitted += len(kept)
        self.pump()
        return len(kept) == len(rows)

    def pump(self) -> None:
        """Write what the pipe takes now, without waiting."""
        while True:
            if not self._backlog:
                if self.dropped == self._told_dropped or self.closed:
                    return
                # The count of drops, in all, once the rows before it are written: one such
                # frame waits at a time, however often the count changes meanwhile.
                self._backlog.append(
                    (0, memoryview(frame(DROPPED, str(self.dropped).encode())), self.dropped)
                )
            rows, data, told = self._backlog[0]
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:
                return
            except OSError as exc:  # the reader is gone (the runner died): nothing can arrive
                self._lose_backlog(f"the runner stopped reading the samples ({exc})")
                return
            if written < len(data):
                self._backlog[0] = (rows, data[written:], told)
                return
            self._backlog.popleft()
            self.sent += rows
            if told is not None:  # the count is told once its frame is whole in the pipe
                self._told_dropped = told

    def _lose_backlog(self, why: str) -> None:
        lost = self.queued
        self.dropped += lost
        self.submitted = self.sent
        self._backlog.clear()
        sys.stderr.write(f"perfsig capture: {why}; {lost} samples lost, {self.dropped} dropped in all\n")
        self.abandon()

    def close(self, timeout_s: float) -> bool:
        """Send the backlog, waiting at most ``timeout_s`` for the reader; False when it did
        not take it all (what was left is counted as dropped). The pipe stays open for rows of
        requests still in flight (a later close, or ``finish``, sends them)."""
        if self.closed:
            return False
        sleep = _native_sleep()
        deadline = time.monotonic() + timeout_s
        self.pump()
        while self._backlog and time.monotonic() < deadline:
            sleep(0.005)
            self.pump()
        if self._backlog:
            self._lose_backlog("the runner did not read the last samples in time")
            return False
        return True

    def finish(self, timeout_s: float) -> bool:
        """End the stream (at exit): send the backlog, then the end mark with what was sent and
        dropped in all. A stream without it, or whose mark disagrees with what arrived, is not
        whole: the runner fails the load, whatever Locust's exit code says."""
        if os.getpid() != self._pid:  # a forked worker's copy (it sends to the master)
            self.abandon()
            return True
        if not self.close(timeout_s):
            return False
        self._backlog.append(
            (0, memoryview(frame(END, f"{self.sent} {self.dropped}".encode())), self.dropped)
        )
        if not self.close(timeout_s):
            return False
        self.abandon()
        return True

    def abandon(self) -> None:
        """Close this process's write end without sending more (a forked worker's copy)."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self.fd)
