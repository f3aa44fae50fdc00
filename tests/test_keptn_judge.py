"""The Keptn judge and the Keptn way of deciding a gate: criteria (blocks ORed, criteria ANDed,
relative and fixed), bands, weights, key SLIs, the total score applied by gate.status.decide,
and Keptn's aggregate of earlier results. Numbers worked by hand from keptn/spec's examples."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_perfsig.gate.status import decide
from pytest_perfsig.judges import judge as dispatch
from pytest_perfsig.judges import keptn
from pytest_perfsig.monspec import (
    Comparison,
    Criterion,
    KeptnBaseline,
    KeptnJudge,
    KeptnObjective,
    SignatureEntry,
    TotalScore,
)
from pytest_perfsig.verdict import Subject, Verdict
from pytest_perfsig.windows import EXPRESSION_METRIC, EXPRESSION_VALUE, Measurement, MetricQuery, Window

W = Window(1_700_000_000.0, 1_700_000_030.0)
COMPARISON = Comparison(name="keptn", source="Staging", compare="Staging")


def criterion(text: str) -> Criterion:
    """As monspec/keptn.py parses them (that parser is tested in test_keptn_slo.py)."""
    op = next(o for o in ("<=", ">=", "<", ">", "=") if text.startswith(o))
    rest = text[len(op) :].strip()
    percent = rest.endswith("%")
    sign = rest[0] if rest[0] in "+-" else ""
    number = float(rest.strip("%+-"))
    relative = "percent" if percent else ("absolute" if sign else None)
    return Criterion.model_validate(
        {"text": text, "op": op, "value": number, "relative": relative, "increase": sign != "-"}
    )


def objective(
    sli: str = "response_time_p95",
    passes: list[list[str]] | None = None,
    warning: list[list[str]] | None = None,
    **fields: Any,
) -> KeptnObjective:
    blocks = {
        "pass": tuple(tuple(criterion(c) for c in block) for block in (passes or [])),
        "warning": tuple(tuple(criterion(c) for c in block) for block in (warning or [])),
    }
    judge_config = KeptnJudge.model_validate({**blocks, **fields})
    return KeptnObjective.model_validate({"sli": sli, "promql": "up", "judge": judge_config})


def measured(value: float) -> Measurement:
    query = MetricQuery("carts", "Staging", None, EXPRESSION_METRIC, EXPRESSION_VALUE, W, expression="up")
    return Measurement(query, value, 1)


def judged(entry: KeptnObjective, value: float, baseline: float | None = None) -> Verdict:
    subject = Subject(entry, COMPARISON, None, "", None, 0.0)
    return dispatch(subject, measured(value), None if baseline is None else measured(baseline))


# Keptn's example objective: pass if at most 10 % above the previous result and below 600,
# warning up to 800.
EXAMPLE = {"passes": [["<=+10%", "<600"]], "warning": [["<=800"]]}


def test_keptn_spec_example_previous_5_percent_passes_up_to_5_5() -> None:
    entry = objective("error_rate", [["<=+10%"]])
    assert judged(entry, 5.5, baseline=5.0).status == "pass"
    failed = judged(entry, 5.6, baseline=5.0)
    assert failed.status == "violation" and failed.details is not None
    assert failed.details["band"] == "fail" and failed.details["score"] == 0.0
    assert failed.message == "error_rate: Staging 5.6 → fail (pass: <=+10% (5.5) not met); score 0 of 1"


def test_pass_warning_and_fail_bands_with_their_scores() -> None:
    entry = objective(**EXAMPLE, weight=2)
    passed = judged(entry, 540, baseline=500)  # ≤ 550 and < 600
    assert (passed.status, passed.judge, passed.metric, passed.aggregate) == (
        "pass",
        "keptn",
        "response_time_p95",
        "value",
    )
    assert passed.details == {
        "band": "pass",
        "weight": 2,
        "score": 2.0,
        "key_sli": False,
        "criteria": "pass: <=+10% (550) met and <600 met",
    }
    assert passed.rule == "pass: <=+10% and <600 | warning: <=800 (weight 2)"
    assert (passed.source_value, passed.compare_value, passed.limit) == (540, 500, None)

    warned = judged(entry, 560, baseline=500)  # above 550: no pass; ≤ 800: warning
    assert warned.status == "violation" and warned.details is not None
    assert (warned.details["band"], warned.details["score"]) == ("warning", 1.0)
    assert warned.message == (
        "response_time_p95: Staging 560 → warning (pass: <=+10% (550) not met and <600 met; warning: "
        "<=800 met); score 1 of 2; Keptn's default approval strategy does not approve a warning automatically"
    )
    failed = judged(entry, 900, baseline=500)
    assert failed.details is not None and (failed.details["band"], failed.details["score"]) == ("fail", 0.0)


def test_blocks_are_ored_and_criteria_anded() -> None:
    entry = objective("error_rate", [["<=1"], ["<=+0.5", ">=-5%"]])
    assert judged(entry, 1.2, baseline=1.0).status == "pass"  # second block: ≤ 1.5 and ≥ 0.95
    assert judged(entry, 0.9, baseline=1.0).status == "pass"  # first block
    assert judged(entry, 1.6, baseline=1.0).status == "violation"  # neither
    assert judged(entry, 1.2, baseline=1.3).status == "violation"  # 1.2 < 1.235: below −5 %


@pytest.mark.parametrize(
    ("text", "baseline", "target"),
    [
        ("<=+10%", 200.0, 220.0),
        ("<-10%", 200.0, 180.0),
        ("<=+50", 100.0, 150.0),
        (">=-5", 100.0, 95.0),
        ("<600", None, 600.0),
        ("=0", None, 0.0),
        ("<=10%", 200.0, 220.0),
    ],
)
def test_targets_as_keptn_computes_them(text: str, baseline: float | None, target: float) -> None:
    assert criterion(text).target(baseline) == pytest.approx(target)


def test_operators() -> None:
    assert [criterion(f"{op}5").met(5.0, 5.0) for op in ("<", "<=", "=", ">=", ">")] == [
        False,
        True,
        True,
        True,
        False,
    ]


def test_without_a_baseline_a_relative_criterion_is_unknown_never_met() -> None:
    entry = objective(**EXAMPLE)
    undecided = judged(entry, 500)  # < 600, but is it within 10 % of the previous result?
    assert undecided.status == "error" and undecided.details is not None
    assert undecided.details["band"] == "undecided"
    assert undecided.message == (
        "response_time_p95: Staging 500: cannot tell its band without a comparison value "
        "(pass: <=+10% unknown (no comparison value) and <600 met)"
    )
    # The fixed criteria decide when they can: not < 600, so no pass whatever the baseline.
    assert judged(entry, 700).details == {
        "band": "warning",
        "weight": 1,
        "score": 0.5,
        "key_sli": False,
        "criteria": "pass: <=+10% unknown (no comparison value) and <600 not met; warning: <=800 met",
    }
    assert judged(objective("e", [["<=1"], ["<=+10%"]]), 0.5).status == "pass"  # the first block is met
    assert judged(objective("e", [["<=+10%"]], [["<=5"]]), 9).status == "error"  # warning or fail?


def test_an_objective_without_pass_criteria_is_informational() -> None:
    info = judged(objective("throughput"), 812.5)
    assert info.status == "skipped"
    assert info.details == {"band": "info", "weight": 1, "key_sli": False, "criteria": "none"}
    assert info.message == "throughput: Staging 812 (informational: no pass criteria)"
    assert info.rule == "informational (weight 1)"


def test_key_sli_failure_is_said() -> None:
    failed = judged(objective("error_rate", [["<=1"]], key_sli=True), 12.0)
    assert failed.message.endswith("score 0 of 1; key SLI: the gate fails")
    assert failed.rule == "pass: <=1 (weight 1, key SLI)"


def test_the_judge_refuses_what_is_not_an_objective() -> None:
    entry = SignatureEntry.model_validate({"timeseries": "service.responsetime"})
    subject = Subject(entry, COMPARISON, None, "ms", None, 0.0)
    verdict = keptn.judge(subject, measured(1.0), None)
    assert verdict.status == "error" and "judges the objectives of a Keptn SLO file" in verdict.message


def test_a_monspec_cannot_name_the_keptn_judge() -> None:
    with pytest.raises(ValueError, match=r"'keptn' judges the objectives of a Keptn slo\.yaml"):
        SignatureEntry.model_validate({"timeseries": "service.responsetime", "judge": "keptn"})


# ---------------------------------------------------------------------------- the total score


SCORE = TotalScore.model_validate({"pass": 90.0, "warning": 75.0})


def verdicts(*bands: tuple[str, str, float, int, bool]) -> list[Verdict]:
    """(sli, band, value, weight, key_sli) → verdicts as the judge makes them."""
    found = []
    for sli, band, value, weight, key in bands:
        passes, warning = [["<=10"]], [["<=20"]]
        entry = objective(sli, passes, warning, weight=weight, key_sli=key)
        verdict = judged(entry, value)
        assert verdict.details is not None and verdict.details["band"] == band
        found.append(verdict)
    return found


def test_total_score_pass_warning_and_fail() -> None:
    ok = verdicts(("a", "pass", 1, 2, False), ("b", "pass", 1, 1, False), ("c", "pass", 1, 1, False))
    evaluation = keptn.total_score(ok, SCORE)
    assert evaluation is not None and (evaluation.result, evaluation.percent) == ("pass", 100.0)
    # 2 + 0.5 + 1 of 4 = 87.5 %: a warning.
    some = verdicts(("a", "pass", 1, 2, False), ("b", "warning", 15, 1, False), ("c", "pass", 1, 1, False))
    evaluation = keptn.total_score(some, SCORE)
    assert evaluation is not None and (evaluation.result, evaluation.achieved, evaluation.maximum) == (
        "warning",
        3.5,
        4.0,
    )
    assert evaluation.summary() == (
        "Keptn total score 87.5 % (3.5 of 4): warning (pass needs 90 %, warning 75 %); Keptn's default "
        "approval strategy does not approve a warning automatically: not approved"
    )
    # 9 of 10 passes despite one failure.
    many = verdicts(*[(f"s{i}", "pass", 1, 1, False) for i in range(9)], ("x", "fail", 99, 1, False))
    evaluation = keptn.total_score(many, SCORE)
    assert evaluation is not None and (evaluation.result, evaluation.percent) == ("pass", 90.0)
    low = verdicts(("a", "fail", 99, 1, False), ("b", "pass", 1, 1, False))
    evaluation = keptn.total_score(low, SCORE)
    assert evaluation is not None and evaluation.result == "fail"


def test_a_failed_key_sli_fails_whatever_the_score() -> None:
    found = verdicts(*[(f"s{i}", "pass", 1, 1, False) for i in range(19)], ("errors", "fail", 99, 1, True))
    evaluation = keptn.total_score(found, SCORE)
    assert evaluation is not None and evaluation.result == "fail" and evaluation.percent == 95.0
    assert evaluation.key_failed == ("errors",)
    assert evaluation.summary().endswith("; key SLI failed: errors")
    # A key SLI in its warning band has not failed.
    warned = verdicts(("errors", "warning", 15, 1, True), *[(f"s{i}", "pass", 1, 1, False) for i in range(9)])
    evaluation = keptn.total_score(warned, SCORE)
    assert evaluation is not None and evaluation.result == "pass"


def test_decide_applies_the_total_score_to_a_keptn_gate() -> None:
    many = verdicts(*[(f"s{i}", "pass", 1, 1, False) for i in range(9)], ("x", "fail", 99, 1, False))
    # The plain rule would reject this gate (a violation); Keptn's score passes it.
    assert decide(many, planned=10, selected=10).status == "violation"
    outcome = decide(many, planned=10, selected=10, total_score=SCORE)
    assert outcome.status == "pass" and outcome.counts["violation"] == 1
    assert outcome.problems[0] == "Keptn total score 90.0 % (9 of 10): pass (pass needs 90 %, warning 75 %)"
    assert outcome.total_score == outcome.problems[0]

    some = verdicts(("a", "pass", 1, 2, False), ("b", "warning", 15, 1, False), ("c", "pass", 1, 1, False))
    warned = decide(some, planned=3, selected=3, total_score=SCORE)
    assert warned.status == "violation" and "not approved" in warned.problems[0]
    assert warned.problems[1].startswith("b: Staging 15 → warning")

    keyed = verdicts(("a", "pass", 1, 5, False), ("errors", "fail", 99, 1, True))
    assert decide(keyed, planned=2, selected=2, total_score=SCORE).status == "violation"


def test_an_unmeasured_objective_makes_a_keptn_gate_an_error() -> None:
    fine = verdicts(*[(f"s{i}", "pass", 1, 1, False) for i in range(19)])
    undecided = judged(objective("rt", **EXAMPLE), 500)  # no baseline for <=+10%
    outcome = decide([*fine, undecided], planned=20, selected=20, total_score=SCORE)
    assert outcome.status == "error" and outcome.problems[0].startswith("rt: Staging 500: cannot tell")
    assert outcome.total_score is None  # no score is shown for a gate that could not be judged
    loaded = decide(fine, planned=19, selected=19, gate_problems=["load failed"], total_score=SCORE)
    assert loaded.status == "error"


def test_a_keptn_gate_of_informational_objectives_judged_nothing() -> None:
    info = [judged(objective("throughput"), 10.0)]
    outcome = decide(info, planned=1, selected=1, total_score=SCORE)
    assert outcome.status == "error" and outcome.problems == [
        "nothing was judged: every selected check was skipped"
    ]


# ---------------------------------------------------------------------------- earlier results


@pytest.mark.parametrize(
    ("function", "values", "expected"),
    [
        ("avg", [1.0, 2.0, 6.0], 3.0),
        ("p50", [3.0, 1.0, 2.0], 2.0),
        ("p50", [1.0, 2.0, 3.0, 4.0], 2.5),
        ("p90", [1.0, 2.0, 3.0], 3.0),  # (n + 1) × 0.9 = 3.6 ≥ n: the largest
        ("p90", [float(v) for v in range(1, 11)], 9.9),  # 9.9: 9 + 0.9 × (10 − 9)
        ("p95", [5.0], 5.0),
    ],
)
def test_earlier_results_are_combined_as_keptn_does(
    function: str, values: list[float], expected: float
) -> None:
    baseline = KeptnBaseline.model_validate({"runs": len(values), "function": function})
    assert baseline.combine(values) == pytest.approx(expected)
    assert baseline.label == function
