"""Whether an environment stayed healthy through its own load window. Pure (numpy, scipy).

A baseline that broke during its window is not a baseline, and a stage that stopped answering
has not been measured. Both are judged from the environment's own samples, in thirds of the
window (the first third is what the environment looked like, the last what it became):

- **stopped answering**: the last third holds fewer than ``MIN_RATE_RATIO`` of the first
  third's requests, or no request was answered during the last ``MIN_SILENCE_S`` seconds
  (``SILENCE_SHARE`` of the window, if longer) before the load ended (answers stopped coming:
  a hang, a dead process, a full queue — the judged window then ends at the last answer, so
  the silence is measured against the load's end);
- **broke**: the failure rate of the last third is ``MIN_JUMP_PP`` points or more above the
  first third's, and Fisher's exact test says the rise is no accident (p < ``ALPHA``).

A rule the stage under test breaks in the second way is a regression to be judged, not a
broken measurement; only the first rule applies to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from .windows import Window

MIN_RATE_RATIO = 0.25
MIN_JUMP_PP = 10.0
ALPHA = 0.001
MIN_SILENCE_S = 3.0  # Locust's own stop takes up to about a second on a busy machine
SILENCE_SHARE = 0.25
MIN_SAMPLES = 30  # below this a window says nothing about its own health


@dataclass(frozen=True)
class Health:
    """What the environment's samples show over the window, third by third."""

    requests: tuple[int, int]  # first and last third
    failure_pct: tuple[float, float]
    p_value: float
    silence_s: float = 0.0  # from the last answered request to the end of the load
    window_s: float = 0.0

    @property
    def silent(self) -> bool:
        return self.silence_s > max(MIN_SILENCE_S, SILENCE_SHARE * self.window_s)

    @property
    def stopped(self) -> bool:
        first, last = self.requests
        return (first > 0 and last < MIN_RATE_RATIO * first) or self.silent

    @property
    def broke(self) -> bool:
        early, late = self.failure_pct
        return late - early >= MIN_JUMP_PP and self.p_value < ALPHA


def assess(ts: Any, success: Any, window: Window, *, silence_s: float | None = None) -> Health | None:
    """The health over ``window`` of samples started at ``ts`` (seconds) that ``success``-ed,
    ``silence_s`` after the environment's last answered request before its load ended; None
    when the window holds too few samples to tell."""
    times = np.asarray(ts, dtype=float)
    failed = ~np.asarray(success, dtype=bool)
    requests, _ = np.histogram(times, bins=thirds(window))
    failures, _ = np.histogram(times, bins=thirds(window), weights=failed.astype(float))
    return assess_counts(requests, failures.astype(int), window, silence_s=silence_s)


def thirds(window: Window) -> Any:
    """Bin edges of the window's first third, middle and last third (the last bin closed)."""
    third = window.duration_s / 3.0
    return np.array([window.start, window.start + third, window.end - third, window.end])


def assess_counts(
    requests: Any, failures: Any, window: Window, *, silence_s: float | None = None
) -> Health | None:
    """:func:`assess` from the requests and failures counted in the :func:`thirds` of the
    window (what a store counts without loading the samples)."""
    if int(np.sum(requests)) < MIN_SAMPLES:
        return None
    counts = (int(requests[0]), int(requests[2]))
    failed = (int(failures[0]), int(failures[2]))
    pct = tuple(100.0 * f / n if n else 0.0 for f, n in zip(failed, counts, strict=True))
    p_value = 1.0
    if counts[0] and counts[1]:
        table = [[failed[1], counts[1] - failed[1]], [failed[0], counts[0] - failed[0]]]
        p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
    return Health(counts, (pct[0], pct[1]), p_value, silence_s or 0.0, window.duration_s)


def describe(env: str, health: Health, *, baseline: bool) -> str | None:
    """Why ``env`` cannot be trusted over its window, or None. ``baseline``: the environment
    is a comparison's baseline (both rules), else the stage under test (stopped only)."""
    first, last = health.requests
    if health.silent:
        return (
            f"{env} stopped answering during the window: no answer in the last "
            f"{health.silence_s:.1f} s of its load"
        )
    if health.stopped:
        return (
            f"{env} stopped answering during the window: {first} requests in its first third, "
            f"{last} in its last"
        )
    if baseline and health.broke:
        early, late = health.failure_pct
        return (
            f"{env} broke during its window: failure rate {early:.1f} % in its first third, "
            f"{late:.1f} % in its last (p={health.p_value:.1g}); a baseline that broke is no baseline"
        )
    return None
