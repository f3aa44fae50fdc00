"""Time series of the samples one side of a comparison was judged on: requests, failures and
latency per bucket, read from the store by the windows the verdicts recorded.

Once ``perfsig gc`` collected a run's raw samples, its series comes from the per-second
aggregates the store keeps instead: requests, failures and mean latency per whole second
(``from_aggregates``), no percentile."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..store.base import ReportSource
from ..store.runs import RunRecord
from ..store.samples import SecondRow
from ..windows import Window
from .model import jsonable

MAX_BUCKETS = 300
"""Time series are per second up to this many buckets, in wider buckets beyond."""


@dataclass(frozen=True)
class Series:
    """Samples of one side of a comparison, bucketed: per second (wider for long windows).

    ``t`` is each bucket's start in seconds from the window start; lists are parallel;
    latency entries are None for buckets without requests.
    """

    env: str
    label: str
    start: float
    end: float
    bucket_s: float
    t: list[float]
    requests: list[int]
    failures: list[int]
    mean_ms: list[float | None]
    p90_ms: list[float | None]
    samples: int
    from_aggregates: bool = False  # raw samples collected: per-second aggregates, no p90

    @property
    def failure_percent(self) -> list[float | None]:
        return [100.0 * f / n if n else None for f, n in zip(self.failures, self.requests, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(  # type: ignore[no-any-return]
            {
                "env": self.env,
                "label": self.label,
                "start": self.start,
                "end": self.end,
                "bucket_s": self.bucket_s,
                "samples": self.samples,
                "t": self.t,
                "requests": self.requests,
                "failures": self.failures,
                "mean_ms": [None if v is None else round(v, 3) for v in self.mean_ms],
                "p90_ms": [None if v is None else round(v, 3) for v in self.p90_ms],
                "from_aggregates": self.from_aggregates,
            }
        )


def bucket_samples(
    ts: Sequence[float] | Any,
    latency_ms: Sequence[float] | Any,
    success: Sequence[bool] | Any,
    start: float,
    end: float,
    max_buckets: int = MAX_BUCKETS,
) -> tuple[float, list[float], list[int], list[int], list[float | None], list[float | None]]:
    """(bucket width, starts, requests, failures, mean latency, p90 latency) over [start, end)."""
    import numpy as np

    duration = max(end - start, 1.0)
    width = 1.0 if duration <= max_buckets else float(math.ceil(duration / max_buckets))
    count = max(1, math.ceil(duration / width))
    ts_a = np.asarray(ts, dtype=float)
    lat_a = np.asarray(latency_ms, dtype=float)
    ok_a = np.asarray(success, dtype=bool)
    index = np.clip(((ts_a - start) // width).astype(int), 0, count - 1) if ts_a.size else ts_a.astype(int)
    requests = np.bincount(index, minlength=count) if ts_a.size else np.zeros(count, dtype=int)
    failures = (
        np.bincount(index, weights=(~ok_a).astype(float), minlength=count) if ts_a.size else np.zeros(count)
    )
    sums = np.bincount(index, weights=lat_a, minlength=count) if ts_a.size else np.zeros(count)
    order = np.argsort(index, kind="stable")
    sorted_index, sorted_lat = index[order], lat_a[order]
    bounds = np.searchsorted(sorted_index, np.arange(count + 1))
    mean: list[float | None] = []
    p90: list[float | None] = []
    for i in range(count):
        n = int(requests[i])
        if n == 0:
            mean.append(None)
            p90.append(None)
            continue
        mean.append(float(sums[i]) / n)
        p90.append(float(np.percentile(sorted_lat[bounds[i] : bounds[i + 1]], 90)))
    return (
        width,
        [i * width for i in range(count)],
        [int(v) for v in requests],
        [round(float(v)) for v in failures],
        mean,
        p90,
    )


def _series(
    env: str, label: str, start: float, end: float, ts: Any, latency: Any, success: Any
) -> Series | None:
    if len(ts) == 0:
        return None
    width, t, requests, failures, mean, p90 = bucket_samples(ts, latency, success, start, end)
    return Series(env, label, start, end, width, t, requests, failures, mean, p90, len(ts))


def _aggregated(
    env: str,
    label: str,
    start: float,
    end: float,
    seconds: Sequence[SecondRow],
    offsets: Sequence[float] = (),
) -> Series | None:
    """A series from per-second aggregates, each second in the bucket its start falls in
    (``offsets``: where each row's run is laid, for runs laid over each other)."""
    if not seconds:
        return None
    duration = max(end - start, 1.0)
    width = 1.0 if duration <= MAX_BUCKETS else float(math.ceil(duration / MAX_BUCKETS))
    count = max(1, math.ceil(duration / width))
    requests, failures, sums = [0] * count, [0] * count, [0.0] * count
    for i, (second, n, failed, latency_sum, _, _) in enumerate(seconds):
        at = (second + (offsets[i] if offsets else 0.0) - start) // width
        index = min(max(int(at), 0), count - 1)
        requests[index] += n
        failures[index] += failed
        sums[index] += latency_sum
    mean = [total / n if n else None for total, n in zip(sums, requests, strict=True)]
    t = [i * width for i in range(count)]
    return Series(
        env, label, start, end, width, t, requests, failures, mean, [None] * count, sum(requests), True
    )


def series_of_window(
    store: ReportSource, service: str, env: str, window: Window, label: str | None = None
) -> Series | None:
    """The samples of a service in an environment inside a window (their per-second aggregates
    once the raw samples are collected)."""
    samples = store.samples(service, env, window.start, window.end)
    if len(samples) == 0:
        seconds = store.window_seconds(service, env, window.start, window.end)
        return _aggregated(env, label or str(window), window.start, window.end, seconds)
    return _series(
        env, label or str(window), window.start, window.end, samples.ts, samples.latency_ms, samples.success
    )


def series_of_runs(store: ReportSource, env: str, runs: Sequence[RunRecord], label: str) -> Series | None:
    """The samples of stored runs; several runs are laid over each other from their own starts."""
    import numpy as np

    parts = [(store.run_samples(run), run) for run in runs]
    if any(len(samples) == 0 and run.samples_collected_at is not None for samples, run in parts):
        return _runs_aggregated(store, env, runs, label)
    parts = [(samples, run) for samples, run in parts if len(samples)]
    if not parts:
        return None
    start = min(float(samples.ts[0]) for samples, _ in parts)
    shifted = np.concatenate([start + (samples.ts - samples.ts[0]) for samples, _ in parts])
    latency = np.concatenate([samples.latency_ms for samples, _ in parts])
    success = np.concatenate([samples.success for samples, _ in parts])
    order = np.argsort(shifted, kind="stable")
    duration = max(float(shifted.max()) - start, 1.0)
    return _series(env, label, start, start + duration, shifted[order], latency[order], success[order])


def _runs_aggregated(store: ReportSource, env: str, runs: Sequence[RunRecord], label: str) -> Series | None:
    """Runs laid over each other from their first second, from their per-second aggregates."""
    per_run = [store.run_seconds(run.run_id) for run in runs]
    per_run = [seconds for seconds in per_run if seconds]
    if not per_run:
        return None
    start = min(seconds[0][4] for seconds in per_run)
    rows = [row for seconds in per_run for row in seconds]
    offsets = [start - seconds[0][0] for seconds in per_run for _ in seconds]
    end = start + max(max(row[5] for row in seconds) - seconds[0][4] for seconds in per_run)
    return _aggregated(env, label, start, max(end, start + 1.0), rows, offsets)


def baseline_runs(store: ReportSource, baseline: str) -> list[RunRecord]:
    """The stored runs a baseline description names: ``run R`` or ``median of 2 of 3 runs: R1, R2``
    (``gate.measure`` writes them so); ids the store does not hold are left out."""
    named = baseline.split(": ", 1)[1] if ": " in baseline else baseline.removeprefix("run ")
    runs = [store.run(run_id.strip()) for run_id in named.split(",")]
    return [run for run in runs if run is not None]


def side_series(
    store: ReportSource,
    service: str | None,
    env: str,
    window: Window | None,
    baseline: str | None,
    gate_runs: Sequence[RunRecord],
) -> Series | None:
    """The samples one side of a comparison was judged on: the stored runs of a baseline;
    else those in the side's window; else the gate's own runs of that environment (a verdict
    made before anything was measured records no window)."""
    if baseline:
        runs = baseline_runs(store, baseline)
        if runs:
            return series_of_runs(store, env, runs, baseline)
    if window is not None:
        names = [service] if service else sorted({r.service for r in gate_runs})
        for name in names:
            found = series_of_window(store, name, env, window)
            if found is not None:
                return found
        return None
    own = [r for r in gate_runs if r.env == env and (service is None or r.service == service)]
    if own:
        return series_of_runs(store, env, own, f"run {', '.join(r.run_id for r in own)}")
    return None
