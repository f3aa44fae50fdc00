"""From a judged gate to a CodePipeline approval: the summary and the decision call.
Used by the pytest plugin (end of session) and by the deferred-validation worker."""

from __future__ import annotations

from typing import Any

from .aws.approval import ApprovalOutcome, GateSummary, decide_approval
from .evaluate import Verdict

_SEVERITY = {"error": 0, "violation": 1}


def gate_summary(
    gate_id: str,
    stage: str,
    status: str,
    verdicts: list[Verdict],
    load_error: str | None = None,
    report_url: str | None = None,
) -> GateSummary:
    counts: dict[str, int] = {}
    for verdict in verdicts:
        counts[verdict.status] = counts.get(verdict.status, 0) + 1
    problems = [
        v.message for v in sorted(verdicts, key=lambda v: _SEVERITY.get(v.status, 9)) if v.status in _SEVERITY
    ]
    if load_error:
        problems.insert(0, load_error)
    return GateSummary(
        gate_id=gate_id, stage=stage, status=status, counts=counts, problems=problems, report_url=report_url
    )


def send_approval(pipeline: str, action: str, summary: GateSummary, client: Any = None) -> ApprovalOutcome:
    """Approve or reject ``action`` of ``pipeline``; raises ApprovalError (a PerfsigError)."""
    if client is None:
        from .aws.clients import codepipeline_client

        client = codepipeline_client()
    return decide_approval(client, pipeline, action, summary)
