"""Deferred validation (``perfsig worker``): takes due requests from a registry, judges each over its
window from stored samples, approves or rejects its pipeline action, records the outcome.

Each request is processed once: a worker claims it with a conditional update and holds a
lease; a worker that dies mid-validation leaves the lease to expire, and the next worker
puts the request back in the queue (or marks it ``error`` after MAX_ATTEMPTS). Nothing is
left waiting forever, and an errored validation is rejected, never approved.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PerfsigError, UsageError
from ..monspec import Monspec, load_monspec, parse_monspec
from ..registry.base import ERROR, ValidationRegistry, ValidationRequest
from ..store import SqliteStore
from ..windows import Window
from .plan import GateOptions
from .run import Gate
from .status import GateOutcome

DEFAULT_LEASE_S = 600.0
MAX_ATTEMPTS = 3

Approver = Callable[[ValidationRequest, Gate | None, GateOutcome | None], str]
"""(request, judged gate or None, its outcome or None) -> what was done; raises PerfsigError.
The approval follows the outcome's status and nothing else."""


@dataclass(frozen=True)
class Processed:
    request: ValidationRequest
    status: str
    reason: str | None
    approval: str | None
    recorded: bool  # False: the lease was lost to another worker, nothing was written


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _request_monspec(request: ValidationRequest) -> Monspec:
    text = request.monspec.strip()
    if text.startswith(("{", "//", "/*")):
        return parse_monspec(text, f"monspec of {request.pipeline}@{request.timestamp_ms}")
    return load_monspec(Path(text))


def judge_request(request: ValidationRequest, store: SqliteStore) -> tuple[Gate, GateOutcome]:
    """Judge one request's comparison over its window; (gate, its outcome)."""
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
    gate = Gate(monspec, options, store=store)
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


def process(
    request: ValidationRequest,
    registry: ValidationRegistry,
    store: SqliteStore,
    worker: str,
    approve: Approver | None,
) -> Processed:
    gate: Gate | None = None
    outcome: GateOutcome | None = None
    try:
        gate, outcome = judge_request(request, store)
        status, reason = outcome.status, _reason(outcome)
        results = [{"check_id": cid, **v.to_record()} for cid, v in gate.verdicts.items()]
    except PerfsigError as exc:
        status, reason, results = ERROR, str(exc), []
    approval = None
    if approve is not None and request.approval_action:
        try:
            approval = approve(request, gate, outcome)
        except PerfsigError as exc:
            approval = f"approval failed: {exc}"
            reason = f"{reason}; {approval}" if reason else approval
    recorded = registry.finish(
        request, worker, status, results=results, reason=reason, gate_id=gate.gate_id if gate else None
    )
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
    worker = worker or default_worker_id()
    now = time.time() if now is None else now
    registry.release_expired(now, MAX_ATTEMPTS)
    done = []
    for request in registry.due(now):
        if registry.claim(request, worker, time.time(), lease_s):
            done.append(process(request, registry, store, worker, approve))
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


def codepipeline_approver(client: Any = None) -> Approver:
    """Approve / reject the request's approval action with the judged gate's summary."""
    from ..aws.codepipeline import GateSummary
    from .approval import gate_summary, send_approval

    def approve(request: ValidationRequest, gate: Gate | None, outcome: GateOutcome | None) -> str:
        assert request.approval_action is not None
        if gate is None or outcome is None:
            summary = GateSummary("-", "-", "error", {}, ["the validation could not be judged"])
        else:
            summary = gate_summary(gate.gate_id, gate.options.stage, outcome)
        sent = send_approval(request.pipeline, request.approval_action, summary, client)
        return str(sent.message)

    return approve


def describe(processed: Processed) -> str:
    request = processed.request
    text = f"{request.pipeline}@{request.timestamp_ms} {request.comparison}: {processed.status}" + (
        f" ({processed.reason})" if processed.reason else ""
    )
    if processed.approval:
        text += f"; {processed.approval}"
    if not processed.recorded:
        text += "; NOT recorded: another worker holds this request now"
    return text
