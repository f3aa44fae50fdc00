"""The log-rule judge on lines given directly (no file, no server): its allowance, its
statuses and every field of its verdicts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pytest_perfsig.errors import SourceError
from pytest_perfsig.judges.logrule import count_matches, judge_log, not_judged_log
from pytest_perfsig.monspec import LogRule
from pytest_perfsig.verdict import Verdict
from pytest_perfsig.windows import Window

T0 = 1_800_000_000.0
WINDOW = Window(T0, T0 + 90)  # 90 s


def line(offset: float, text: str = "ERROR boom") -> str:
    return f"{datetime.fromtimestamp(T0 + offset, UTC).isoformat()} {text}"


def rule(**fields: object) -> LogRule:
    return LogRule.model_validate({"pattern": "boom", **fields})


def fields(verdict: Verdict) -> tuple[object, ...]:
    return (
        verdict.metric,
        verdict.aggregate,
        verdict.method,
        verdict.unit,
        verdict.source_env,
        verdict.compare_env,
        verdict.comparison,
        verdict.judge,
        verdict.rule,
    )


def expected_fields(level: str = "error", per_minute: str = "2") -> tuple[object, ...]:
    rule_text = f"{level}+ lines matching 'boom': at most {per_minute}/min"
    return ("log", level, None, "lines", "Staging", "", "logrules", "logrule", rule_text)


def test_allowance_is_the_rate_over_the_window_rounded_down() -> None:
    # 2 per minute over 90 s: 3 lines allowed.
    three = [line(i) for i in (1, 2, 3)]
    verdict = judge_log(
        rule(allowedperminute=2), "Staging", "app.log", WINDOW, [*three, line(4, "INFO other")]
    )
    assert verdict.status == "pass"
    assert (verdict.source_value, verdict.limit, verdict.source_samples) == (3.0, 3.0, 4)
    assert verdict.source_window == WINDOW
    assert fields(verdict) == expected_fields()
    assert verdict.message == f"error log 'boom' seen 3 times in {WINDOW}, allowed 3"

    four = judge_log(rule(allowedperminute=2), "Staging", "app.log", WINDOW, [*three, line(5)])
    assert four.status == "violation" and four.source_value == 4.0 and four.limit == 3.0


def test_fractional_allowance_rounds_down() -> None:
    # 1.5 per minute over 90 s is 2.25: 2 allowed.
    verdict = judge_log(rule(allowedperminute=1.5), "Staging", "app.log", WINDOW, [line(1), line(2), line(3)])
    assert (verdict.status, verdict.limit) == ("violation", 2.0)
    assert verdict.rule == "error+ lines matching 'boom': at most 1.5/min"


def test_one_line_is_one_time() -> None:
    verdict = judge_log(rule(allowedperminute=1), "Staging", "app.log", WINDOW, [line(1)])
    assert verdict.status == "pass"
    assert verdict.message == f"error log 'boom' seen 1 time in {WINDOW}, allowed 1"


def test_no_line_is_zero_times() -> None:
    verdict = judge_log(rule(), "Staging", "app.log", WINDOW, [line(1, "ERROR other")])
    assert verdict.status == "pass"
    assert verdict.message == f"error log 'boom' seen 0 times in {WINDOW}, allowed 0"


def test_window_edges_count() -> None:
    lines = [line(0), line(90), line(-0.5), line(90.5)]
    assert count_matches(lines, rule(), WINDOW) == (2, 4)


def test_no_location_is_an_error() -> None:
    verdict = judge_log(rule(), "Staging", "", WINDOW, [line(1)])
    assert verdict.status == "error"
    assert verdict.source_window == WINDOW
    assert fields(verdict) == expected_fields(per_minute="0")


def test_unreadable_log_is_an_error() -> None:
    def failing() -> Iterator[str]:
        yield line(1)
        raise SourceError("cannot read the log app.log: gone")

    verdict = judge_log(rule(), "Staging", "app.log", WINDOW, failing())
    assert verdict.status == "error"
    assert verdict.message == "error log 'boom': cannot read the log app.log: gone"
    assert fields(verdict) == expected_fields(per_minute="0")


def test_log_without_timestamps_is_an_error_never_a_pass() -> None:
    verdict = judge_log(rule(), "Staging", "app.log", WINDOW, ["boom", "ERROR boom"])
    assert verdict.status == "error"
    assert verdict.message == "error log 'boom': no timestamped line in app.log"


def test_not_judged_log() -> None:
    verdict = not_judged_log(rule(name="Errors", level="warning"), "Staging", "log source down")
    assert verdict.status == "error"
    assert verdict.message == "warning log 'Errors': log source down"
    assert fields(verdict) == expected_fields(level="warning", per_minute="0")


@pytest.mark.parametrize("level", ["warning", "critical"])
def test_levels_at_or_above_the_rule_count(level: str) -> None:
    lines = [line(1, "WARNING boom"), line(2, "ERROR boom"), line(3, "CRITICAL boom")]
    expected = {"warning": 3, "critical": 1}[level]
    assert count_matches(lines, rule(level=level), WINDOW) == (expected, 3)
