"""From a gate's outcome to a CodePipeline approval: the summary and the decision call.
Used by the pytest plugin (end of session) and by the deferred validation."""

from __future__ import annotations

from typing import Any

from ..aws.codepipeline import ApprovalOutcome, GateSummary, decide_approval
from .status import GateOutcome, approval_status, partial_note


def gate_summary(
    gate_id: str,
    stage: str,
    outcome: GateOutcome,
    report_url: str | None = None,
    *,
    allow_partial: bool = False,
) -> GateSummary:
    """What the approval says; its status is the outcome's, decided in ``gate.status``
    (a partial gate is ``partial``, rejected, unless ``allow_partial``)."""
    status = approval_status(outcome, allow_partial=allow_partial)
    problems = list(outcome.problems)
    if status == "partial":
        problems.insert(0, partial_note(outcome))
    return GateSummary(
        gate_id=gate_id,
        stage=stage,
        status=status,
        counts={k: v for k, v in outcome.counts.items() if v},
        problems=problems,
        report_url=report_url,
    )


def send_approval(pipeline: str, action: str, summary: GateSummary, client: Any = None) -> ApprovalOutcome:
    """Approve or reject ``action`` of ``pipeline``; raises ApprovalError (a PerfsigError)."""
    if client is None:
        from ..aws.clients import codepipeline_client

        client = codepipeline_client()
    return decide_approval(client, pipeline, action, summary)
