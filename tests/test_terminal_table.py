"""The verdict table fits the terminal: one line per verdict at any width, numbers whole."""

from __future__ import annotations

import pytest

from pytest_perfsig.report.terminal import Row, render_table

ROWS = [
    Row(
        "pass",
        "StagingToProduction::service.responsetime[p90]",
        "13.1 ms",
        "14.4 ms",
        "20.7 ms",
        "upper: Production × 1.30 + 2 ms abs",
    ),
    Row(
        "violation",
        "StagingToProduction::/api/invoke::servicemethod.failurerate[avg]",
        "48.9 %",
        "0.0 %",
        "0.5 %",
        "upper: Production × 1.30 + 0.5 % abs",
    ),
    Row(
        "error",
        "StagingToStagingLastHour::/api/invoke::servicemethod.responsetime[p90]",
        "n/a",
        "n/a",
        "n/a",
        "no data for Staging /api/invoke in 2026-11-28 03:56:11–03:56:19 UTC",
    ),
]


@pytest.mark.parametrize("width", [80, 100, 120, 200])
def test_every_line_fits_and_every_verdict_keeps_its_numbers(width: int) -> None:
    lines = render_table(ROWS, width=width)
    assert all(len(line) <= width for line, _ in lines), "\n".join(line for line, _ in lines)
    verdict_lines = [line for line, status in lines if status]
    assert [status for _, status in lines if status] == ["pass", "violation", "error"]
    for line, row in zip(verdict_lines, ROWS, strict=True):
        for number in (row.source, row.baseline, row.limit):
            assert number in line
        assert line.startswith(row.status.upper())


def test_wide_terminal_shows_whole_names_and_rules() -> None:
    lines = [line for line, _ in render_table(ROWS, width=200)]
    assert lines[0].split() == ["status", "check", "source", "baseline", "limit", "rule"]
    assert "StagingToProduction::/api/invoke::servicemethod.failurerate[avg]" in lines[2]
    assert lines[2].endswith("upper: Production × 1.30 + 0.5 % abs")


def test_at_80_columns_checks_group_under_their_comparison() -> None:
    lines = render_table(ROWS, width=80)
    texts = [line for line, _ in lines]
    assert ("StagingToProduction:", None) in lines and ("StagingToStagingLastHour:", None) in lines
    assert ["VIOLATION", "/api/invoke", "failurerate[avg]", "48.9", "%"] in [t.split()[:5] for t in texts]
    assert not any("StagingToProduction::" in t for t in texts)


def test_very_narrow_terminal_cuts_the_middle_of_names_and_drops_the_rule() -> None:
    lines = [line for line, status in render_table(ROWS, width=60) if status]
    assert all(len(line) <= 60 for line in lines)
    assert any("…" in line and "[avg]" in line for line in lines)  # the metric end of the name stays
    assert not any("upper:" in line for line in lines)
