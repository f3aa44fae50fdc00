"""Deferred validation requests: "judge comparison C over the N minutes from now, then approve
or reject action A" — registered by a pipeline, worked off later by ``perfsig worker``.

Two interchangeable registries implement :class:`ValidationRegistry`: SQLite (the embedded
store, default) and DynamoDB (the original table ``BuildValidationRequests``).

Who may act on a request: every claim increments the request's fencing token (``fence``) and
gives the claimer a lease. The worker renews the lease while it judges, and every write that
follows is conditional on the token still being the one its claim got: a renewal, the
confirmation immediately before ``PutApprovalResult`` (itself a renewal), and ``finish``.
Another worker can take a request only once its lease has ended (``release_expired``), and its
claim changes the token, so the first worker's next conditional write fails and it stops:
nothing sent, nothing recorded.

What is left: the registry cannot fence CodePipeline. Between the confirmation and the moment
AWS applies ``PutApprovalResult`` the worker relies on its lease, which the confirmation has
just extended to a full ``lease_s`` (it refuses to send when less than its margin is left).
So a second worker can act while an approval is in flight only if that call, botocore's
retries included, outlasts the lease, or if the workers' clocks differ by more than the time
left on it. Even then CodePipeline takes one result per approval token: the later call fails
(``ApprovalAlreadyCompletedException``, ``InvalidApprovalTokenException``) or finds the action
decided and leaves it alone, and ``finish`` records one outcome. A worker that stops after
approving and before ``finish`` leaves the request to be judged again when its lease ends;
that judgment finds the action decided. docs/deferred-validation.md says more.
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
    fence: int = 0  # the fencing token: incremented by every claim

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
        """Atomically move a waiting request to running under ``worker`` until ``now + lease_s``
        and increment its fencing token; ``request`` gets the new ``fence``, ``lease_until``
        and ``attempts``. False when another worker was first (each request is claimed once
        per attempt)."""

    def renew(self, request: ValidationRequest, worker: str, fence: int, now: float, lease_s: float) -> bool:
        """Extend the lease to ``now + lease_s``, only while the request is running under
        ``worker`` and ``fence`` (one conditional write); ``request.lease_until`` follows.
        False when another worker took the request over, or it was released or finished: the
        caller no longer holds it and must stop without sending or recording anything. A
        renewal after the lease ended still succeeds when nobody took the request meanwhile:
        the token, not the clock, says who holds it."""

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
        """Record the outcome, only while the request is running under ``worker`` and
        ``fence`` (default: ``request.fence``, the token of this object's claim), in one
        conditional write; False, and nothing written, when the caller no longer holds it."""

    def release_expired(self, now: float, max_attempts: int) -> list[ValidationRequest]:
        """Running requests whose lease ended before ``now`` (their worker died or stalled):
        waiting again, or error after ``max_attempts`` claims; each conditional on the lease
        and the token being still those read, so a lease renewed meanwhile is kept. Returns
        the requests changed. The token is not changed here: the next claim changes it."""
