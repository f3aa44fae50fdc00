"""CodePipeline: approve or reject a manual-approval action with a gate's result.

The original system's worker did this every 2 minutes: ``GetPipeline`` to find the approval
action by name, ``GetPipelineState`` to check it is still waiting and to get its token, then
``PutApprovalResult``. It failed open in places; here:

- the action is approved exactly when the gate's status is ``pass`` (decided in one place,
  :mod:`pytest_perfsig.gate.status`); everything else is rejected;
- an action that is not waiting (decided by hand, or not started) is left alone, and the
  outcome says so;
- every AWS failure (throttling after the retries, missing permissions, unknown pipeline, no
  credentials, endpoint unreachable...) raises :class:`~pytest_perfsig.errors.ApprovalError`
  naming the call, the pipeline and the AWS error; nothing is approved on any error path.

Nothing here needs boto3 until :func:`decide_approval` is given a client.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ApprovalError
from .errors import aws_call, region_of

__all__ = [
    "SUMMARY_LIMIT",
    "ApprovalOutcome",
    "GateSummary",
    "approval_result",
    "approval_summary",
    "decide_approval",
    "default_pipeline_name",
]

#: ``PutApprovalResult``'s limit on ``result.summary``, in characters.
SUMMARY_LIMIT = 512
ELLIPSIS = "…"
APPROVED = "Approved"
REJECTED = "Rejected"

_MAIN_COUNTS = ("pass", "violation", "error")
#: a problem after the worst one never takes more than this, so that several fit in a summary
_PROBLEM_CAP = 160
#: the least room worth a cut problem: the worst one, any further one
_MIN_CUT_FIRST = 24
_MIN_CUT_NEXT = 48
_INITIATOR_PREFIX = "codepipeline/"


@dataclass(frozen=True)
class GateSummary:
    """What a gate found, as much as the approval needs."""

    gate_id: str
    stage: str
    status: str  # "pass" | "violation" | "error"  (anything but "pass" rejects)
    counts: dict[str, int]  # e.g. {"pass": 5, "violation": 2, "error": 0, "skipped": 1}
    problems: list[str]  # verdict messages of violations/errors, worst first
    report_url: str | None = None


@dataclass(frozen=True)
class ApprovalOutcome:
    """What :func:`decide_approval` did."""

    pipeline: str
    stage: str | None
    action: str
    result: str | None  # "Approved" | "Rejected" | None when nothing was sent
    sent: bool
    message: str  # what happened, for the terminal


# --------------------------------------------------------------------------- the decision


def approval_result(summary: GateSummary) -> str:
    """``"Approved"`` exactly when the gate's status is ``pass``, ``"Rejected"`` otherwise: the
    status is the gate's one decision, never second-guessed here."""
    return APPROVED if summary.status == "pass" else REJECTED


