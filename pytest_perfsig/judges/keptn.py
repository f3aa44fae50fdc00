"""The Keptn judge: an objective's SLI value against its pass and warning criteria, and the total
score that gives a Keptn gate its outcome. Pure.

As Keptn's lighthouse evaluates them:
- a criteria block is met when all its criteria are (AND); ``pass`` / ``warning`` are met when
  one of their blocks is (OR);
- an objective is ``pass`` when its pass criteria are met, else ``warning`` when its warning
  criteria are, else ``fail``; without pass criteria it is informational (measured, not scored);
- it scores its weight on pass, half of it on warning, 0 on fail; the gate passes when the total
  reaches ``total_score.pass`` percent of the weights and no key SLI failed, is a warning when it
  reaches ``total_score.warning`` and no key SLI failed, and fails otherwise.

One difference, on purpose: Keptn counts a relative criterion (``<=+10%``) as met when there is
no earlier result to compare with. Here it is unknown: an objective whose band depends on it is
an error, never a pass; one whose band the other criteria decide is judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..monspec.keptn_models import CriteriaBlocks, Criterion, KeptnJudge, KeptnObjective, TotalScore
from ..verdict import Status, Subject, Verdict, fmt, measured_fields, not_judged, subject_fields
from ..windows import Measurement

NAME = "keptn"
BANDS: dict[str, Status] = {"pass": "pass", "warning": "violation", "fail": "violation", "info": "skipped"}
WARNING_NOTE = "Keptn's default approval strategy does not approve a warning automatically"


@dataclass(frozen=True)
class Checked:
    """One criterion evaluated: its target (None: relative, no comparison value) and whether
    the value meets it (None: unknown)."""

    criterion: Criterion
    target: float | None
    met: bool | None

    def __str__(self) -> str:
        text = self.criterion.text
        if self.target is None:
            return f"{text} unknown (no comparison value)"
        target = f" ({fmt(self.target)})" if self.criterion.relative else ""
        return f"{text}{target} {'met' if self.met else 'not met'}"


def check(criterion: Criterion, value: float, baseline: float | None) -> Checked:
    target = criterion.target(baseline)
    return Checked(criterion, target, None if target is None else criterion.met(value, target))


def evaluate(blocks: CriteriaBlocks, value: float, baseline: float | None) -> tuple[bool | None, str]:
    """Whether ORed blocks of ANDed criteria are met (None: it depends on an unknown
    criterion), and what was evaluated."""
    results: list[bool | None] = []
    texts = []
    for block in blocks:
        checked = [check(c, value, baseline) for c in block]
        met = [c.met for c in checked]
        results.append(False if False in met else (None if None in met else True))
        texts.append(" and ".join(str(c) for c in checked))
    met_any = True if True in results else (None if None in results else False)
    return met_any, " or ".join(texts)


def rule_text(config: KeptnJudge) -> str:
    """The criteria as Keptn writes them: ``pass: <=+10% and <600 | warning: <=800``."""
    parts = [
        f"{name}: " + " or ".join(" and ".join(c.text for c in block) for block in blocks)
        for name, blocks in (("pass", config.pass_), ("warning", config.warning))
        if blocks
    ]
    extras = [f"weight {config.weight}"] + (["key SLI"] if config.key_sli else [])
    return " | ".join(parts or ["informational"]) + f" ({', '.join(extras)})"


def judge(subject: Subject, source: Measurement, compare: Measurement | None) -> Verdict:
    """An objective's band, status and score (details: band, weight, score, key_sli, criteria)."""
    config, entry = subject.config, subject.entry
    if not isinstance(config, KeptnJudge) or not isinstance(entry, KeptnObjective):
        return not_judged(subject, "error", "the keptn judge judges the objectives of a Keptn SLO file")
    value, baseline = source.value, compare.value if compare is not None else None
    name = entry.display_name or entry.sli
    where = f"{name}: {subject.comparison.source} {fmt(value)}"
    # JUnit properties and the reports show these; "score" only where there is one.
    details: dict[str, object] = {"band": "info", "weight": config.weight, "key_sli": config.key_sli}
    common = {
        **subject_fields(subject),
        **measured_fields(source, compare),
        "judge": NAME,
        "rule": rule_text(config),
    }
    if not config.pass_:
        details["criteria"] = "none"
        return Verdict(
            status="skipped", message=f"{where} (informational: no pass criteria)", details=details, **common
        )
    passed, evaluated = evaluate(config.pass_, value, baseline)
    band: str | None = "pass" if passed else None
    text = f"pass: {evaluated}"
    if passed is False:
        warned, warning_text = evaluate(config.warning, value, baseline) if config.warning else (False, "")
        band = "warning" if warned else (None if warned is None else "fail")
        text += f"; warning: {warning_text}" if warning_text else ""
    details["criteria"] = text
    if band is None:
        details["band"] = "undecided"
        return Verdict(
            status="error",
            message=f"{where}: cannot tell its band without a comparison value ({text})",
            details=details,
            **common,
        )
    score = {"pass": 1.0, "warning": 0.5, "fail": 0.0}[band] * config.weight
    details.update(band=band, score=score)
    notes = [f"score {score:g} of {config.weight}"]
    if band == "fail" and config.key_sli:
        notes.append("key SLI: the gate fails")
    if band == "warning":
        notes.append(WARNING_NOTE)
    message = f"{where} → {band} ({text}); {'; '.join(notes)}"
    return Verdict(status=BANDS[band], message=message, details=details, **common)


@dataclass(frozen=True)
class Evaluation:
    """A Keptn gate's result from its objectives' scores."""

    result: str  # "pass", "warning" or "fail", Keptn's words
    achieved: float
    maximum: float
    key_failed: tuple[str, ...]
    threshold: TotalScore

    @property
    def percent(self) -> float:
        return 100.0 * self.achieved / self.maximum

    @property
    def status(self) -> str:
        """In the gate's vocabulary: only a pass passes (a warning waits for a person in Keptn)."""
        return "pass" if self.result == "pass" else "violation"

    def summary(self) -> str:
        warning = "" if self.threshold.warning is None else f", warning {self.threshold.warning:g} %"
        text = (
            f"Keptn total score {self.percent:.1f} % ({self.achieved:g} of {self.maximum:g}): "
            f"{self.result} (pass needs {self.threshold.pass_:g} %{warning})"
        )
        if self.key_failed:
            text += f"; key SLI failed: {', '.join(self.key_failed)}"
        if self.result == "warning":
            text += f"; {WARNING_NOTE}: not approved"
        return text


def total_score(verdicts: Sequence[Verdict], threshold: TotalScore) -> Evaluation | None:
    """Keptn's total score over the scored objectives; None when none was scored (only
    informational or skipped objectives: nothing to decide on)."""
    scored = [
        v
        for v in verdicts
        if v.judge == NAME and v.details and v.details.get("band") in ("pass", "warning", "fail")
    ]
    maximum = float(sum(int(v.details["weight"]) for v in scored if v.details))
    if not maximum:
        return None
    achieved = sum(float(v.details["score"]) for v in scored if v.details)
    key_failed = tuple(
        v.metric for v in scored if v.details and v.details["band"] == "fail" and v.details["key_sli"]
    )
    percent = 100.0 * achieved / maximum
    if percent >= threshold.pass_ and not key_failed:
        result = "pass"
    elif threshold.warning is not None and not key_failed and percent >= threshold.warning:
        result = "warning"
    else:
        result = "fail"
    return Evaluation(result, achieved, maximum, key_failed, threshold)
