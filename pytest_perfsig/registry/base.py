"""Deferred validation requests: "judge comparison C over the N minutes from now, then approve
or reject action A" — registered by a pipeline, worked off later by ``perfsig worker``.

Two interchangeable registries implement :class:`ValidationRegistry`: SQLite (the embedded
store, default) and DynamoDB (the original table ``BuildValidationRequests``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import UsageError

# A finished request carries its gate's status (``gate.status``): one vocabulary everywhere.
WAITING, RUNNING, PASS, VIOLATION, ERROR = "waiting", "running", "pass", "violation", "error"
FINAL_STATUSES = (PASS, VIOLATION, ERROR)
LEGACY_STATUSES = {"ok": PASS}
"""Statuses written by earlier releases, read as today's."""


@dataclass
class ValidationRequest:
    pipeline: str
    timestamp_ms: int  # registration time, the window's start; with pipeline, the key
    comparison: str
    minutes: float
    monspec: str  # a path, or the monspec document itself
    approval_action: str | None = None
    stage: str | None = None  # the pipeline stage that registered it
    action: str | None = None  # the pipeline action that registered it
    status: str = WAITING
    ready_at: float = 0.0  # epoch seconds when the window has passed
    results: list[dict[str, Any]] | None = None
    reason: str | None = None
    worker: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    gate_id: str | None = None

    @property
    def window(self) -> tuple[float, float]:
        start = self.timestamp_ms / 1000.0
        return start, start + self.minutes * 60.0

    @property
    def key(self) -> tuple[str, int]:
        return self.pipeline, self.timestamp_ms


def new_request(
    pipeline: str,
    comparison: str,
    minutes: float,
    monspec: str,
    *,
    approval_action: str | None = None,
    stage: str | None = None,
    action: str | None = None,
    now: float | None = None,
) -> ValidationRequest:
    """A waiting request whose window starts now and is due once it has passed."""
    if minutes <= 0:
        raise UsageError(f"the validation window must be longer than 0 minutes, got {minutes:g}")
    now = time.time() if now is None else now
    return ValidationRequest(
        pipeline=pipeline,
        timestamp_ms=int(now * 1000),
        comparison=comparison,
        minutes=minutes,
        monspec=monspec,
        approval_action=approval_action,
        stage=stage,
        action=action,
        ready_at=now + minutes * 60.0,
    )


def parse_user_parameters(text: str) -> tuple[str, float, str | None]:
    """The original CodePipeline UserParameters: ``"StagingToProduction,5,ApproveStaging"``."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3) or not parts[0]:
        raise UsageError(f"UserParameters must be 'Comparison,Minutes[,ApprovalAction]', got {text!r}")
    try:
        minutes = float(parts[1])
    except ValueError:
        raise UsageError(f"UserParameters: minutes must be a number, got {parts[1]!r}") from None
    return parts[0], minutes, (parts[2] or None) if len(parts) == 3 else None


class ValidationRegistry(Protocol):
    def register(self, request: ValidationRequest) -> None:
        """Store a new waiting request."""

    def get(self, pipeline: str, timestamp_ms: int) -> ValidationRequest | None: ...

    def recent(self, pipeline: str | None = None, limit: int = 50) -> list[ValidationRequest]:
        """Newest first."""

    def due(self, now: float) -> list[ValidationRequest]:
        """Waiting requests whose window has passed."""

    def claim(self, request: ValidationRequest, worker: str, now: float, lease_s: float) -> bool:
        """Atomically move a waiting request to running under ``worker`` until the lease ends;
        False when another worker was first (each request is processed once)."""

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
        """Record the outcome, only while ``worker`` still holds the request."""

    def release_expired(self, now: float, max_attempts: int) -> list[ValidationRequest]:
        """Running requests whose worker died (lease over): waiting again, or error after
        ``max_attempts`` claims. Returns the requests changed."""
