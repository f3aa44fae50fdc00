"""Deployment and remediation events: what was deployed where (what a rollback goes back to),
and which problems were remediated (so that a problem notified twice is rolled back once)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from .database import Database

_REMEDIATION_COLUMNS = (
    "problem_id",
    "ts",
    "env",
    "status",
    "action",
    "deployment_event_id",
    "new_deployment_id",
    "detail",
)


@dataclass
class DeploymentEvent:
    """A deployment into an environment, as the pipeline reported it (CUSTOM_DEPLOYMENT)."""

    env: str
    deployment_id: str | None = None
    application: str | None = None
    deployment_group: str | None = None
    revision: dict[str, Any] | None = None
    pipeline: str | None = None
    stage: str | None = None
    remediation_url: str | None = None
    ts: float = field(default_factory=time.time)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class EventTables(Database):
    """The ``deployment_events`` and ``remediation_events`` tables."""

    def add_deployment_event(self, event: DeploymentEvent) -> None:
        row = asdict(event)
        row["revision"] = json.dumps(event.revision) if event.revision is not None else None
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO deployment_events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )

    def deployment_events(self, env: str | None = None, limit: int = 20) -> list[DeploymentEvent]:
        """Newest first."""
        columns = ", ".join(DeploymentEvent.__dataclass_fields__)
        where, params = ("WHERE env = ?", (env, limit)) if env else ("", (limit,))
        rows = self._query(
            f"SELECT {columns} FROM deployment_events {where} ORDER BY ts DESC LIMIT ?", params
        )
        events = [DeploymentEvent(*row) for row in rows]
        for event in events:
            if isinstance(event.revision, str):
                event.revision = json.loads(event.revision)
        return events

    def claim_remediation(self, problem_id: str, env: str | None) -> bool:
        """Record that a problem is being remediated; False when it was already (idempotency:
        the same problem notified twice must not roll back twice)."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO remediation_events (problem_id, ts, env, status) "
                "VALUES (?, ?, ?, 'started')",
                (problem_id, time.time(), env),
            )
            return cursor.rowcount == 1

    def finish_remediation(
        self,
        problem_id: str,
        status: str,
        *,
        action: str | None = None,
        deployment_event_id: str | None = None,
        new_deployment_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE remediation_events SET status = ?, action = ?, deployment_event_id = ?, "
                "new_deployment_id = ?, detail = ? WHERE problem_id = ?",
                (status, action, deployment_event_id, new_deployment_id, detail, problem_id),
            )

    def remediations(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first."""
        rows = self._query(
            f"SELECT {', '.join(_REMEDIATION_COLUMNS)} FROM remediation_events ORDER BY ts DESC LIMIT ?",
            (limit,),
        )
        return [dict(zip(_REMEDIATION_COLUMNS, row, strict=True)) for row in rows]
