"""The validation registry in the embedded SQLite store (table ``validation_requests``)."""

from __future__ import annotations

import json
from dataclasses import astuple, fields
from typing import Any

from ..store.sqlite import SqliteStore
from .base import ERROR, RUNNING, WAITING, ValidationRequest

_COLUMNS = [f.name for f in fields(ValidationRequest)]


def _row(request: ValidationRequest) -> tuple[Any, ...]:
    values = list(astuple(request))
    values[_COLUMNS.index("results")] = None if request.results is None else json.dumps(request.results)
    return tuple(values)


def _request(row: tuple[Any, ...]) -> ValidationRequest:
    request = ValidationRequest(*row)
    if isinstance(request.results, str):
        request.results = json.loads(request.results)
    return request


class SqliteRegistry:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def __str__(self) -> str:
        return f"sqlite:{self.store.path}"

    def register(self, request: ValidationRequest) -> None:
        with self.store._transaction() as db:
            db.execute(
                f"INSERT INTO validation_requests ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                _row(request),
            )

    def _select(self, where: str, params: tuple[Any, ...]) -> list[ValidationRequest]:
        rows = self.store._query(f"SELECT {', '.join(_COLUMNS)} FROM validation_requests {where}", params)
        return [_request(row) for row in rows]

    def get(self, pipeline: str, timestamp_ms: int) -> ValidationRequest | None:
        found = self._select("WHERE pipeline = ? AND timestamp_ms = ?", (pipeline, timestamp_ms))
        return found[0] if found else None

    def recent(self, pipeline: str | None = None, limit: int = 50) -> list[ValidationRequest]:
        if pipeline is None:
            return self._select("ORDER BY timestamp_ms DESC LIMIT ?", (limit,))
        return self._select("WHERE pipeline = ? ORDER BY timestamp_ms DESC LIMIT ?", (pipeline, limit))

    def due(self, now: float) -> list[ValidationRequest]:
        return self._select("WHERE status = ? AND ready_at <= ? ORDER BY ready_at", (WAITING, now))

    def claim(self, request: ValidationRequest, worker: str, now: float, lease_s: float) -> bool:
        with self.store._transaction() as db:
            cursor = db.execute(
                "UPDATE validation_requests SET status = ?, worker = ?, lease_until = ?, "
                "attempts = attempts + 1 WHERE pipeline = ? AND timestamp_ms = ? AND status = ?",
                (RUNNING, worker, now + lease_s, request.pipeline, request.timestamp_ms, WAITING),
            )
            claimed = cursor.rowcount == 1
        if claimed:
            request.status, request.worker, request.lease_until = RUNNING, worker, now + lease_s
            request.attempts += 1
        return claimed

    def finish(
        self,
        request: ValidationRequest,
        worker: str,
        status: str,
        *,
        results: list[dict[str, Any]],
        reason: str | None,
        gate_id: str | None,
    ) -> bool:
        with self.store._transaction() as db:
            cursor = db.execute(
                "UPDATE validation_requests SET status = ?, results = ?, reason = ?, gate_id = ?, "
                "lease_until = NULL WHERE pipeline = ? AND timestamp_ms = ? AND status = ? AND worker = ?",
                (
                    status,
                    json.dumps(results),
                    reason,
                    gate_id,
                    request.pipeline,
                    request.timestamp_ms,
                    RUNNING,
                    worker,
                ),
            )
            return cursor.rowcount == 1

    def release_expired(self, now: float, max_attempts: int) -> list[ValidationRequest]:
        with self.store._transaction() as db:
            expired = [
                _request(row)
                for row in db.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM validation_requests "
                    "WHERE status = ? AND lease_until < ?",
                    (RUNNING, now),
                ).fetchall()
            ]
            for request in expired:
                gave_up = request.attempts >= max_attempts
                request.status = ERROR if gave_up else WAITING
                request.reason = (
                    f"worker {request.worker} stopped during validation "
                    f"({request.attempts} attempt{'s' if request.attempts > 1 else ''})"
                )
                db.execute(
                    "UPDATE validation_requests SET status = ?, reason = ?, lease_until = NULL "
                    "WHERE pipeline = ? AND timestamp_ms = ? AND status = ?",
                    (request.status, request.reason, request.pipeline, request.timestamp_ms, RUNNING),
                )
        return expired
