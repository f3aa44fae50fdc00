"""The validation registry in the embedded SQLite store: the request lifecycle (waiting,
running under a lease and a fencing token, finished) over the store's ``validation_requests``
table."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..store.base import RequestStore
from ..store.requests import RequestRow
from .base import ERROR, LEGACY_STATUSES, RUNNING, WAITING, ValidationRequest


def _request(row: RequestRow) -> ValidationRequest:
    request = ValidationRequest(**row)
    request.status = LEGACY_STATUSES.get(request.status, request.status)
    return request


class SqliteRegistry:
    def __init__(self, store: RequestStore) -> None:
        self.store = store

    def __str__(self) -> str:
        return f"sqlite:{self.store.path}"

    def register(self, request: ValidationRequest) -> None:
        self.store.add_request(asdict(request))

    def get(self, pipeline: str, timestamp_ms: int) -> ValidationRequest | None:
        row = self.store.request(pipeline, timestamp_ms)
        return None if row is None else _request(row)

    def recent(self, pipeline: str | None = None, limit: int = 50) -> list[ValidationRequest]:
        return [_request(row) for row in self.store.recent_requests(pipeline, limit)]

    def due(self, now: float) -> list[ValidationRequest]:
        return [_request(row) for row in self.store.due_requests(now, waiting=WAITING)]

    def claim(self, request: ValidationRequest, worker: str, now: float, lease_s: float) -> bool:
        fence = self.store.claim_request(
            request.pipeline,
            request.timestamp_ms,
            worker=worker,
            lease_until=now + lease_s,
            waiting=WAITING,
            running=RUNNING,
        )
        if fence is None:
            return False
        request.status, request.worker, request.lease_until = RUNNING, worker, now + lease_s
        request.attempts += 1
        request.fence = fence
        return True

    def renew(self, request: ValidationRequest, worker: str, fence: int, now: float, lease_s: float) -> bool:
        renewed = self.store.renew_request(
            request.pipeline,
            request.timestamp_ms,
            worker=worker,
            fence=fence,
            lease_until=now + lease_s,
            running=RUNNING,
        )
        if renewed:
            request.lease_until = now + lease_s
        return renewed

    def finish(
        self,
        request: ValidationRequest,
        worker: str,
        status: str,
        *,
        results: list[dict[str, Any]],
        reason: str | None,
        gate_id: str | None,
        fence: int | None = None,
    ) -> bool:
        return self.store.finish_request(
            request.pipeline,
            request.timestamp_ms,
            worker=worker,
            fence=request.fence if fence is None else fence,
            running=RUNNING,
            status=status,
            results=results,
            reason=reason,
            gate_id=gate_id,
        )

    def release_expired(self, now: float, max_attempts: int) -> list[ValidationRequest]:
        def release(row: RequestRow) -> tuple[str, str]:
            attempts = int(row["attempts"])
            reason = (
                f"worker {row['worker']} stopped during validation "
                f"({attempts} attempt{'s' if attempts > 1 else ''})"
            )
            return (ERROR if attempts >= max_attempts else WAITING), reason

        return [
            _request(row)
            for row in self.store.release_expired_requests(now, running=RUNNING, release=release)
        ]
