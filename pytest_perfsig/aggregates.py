"""Aggregates that reduce a window of values to one number. Pure, numpy only."""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import Aggregate


def aggregate(values: Any, spec: Aggregate) -> float:
    """Apply an aggregate to a non-empty 1-d array of values."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("aggregate of no values")
    if spec.percentile is not None:
        return float(np.percentile(data, spec.percentile))
    match spec.name:
        case "min":
            return float(data.min())
        case "max":
            return float(data.max())
        case "avg":
            return float(data.mean())
        case "sum":
            return float(data.sum())
        case "median":
            return float(np.median(data))
        case "count":
            return float(data.size)
    raise ValueError(f"unknown aggregate {spec.name!r}")


def bucket_series(ts: Any, start: float, end: float, width_s: float, weights: Any = None) -> Any:
    """Per-bucket totals (counts, or sums of ``weights``) over the whole buckets of [start, end].

    A trailing partial bucket is left out: counted as a whole one it would look like a dip.
    A window shorter than one bucket is one bucket.
    """
    whole = max(1, int((end - start) // width_s))
    edges = start + np.arange(whole + 1) * width_s
    totals, _ = np.histogram(np.asarray(ts, dtype=float), bins=edges, weights=weights)
    return totals
