"""The Dynatrace source: the original system's numbers, read from a Dynatrace tenant.

URL: ``dynatrace://<tenant-host>[/e/<environment-id>]`` (HTTPS), ``dynatrace+http://host:port``
(tests, local proxies), and ``dynatrace+v1://...`` / ``dynatrace+v1+http://...`` for the
original's Timeseries API v1. The API token comes from the environment variable ``DT_API_TOKEN``
(scopes ``metrics.read`` and ``entities.read``; ``DataExport`` for v1). It is sent as
``Authorization: Api-Token ...`` and never logged nor put in an error message, even when the
tenant echoes it back.

Entities of an environment: its monspec tags, in Dynatrace's tag notation (``key:value`` for
``CONTEXTLESS``, ``[AWS]key:value`` for other contexts), so the original monspec's
``DeploymentGroup:Staging`` selects the services deployed to Staging. Tags of context
``PROMETHEUS`` or ``CLOUDWATCH`` belong to other sources and are ignored; a ``DYNATRACE`` tag is
an entity-selector predicate, ``{"context": "DYNATRACE", "key": "entityName.equals",
"value": "checkout"}`` → ``entityName.equals("checkout")``. An environment without tags is an
error: a query over every service of the tenant would be a guess.

Metrics API v2 (``GET /api/v2/metrics/query``, ``resolution=Inf``, merged over the matched
entities with ``:splitBy()``):

| our metric | service: ``builtin:service.*`` | method: ``builtin:service.keyRequest.*`` |
|---|---|---|
| responsetime (µs → ms) | ``response.time`` | ``response.time`` |
| failurerate | ``errors.total.count`` / requests | ``errors.server.count`` / requests |
| requests, requestspermin, samples | ``requestCount.total`` | ``count.total`` |

Latency aggregates are Dynatrace's own (``:avg``, ``:min``, ``:max``, ``:median``, ``:sum``,
``:percentile(90)``). min/max/median/pXX of failure rates and request rates are taken over the
window's one-minute data points (``resolution=1m``): Dynatrace keeps metrics per minute, so a
window is answered by the minutes it overlaps; judge windows of several minutes.

Timeseries API v1 (``dynatrace+v1://``): ``/api/v1/timeseries/com.dynatrace.builtin:service.*``
with ``queryMode=TOTAL``, as the original called it: response time (every aggregate), failure
rate (avg), request counts. It has no service-method metrics by name (those entries are skipped)
and no per-minute aggregates; an average over several matched services cannot be merged without
their counts, so it must match exactly one.

Smartscape entries (``"smartscape": "toRelationships:calls"``) are answered from the entities
API v2 by :meth:`DynatraceSource.count_relationships`: the number of distinct entities related
so to the environment's services in the window.

``observations`` are always None: no raw samples, the statistical judge falls back to the
scale-factor rule.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..aggregates import aggregate
from ..errors import NoDataError, SourceError, UsageError
from ..metrics import MetricKind, canonical_id, parse_metric, required_samples
from ..windows import Measurement, MetricQuery, Window
from .http import get_json
from .local import DEFAULT_MIN_SAMPLES

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
TOKEN_ENV = "DT_API_TOKEN"
OTHER_SOURCES_CONTEXTS = frozenset({"PROMETHEUS", "CLOUDWATCH"})
SELECTOR_CONTEXT = "DYNATRACE"
MINUTE_MS = 60_000

# (service, key request) metric keys of API v2
V2_RESPONSE_TIME = ("builtin:service.response.time", "builtin:service.keyRequest.response.time")
V2_REQUESTS = ("builtin:service.requestCount.total", "builtin:service.keyRequest.count.total")
V2_FAILURES = ("builtin:service.errors.total.count", "builtin:service.keyRequest.errors.server.count")

V1_PREFIX = "com.dynatrace.builtin:"
V1_RESPONSE_TIME = V1_PREFIX + "service.responsetime"
V1_FAILURE_RATE = V1_PREFIX + "service.failurerate"
V1_REQUESTS = V1_PREFIX + "service.requestspermin"  # COUNT in TOTAL mode: requests in the timeframe
V1_AGGREGATES = {"avg": "AVG", "min": "MIN", "max": "MAX", "median": "MEDIAN", "sum": "SUM", "count": "COUNT"}

_RELATION_RE = re.compile(r"^(toRelationships|fromRelationships):([A-Za-z][A-Za-z0-9_]*)$")
_PREDICATE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


def _quote(value: str) -> str:
    """An entity-selector string literal: ``~`` escapes ``~`` and ``"``."""
    return '"' + value.replace("~", "~~").replace('"', '~"') + '"'


