"""The verdict table at the end of a gate, sized to the terminal: one line per verdict, the
numbers always whole. When the terminal is narrow the checks are grouped under their
comparison (and shortened: ``/api/invoke failurerate[avg]``), the rule is cut (or left out:
each failure's message has it), and last the middle of a long check name gives way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..verdict import STATUSES, Verdict, fmt

STATUS_LABEL: dict[str, str] = {status: status.upper() for status in STATUSES}
STATUS_MARKUP = {
    "pass": {"green": True},
    "violation": {"red": True, "bold": True},
    "error": {"red": True, "bold": True},
    "skipped": {"yellow": True},
}
HEADERS = ("status", "check", "source", "baseline", "limit", "rule")
GAP = "  "
MIN_RULE = 16  # narrower than this, the rule column is left out (each failure's message has it)
ELLIPSIS = "…"


@dataclass(frozen=True)
class Row:
    status: str
    check: str
    source: str
    baseline: str
    limit: str
    rule: str

    @property
    def cells(self) -> tuple[str, ...]:
        return (STATUS_LABEL[self.status], self.check, self.source, self.baseline, self.limit, self.rule)


def verdict_rows(verdicts: Iterable[tuple[str, Verdict]]) -> list[Row]:
    return [
        Row(
            verdict.status,
            check_id,
            fmt(verdict.source_value, verdict.unit),
            fmt(verdict.compare_value, verdict.unit),
            fmt(verdict.limit, verdict.unit),
            verdict.rule or (verdict.message.split(": ", 1)[-1] if verdict.status != "pass" else ""),
        )
        for check_id, verdict in verdicts
    ]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


def _elide_middle(text: str, width: int) -> str:
    """Keep both ends of a check name (its comparison and its metric), drop the middle."""
    if len(text) <= width:
        return text
    tail = (width - 1) * 2 // 3
    return text[: width - 1 - tail] + ELLIPSIS + text[len(text) - tail :]


def render_table(rows: Sequence[Row], width: int = 200) -> list[tuple[str, str | None]]:
    """(line, status of the verdict on it or None for headings) for a terminal ``width`` wide."""
    table: list[tuple[tuple[str, ...], str | None]] = [(r.cells, r.status) for r in rows]
    fixed = [max([len(HEADERS[i])] + [len(cells[i]) for cells, _ in table]) for i in (0, 2, 3, 4)]
    numbers_width = sum(fixed) + len(GAP) * 4  # status, source, baseline, limit and their gaps
    grouped = False
    check_width = max([len(HEADERS[1])] + [len(cells[1]) for cells, _ in table])
    if numbers_width + check_width + len(GAP) + MIN_RULE > width:
        grouped = _groupable(rows)
        if grouped:
            table = [((c[0], _short(c[1].split("::", 1)[1]), *c[2:]), s) for c, s in table]
            check_width = max([len(HEADERS[1])] + [len(cells[1]) for cells, _ in table])
    # The check's name comes before the rule (each failure's message repeats the rule).
    check_width = max(len(HEADERS[1]), min(check_width, width - numbers_width))
    rule_width = width - numbers_width - check_width - len(GAP)
    show_rule = rule_width >= MIN_RULE
    widths = [fixed[0], check_width, fixed[1], fixed[2], fixed[3]]

    def line(cells: Sequence[str]) -> str:
        status, check, source, baseline, limit = cells[:5]
        parts = [
            status.ljust(widths[0]),
            _elide_middle(check, widths[1]).ljust(widths[1]),
            source.rjust(widths[2]),
            baseline.rjust(widths[3]),
            limit.rjust(widths[4]),
        ]
        if show_rule:
            parts.append(_clip(cells[5], rule_width))
        return GAP.join(parts).rstrip()

    lines: list[tuple[str, str | None]] = [(line(HEADERS), None)]
    current = None
    for (cells, status), row in zip(table, rows, strict=True):
        if grouped and (comparison := row.check.split("::", 1)[0]) != current:
            current = comparison
            lines.append((f"{comparison}:", None))
        lines.append((line(cells), status))
    return lines


def _short(check: str) -> str:
    """A check's name under its comparison heading, without what the layout already says:
    ``/api/invoke::servicemethod.failurerate[avg]`` → ``/api/invoke failurerate[avg]``."""
    method, _, metric = check.rpartition("::")
    metric = metric.removeprefix("servicemethod.").removeprefix("service.")
    return f"{method} {metric}" if method else metric


def _groupable(rows: Sequence[Row]) -> bool:
    return bool(rows) and all("::" in r.check for r in rows)
