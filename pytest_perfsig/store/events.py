"""Deployment and remediation events: what was deployed where (what a rollback goes back to),
and which problems were remediated (so that a problem notified twice is rolled back once; a
claim whose holder died is taken over once its lease ran out)."""

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
    "lease_until",
    "attempts",
)
#: how long a claimed problem stays with the caller deciding it when no lease is given
REMEDIATION_LEASE_S = 900.0
#: attempts interrupted (the lease ran out) before a claimed problem is given up as an error
REMEDIATION_MAX_ATTEMPTS = 3


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

    def claim_remediation(
        self,
        problem_id: str,
        env: str | None,
        *,
        lease_s: float = REMEDIATION_LEASE_S,
        owner: str = "",
        now: float | None = None,
        max_attempts: int = REMEDIATION_MAX_ATTEMPTS,
    ) -> bool:
        """Claim a problem for ``lease_s`` seconds; True when the caller is to act on it.

        A problem never claimed is inserted ``started``. A claim still ``started`` whose lease
        ran out (the receiver holding it died) is taken over by ``owner``, in the same write
        transaction, so that one caller of many gets it; after ``max_attempts`` interrupted
        attempts it becomes ``error`` instead. Anything else was claimed already: False
        (idempotency: the same problem notified twice must not roll back twice).
        """
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute(
                "SELECT status, lease_until, attempts FROM remediation_events WHERE problem_id = ?",
                (problem_id,),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO remediation_events (problem_id, ts, env, status, lease_until, owner, "
                    "attempts) VALUES (?, ?, ?, 'started', ?, ?, 1)",
                    (problem_id, now, env, now + lease_s, owner),
                )
                return True
            status, lease_until, attempts = row
            if status != "started" or (lease_until is not None and lease_until > now):
                return False
            if attempts >= max_attempts:
                db.execute(
                    "UPDATE remediation_events SET status = 'error', lease_until = NULL, detail = ? "
                    "WHERE problem_id = ?",
                    (f"given up: {attempts} attempts were interrupted before they finished", problem_id),
                )
                return False
            db.execute(
                "UPDATE remediation_events SET lease_until = ?, owner = ?, attempts = attempts + 1 "
                "WHERE problem_id = ?",
                (now + lease_s, owner, problem_id),
            )
            return True

    def renew_remediation(
        self, problem_id: str, owner: str, *, lease_s: float = REMEDIATION_LEASE_S, now: float | None = None
    ) -> bool:
        """Extend ``owner``'s lease on a started claim (before acting on it); False when the
        claim is no longer ``owner``'s: it ran out and another caller took it over."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE remediation_events SET lease_until = ? "
                "WHERE problem_id = ? AND owner = ? AND status = 'started'",
                (now + lease_s, problem_id, owner),
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
        owner: str | None = None,
    ) -> bool:
        """Record the outcome; with ``owner``, only while the claim is still that owner's.
        Whether it was recorded."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE remediation_events SET status = ?, action = ?, deployment_event_id = ?, "
                "new_deployment_id = ?, detail = ?, lease_until = NULL "
                "WHERE problem_id = ? AND (? IS NULL OR (owner = ? AND status = 'started'))",
                (status, action, deployment_event_id, new_deployment_id, detail, problem_id, owner, owner),
            )
            return cursor.rowcount == 1

    def remediations(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first."""
        rows = self._query(
            f"SELECT {', '.join(_REMEDIATION_COLUMNS)} FROM remediation_events ORDER BY ts DESC LIMIT ?",
            (limit,),
        )
        return [dict(zip(_REMEDIATION_COLUMNS, row, strict=True)) for row in rows]
