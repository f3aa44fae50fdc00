"""A capture wired as the runner wires it: the Locust side's sender writes to a real pipe, whose
read end a receiver in this process hands to a writer thread that stores the rows."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pytest_perfsig.load.capture import SampleCapture
from pytest_perfsig.load.channel import QUEUE_SAMPLES, PipeSender
from pytest_perfsig.load.receiver import SampleReceiver
from pytest_perfsig.load.writer import SampleWriter


class Piped:
    def __init__(
        self, store_path: Path | str, run_id: str, service: str, env: str, capacity: int = QUEUE_SAMPLES
    ) -> None:
        read_end, write_end = os.pipe()
        self.writer = SampleWriter(str(store_path), run_id, capacity)
        self.receiver = SampleReceiver(read_end, self.writer)
        self.sender = PipeSender(write_end, capacity)
        self.capture = SampleCapture(run_id, service, env, self.sender)

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every row the sender wrote is read and stored."""
        deadline = time.monotonic() + timeout_s
        while self.receiver.received < self.sender.sent and time.monotonic() < deadline:
            time.sleep(0.005)
        left = max(0.0, deadline - time.monotonic())
        return self.receiver.received >= self.sender.sent and self.writer.drain(left)

    def close(self, environment: Any = None) -> bool:
        """The Locust process's close and its exit (the stream ends), then the runner's close."""
        sent = self.capture.close(environment=environment) and self.capture.finish()
        self.sender.abandon()
        return self.receiver.close() and sent
