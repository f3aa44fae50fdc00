"""The ``validation_requests`` table: deferred validations registered by pipelines and worked
off by ``perfsig worker`` (``registry.sqlite.SqliteRegistry`` is the registry over it).

Rows are plain dicts keyed by column (``results`` decoded from JSON). The request lifecycle —
which status waits, which runs — belongs to the registry, which passes its status words in;
here each change is one conditional update, so two workers never both win a request, and every
write of a worker holding a request is conditional on the fencing token its claim got.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from .database import Database

REQUEST_COLUMNS = (
    "pipeline",
    "timestamp_ms",
    "comparison",
    "minutes",
    "monspec",
    "approval_action",
    "stage",
    "action",
    "status",
    "ready_at",
    "results",
    "reason",
    "worker",
    "lease_until",
    "attempts",
    "gate_id",
    "fence",
)
"""The columns of a request row, in the order ``registry.base.ValidationRequest`` lists them."""

RequestRow = dict[str, Any]

_SELECT = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM validation_requests"


def _row(values: tuple[Any, ...]) -> RequestRow:
    row = dict(zip(REQUEST_COLUMNS, values, strict=True))
    if isinstance(row["results"], str):
        row["results"] = json.loads(row["results"])
    return row


class RequestTables(Database):
    """The ``validation_requests`` table."""

    def add_request(self, request: Mapping[str, Any]) -> None:
        """Store a new request (a row with every column); a second one with the same
        (pipeline, timestamp_ms) is a StoreError."""
        values = [request[column] for column in REQUEST_COLUMNS]
        results = request["results"]
        values[REQUEST_COLUMNS.index("results")] = None if results is None else json.dumps(results)
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO validation_requests ({', '.join(REQUEST_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(REQUEST_COLUMNS))})",
                values,
            )

    def request(self, pipeline: str, timestamp_ms: int) -> RequestRow | None:
        rows = self._query(f"{_SELECT} WHERE pipeline = ? AND timestamp_ms = ?", (pipeline, timestamp_ms))
        return _row(rows[0]) if rows else None

    def recent_requests(self, pipeline: str | None = None, limit: int = 50) -> list[RequestRow]:
        """Newest first, of one pipeline or of all."""
        if pipeline is None:
            rows = self._query(f"{_SELECT} ORDER BY timestamp_ms DESC LIMIT ?", (limit,))
        else:
            rows = self._query(
                f"{_SELECT} WHERE pipeline = ? ORDER BY timestamp_ms DESC LIMIT ?", (pipeline, limit)
            )
        return [_row(row) for row in rows]

    def due_requests(self, now: float, *, waiting: str) -> list[RequestRow]:
        """Requests in status ``waiting`` whose window has passed, the longest due first."""
        rows = self._query(f"{_SELECT} WHERE status = ? AND ready_at <= ? ORDER BY ready_at", (waiting, now))
        return [_row(row) for row in rows]

    def claim_request(
        self, pipeline: str, timestamp_ms: int, *, worker: str, lease_until: float, waiting: str, running: str
    ) -> int | None:
        """Move a request from ``waiting`` to ``running`` under ``worker`` until the lease
        ends, counting the attempt and incrementing the fencing token; the new token, or None
        when it was not waiting (another worker was first)."""
        key = (pipeline, timestamp_ms)
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE validation_requests SET status = ?, worker = ?, lease_until = ?, "
                "attempts = attempts + 1, fence = fence + 1 "
                "WHERE pipeline = ? AND timestamp_ms = ? AND status = ?",
                (running, worker, lease_until, *key, waiting),
            )
            if cursor.rowcount != 1:
                return None
            (fence,) = db.execute(
                "SELECT fence FROM validation_requests WHERE pipeline = ? AND timestamp_ms = ?", key
            ).fetchone()
            return int(fence)

    def renew_request(
        self, pipeline: str, timestamp_ms: int, *, worker: str, fence: int, lease_until: float, running: str
    ) -> bool:
        """Move the lease's end to ``lease_until``, only while the request is ``running`` under
        ``worker`` and ``fence``; False when another worker took it over (or it ended)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE validation_requests SET lease_until = ? "
                "WHERE pipeline = ? AND timestamp_ms = ? AND status = ? AND worker = ? AND fence = ?",
                (lease_until, pipeline, timestamp_ms, running, worker, fence),
            )
            return cursor.rowcount == 1

    def finish_request(
        self,
        pipeline: str,
        timestamp_ms: int,
        *,
        worker: str,
        fence: int,
        running: str,
        status: str,
        results: list[dict[str, Any]],
        reason: str | None,
        gate_id: str | None,
    ) -> bool:
        """Record the outcome, only while the request is ``running`` under ``worker`` and
        ``fence``; False, and nothing written, otherwise."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE validation_requests SET status = ?, results = ?, reason = ?, gate_id = ?, "
                "lease_until = NULL WHERE pipeline = ? AND timestamp_ms = ? AND status = ? AND worker = ? "
                "AND fence = ?",
                (
                    status,
                    json.dumps(results),
                    reason,
                    gate_id,
                    pipeline,
                    timestamp_ms,
                    running,
                    worker,
                    fence,
                ),
            )
            return cursor.rowcount == 1

    def release_expired_requests(
        self, now: float, *, running: str, release: Callable[[RequestRow], tuple[str, str]]
    ) -> list[RequestRow]:
        """Requests ``running`` whose lease ended before ``now`` (their worker died): each gets
        the (status, reason) ``release`` gives it, in one transaction. Returns them, changed."""
        with self._transaction() as db:
            expired = [
                _row(values)
                for values in db.execute(
                    f"{_SELECT} WHERE status = ? AND lease_until < ?", (running, now)
                ).fetchall()
            ]
            for row in expired:
                row["status"], row["reason"] = release(row)
                row["lease_until"] = None
                # One transaction: nothing can renew in between; the conditions say what is released.
                db.execute(
                    "UPDATE validation_requests SET status = ?, reason = ?, lease_until = NULL WHERE "
                    "pipeline = ? AND timestamp_ms = ? AND status = ? AND lease_until < ? AND fence = ?",
                    (
                        row["status"],
                        row["reason"],
                        row["pipeline"],
                        row["timestamp_ms"],
                        running,
                        now,
                        row["fence"],
                    ),
                )
        return expired