def _tag_text(context: str, key: str, value: str | None) -> str:
    prefix = "" if context.upper() == "CONTEXTLESS" else f"[{context}]"
    return prefix + key + (f":{value}" if value is not None else "")


def _where(query: MetricQuery) -> str:
    runs = f" (run {', '.join(query.run_ids)})" if query.run_ids else ""
    return f"{query.env}{' ' + query.method if query.method else ''} in {query.window}{runs}"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(frozen=True)
class SmartscapeCount:
    """A topology count: distinct entities related to the environment's services."""

    relation: str
    value: float
    entities: int  # services the environment's tags matched


class DynatraceSource:
    """Answers metric queries from a Dynatrace tenant's Metrics API v2 (or Timeseries API v1)."""

    name = "dynatrace"

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        api: str = "v2",
        min_samples: int = DEFAULT_MIN_SAMPLES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if api not in {"v1", "v2"}:
            raise UsageError(f"dynatrace source: unknown API version {api!r} (v1 or v2)")
        self.base_url = base_url.rstrip("/")
        self.api = api
        self.min_samples = min_samples
        self.timeout_s = timeout_s
        self._token = token or None
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Api-Token {self._token}"
        self._client = httpx.Client(
            timeout=timeout_s, headers=headers, trust_env=False, follow_redirects=False
        )
        self._counts: dict[tuple[Any, ...], tuple[float, str]] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        token: str | None = None,
    ) -> DynatraceSource:
        """``dynatrace[+v1][+http|+https]://host[:port][/e/<env-id>]``; the token defaults to
        ``$DT_API_TOKEN`` (checked when a query is made, so a gate without Dynatrace entries
        needs none)."""
        parts = urlsplit(url)
        flags = parts.scheme.split("+")
        if (
            flags[0] != "dynatrace"
            or not set(flags[1:]) <= {"v1", "v2", "http", "https"}
            or not parts.hostname
        ):
            raise UsageError(
                f"not a dynatrace URL: {parts.scheme}://{parts.hostname or ''}... "
                "(use dynatrace://<tenant-host>, dynatrace+v1://..., dynatrace+http://host:port)"
            )
        if parts.username or parts.password or parts.query:
            raise UsageError(
                "dynatrace URL: put no credentials or parameters in it; the token comes from $DT_API_TOKEN"
            )
        scheme = "http" if "http" in flags else "https"
        api = "v1" if "v1" in flags else "v2"
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        return cls(
            f"{scheme}://{netloc}{parts.path}",
            token=token if token is not None else os.environ.get(TOKEN_ENV),
            api=api,
            min_samples=min_samples,
            timeout_s=timeout_s,
        )

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:  # never the token
        return f"DynatraceSource({self.base_url!r}, api={self.api!r})"

    # ------------------------------------------------------------------ protocol

    def unsupported_reason(self, timeseries: str | None, smartscape: str | None) -> str | None:
        if smartscape is not None:
            if not _RELATION_RE.match(smartscape):
                return (
                    f"the {self.name} source cannot count smartscape {smartscape!r} "
                    "(use toRelationships:<relation> or fromRelationships:<relation>)"
                )
            return None
        metric = parse_metric(timeseries) if timeseries else None
        if self.api == "v1" and metric is not None and metric.scope == "servicemethod":
            return (
                f"the {self.name} v1 API mode has no service-method metrics by name "
                f"({canonical_id(timeseries or '')}): use dynatrace:// (Metrics API v2)"
            )
        return None

    def measure(self, query: MetricQuery) -> Measurement:
        if self.api == "v1":
            return self._measure_v1(query)
        return self._measure_v2(query)

    # ------------------------------------------------------------------ selectors

    def entity_selector(self, query: MetricQuery) -> str:
        """The environment's services (or, for a service method, its key request)."""
        services = self._service_selector(query.env, query.tags)
        if query.method is None:
            return services
        return (
            f"type(SERVICE_METHOD),entityName.equals({_quote(query.method)}),"
            f"fromRelationships.isServiceMethodOfService({services})"
        )

    def _service_selector(self, env: str, tags: tuple[tuple[str, str, str | None], ...]) -> str:
        predicates: list[str] = []
        for context, key, value in tags:
            if context.upper() in OTHER_SOURCES_CONTEXTS:
                continue
            if context.upper() == SELECTOR_CONTEXT:
                if not _PREDICATE_RE.match(key) or value is None:
                    raise SourceError(
                        f"{env}: DYNATRACE tag {key!r} must name an entity-selector predicate "
                        "(e.g. entityName.equals) and give its value"
                    )
                predicates.append(f"{key}({_quote(value)})")
            else:
                predicates.append(f"tag({_quote(_tag_text(context, key, value))})")
        if not predicates:
            raise SourceError(
                f"no tag of {env} identifies its services in Dynatrace: add one such as "
                f'{{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": "{env}"}}'
            )
        return "type(SERVICE)," + ",".join(predicates)

    # ------------------------------------------------------------------ Metrics API v2

    def _measure_v2(self, query: MetricQuery) -> Measurement:
        spec, window = query.aggregate, query.window
        kind = query.metric.family.kind
        scope = 1 if query.method is not None else 0
        entities = self.entity_selector(query)
        where = _where(query)
        over_buckets = spec.percentile is not None or spec.name in {"min", "max", "median"}
        if kind in {MetricKind.RATE, MetricKind.FAILURE_RATE} and over_buckets:
            return self._per_minute(query, entities, scope, where)
        requests, described = self._v2_requests(entities, scope, window)
        samples = self._check_samples(query, requests, where, described)
        if kind is MetricKind.COUNT:
            return Measurement(query, requests, samples, None)
        if kind is MetricKind.RATE:
            return Measurement(query, 60.0 * requests / max(window.duration_s, 1.0), samples, None)
        if kind is MetricKind.FAILURE_RATE:
            selector = f"{V2_FAILURES[scope]}:splitBy()"
            (failures,) = self._v2_query([selector], entities, window, "Inf")
            failed = sum(v for v in failures if v is not None)  # no error series: none failed
            return Measurement(query, 100.0 * failed / requests, samples, None)
        transform = "median" if spec.name == "median" else spec.name
        if spec.percentile is not None:
            transform = f"percentile({spec.percentile:g})"
        selector = f"{V2_RESPONSE_TIME[scope]}:splitBy():{transform}"
        (values,) = self._v2_query([selector], entities, window, "Inf")
        value = values[0] if values else None
        if value is None:
            raise NoDataError(
                f"no data for {where} ({self.name}: {selector} for {entities} returned nothing)"
            )
        # Microseconds, except a count of requests.
        return Measurement(query, value if spec.name == "count" else value / 1000.0, samples, None)

    def _v2_requests(self, entities: str, scope: int, window: Window) -> tuple[float, str]:
        key = (entities, scope, window.start, window.end)
        if key not in self._counts:
            selector = f"{V2_REQUESTS[scope]}:splitBy()"
            (values,) = self._v2_query([selector], entities, window, "Inf")
            total = sum(v for v in values if v is not None)
            self._counts[key] = (total, f"{selector} for {entities}")
        return self._counts[key]

    def _per_minute(self, query: MetricQuery, entities: str, scope: int, where: str) -> Measurement:
        """min/max/median/pXX of request or failure rates over one-minute data points."""
        window, kind = query.window, query.metric.family.kind
        selectors = [f"{V2_REQUESTS[scope]}:splitBy()"]
        if kind is MetricKind.FAILURE_RATE:
            selectors.append(f"{V2_FAILURES[scope]}:splitBy()")
        series = self._v2_query(selectors, entities, window, "1m", timestamps=True)
        counts = series[0]
        requests = float(sum(v for v in counts if v is not None))
        described = f"{selectors[0]} for {entities}, resolution 1m"
        samples = self._check_samples(query, requests, where, described)
        if kind is MetricKind.RATE:
            values = [float(v or 0.0) for v in counts]  # per-minute counts are requests/min
        else:
            failures = dict(zip(series[1].timestamps, series[1], strict=True))
            values = [
                100.0 * float(failures.get(ts) or 0.0) / float(count)
                for ts, count in zip(counts.timestamps, counts, strict=True)
                if count
            ]
        if not values:
            raise NoDataError(f"no data for {where} ({self.name}: {described} returned nothing)")
        return Measurement(query, aggregate(values, query.aggregate), samples, None)

    def _check_samples(self, query: MetricQuery, requests: float, where: str, described: str) -> int:
        samples = round(requests)
        if samples <= 0:
            raise NoDataError(f"no data for {where} ({self.name}: {described} returned nothing)")
        needed = required_samples(query.aggregate, self.min_samples)
        if samples < needed:
            raise NoDataError(
                f"too few samples for {where}: {samples} < {needed} needed for {query.aggregate} "
                f"({self.name}: {described} = {samples})"
            )
        return samples

    def _v2_query(
        self,
        selectors: list[str],
        entities: str,
        window: Window,
        resolution: str,
        *,
        timestamps: bool = False,
    ) -> list[_Series]:
        """One series per selector: the values of its only (merged) series, or none."""
        metric_selector = ",".join(selectors)
        params = {
            "metricSelector": metric_selector,
            "entitySelector": entities,
            "from": str(_ms(window.start)),
            "to": str(_ms(window.end)),
            "resolution": resolution,
        }
        body = self._get("/api/v2/metrics/query", params, metric_selector)
        try:
            results = body["result"]
            if not isinstance(results, list) or len(results) != len(selectors):
                raise TypeError(f"{len(results) if isinstance(results, list) else 'no'} results")
            out: list[_Series] = []
            for selector, result in zip(selectors, results, strict=True):
                data = result["data"]
                if not isinstance(data, list):
                    raise TypeError("data is not a list")
                if len(data) > 1:
                    raise SourceError(
                        f"{self.name}: {selector} for {entities} returned {len(data)} series, "
                        "expected one (merged with :splitBy())"
                    )
                if not data:
                    out.append(_Series([], []))
                    continue
                values = [None if v is None else float(v) for v in data[0]["values"]]
                stamps = [int(t) for t in data[0].get("timestamps", [])] if timestamps else []
                if timestamps and len(stamps) != len(values):
                    raise TypeError("timestamps and values differ in length")
                out.append(_Series(values, stamps))
            return out
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise SourceError(
                f"{self.name} at {self.base_url}: malformed answer to {metric_selector}: {exc}"
            ) from None

    # ------------------------------------------------------------------ Timeseries API v1

    def _measure_v1(self, query: MetricQuery) -> Measurement:
        spec, window = query.aggregate, query.window
        kind = query.metric.family.kind
        if query.method is not None:
            raise SourceError(self.unsupported_reason(query.metric.short, None) or "no service methods in v1")
        over_buckets = spec.percentile is not None or spec.name in {"min", "max", "median"}
        if kind in {MetricKind.RATE, MetricKind.FAILURE_RATE} and over_buckets:
            raise SourceError(
                f"the {self.name} v1 API mode answers {query.metric} with avg/count/sum only, "
                f"not {spec}: use dynatrace:// (Metrics API v2)"
            )
        tags = self._v1_tags(query)
        where = _where(query)
        key = ("v1", tags, window.start, window.end)
        if key not in self._counts:
            points = self._v1_query(V1_REQUESTS, "COUNT", None, tags, window)
            self._counts[key] = (sum(points.values()), f"{V1_REQUESTS} COUNT tagged {', '.join(tags)}")
        requests, described = self._counts[key]
        samples = self._check_samples(query, requests, where, described)
        if kind is MetricKind.COUNT:
            return Measurement(query, requests, samples, None)
        if kind is MetricKind.RATE:
            return Measurement(query, 60.0 * requests / max(window.duration_s, 1.0), samples, None)
        if kind is MetricKind.FAILURE_RATE:
            points = self._v1_query(V1_FAILURE_RATE, "AVG", None, tags, window)
            return Measurement(query, self._one(points, V1_FAILURE_RATE, where, tags), samples, None)
        if spec.name == "count":
            return Measurement(query, requests, samples, None)
        aggregation = "PERCENTILE" if spec.percentile is not None else V1_AGGREGATES[spec.name]
        points = self._v1_query(V1_RESPONSE_TIME, aggregation, spec.percentile, tags, window, latency=True)
        return Measurement(query, self._one(points, V1_RESPONSE_TIME, where, tags), samples, None)

    def _v1_tags(self, query: MetricQuery) -> tuple[str, ...]:
        tags = tuple(
            _tag_text(context, key, value)
            for context, key, value in query.tags
            if context.upper() not in OTHER_SOURCES_CONTEXTS | {SELECTOR_CONTEXT}
        )
        if not tags:
            raise SourceError(
                f"no tag of {query.env} identifies its services in Dynatrace: add one such as "
                f'{{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": "{query.env}"}}'
            )
        return tags

    def _one(self, points: dict[str, float], timeseries: str, where: str, tags: tuple[str, ...]) -> float:
        if not points:
            raise NoDataError(
                f"no data for {where} ({self.name}: {timeseries} tagged {', '.join(tags)} returned nothing)"
            )
        if len(points) > 1:
            raise SourceError(
                f"{self.name}: {timeseries} tagged {', '.join(tags)} matches {len(points)} entities "
                f"({', '.join(sorted(points))}); the v1 API cannot merge their averages: tag one "
                "service per environment, or use dynatrace:// (Metrics API v2)"
            )
        return next(iter(points.values()))

    def _v1_query(
        self,
        timeseries: str,
        aggregation: str,
        percentile: float | None,
        tags: tuple[str, ...],
        window: Window,
        *,
        latency: bool = False,
    ) -> dict[str, float]:
        """Entity id → its value over the window (queryMode TOTAL); entities without data are left out."""
        params: list[tuple[str, str]] = [
            ("includeData", "true"),
            ("queryMode", "TOTAL"),
            ("aggregationType", aggregation),
            ("startTimestamp", str(_ms(window.start))),
            ("endTimestamp", str(_ms(window.end))),
        ]
        if percentile is not None:
            params.append(("percentile", f"{percentile:g}"))
        params.extend(("tag", tag) for tag in tags)
        described = f"{timeseries} {aggregation}"
        body = self._get(f"/api/v1/timeseries/{timeseries}", params, described)
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
                f"{self.name} at {self.base_url}: malformed answer to {described}: {exc}"
            ) from None

    # ------------------------------------------------------------------ smartscape

    def count_relationships(
        self, env: str, relation: str, window: Window, tags: tuple[tuple[str, str, str | None], ...]
    ) -> SmartscapeCount:
        """Distinct entities related by ``relation`` (``toRelationships:calls``: the services
        that call the environment's services) to the services its tags match, in the window."""
        match = _RELATION_RE.match(relation)
        if match is None:
            raise SourceError(f"{self.name}: cannot count smartscape {relation!r}")
        direction, name = match.groups()
        entities = self._service_selector(env, tags)
        params: dict[str, str] = {
            "entitySelector": entities,
            "fields": f"{direction}.{name}",
            "from": str(_ms(window.start)),
            "to": str(_ms(window.end)),
            "pageSize": "500",
        }
        related: set[str] = set()
        matched = 0
        described = f"entities {entities} fields {direction}.{name}"
        while True:
            body = self._get("/api/v2/entities", params, described)
            try:
                for entity in body["entities"]:
                    matched += 1
                    for other in (entity.get(direction) or {}).get(name) or []:
                        related.add(str(other["id"]))
                next_page = body.get("nextPageKey")
            except (TypeError, KeyError, AttributeError) as exc:
                raise SourceError(
                    f"{self.name} at {self.base_url}: malformed answer to {described}: {exc}"
                ) from None
            if not next_page:
                break
            params = {"nextPageKey": str(next_page)}
        if matched == 0:
            raise NoDataError(f"no data for {env} in {window} ({self.name}: {described} matched no entity)")
        return SmartscapeCount(relation, float(len(related)), matched)

    # ------------------------------------------------------------------ HTTP

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _get(self, path: str, params: Any, described: str) -> dict[str, Any]:
        url = self.base_url + path
        if not self._token:
            raise SourceError(
                f"{self.name}: ${TOKEN_ENV} is not set: the source needs an API token "
                "(scopes metrics.read and entities.read; DataExport for the v1 API)"
            )
        log.debug("%s: GET %s (%s)", self.name, url, described)
        response, body = get_json(
            self._client,
            url,
            params,
            name=self.name,
            timeout_s=self.timeout_s,
            described=described,
            scrub=self._scrub,
        )
        if response.status_code != 200:
            detail = ""
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                detail = f": {body['error'].get('message', '')}"
            hint = " (check $DT_API_TOKEN and its scopes)" if response.status_code in {401, 403} else ""
            raise SourceError(
                self._scrub(
                    f"{self.name} at {url} answered HTTP {response.status_code}{detail}{hint} ({described})"
                )
            )
        if not isinstance(body, dict):
            raise SourceError(f"{self.name} at {url}: malformed answer (not a JSON object) to {described}")
        return body


class _Series(list[float | None]):
    """The values of one merged series, with their timestamps (ms) when asked for."""

    def __init__(self, values: list[float | None], timestamps: list[int]) -> None:
        super().__init__(values)
        self.timestamps = timestamps
