"""The end-of-session verdict table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..verdict import STATUSES, Verdict, fmt

STATUS_LABEL = {status: status.upper() for status in STATUSES}
STATUS_MARKUP = {
    "pass": {"green": True},
    "violation": {"red": True, "bold": True},
    "error": {"red": True, "bold": True},
    "skipped": {"yellow": True},
}
HEADERS = ("status", "check", "source", "baseline", "limit", "rule")


def verdict_rows(verdicts: Iterable[tuple[str, Verdict]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for check_id, verdict in verdicts:
        rows.append(
            (
                STATUS_LABEL[verdict.status],
                check_id,
                fmt(verdict.source_value, verdict.unit),
                fmt(verdict.compare_value, verdict.unit),
                fmt(verdict.limit, verdict.unit),
                verdict.rule or (verdict.message.split(": ", 1)[-1] if verdict.status != "pass" else ""),
            )
        )
    return rows


def render_table(rows: Sequence[tuple[str, ...]], max_rule: int = 70) -> list[str]:
    """Aligned columns; the last column is cut so that one row stays one line."""
    clipped = [
        (*row[:-1], row[-1] if len(row[-1]) <= max_rule else row[-1][: max_rule - 1] + "…") for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in clipped)) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) if i < 5 else c
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in clipped
    ]
    return lines
