"""Waiting for the load to reach a point by what it stored, never by wall-clock guesses: a busy
CI machine makes seconds cheap and requests expensive."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.stored import stored_count


def when_stored(
    db: Path, env: str, count: int, action: Callable[[], None], timeout_s: float = 120.0
) -> threading.Thread:
    """Run ``action`` once the store holds ``count`` samples of ``env`` (a fault at a known
    point of the load, however busy the machine is)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                stored = stored_count(db, env)
            except sqlite3.Error:
                stored = 0
            if stored >= count:
                action()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread
