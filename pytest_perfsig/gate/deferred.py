"""Deferred validation (``perfsig worker``): takes due requests from a registry, judges each over its
window from stored samples, approves or rejects its pipeline action, records the outcome.

One worker at a time acts on a request, in this order:

1. **claim**: a conditional update moves it to running under this worker, with a lease and a
   new fencing token (``registry.base`` describes the token);
2. **judge**: between the judging's steps (each store read or write) the lease is renewed once
   a quarter of it has passed; the judging stops at the next step when a renewal finds that
   another worker holds the request, or when less than the margin (a quarter of the lease) is
   left without a renewal having succeeded;
3. **confirm**: immediately before ``PutApprovalResult`` a renewal confirms that the token is
   still this worker's, and sending is refused unless the margin is left on the lease;
4. **approve or reject**, from the outcome's status (``gate.status``) and nothing else;
5. **finish**: the outcome is recorded by an update conditional on the token.

A worker that stops at any step sends nothing more and records no outcome; the gate it opened
is closed as an error that says it was abandoned, and is never the request's. A worker that
dies leaves its lease to end; the next worker puts the request back in the queue (or marks it
``error`` after MAX_ATTEMPTS claims), so nothing is left waiting forever, and an errored
validation is rejected, never approved. What the registry cannot fence (the time between the
confirmation and AWS applying the approval) is described in ``registry.base``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import PerfsigError, StoreError, UsageError
from ..monspec import Monspec, load_monspec, parse_monspec
from ..registry.base import ERROR, ValidationRegistry, ValidationRequest
from ..store import SqliteStore
from ..windows import Window
from .plan import GateOptions
from .run import Gate
from .status import GateOutcome, decide

DEFAULT_LEASE_S = 600.0
MAX_ATTEMPTS = 3
RENEW_FRACTION = 0.25
"""A lease is renewed once this share of it has passed since the last renewal."""
MARGIN_FRACTION = 0.25
"""A worker stops when less than this share of its lease is left: room for the step under way,
the approval call and clock differences between workers."""
ABANDONED = "abandoned"
"""What a worker reports for a request it stopped working on (not a stored status)."""

Approver = Callable[[ValidationRequest, Gate | None, GateOutcome | None], str]
"""(request, judged gate or None, its outcome or None) -> what was done; raises PerfsigError.
The approval follows the outcome's status and nothing else. The worker confirms its lease
before calling it; an approver calls :func:`confirm_lease` again immediately before its
irreversible call (``codepipeline_approver`` does, before ``PutApprovalResult``)."""


class LeaseLost(Exception):
    """This worker no longer holds the request it works on, or cannot confirm that it does: it
    sends and records nothing more. Deliberately not a PerfsigError: no error path may turn it
    into an outcome or a rejection."""


class Lease:
    """The lease of one claimed request, renewed between the steps of its validation."""

    def __init__(
        self,
        registry: ValidationRegistry,
        request: ValidationRequest,
        worker: str,
        lease_s: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry, self.request, self.worker, self.lease_s = registry, request, worker, lease_s
        self.fence = request.fence
        self.clock = clock
        self.interval = lease_s * RENEW_FRACTION
        self.margin = lease_s * MARGIN_FRACTION
        self.until = request.lease_until if request.lease_until is not None else clock() + lease_s
        self.renewed_at = self.until - lease_s
        self.renewals = 0
        self.lost: str | None = None
        self.renew_error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.request.pipeline}@{self.request.timestamp_ms}"

    def renew(self) -> bool:
        """One renewal now. False when it was refused (``lost`` says why) or the registry failed
        (``renew_error``: the lease already granted still counts until it ends)."""
        if self.lost is not None:
            return False
        now = self.clock()
        try:
            held = self.registry.renew(self.request, self.worker, self.fence, now, self.lease_s)
        except PerfsigError as exc:
            self.renew_error = str(exc)
            return False
        if not held:
            self.lost = (
                f"{self.worker} no longer holds {self.key} under fencing token {self.fence}: "
                "another worker released it or took it over"
            )
            return False
        self.until, self.renewed_at, self.renew_error = now + self.lease_s, now, None
        self.renewals += 1
        return True

    def check(self) -> None:
        """LeaseLost unless the request is still held with at least the margin left."""
        if self.lost is not None:
            raise LeaseLost(self.lost)
        left = self.until - self.clock()
        if left < self.margin:
            why = (
                f"the lease of {self.worker} on {self.key} ends in {left:.1f} s, within its margin of "
                f"{self.margin:.1f} s"
            )
            if self.renew_error:
                why += f"; the last renewal failed: {self.renew_error}"
            raise LeaseLost(why)

    def keep(self) -> None:
        """Between two steps of a validation: renew when due, then :meth:`check`."""
        if self.lost is None and self.clock() - self.renewed_at >= self.interval:
            self.renew()
        self.check()

    def confirm(self) -> None:
        """Immediately before an irreversible step: the token must be confirmed now, by a
        renewal that succeeds; a registry failure confirms nothing."""
        if not self.renew() and self.lost is None:
            raise LeaseLost(
                f"the lease of {self.worker} on {self.key} could not be confirmed: {self.renew_error}"
            )
        self.check()


_HELD: ContextVar[Lease | None] = ContextVar("perfsig_held_lease", default=None)


def confirm_lease() -> None:
    """For approvers, immediately before the irreversible call: confirm that this worker still
    holds the request being decided; LeaseLost when it does not. Outside a worker's
    validation there is nothing to confirm."""
    lease = _HELD.get()
    if lease is not None:
        lease.confirm()


@contextlib.contextmanager
def _holding(lease: Lease) -> Iterator[None]:
    token = _HELD.set(lease)
    try:
        yield
    finally:
        _HELD.reset(token)


class _LeasedStore:
    """The store as a leased validation sees it: every call is a step before which the lease
    is kept, so a worker that lost its request stops before its next read or write."""

    def __init__(self, store: SqliteStore, lease: Lease) -> None:
        self._store, self._lease = store, lease

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not callable(value):
            return value

        def step(*args: Any, **kwargs: Any) -> Any:
            self._lease.keep()
            return value(*args, **kwargs)

        return step


@dataclass(frozen=True)
class Processed:
    request: ValidationRequest
    status: str
    reason: str | None
    approval: str | None
    recorded: bool  # False: this worker no longer held the request, no outcome was written


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _request_monspec(request: ValidationRequest) -> Monspec:
    text = request.monspec.strip()
    if text.startswith(("{", "//", "/*")):
        return parse_monspec(text, f"monspec of {request.pipeline}@{request.timestamp_ms}")
    return load_monspec(Path(text))


def request_gate(request: ValidationRequest, store: SqliteStore) -> Gate:
    """The gate that judges one request's comparison (not yet judged)."""
    monspec = _request_monspec(request)
    sources = {
        c.source for e in monspec.entities.values() for c in e.comparisons if c.name == request.comparison
    }
    if not sources:
        raise UsageError(f"comparison {request.comparison!r} is not defined in {monspec.path}")
    options = GateOptions(
        stage=sources.pop(),
        comparisons=(request.comparison,),
        store_path=store.path,
        warmup_s=0.0,
        build=request.stage,
    )
    return Gate(monspec, options, store=store)


