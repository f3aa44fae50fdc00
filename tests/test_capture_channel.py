"""The pipe between the Locust process and the runner (pytest_perfsig/load/channel.py,
receiver.py): real pipes, a real store. Frames arrive whole and in order whatever the pipe
takes per write; the sender never waits and stays bounded; its drops reach the store; a stream
that breaks is never taken for a whole one."""

from __future__ import annotations

import marshal
import os
from pathlib import Path

import pytest

from pytest_perfsig.load import channel
from pytest_perfsig.load.channel import PipeSender, frame, read_frames
from pytest_perfsig.load.receiver import SampleReceiver
from pytest_perfsig.load.writer import SampleWriter
from pytest_perfsig.store import RunRecord, SqliteStore
from pytest_perfsig.store.samples import SampleRow
from tests.capturing import Piped
from tests.stored import stored_rows

T0 = 1_700_000_000.0


def rows(first: int, count: int, run_id: str = "run-1") -> list[SampleRow]:
    return [
        (run_id, T0 + k / 1000, "Svc", "Staging", f"/x/{k % 7}", k / 3, k % 5 != 0, 200 if k % 5 else 503)
        for k in range(first, first + count)
    ]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "perfsig.db"
    with SqliteStore(path) as store:
        store.create_run(RunRecord("run-1", "Svc", "Staging", gate_id="g"))
    return path


def test_every_row_arrives_in_order_through_partial_writes(store_path: Path) -> None:
    """Batches far larger than the pipe: the sender writes what the pipe takes, keeps the
    rest, and the reader reassembles every frame."""
    piped = Piped(store_path, "run-1", "Svc", "Staging")
    sent = [rows(k * 5_000, 5_000) for k in range(8)]  # ~200 KB each; a pipe takes 64 KB to 1 MB
    for batch in sent:
        assert piped.sender.put(batch)
    assert piped.close()
    expected = [row for batch in sent for row in batch]
    assert stored_rows(store_path) == [(*row[:6], int(row[6])) for row in expected]
    assert piped.writer.dropped == 0 and piped.receiver.problem is None


def test_a_full_pipe_never_blocks_and_its_drops_reach_the_store(store_path: Path) -> None:
    """No one reads for a while: the sender keeps at most its capacity, counts the rest, and
    the count arrives once the reader catches up, after the rows before it."""
    read_end, write_end = os.pipe()
    sender = PipeSender(write_end, capacity=3_000)
    for k in range(40):
        sender.put(rows(k * 1_000, 1_000))  # returns at once, room or not
        assert sender.queued <= 3_000
    assert sender.dropped > 0
    assert sender.sent + sender.queued + sender.dropped == 40_000
    writer = SampleWriter(str(store_path), "run-1", capacity=100_000)
    receiver = SampleReceiver(read_end, writer)  # the reader comes back
    assert sender.finish(timeout_s=10.0)  # the backlog, the count, the end mark
    assert receiver.close()
    assert writer.written == sender.sent and writer.dropped == sender.dropped
    with SqliteStore(store_path) as store:
        run = store.run("run-1")
        assert run is not None and run.dropped == sender.dropped
        assert store.run_counts("run-1")[0] == sender.sent


def test_a_stream_cut_inside_a_frame_is_not_a_whole_one(store_path: Path) -> None:
    read_end, write_end = os.pipe()
    writer = SampleWriter(str(store_path), "run-1", capacity=1_000)
    whole = frame(channel.ROWS, marshal.dumps(rows(0, 3)))
    os.write(write_end, whole + frame(channel.ROWS, b"x" * 100)[:40])  # the sender died mid-frame
    os.close(write_end)
    receiver = SampleReceiver(read_end, writer)
    assert not receiver.close()
    assert receiver.problem is not None and "ended inside a frame" in receiver.problem
    assert writer.written == 3  # what arrived whole is kept


