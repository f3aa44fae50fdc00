"""THE gate outcome. One function decides it, from the verdicts, what was selected and
judged, and the load and store errors; the plugin, the deferred worker, the approval and the
reports all take the status from here.

Rules, in order:
- ``error`` when the load failed, a verdict or the gate could not be stored, a selected check
  has no verdict, or any verdict is an error;
- else ``violation`` when any verdict is a violation;
- else ``error`` when no verdict passed (everything skipped: nothing was judged);
- else ``pass``.
A gate planned from a Keptn SLO file (``total_score``) is decided Keptn's way once no error is
left: its total score (``judges.keptn.total_score``) gives pass → ``pass``, warning or fail →
``violation``; with no objective scored, the rules above apply.
A gate that judged only some of its planned checks is ``partial``; whether a partial pass may
be approved is the approval's choice, made explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..judges.keptn import total_score as keptn_total_score
from ..monspec import TotalScore
from ..verdict import STATUSES, Verdict

GateStatus = str  # "pass" | "violation" | "error"

_SEVERITY = {"error": 0, "violation": 1}


@dataclass(frozen=True)
class GateOutcome:
    """What a gate found: its status and everything it was decided from."""

    status: GateStatus
    counts: dict[str, int]
    planned: int  # checks the monspec defines for this stage
    selected: int  # checks this run was asked to judge
    judged: int  # checks with a verdict
    # Why the gate did not pass at gate level (load error, incomplete, not stored), then the
    # messages of errors and violations, worst first.
    problems: list[str] = field(default_factory=list)
    # A gate planned from a Keptn SLO file: its total score and result, in Keptn's words.
    total_score: str | None = None

    @property
    def partial(self) -> bool:
        return self.selected < self.planned

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def approval_status(outcome: GateOutcome, *, allow_partial: bool = False) -> str:
    """What an approval follows: the outcome's status, except that a passed gate which judged
    only some of its planned checks is ``partial`` (rejected) unless partial gates may pass."""
    if outcome.passed and outcome.partial and not allow_partial:
        return "partial"
    return outcome.status


def partial_note(outcome: GateOutcome) -> str:
    return (
        f"partial: {outcome.selected} of {outcome.planned} checks selected "
        "(-k, --perfsig-comparison); --perfsig-allow-partial approves a subset"
    )


def count_statuses(statuses: Iterable[str]) -> dict[str, int]:
    """Counts by status, every known status present (zero or not), others after them."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def decide(
    verdicts: Sequence[Verdict],
    *,
    planned: int,
    selected: int,
    gate_problems: Sequence[str] = (),
    total_score: TotalScore | None = None,
) -> GateOutcome:
    """The gate's outcome (see the module docstring for the rules). ``gate_problems`` are the
    gate-level reasons it cannot pass: a load error, checks left unjudged, verdicts not stored.
    ``total_score``: the gate was planned from a Keptn SLO file."""
    statuses = [v.status for v in verdicts]
    counts = count_statuses(statuses)
    keptn = None if total_score is None else keptn_total_score(verdicts, total_score)
    if gate_problems or counts["error"]:
        status = "error"
    elif keptn is not None:
        status = keptn.status
    elif counts["violation"]:
        status = "violation"
    elif not counts["pass"]:
        status = "error"
    else:
        status = "pass"
    messages = [
        v.message for v in sorted(verdicts, key=lambda v: _SEVERITY.get(v.status, 9)) if v.status in _SEVERITY
    ]
    if status == "error" and not gate_problems and not counts["error"]:
        messages.insert(0, "nothing was judged: every selected check was skipped")
    summary = keptn.summary() if keptn is not None and status != "error" else None
    if summary is not None:
        messages.insert(0, summary)
    return GateOutcome(
        status=status,
        counts=counts,
        planned=planned,
        selected=selected,
        judged=len(verdicts),
        problems=[*gate_problems, *messages],
        total_score=summary,
    )
