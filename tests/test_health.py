"""An environment's health over its own window (pytest_perfsig.health), on constructed samples
whose answer is known: steady, broken, stopped, too few."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pytest_perfsig import health
from pytest_perfsig.windows import Window

WINDOW = Window(100.0, 130.0)  # thirds: [100, 110), [110, 120], (120, 130]


def samples(rate_per_s: list[float], failed_pct: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced requests, one rate and failure share per 10-second third."""
    ts, ok = [], []
    for third, (rate, pct) in enumerate(zip(rate_per_s, failed_pct, strict=True)):
        n = int(rate * 10)
        start = WINDOW.start + 10 * third
        ts.extend(start + 10 * k / n for k in range(n))
        bad = round(n * pct / 100)
        ok.extend([False] * bad + [True] * (n - bad))
    return np.array(ts), np.array(ok)


def test_a_steady_environment_is_healthy_even_with_a_steady_failure_rate() -> None:
    found = health.assess(*samples([20, 20, 20], [12, 12, 12]), WINDOW)
    assert found is not None
    assert found.requests == (200, 200) and found.failure_pct == (12.0, 12.0)
    assert not found.stopped and not found.broke
    assert health.describe("Production", found, baseline=True) is None


def test_a_baseline_whose_failures_jump_broke() -> None:
    found = health.assess(*samples([20, 20, 20], [0, 50, 60]), WINDOW)
    assert found is not None and found.broke and not found.stopped
    reference = stats.fisher_exact([[120, 80], [0, 200]], alternative="greater").pvalue
    assert found.p_value == pytest.approx(reference)
    message = health.describe("Production", found, baseline=True)
    assert message == (
        f"Production broke during its window: failure rate 0.0 % in its first third, 60.0 % in "
        f"its last (p={reference:.1g}); a baseline that broke is no baseline"
    )
    # For the stage under test the same rise is a regression to judge, not a broken measurement.
    assert health.describe("Staging", found, baseline=False) is None


def test_a_rise_just_below_the_jump_or_not_significant_is_healthy() -> None:
    small = health.assess(*samples([20, 20, 20], [0, 5, 9.5]), WINDOW)
    assert small is not None and not small.broke  # 9.5 points < 10
    few = health.assess(*samples([1.5, 1.5, 1.5], [0, 0, 20]), WINDOW)
    assert few is not None and few.failure_pct[1] == pytest.approx(20.0) and few.p_value > health.ALPHA
    assert not few.broke  # 3 failures in 15 requests could be chance


def test_an_environment_that_stops_answering_stopped_for_both_sides() -> None:
    found = health.assess(*samples([20, 20, 4], [0, 0, 0]), WINDOW)
    assert found is not None and found.stopped and found.requests == (200, 40)
    for baseline in (True, False):
        assert health.describe("Staging", found, baseline=baseline) == (
            "Staging stopped answering during the window: 200 requests in its first third, 40 in its last"
        )
    slower = health.assess(*samples([20, 20, 6], [0, 0, 0]), WINDOW)
    assert slower is not None and not slower.stopped  # 30 % of the first third's rate: slow, not stopped


def test_too_few_samples_say_nothing_and_samples_outside_the_window_do_not_count() -> None:
    ts, ok = samples([0.9, 0.9, 0.9], [0, 0, 0])
    assert ts.size < health.MIN_SAMPLES and health.assess(ts, ok, WINDOW) is None
    ts, ok = samples([20, 20, 20], [0, 0, 0])
    late = np.concatenate([ts, np.full(500, WINDOW.end + 1)])
    found = health.assess(late, np.concatenate([ok, np.zeros(500, dtype=bool)]), WINDOW)
    assert found is not None and found.failure_pct == (0.0, 0.0)


def test_silence_before_the_load_ended_is_stopped_answering() -> None:
    ts, ok = samples([20, 20, 20], [0, 0, 0])
    quiet = health.assess(ts, ok, WINDOW, silence_s=0.8)  # Locust's own stop after the last answer
    assert quiet is not None and not quiet.silent and not quiet.stopped
    longer = health.assess(ts, ok, WINDOW, silence_s=7.4)  # 25 % of a 30 s window is 7.5 s
    assert longer is not None and not longer.stopped
    hung = health.assess(ts, ok, WINDOW, silence_s=7.6)
    assert hung is not None and hung.silent and hung.stopped
    assert health.describe("Staging", hung, baseline=False) == (
        "Staging stopped answering during the window: no answer in the last 7.6 s of its load"
    )
    short = Window(100.0, 106.0)
    burst = health.assess(np.linspace(100, 106, 120), np.ones(120, dtype=bool), short, silence_s=3.1)
    assert burst is not None and burst.silent  # a short window: at least 3 s of silence counts