def judge_request(request: ValidationRequest, store: SqliteStore) -> tuple[Gate, GateOutcome]:
    """Judge one request's comparison over its window; (gate, its outcome)."""
    gate = request_gate(request, store)
    # A source that cannot be reached makes the request an error with that reason, never a pass.
    gate.probe_sources()
    gate.judge_window(Window(*request.window))
    return gate, gate.finish()


def _reason(outcome: GateOutcome) -> str | None:
    if outcome.passed:
        return None
    # The original system's wording, with the problems named.
    return (
        f"{len(outcome.problems)} configuration entries showed violations! "
        + "; ".join(outcome.problems)[:2000]
    )


def _abandon(gate: Gate | None, store: SqliteStore, why: str) -> None:
    """Close the gate of a validation this worker stopped, so that it is not left running: an
    error that says why, never the request's outcome (best effort: the store may be the fault)."""
    if gate is None or not gate.started:
        return
    outcome = decide(
        list(gate.verdicts.values()),
        planned=len(gate.planned),
        selected=len(gate.selected),
        gate_problems=[f"abandoned: {why}"],
    )
    with contextlib.suppress(StoreError):
        store.finish_gate(gate.gate_id, outcome)


def process(
    request: ValidationRequest,
    registry: ValidationRegistry,
    store: SqliteStore,
    worker: str,
    approve: Approver | None,
    *,
    lease_s: float = DEFAULT_LEASE_S,
) -> Processed:
    """Judge, approve and record one request this worker has just claimed (see the module
    docstring for the order); a worker that loses the request stops and reports ABANDONED."""
    lease = Lease(registry, request, worker, lease_s)
    gate: Gate | None = None
    outcome: GateOutcome | None = None
    try:
        try:
            gate = request_gate(request, cast(SqliteStore, _LeasedStore(store, lease)))
            # A source that cannot be reached makes the request an error with that reason.
            gate.probe_sources()
            gate.judge_window(Window(*request.window))
            outcome = gate.finish()
            status, reason = outcome.status, _reason(outcome)
            results = [{"check_id": cid, **v.to_record()} for cid, v in gate.verdicts.items()]
        except PerfsigError as exc:
            status, reason, results = ERROR, str(exc), []
        judged = gate if outcome is not None else None
        approval = None
        if approve is not None and request.approval_action:
            lease.confirm()
            with _holding(lease):
                try:
                    approval = approve(request, judged, outcome)
                except PerfsigError as exc:
                    approval = f"approval failed: {exc}"
                    reason = f"{reason}; {approval}" if reason else approval
        recorded = registry.finish(
            request,
            worker,
            status,
            fence=lease.fence,
            results=results,
            reason=reason,
            gate_id=judged.gate_id if judged else None,
        )
    except LeaseLost as exc:
        _abandon(gate, store, str(exc))
        return Processed(request, ABANDONED, str(exc), None, False)
    return Processed(request, status, reason, approval, recorded)


