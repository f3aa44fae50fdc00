"""Metrics API v2 queries (``GET /api/v2/metrics/query``): the metric keys our metrics map to,
and one query for several selectors over an entity selector, each merged into one series with
``:splitBy()``.

| our metric | service: ``builtin:service.*`` | method: ``builtin:service.keyRequest.*`` |
|---|---|---|
| responsetime (µs) | ``response.time`` | ``response.time`` |
| failures | ``errors.total.count`` | ``errors.server.count`` |
| requests | ``requestCount.total`` | ``count.total`` |
"""

from __future__ import annotations

from ..errors import SourceError
from ..windows import Window
from .client import DynatraceClient

__all__ = ["FAILURES", "REQUESTS", "RESPONSE_TIME", "SCOPE", "Series", "query_metrics"]

#: the token scope the Metrics API v2 needs
SCOPE = "metrics.read"

# (service, key request) metric keys
RESPONSE_TIME = ("builtin:service.response.time", "builtin:service.keyRequest.response.time")
REQUESTS = ("builtin:service.requestCount.total", "builtin:service.keyRequest.count.total")
FAILURES = ("builtin:service.errors.total.count", "builtin:service.keyRequest.errors.server.count")


class Series(list[float | None]):
    """The values of one merged series, with their timestamps (ms) when asked for."""

    def __init__(self, values: list[float | None], timestamps: list[int]) -> None:
        super().__init__(values)
        self.timestamps = timestamps


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def query_metrics(
    client: DynatraceClient,
    selectors: list[str],
    entities: str,
    window: Window,
    resolution: str,
    *,
    timestamps: bool = False,
) -> list[Series]:
    """One series per selector: the values of its only (merged) series, or none."""
    metric_selector = ",".join(selectors)
    params = {
        "metricSelector": metric_selector,
        "entitySelector": entities,
        "from": str(ms(window.start)),
        "to": str(ms(window.end)),
        "resolution": resolution,
    }
    body = client.get_json("/api/v2/metrics/query", params, described=metric_selector, scope=SCOPE)
    try:
        results = body["result"]
        if not isinstance(results, list) or len(results) != len(selectors):
            raise TypeError(f"{len(results) if isinstance(results, list) else 'no'} results")
        out: list[Series] = []
        for selector, result in zip(selectors, results, strict=True):
            data = result["data"]
            if not isinstance(data, list):
                raise TypeError("data is not a list")
            if len(data) > 1:
                raise SourceError(
                    f"{client.name}: {selector} for {entities} returned {len(data)} series, "
                    "expected one (merged with :splitBy())"
                )
            if not data:
                out.append(Series([], []))
                continue
            values = [None if v is None else float(v) for v in data[0]["values"]]
            stamps = [int(t) for t in data[0].get("timestamps", [])] if timestamps else []
            if timestamps and len(stamps) != len(values):
                raise TypeError("timestamps and values differ in length")
            out.append(Series(values, stamps))
        return out
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise SourceError(
            f"{client.name} at {client.base_url}: malformed answer to {metric_selector}: {exc}"
        ) from None
