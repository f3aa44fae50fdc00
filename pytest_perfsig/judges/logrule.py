"""The log-rule judge: count the stage's log lines that match a rule during the load window.

Each line starts with an ISO-8601 timestamp and a level (``2026-11-28T03:54:44.016+00:00 ERROR
somebody called /api/causeerror``), the format the sample app writes. Lines that do not parse
are not counted; a log that cannot be read, or holds no parseable line at all, is an error,
never a pass. Pure: the lines come from ``sources.logs``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import SourceError
from ..monspec import LOG_LEVELS, LogRule
from ..verdict import Status, Verdict
from ..windows import Window

NAME = "logrule"
_LINE_RE = re.compile(r"^(\S+)\s+(DEBUG|INFO|WARN|WARNING|ERROR|SEVERE|CRITICAL|FATAL)\b[:\s]*(.*)$", re.I)
_LEVEL_ALIASES = {"warn": "warning", "severe": "error", "fatal": "critical"}


@dataclass(frozen=True)
class LogLine:
    ts: float
    level: str
    message: str


def parse_line(line: str) -> LogLine | None:
    match = _LINE_RE.match(line.strip())
    if not match:
        return None
    stamp, level, message = match.groups()
    try:
        ts = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    level = level.lower()
    return LogLine(ts, _LEVEL_ALIASES.get(level, level), message)


def count_matches(lines: Iterable[str], rule: LogRule, window: Window) -> tuple[int, int]:
    """(matching lines in the window at or above the rule's level, parseable lines seen)."""
    pattern = re.compile(rule.pattern)
    lowest = LOG_LEVELS.index(rule.level)
    matches = parsed = 0
    for raw in lines:
        line = parse_line(raw)
        if line is None:
            continue
        parsed += 1
        if (
            window.start <= line.ts <= window.end
            and line.level in LOG_LEVELS
            and LOG_LEVELS.index(line.level) >= lowest
            and pattern.search(line.message)
        ):
            matches += 1
    return matches, parsed


def _common(rule: LogRule, env: str) -> dict[str, Any]:
    return dict(
        metric="log",
        aggregate=rule.level,
        method=None,
        unit="lines",
        source_env=env,
        compare_env="",
        comparison="logrules",
        judge=NAME,
        rule=f"{rule.level}+ lines matching {rule.pattern!r}: at most {rule.allowedperminute:g}/min",
    )


def label(rule: LogRule) -> str:
    return f"{rule.level} log {rule.label!r}"


def not_judged_log(rule: LogRule, env: str, reason: str) -> Verdict:
    return Verdict(status="error", message=f"{label(rule)}: {reason}", **_common(rule, env))  # decision


def judge_log(rule: LogRule, env: str, location: str, window: Window, lines: Iterable[str]) -> Verdict:
    """Judge a rule over the lines of ``location`` (read lazily: a SourceError while reading
    makes the verdict an error; without a location the lines are never read)."""
    allowed = math.floor(rule.allowedperminute * window.duration_s / 60.0)  # decision
    common = {**_common(rule, env), "source_window": window}
    if not location:
        return Verdict(
            status="error",  # decision
            message=f"{label(rule)}: no log for {env}: set environments.{env}.log (a file or an http(s) URL)",
            **common,
        )
    try:
        count, parsed = count_matches(lines, rule, window)
    except SourceError as exc:
        return Verdict(status="error", message=f"{label(rule)}: {exc}", **common)  # decision
    if parsed == 0:
        return Verdict(
            status="error",  # decision
            message=f"{label(rule)}: no timestamped line in {location}",
            **common,
        )
    status: Status = "violation" if count > allowed else "pass"  # decision
    message = f"{label(rule)} seen {count} time{'s' if count != 1 else ''} in {window}, allowed {allowed}"
    return Verdict(
        status=status,
        message=message,
        source_value=float(count),
        limit=float(allowed),
        source_samples=parsed,
        **common,
    )