def work_once(
    registry: ValidationRegistry,
    store: SqliteStore,
    *,
    worker: str | None = None,
    approve: Approver | None = None,
    now: float | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> list[Processed]:
    """Release dead workers' requests, then process every due request this worker can claim."""
    if not lease_s > 0:
        raise UsageError(f"the lease must be longer than 0 seconds, got {lease_s:g}")
    worker = worker or default_worker_id()
    now = time.time() if now is None else now
    registry.release_expired(now, MAX_ATTEMPTS)
    done = []
    for request in registry.due(now):
        if registry.claim(request, worker, time.time(), lease_s):
            done.append(process(request, registry, store, worker, approve, lease_s=lease_s))
    return done


def run_worker(
    registry: ValidationRegistry,
    store: SqliteStore,
    *,
    interval_s: float,
    once: bool,
    worker: str | None = None,
    approve: Approver | None = None,
    report: Callable[[Processed], None] | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> int:
    """Poll every ``interval_s`` seconds (or once); returns the number processed."""
    count = 0
    while True:
        for processed in work_once(registry, store, worker=worker, approve=approve, lease_s=lease_s):
            count += 1
            if report is not None:
                report(processed)
        if once:
            return count
        time.sleep(interval_s)


class _ConfirmingClient:
    """A CodePipeline client whose ``PutApprovalResult`` first confirms the worker's lease: the
    fence is checked as the last thing before the decision leaves this worker."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_approval_result(self, **params: Any) -> Any:
        confirm_lease()
        return self._client.put_approval_result(**params)


def codepipeline_approver(client: Any = None) -> Approver:
    """Approve / reject the request's approval action with the judged gate's summary; the
    lease is confirmed immediately before ``PutApprovalResult``."""
    from ..aws import clients
    from ..aws.codepipeline import GateSummary
    from .approval import gate_summary, send_approval

    def approve(request: ValidationRequest, gate: Gate | None, outcome: GateOutcome | None) -> str:
        nonlocal client
        assert request.approval_action is not None
        if gate is None or outcome is None:
            summary = GateSummary("-", "-", "error", {}, ["the validation could not be judged"])
        else:
            summary = gate_summary(gate.gate_id, gate.options.stage, outcome)
        if client is None:
            client = clients.codepipeline_client()
        sent = send_approval(request.pipeline, request.approval_action, summary, _ConfirmingClient(client))
        return str(sent.message)

    return approve


def describe(processed: Processed) -> str:
    request = processed.request
    text = f"{request.pipeline}@{request.timestamp_ms} {request.comparison}: {processed.status}" + (
        f" ({processed.reason})" if processed.reason else ""
    )
    if processed.status == ABANDONED:
        return text + "; nothing sent, nothing recorded"
    if processed.approval:
        text += f"; {processed.approval}"
    if not processed.recorded:
        text += "; NOT recorded: another worker holds this request now"
    return text
