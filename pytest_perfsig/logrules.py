"""Log rules: count the stage's log lines that match a rule during the load window.

The log is a file or an http(s) URL; each line starts with an ISO-8601 timestamp and a level
(``2026-11-28T03:54:44.016+00:00 ERROR somebody called /api/causeerror``), the format the
sample app writes. Lines that do not parse are not counted; a log that cannot be read, or
holds no parseable line at all, is an error, never a pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from .errors import SourceError
from .evaluate import Status, Verdict
from .monspec import LOG_LEVELS, LogRule, Monspec
from .sources.base import Window

_LINE_RE = re.compile(r"^(\S+)\s+(DEBUG|INFO|WARN|WARNING|ERROR|SEVERE|CRITICAL|FATAL)\b[:\s]*(.*)$", re.I)
_LEVEL_ALIASES = {"warn": "warning", "severe": "error", "fatal": "critical"}


@dataclass(frozen=True)
class LogCheck:
    """One log rule of one service, judged in the stage under test."""

    check_id: str
    service: str
    env: str
    rule: LogRule
    location: str  # file path or URL


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


def read_log(location: str, timeout_s: float = 10.0) -> Iterator[str]:
    """The lines of a log file or URL; SourceError when it cannot be read."""
    if location.startswith(("http://", "https://")):
        try:
            response = httpx.get(location, timeout=timeout_s)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot read the log {location}: {exc}") from None
        yield from response.text.splitlines()
        return
    try:
        with Path(location).open(encoding="utf-8", errors="replace") as handle:
            yield from handle
    except OSError as exc:
        raise SourceError(f"cannot read the log {location}: {exc.strerror or exc}") from None


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


def _common(check: LogCheck) -> dict[str, Any]:
    rule = check.rule
    return dict(
        metric="log",
        aggregate=rule.level,
        method=None,
        unit="lines",
        source_env=check.env,
        compare_env="",
        rule=f"{rule.level}+ lines matching {rule.pattern!r}: at most {rule.allowedperminute:g}/min",
    )


def not_judged_log(check: LogCheck, reason: str) -> Verdict:
    return Verdict(
        status="error", message=f"{check.rule.level} log {check.rule.label!r}: {reason}", **_common(check)
    )


def judge_log(check: LogCheck, window: Window) -> Verdict:
    rule = check.rule
    allowed = math.floor(rule.allowedperminute * window.duration_s / 60.0)
    common = {**_common(check), "source_window": str(window)}
    label = f"{rule.level} log {rule.label!r}"
    if not check.location:
        return Verdict(
            status="error",
            message=f"{label}: no log for {check.env}: set environments."
            f"{check.env}.log (a file or an http(s) URL)",
            **common,
        )
    try:
        count, parsed = count_matches(read_log(check.location), rule, window)
    except SourceError as exc:
        return Verdict(status="error", message=f"{label}: {exc}", **common)
    if parsed == 0:
        return Verdict(status="error", message=f"{label}: no timestamped line in {check.location}", **common)
    status: Status = "violation" if count > allowed else "pass"
    message = f"{label} seen {count} time{'s' if count != 1 else ''} in {window}, allowed {allowed}"
    return Verdict(
        status=status,
        message=message,
        source_value=float(count),
        limit=float(allowed),
        source_samples=parsed,
        **common,
    )


def plan_log_checks(monspec: Monspec, stage: str) -> list[LogCheck]:
    """One check per log rule of every entity that knows the stage. A stage without a log
    location keeps its checks: they error with the reason instead of vanishing."""
    checks = []
    prefix = len(monspec.entities) > 1
    for service, entity in monspec.entities.items():
        env = entity.environments.get(stage)
        if env is None:
            continue
        location = env.log or ""
        if location and not location.startswith(("http://", "https://")):
            location = str(Path(monspec.path).parent / location)
        for rule in entity.logrules:
            check_id = f"logrules::{service + '::' if prefix else ''}{rule.label}"
            checks.append(LogCheck(check_id, service, stage, rule, location))
    return checks