def test_a_frame_of_unknown_kind_breaks_the_stream(store_path: Path) -> None:
    read_end, write_end = os.pipe()
    writer = SampleWriter(str(store_path), "run-1", capacity=1_000)
    os.write(write_end, frame(b"Z", b"?"))
    os.close(write_end)
    receiver = SampleReceiver(read_end, writer)
    assert not receiver.close()
    assert receiver.problem is not None and "unknown kind" in receiver.problem


def test_a_reader_that_is_gone_loses_the_rows_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the runner died
    sender = PipeSender(write_end, capacity=1_000)
    assert sender.put(rows(0, 10))  # taken into the backlog; the write finds no reader
    assert sender.closed and sender.dropped == 10 and sender.queued == 0
    assert not sender.put(rows(10, 5)) and sender.dropped == 15  # nothing can arrive now
    assert "stopped reading" in capsys.readouterr().err


def test_frames_are_read_whole_from_single_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader makes no assumption about what one read returns."""
    monkeypatch.setattr(channel, "READ_BYTES", 1)
    read_end, write_end = os.pipe()
    data = frame(channel.ROWS, b"abc") + frame(channel.DROPPED, b"12")
    for byte in data:
        os.write(write_end, bytes([byte]))
    os.close(write_end)
    assert list(read_frames(read_end)) == [(channel.ROWS, b"abc"), (channel.DROPPED, b"12")]
    os.close(read_end)


def _stream(store_path: Path, data: bytes) -> tuple[SampleReceiver, SampleWriter]:
    read_end, write_end = os.pipe()
    writer = SampleWriter(str(store_path), "run-1", capacity=1_000)
    os.write(write_end, data)
    os.close(write_end)
    return SampleReceiver(read_end, writer), writer


def test_a_stream_without_its_end_mark_is_not_whole(store_path: Path) -> None:
    """The Locust process died, or its last close could not send (too late for an exit code):
    the rows that came are stored, and the load is not taken for a whole one."""
    receiver, writer = _stream(store_path, frame(channel.ROWS, marshal.dumps(rows(0, 3))))
    assert not receiver.close()
    assert receiver.problem is not None and "without its end mark after 3 samples" in receiver.problem
    assert writer.written == 3


def test_an_end_mark_that_disagrees_with_what_arrived_is_not_whole(store_path: Path) -> None:
    data = frame(channel.ROWS, marshal.dumps(rows(0, 3))) + frame(channel.END, b"5 2")
    receiver, writer = _stream(store_path, data)
    assert not receiver.close()
    assert receiver.problem == "the capture's stream lost samples: 5 sent, 3 received"
    assert writer.dropped == 2  # the drops the mark tells are counted all the same


def test_an_empty_stream_is_no_capture_not_a_broken_one(store_path: Path) -> None:
    receiver, writer = _stream(store_path, b"")  # PERFSIG_NO_CAPTURE, or not one request
    assert receiver.close() and receiver.problem is None and writer.written == 0


def test_a_receiver_that_fails_unexpectedly_says_so(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_thread(self: SampleWriter, rows: list[SampleRow]) -> bool:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(SampleWriter, "put", no_thread)
    data = frame(channel.ROWS, marshal.dumps(rows(0, 3))) + frame(channel.END, b"3 0")
    receiver, _ = _stream(store_path, data)
    assert not receiver.close()
    assert receiver.problem == "the capture's stream broke: RuntimeError: can't start new thread"


def test_a_batch_marshal_cannot_pack_is_counted_not_lost() -> None:
    read_end, write_end = os.pipe()
    sender = PipeSender(write_end, capacity=1_000)
    bad: list[SampleRow] = [("run-1", T0, "Svc", "Staging", object(), 1.0, 1, 200)]  # type: ignore[list-item]
    assert not sender.put(bad)
    assert sender.dropped == 1 and sender.queued == 0
    sender.abandon()
    os.close(read_end)
