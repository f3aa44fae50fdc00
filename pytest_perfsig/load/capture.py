"""Raw-sample capture inside the Locust process.

Locust's own statistics round response times into buckets; the gate needs each request's
exact latency and start time, so this listener stores every request event. It is set up
by :mod:`pytest_perfsig.load.locust_main` from environment variables the runner passes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..store.sqlite import SampleRow, SqliteStore

ENV_STORE = "PERFSIG_STORE"
ENV_RUN_ID = "PERFSIG_RUN_ID"
ENV_SERVICE = "PERFSIG_SERVICE"
ENV_ENV = "PERFSIG_ENV"

FLUSH_EVERY_ROWS = 500
FLUSH_EVERY_S = 0.5


class SampleCapture:
    """Buffers request events and writes them to the store in batches."""

    def __init__(self, store: SqliteStore, run_id: str, service: str, env: str) -> None:
        self.store = store
        self.run_id = run_id
        self.service = service
        self.env = env
        self.buffer: list[SampleRow] = []
        self.last_flush = time.monotonic()
        self.captured = 0

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None = None,
        response: Any = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        started = start_time if start_time is not None else time.time() - response_time / 1000.0
        status = int(getattr(response, "status_code", 0) or 0)
        self.buffer.append(
            (
                self.run_id,
                started,
                self.service,
                self.env,
                name,
                float(response_time),
                0 if exception else 1,
                status,
            )
        )
        if len(self.buffer) >= FLUSH_EVERY_ROWS or time.monotonic() - self.last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self, **_: Any) -> None:
        if self.buffer:
            rows, self.buffer = self.buffer, []
            self.store.add_samples(rows)
            self.captured += len(rows)
        self.last_flush = time.monotonic()


def install_from_environment(events: Any) -> SampleCapture | None:
    """Hook a capture into Locust's events when the runner asked for one."""
    store_path = os.environ.get(ENV_STORE)
    if not store_path:
        return None
    capture = SampleCapture(
        SqliteStore(store_path), os.environ[ENV_RUN_ID], os.environ[ENV_SERVICE], os.environ[ENV_ENV]
    )
    events.request.add_listener(capture.on_request)
    events.test_stop.add_listener(capture.flush)
    events.quitting.add_listener(capture.flush)
    return capture
