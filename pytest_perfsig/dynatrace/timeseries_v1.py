"""Timeseries API v1 queries (``GET /api/v1/timeseries/<id>``, the original system's): one
timeseries over the entities some tags match, in ``queryMode=TOTAL`` (one value per entity for
the whole window)."""

from __future__ import annotations

from ..errors import SourceError
from ..windows import Window
from .client import DynatraceClient
from .metrics_v2 import ms

__all__ = ["AGGREGATES", "FAILURE_RATE", "REQUESTS", "RESPONSE_TIME", "SCOPE", "query_timeseries"]

#: the token scope the Timeseries API v1 needs
SCOPE = "DataExport"
PREFIX = "com.dynatrace.builtin:"
RESPONSE_TIME = PREFIX + "service.responsetime"
FAILURE_RATE = PREFIX + "service.failurerate"
REQUESTS = PREFIX + "service.requestspermin"  # COUNT in TOTAL mode: requests in the timeframe
AGGREGATES = {"avg": "AVG", "min": "MIN", "max": "MAX", "median": "MEDIAN", "sum": "SUM", "count": "COUNT"}


def query_timeseries(
    client: DynatraceClient,
    timeseries: str,
    aggregation: str,
    percentile: float | None,
    tags: tuple[str, ...],
    window: Window,
    *,
    latency: bool = False,
) -> dict[str, float]:
    """Entity id → its value over the window; entities without data are left out. Latencies
    are converted to milliseconds."""
    params: list[tuple[str, str]] = [
        ("includeData", "true"),
        ("queryMode", "TOTAL"),
        ("aggregationType", aggregation),
        ("startTimestamp", str(ms(window.start))),
        ("endTimestamp", str(ms(window.end))),
    ]
    if percentile is not None:
        params.append(("percentile", f"{percentile:g}"))
    params.extend(("tag", tag) for tag in tags)
    described = f"{timeseries} {aggregation}"
    body = client.get_json(f"/api/v1/timeseries/{timeseries}", params, described=described, scope=SCOPE)
    try:
        result = body["dataResult"]
        unit = str(result.get("unit") or "")
        scale = 1.0
        if latency:
            if unit.startswith("MicroSecond"):
                scale = 1 / 1000.0
            elif not unit.startswith("MilliSecond"):
                raise ValueError(f"unexpected unit {unit!r}")
        out: dict[str, float] = {}
        for entity, points in (result.get("dataPoints") or {}).items():
            values = [p[1] for p in points if p[1] is not None]
            if len(values) > 1:
                raise ValueError(f"{len(values)} data points for {entity} in TOTAL mode")
            if values:
                out[str(entity)] = float(values[0]) * scale
        return out
    except (TypeError, KeyError, ValueError, AttributeError, IndexError) as exc:
        raise SourceError(
            f"{client.name} at {client.base_url}: malformed answer to {described}: {exc}"
        ) from None
