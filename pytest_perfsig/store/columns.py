"""Samples as columns: the ``SampleColumns`` of a window, the chunks a finished run is stored in,
the per-second aggregates that outlive them, and counts per time bin. numpy only, imported
lazily: the Locust process, which only sends rows, never loads numpy.

A chunk holds at most :data:`CHUNK_SAMPLES` samples of one run in time order, so reading a run
column by column never needs more memory than one chunk, however long the run was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

CHUNK_SAMPLES = 1 << 18
"""Samples per stored chunk (about 6 MB of columns)."""

COLUMN_TYPES = {"ts": "<f8", "latency_ms": "<f8", "success": "u1", "endpoint_codes": "<i4"}
"""How each chunk column is stored: little-endian float64, uint8 (0/1), int32 codes."""

SecondRow = tuple[int, int, int, float, float, float]
"""(second, requests, failures, latency_sum_ms, first ts, last ts) of one second of samples."""


@dataclass(frozen=True)
class SampleColumns:
    """The samples of one window, column by column (numpy arrays); endpoints as codes into
    ``endpoint_names`` so that filtering a million samples by endpoint stays cheap."""

    ts: Any
    latency_ms: Any
    success: Any
    endpoint_codes: Any
    endpoint_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.ts.size)

    @property
    def endpoint(self) -> list[str]:
        return [self.endpoint_names[code] for code in self.endpoint_codes.tolist()]

    def only(self, endpoint: str) -> SampleColumns:
        if endpoint not in self.endpoint_names:
            return concat_columns([])
        return self.where(self.endpoint_codes == self.endpoint_names.index(endpoint))

    def where(self, keep: Any) -> SampleColumns:
        """The samples a boolean mask (or index) over them keeps."""
        return replace(
            self,
            ts=self.ts[keep],
            latency_ms=self.latency_ms[keep],
            success=self.success[keep],
            endpoint_codes=self.endpoint_codes[keep],
        )


def concat_columns(parts: list[SampleColumns]) -> SampleColumns:
    """One SampleColumns from several, sorted by time, with one endpoint table."""
    import numpy as np

    names: dict[str, int] = {}
    ts, latency, success, codes = [], [], [], []
    for part in parts:
        remap = np.array(
            [names.setdefault(name, len(names)) for name in part.endpoint_names] or [0], dtype=np.int32
        )
        ts.append(part.ts)
        latency.append(part.latency_ms)
        success.append(part.success)
        codes.append(remap[part.endpoint_codes] if part.endpoint_codes.size else part.endpoint_codes)
    if not parts or not any(t.size for t in ts):
        empty = np.empty(0)
        return SampleColumns(empty, empty, empty.astype(bool), empty.astype(np.int32), ())
    all_ts = np.concatenate(ts)
    order = np.argsort(all_ts, kind="stable")
    return SampleColumns(
        all_ts[order],
        np.concatenate(latency)[order],
        np.concatenate(success)[order],
        np.concatenate(codes).astype(np.int32)[order],
        tuple(names),
    )


def sorted_columns(
    ts: Sequence[Any], latency_ms: Sequence[Any], success: Sequence[Any], endpoints: Sequence[str]
) -> SampleColumns:
    """Samples given column by column, in any order, as SampleColumns sorted by time; endpoint
    codes in the order the names first appear. A missing value (None) becomes NaN."""
    import numpy as np

    names = tuple(dict.fromkeys(endpoints))  # first-seen order, at C speed
    code = {name: index for index, name in enumerate(names)}
    times = np.asarray(ts, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    return SampleColumns(
        times[order],
        np.asarray(latency_ms, dtype=np.float64)[order],
        np.asarray(success, dtype=bool)[order],
        np.fromiter(map(code.__getitem__, endpoints), dtype=np.int32, count=len(endpoints))[order],
        names,
    )


def chunk_values(columns: SampleColumns) -> dict[str, Any]:
    """The stored form of one chunk (time-sorted columns): bounds, totals, per-endpoint
    [requests, failures] and the column bytes."""
    import numpy as np

    failed = ~columns.success
    codes = columns.endpoint_codes
    requests = np.bincount(codes, minlength=len(columns.endpoint_names))
    failures = np.bincount(codes, weights=failed, minlength=len(columns.endpoint_names))
    return {
        "t_min": float(columns.ts[0]),
        "t_max": float(columns.ts[-1]),
        "n": len(columns),
        "failures": int(np.count_nonzero(failed)),
        "endpoint_names": json.dumps(list(columns.endpoint_names)),
        "endpoint_counts": json.dumps([[int(r), int(f)] for r, f in zip(requests, failures, strict=True)]),
        "ts": columns.ts.astype(COLUMN_TYPES["ts"]).tobytes(),
        "endpoint_codes": codes.astype(COLUMN_TYPES["endpoint_codes"]).tobytes(),
        "success": columns.success.astype(np.uint8).tobytes(),
        "latency_ms": columns.latency_ms.astype(COLUMN_TYPES["latency_ms"]).tobytes(),
    }


def decode(name: str, blob: bytes) -> Any:
    """A stored chunk column as a numpy array (``success`` as booleans)."""
    import numpy as np

    values = np.frombuffer(blob, dtype=COLUMN_TYPES[name])
    return values.astype(bool) if name == "success" else values


def seconds_of(columns: SampleColumns) -> list[SecondRow]:
    """Per-second aggregates of time-sorted columns (a second: the floor of the start time)."""
    import numpy as np

    if len(columns) == 0:
        return []
    seconds = np.floor(columns.ts).astype(np.int64)
    first = np.flatnonzero(np.r_[True, seconds[1:] != seconds[:-1]])
    last = np.r_[first[1:], seconds.size] - 1
    return list(
        zip(
            seconds[first].tolist(),
            (last - first + 1).tolist(),
            np.add.reduceat((~columns.success).astype(np.int64), first).tolist(),
            np.add.reduceat(columns.latency_ms, first).tolist(),
            columns.ts[first].tolist(),
            columns.ts[last].tolist(),
            strict=True,
        )
    )


def bin_counts(ts: Any, failed: Any, edges: Any) -> tuple[Any, Any]:
    """(requests, failures) per bin of time-sorted samples, as ``numpy.histogram`` bins them:
    [e0, e1), [e1, e2), ... and the last bin closed, [e(n-1), en]."""
    import numpy as np

    positions = np.concatenate(
        (np.searchsorted(ts, edges[:-1], side="left"), np.searchsorted(ts, edges[-1:], side="right"))
    )
    cumulative = np.concatenate(([0], np.cumsum(failed, dtype=np.int64)))
    return np.diff(positions), np.diff(cumulative[positions])


def single_bin(t_min: float, t_max: float, edges: Any) -> int | None:
    """The bin that holds every time in [t_min, t_max], or None when they span several or
    lie (partly) outside the edges."""
    import numpy as np

    bins = len(edges) - 1
    index = int(np.searchsorted(edges, t_min, side="right")) - 1
    if index == bins and t_max == edges[-1]:
        index = bins - 1  # on the closed end of the last bin
    if not 0 <= index < bins:
        return None
    if t_max < edges[index + 1] or (index == bins - 1 and t_max <= edges[-1]):
        return index
    return None


@dataclass(frozen=True)
class ChunkInfo:
    """A stored chunk's place and totals, without its columns: a finished run's chunk, or a
    running one's batch (``live``), which has the same columns."""

    run_id: str
    seq: int
    t_min: float
    t_max: float
    n: int
    failures: int
    names: tuple[str, ...]
    counts: list[list[int]]
    live: bool = False

    def inside(self, start: float, end: float) -> bool:
        return start <= self.t_min and self.t_max <= end

    def totals(self, endpoint: str | None) -> tuple[int, int]:
        if endpoint is None:
            return self.n, self.failures
        requests, failures = self.counts[self.names.index(endpoint)]
        return int(requests), int(failures)

    def mixed(self, endpoint: str | None) -> bool:
        """Whether selecting ``endpoint`` needs the codes column (other endpoints are in it)."""
        return endpoint is not None and self.names != (endpoint,)


def window_slice(ts: Any, start: float, end: float) -> slice:
    """The part of time-sorted ``ts`` in [start, end] (all of it when ts was not read)."""
    if ts is None:
        return slice(None)
    import numpy as np

    return slice(int(np.searchsorted(ts, start, side="left")), int(np.searchsorted(ts, end, side="right")))