# --------------------------------------------------------------------------- the summary


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut at a word boundary when one is near, with
    ``…`` when anything was cut."""
    if len(text) <= width:
        return text
    if width <= 0:
        return ""
    if width == 1:
        return ELLIPSIS
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space >= (width - 1) * 3 // 4:
        cut = cut[:space]
    cut = cut.rstrip(" ,;:.-–—(") or text[: width - 1]
    return cut + ELLIPSIS


def _format_counts(counts: Mapping[str, int]) -> str:
    keys = [*_MAIN_COUNTS, *sorted(k for k in counts if k not in _MAIN_COUNTS and counts[k])]
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in keys)


def _more(n: int) -> str:
    return f" (+{n} more)" if n else ""


def _problems_part(problems: list[str], budget: int) -> str:
    """`` Problems: a; b (+N more)`` in at most ``budget`` characters: as many problems as fit,
    worst first, whole when they fit; the last one shown cut cleanly when enough room is left."""
    if not problems:
        return ""
    prefix = " Problems: "
    parts: list[str] = []
    used = len(prefix)
    for i, raw in enumerate(problems):
        problem = raw if i == 0 else _clip(raw, _PROBLEM_CAP)
        sep = "; " if parts else ""
        after = _more(len(problems) - i - 1)
        if used + len(sep) + len(problem) + len(after) <= budget:
            parts.append(problem)
            used += len(sep) + len(problem)
            continue
        room = budget - used - len(sep) - len(after)
        if room >= (_MIN_CUT_FIRST if not parts else _MIN_CUT_NEXT):
            return prefix + "; ".join([*parts, _clip(problem, room)]) + after
        if parts:  # the ones shown so far, and how many are left out
            return prefix + "; ".join(parts) + _more(len(problems) - i)
        count = f" ({len(problems)} problems)"
        return count if len(count) <= budget else ""
    return prefix + "; ".join(parts)


def approval_summary(summary: GateSummary, limit: int = SUMMARY_LIMIT) -> str:
    """The ``result.summary`` of ``PutApprovalResult``: at most ``limit`` characters with the
    verdict, the counts, the worst problems (as many as fit) and the report URL.

    The URL is never cut (a cut link is a broken link): the problems are shortened instead. A URL
    that cannot fit whole beside the verdict is left out.
    """
    result = approval_result(summary)
    status = (summary.status or "unknown").upper()
    head = (
        f"{result} by perfsig: {status} in gate {summary.gate_id} on {summary.stage} "
        f"({_format_counts(summary.counts)})."
    )
    problems = [_one_line(p) for p in summary.problems if p and p.strip()]

    url = (summary.report_url or "").strip()
    tail = f" Report: {url}" if url else ""
    if len(f"{result} by perfsig: {status}.") + len(tail) > limit:
        tail = ""
    head = _clip(head, limit - len(tail))
    text = head + _problems_part(problems, limit - len(head) - len(tail)) + tail
    return text if len(text) <= limit else _clip(text, limit)  # (cannot happen; never exceed)


# --------------------------------------------------------------------------- the pipeline


def default_pipeline_name(environ: Mapping[str, str] = os.environ) -> str | None:
    """The pipeline that started this CodeBuild build: ``CODEBUILD_INITIATOR`` is
    ``codepipeline/<name>`` then; ``None`` anywhere else."""
    initiator = (environ.get("CODEBUILD_INITIATOR") or "").strip()
    if not initiator.startswith(_INITIATOR_PREFIX):
        return None
    return initiator[len(_INITIATOR_PREFIX) :].strip() or None


def _call(client: Any, operation: str, method: Callable[..., Any], pipeline: str, **params: Any) -> Any:
    """``method(**params)``, every AWS failure raised as an :class:`ApprovalError`."""
    where = f"for pipeline {pipeline!r} ({region_of(client)})"
    return aws_call(f"codepipeline:{operation}", method, where=where, error=ApprovalError, **params)


def _split_action(action: str) -> tuple[str | None, str]:
    """``"ApproveStaging"`` or ``"Staging/ApproveStaging"`` (for a name used in several stages)."""
    action = action.strip()
    if "/" in action:
        stage, _, name = action.rpartition("/")
        return stage.strip() or None, name.strip()
    return None, action


def _find_approval_stage(
    definition: Mapping[str, Any], pipeline: str, stage_name: str | None, action: str
) -> str:
    stages = (definition.get("pipeline") or {}).get("stages") or []
    approvals: list[str] = []
    matches: list[str] = []
    others: list[str] = []
    for stage in stages:
        for candidate in stage.get("actions") or []:
            category = (candidate.get("actionTypeId") or {}).get("category")
            if category == "Approval":
                approvals.append(f"{stage.get('name')}/{candidate.get('name')}")
            if candidate.get("name") != action or stage_name not in (None, stage.get("name")):
                continue
            if category == "Approval":
                matches.append(str(stage.get("name")))
            else:
                others.append(f"{stage.get('name')}/{action} is a {category} action, not an approval")
    if len(matches) == 1:
        return matches[0]
    wanted = f"{stage_name}/{action}" if stage_name else action
    if matches:
        raise ApprovalError(
            f"pipeline {pipeline!r} has an approval action {action!r} in stages {', '.join(matches)}: "
            f"name it as STAGE/ACTION, e.g. {matches[0]}/{action}"
        )
    message = f"pipeline {pipeline!r} has no approval action {wanted!r}"
    if others:
        message += f" ({'; '.join(others)})"
    if approvals:
        message += f"; its approval actions: {', '.join(approvals)}"
    else:
        message += "; it has no approval actions"
    raise ApprovalError(message)


def _stage_state(state: Mapping[str, Any], stage: str) -> Mapping[str, Any]:
    for stage_state in state.get("stageStates") or []:
        if stage_state.get("stageName") == stage:
            return dict(stage_state)
    return {}


def _latest_execution(stage_state: Mapping[str, Any], action: str) -> Mapping[str, Any] | None:
    for action_state in stage_state.get("actionStates") or []:
        if action_state.get("actionName") == action:
            latest = action_state.get("latestExecution")
            return dict(latest) if latest else None
    return None


def decide_approval(
    client: Any,
    pipeline: str,
    action: str,
    summary: GateSummary,
    *,
    execution_id: str | None = None,
) -> ApprovalOutcome:
    """Approve or reject the manual-approval ``action`` of ``pipeline`` from ``summary``.

    ``client`` is a CodePipeline client (:func:`pytest_perfsig.aws.clients.codepipeline_client`).
    ``action`` is the action's name, or ``STAGE/ACTION`` when several stages use that name.
    With ``execution_id`` (a pipeline execution id), an action waiting for another execution of
    the pipeline is left alone.

    Sends ``PutApprovalResult`` only when the action is ``InProgress`` and has a token; an action
    already decided (by hand) or not started is left alone, and the outcome says so. Raises
    :class:`ApprovalError` when the pipeline or the action does not exist, and on every AWS error.
    """
    if not pipeline or not pipeline.strip():
        raise ApprovalError(
            "no pipeline to approve in: name it with --perfsig-pipeline (inside CodeBuild it defaults "
            "from CODEBUILD_INITIATOR when CodePipeline started the build)"
        )
    stage_name, action_name = _split_action(action)
    if not action_name:
        raise ApprovalError(f"no approval action named for pipeline {pipeline!r}")

    definition = _call(client, "GetPipeline", client.get_pipeline, pipeline, name=pipeline)
    stage = _find_approval_stage(definition, pipeline, stage_name, action_name)
    state = _call(client, "GetPipelineState", client.get_pipeline_state, pipeline, name=pipeline)

    result = approval_result(summary)
    would = f"; the gate's result, not sent: {result}"

    def left_alone(why: str) -> ApprovalOutcome:
        return ApprovalOutcome(pipeline, stage, action_name, None, False, f"left alone: {why}{would}")

    stage_state = _stage_state(state, stage)
    latest = _latest_execution(stage_state, action_name)
    if latest is None:
        return left_alone(
            f"{action_name} in stage {stage} has not started (no execution; it must run beside the "
            "gate, at the gate action's runOrder)"
        )
    status = str(latest.get("status") or "unknown")
    if status != "InProgress":
        by_hand = " (decided by hand?)" if status in ("Succeeded", "Failed") else ""
        return left_alone(f"{action_name} is {status}{by_hand}")
    token = latest.get("token")
    if not token:
        return left_alone(f"{action_name} is InProgress but has no approval token")
    if execution_id:
        running = (stage_state.get("latestExecution") or {}).get("pipelineExecutionId")
        if running and running != execution_id:
            return left_alone(
                f"{action_name} waits for pipeline execution {running}, not {execution_id} (the gate's)"
            )

    _call(
        client,
        "PutApprovalResult",
        client.put_approval_result,
        pipeline,
        pipelineName=pipeline,
        stageName=stage,
        actionName=action_name,
        result={"summary": approval_summary(summary), "status": result},
        token=token,
    )
    return ApprovalOutcome(
        pipeline,
        stage,
        action_name,
        result,
        True,
        f"{result} {action_name} in stage {stage} of pipeline {pipeline} "
        f"(gate {summary.gate_id}: {(summary.status or 'unknown').upper()})",
    )
