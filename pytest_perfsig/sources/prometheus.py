"""The Prometheus source: every metric of the local source, computed with PromQL from a request
counter and a request-duration histogram, over exactly the judged window.

URL: ``prometheus://host:port`` (``prometheus+https://host`` for TLS; a path prefix such as
``prometheus://host/prom`` is kept; ``user:password@`` in the URL becomes basic auth and is
never shown). Query parameters override the defaults below (``?requests=...&step=5``).

Series of an environment: tags of context ``PROMETHEUS`` are label matchers, used verbatim
(``key="value"``; a tag without a value means the label must be present). A ``CONTEXTLESS``
``DeploymentGroup:<Env>`` tag, the original monspec's, maps to ``stage="<Env>"`` unless a
PROMETHEUS tag names ``stage`` itself. An environment with neither is an error: querying every
series would mix environments. Service-method entries add ``endpoint="<method>"``. The monspec's
service name selects nothing (add a ``PROMETHEUS`` tag such as ``job=...`` for that), and a stored
baseline run is answered from its time window: Prometheus does not know Locust runs.

Every query is evaluated at the window end (``@ <end>``) over a range of the window's length,
so the answer covers the judged window whatever the time of the query:

| metric | aggregate | PromQL |
|---|---|---|
| requests, samples | count | ``sum(increase(<requests>{sel}[d] @ end))`` |
| responsetime | avg | ``sum(increase(<duration>_sum…)) / sum(increase(<duration>_count…))`` |
| responsetime | median, pXX | ``histogram_quantile(q, sum by (le) (increase(<duration>_bucket…)))`` |
| responsetime | sum | ``sum(increase(<duration>_sum…))`` |
| responsetime | min, max | not answerable: a histogram keeps no extremes (SourceError) |
| failurerate | avg | failed (``status=~"<failed>"``) / all requests, in percent |
| requestspermin | avg, count, sum | requests / window minutes |
| failurerate, requestspermin | min, max, median, pXX | ``*_over_time`` of ``rate(...[step])[d:step]`` |

Latencies are the server's (the histogram is in seconds; answers are in ms) and a quantile is
interpolated inside its histogram bucket. ``increase()`` extrapolates to the range ends, so
counts are not integers; ``samples`` is the request count, rounded. Before answering a window
that ended in the last five minutes, the source waits (``settle`` seconds at most) until
Prometheus has scraped past its end: a window judged right after the load would otherwise miss
its last seconds. ``observations`` are always None: Prometheus keeps no raw samples, so the
statistical judge falls back to the scale-factor rule.

A query of its own (``MetricQuery.expression``, a Keptn SLI) is evaluated as Keptn's
prometheus-service does: ``$DURATION_SECONDS`` becomes the window's length in whole seconds
(``37s``, rounded up), and the query is an instant query at the window's end; first the source
waits until every target has been scraped past that end (``min(timestamp(up))``). Its answer must
be one series or a scalar: nothing, or NaN, is no data (Keptn would read 0), several series an
error (Keptn would take the first).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from ..errors import NoDataError, SourceError, UsageError
from ..metrics import DEFAULT_MIN_SAMPLES, MetricKind, required_samples
from ..windows import Measurement, MetricQuery, Window
from .http import get_json

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_REQUESTS_METRIC = "http_requests_total"
DEFAULT_DURATION_METRIC = "http_request_duration_seconds"
# Failed requests: server errors, and status 0 (the request never got an answer).
DEFAULT_FAILED_STATUS = "5..|0"
# Width of the buckets min/max/median/pXX of rates are taken over; at least two scrape
# intervals, or rate() finds one sample per bucket and answers nothing.
DEFAULT_STEP_S = 30.0
# How long a query waits for Prometheus to scrape past the end of a recent window.
DEFAULT_SETTLE_S = 30.0
RECENT_S = 300.0  # Prometheus's default lookback: older windows are complete or never will be
POLL_S = 0.5

TAG_CONTEXT = "PROMETHEUS"
DEPLOYMENT_GROUP = ("CONTEXTLESS", "DeploymentGroup")
STAGE_LABEL = "stage"
ENDPOINT_LABEL = "endpoint"
URL_PARAMS = ("requests", "duration", "failed", "step", "settle")
SCHEMES = {"prometheus": "http", "prometheus+http": "http", "prometheus+https": "https"}

_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _escape(value: str) -> str:
    """A PromQL double-quoted string literal's content."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _duration(seconds: float) -> str:
    """A PromQL duration; milliseconds, as windows are not whole seconds."""
    return f"{max(1, round(seconds * 1000))}ms"


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _where(query: MetricQuery) -> str:
    runs = f" (run {', '.join(query.run_ids)})" if query.run_ids else ""
    return f"{query.env}{' ' + query.method if query.method else ''} in {query.window}{runs}"


@dataclass(frozen=True)
class _Config:
    requests: str = DEFAULT_REQUESTS_METRIC
    duration: str = DEFAULT_DURATION_METRIC
    failed: str = DEFAULT_FAILED_STATUS
    step_s: float = DEFAULT_STEP_S
    settle_s: float = DEFAULT_SETTLE_S


class PrometheusSource:
    """Answers metric queries with PromQL (``/api/v1/query``) against one Prometheus server."""

    name = "prometheus"

    def __init__(
        self,
        base_url: str,
        *,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        auth: tuple[str, str] | None = None,
        requests_metric: str = DEFAULT_REQUESTS_METRIC,
        duration_metric: str = DEFAULT_DURATION_METRIC,
        failed_status: str = DEFAULT_FAILED_STATUS,
        step_s: float = DEFAULT_STEP_S,
        settle_s: float = DEFAULT_SETTLE_S,
    ) -> None:
        for metric in (requests_metric, duration_metric):
            if not _METRIC_RE.match(metric):
                raise UsageError(f"prometheus source: {metric!r} is not a metric name")
        try:
            re.compile(failed_status)
        except re.error as exc:
            raise UsageError(f"prometheus source: failed={failed_status!r} is not a regex: {exc}") from None
        if not (step_s > 0 and settle_s >= 0 and timeout_s > 0):
            raise UsageError("prometheus source: step and timeout must be > 0, settle >= 0")
        self.base_url = base_url.rstrip("/")
        self.min_samples = min_samples
        self.timeout_s = timeout_s
        self.config = _Config(requests_metric, duration_metric, failed_status, step_s, settle_s)
        # Proxies from the environment could see queries (and credentials) meant for one host.
        self._client = httpx.Client(timeout=timeout_s, auth=auth, trust_env=False, follow_redirects=False)
        self._counts: dict[tuple[str, float, float], tuple[float | None, str]] = {}
        self._settled: set[tuple[str, float]] = set()

    @classmethod
    def from_url(
        cls, url: str, *, min_samples: int = DEFAULT_MIN_SAMPLES, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> PrometheusSource:
        """``prometheus://host:port[/prefix][?requests=..&duration=..&failed=..&step=..&settle=..]``."""
        parts = urlsplit(url)
        scheme = SCHEMES.get(parts.scheme)
        if scheme is None or not parts.hostname:
            raise UsageError(f"not a prometheus URL: {_display(url)!r} (use prometheus://host:port)")
        params = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(params) - set(URL_PARAMS))
        if unknown:
            raise UsageError(
                f"prometheus URL {_display(url)!r}: unknown parameter(s) {', '.join(unknown)} "
                f"(known: {', '.join(URL_PARAMS)})"
            )
        one = {key: values[-1] for key, values in params.items()}
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        auth = (parts.username or "", parts.password or "") if parts.username or parts.password else None
        try:
            step_s = float(one.get("step", DEFAULT_STEP_S))
            settle_s = float(one.get("settle", DEFAULT_SETTLE_S))
        except ValueError:
            raise UsageError(f"prometheus URL {_display(url)!r}: step and settle are seconds") from None
        return cls(
            f"{scheme}://{netloc}{parts.path}",
            min_samples=min_samples,
            timeout_s=timeout_s,
            auth=auth,
            requests_metric=one.get("requests", DEFAULT_REQUESTS_METRIC),
            duration_metric=one.get("duration", DEFAULT_DURATION_METRIC),
            failed_status=one.get("failed", DEFAULT_FAILED_STATUS),
            step_s=step_s,
            settle_s=settle_s,
        )

    def close(self) -> None:
        self._client.close()

    def probe(self) -> None:
        """``GET /api/v1/status/buildinfo``: the server answers and accepts the credentials. A
        server without that endpoint (404) is asked the constant query ``1`` instead."""
        for path, params in (("/api/v1/status/buildinfo", None), ("/api/v1/query", {"query": "1"})):
            url = self.base_url + path
            response, body = get_json(
                self._client, url, params, name=self.name, timeout_s=self.timeout_s, described="probe"
            )
            if response.status_code == 404:
                continue
            if response.status_code in {401, 403}:
                raise SourceError(
                    f"{self.name} at {url} answered HTTP {response.status_code}: the credentials "
                    "(user:password@ in the URL) are missing or refused"
                )
            if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
                raise SourceError(
                    f"{self.name} at {url} answered HTTP {response.status_code}, not as Prometheus's "
                    "HTTP API does (probe): check the URL and its path prefix"
                )
            return
        raise SourceError(
            f"{self.name} at {self.base_url}: no Prometheus HTTP API there (HTTP 404 for "
            "/api/v1/status/buildinfo and /api/v1/query): check the URL and its path prefix"
        )

    # ------------------------------------------------------------------ protocol

    def unsupported_reason(self, timeseries: str | None, smartscape: str | None) -> str | None:
        if smartscape is not None:
            return f"the {self.name} source has no topology (smartscape {smartscape!r})"
        return None

    def measure(self, query: MetricQuery) -> Measurement:
        if query.expression is not None:
            return self.measure_expression(query)
        spec = query.aggregate
        kind = query.metric.family.kind
        if kind is MetricKind.LATENCY and spec.name in {"min", "max"}:
            raise SourceError(
                f"the {self.name} source cannot answer {spec} of {query.metric}: a histogram keeps "
                "no extremes (use a percentile such as p99, or the local source)"
            )
        selector = self.selector(query)
        self._await_scrape(query, f"max(timestamp({self.config.requests}{selector}))")
        requests, requests_query = self._requests(selector, query.window)
        where = _where(query)
        if requests is None or round(requests) <= 0:
            raise NoDataError(f"no data for {where} ({self.name}: {requests_query} returned nothing)")
        samples = round(requests)
        needed = required_samples(spec, self.min_samples)
        if samples < needed:
            raise NoDataError(
                f"too few samples for {where}: {samples} < {needed} needed for {spec} "
                f"({self.name}: {requests_query} = {requests:.1f})"
            )
        value = self._value(query, selector, requests, where)
        return Measurement(query, value, samples, None)

    def measure_expression(self, query: MetricQuery) -> Measurement:
        """A query of its own over the window (the module docstring says how); ``samples`` is 1."""
        assert query.expression is not None
        window = query.window
        # round(): a window of 37.0000001 s is 37 s, not 38.
        duration = f"{math.ceil(round(window.duration_s, 3))}s"
        promql = query.expression.replace("$DURATION_SECONDS", duration)
        self._await_scrape(query, "min(timestamp(up))")
        return Measurement(query, self._required(promql, window.end, _where(query)), 1)

    # ------------------------------------------------------------------ PromQL

    def selector(self, query: MetricQuery) -> str:
        """The label matchers of the query's environment (and endpoint), ``{...}``."""
        matchers: list[str] = []
        labels: set[str] = set()
        for context, key, value in query.tags:
            if context.upper() != TAG_CONTEXT:
                continue
            if not _LABEL_RE.match(key):
                raise SourceError(f"{query.env}: PROMETHEUS tag {key!r} is not a label name")
            labels.add(key)
            matchers.append(f'{key}!=""' if value is None else f'{key}="{_escape(value)}"')
        for context, key, value in query.tags:
            if (context.upper(), key) == DEPLOYMENT_GROUP and value and STAGE_LABEL not in labels:
                labels.add(STAGE_LABEL)
                matchers.append(f'{STAGE_LABEL}="{_escape(value)}"')
        if not matchers:
            raise SourceError(
                f"no tag of {query.env} selects its Prometheus series: add a tag "
                f'{{"context": "PROMETHEUS", "key": "<label>", "value": "<value>"}} or '
                f'{{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": "{query.env}"}} '
                f"(matches stage=...)"
            )
        if query.method is not None:
            matchers.append(f'{ENDPOINT_LABEL}="{_escape(query.method)}"')
        return "{" + ",".join(matchers) + "}"

    def _over(self, metric: str, selector: str, window: Window, extra: str = "") -> str:
        """``increase(metric{sel}[d] @ end)``: the increase over exactly the window."""
        inner = selector[:-1] + ("," + extra if extra else "") + "}"
        return f"increase({metric}{inner}[{_duration(window.duration_s)}] @ {_number(window.end)})"

    def _requests(self, selector: str, window: Window) -> tuple[float | None, str]:
        key = (selector, window.start, window.end)
        if key not in self._counts:
            promql = f"sum({self._over(self.config.requests, selector, window)})"
            self._counts[key] = (self._scalar(promql, window.end), promql)
        return self._counts[key]

    def _value(self, query: MetricQuery, selector: str, requests: float, where: str) -> float:
        spec, window, cfg = query.aggregate, query.window, self.config
        kind = query.metric.family.kind
        failed = f'status=~"{_escape(cfg.failed)}"'
        over_buckets = spec.percentile is not None or spec.name in {"min", "max", "median"}
        if kind is MetricKind.COUNT or (kind is MetricKind.LATENCY and spec.name == "count"):
            return float(requests)
        if kind is MetricKind.RATE and not over_buckets:
            return 60.0 * requests / max(window.duration_s, 1.0)
        if kind is MetricKind.FAILURE_RATE and not over_buckets:
            promql = f"sum({self._over(cfg.requests, selector, window, failed)})"
            failures = self._scalar(promql, window.end)
            # No failed series at all: none of the requests failed.
            return 100.0 * (failures or 0.0) / requests
        if kind is MetricKind.LATENCY:
            duration = cfg.duration
            if spec.name == "avg":
                promql = (
                    f"sum({self._over(duration + '_sum', selector, window)}) / "
                    f"sum({self._over(duration + '_count', selector, window)})"
                )
            elif spec.name == "sum":
                promql = f"sum({self._over(duration + '_sum', selector, window)})"
            else:
                q = 0.5 if spec.name == "median" else (spec.percentile or 0.0) / 100.0
                promql = (
                    f"histogram_quantile({_number(q)}, sum by (le) "
                    f"({self._over(duration + '_bucket', selector, window)}))"
                )
            return 1000.0 * self._required(promql, window.end, where)
        # Rates over buckets of `step` seconds: a subquery over the window, each point the
        # rate over the step before it; buckets without requests have no failure rate.
        step = _duration(cfg.step_s)
        if kind is MetricKind.RATE:
            inner = f"60 * sum(rate({cfg.requests}{selector}[{step}]))"
        else:
            failed_selector = selector[:-1] + "," + failed + "}"
            inner = (
                f"(100 * (sum(rate({cfg.requests}{failed_selector}[{step}])) or vector(0)) "
                f"/ sum(rate({cfg.requests}{selector}[{step}]))) >= 0"
            )
        subquery = f"({inner})[{_duration(window.duration_s)}:{step}] @ {_number(window.end)}"
        if spec.name in {"min", "max"}:
            promql = f"{spec.name}_over_time({subquery})"
        else:
            q = 0.5 if spec.name == "median" else (spec.percentile or 0.0) / 100.0
            promql = f"quantile_over_time({_number(q)}, {subquery})"
        return self._required(promql, window.end, where)

    def _required(self, promql: str, at: float, where: str) -> float:
        value = self._scalar(promql, at)
        if value is None or math.isnan(value):
            raise NoDataError(f"no data for {where} ({self.name}: {promql} returned nothing)")
        if math.isinf(value):
            raise SourceError(
                f"{self.name}: {promql} for {where} is infinite: the value lies beyond the "
                "histogram's largest finite bucket"
            )
        return value

    def _await_scrape(self, query: MetricQuery, promql: str) -> None:
        """Wait until ``promql`` (the newest sample's time) is past a recent window's end (a query
        right after the load would otherwise miss the last scrape intervals). Series that do not
        exist at all are not waited for: that is no data, and the query itself says so."""
        end = query.window.end
        key = (promql, end)
        if key in self._settled or time.time() - end > RECENT_S:
            return
        deadline = time.monotonic() + self.config.settle_s
        while True:
            newest = self._scalar(promql, None)
            if newest is None or newest >= end:
                self._settled.add(key)
                return
            if time.monotonic() >= deadline:
                raise NoDataError(
                    f"no data for {_where(query)}: Prometheus has not scraped past the window end "
                    f"within {self.config.settle_s:g} s (newest sample {newest - end:+.1f} s from it; "
                    f"{self.name}: {promql})"
                )
            time.sleep(POLL_S)

    # ------------------------------------------------------------------ HTTP

    def _scalar(self, promql: str, at: float | None) -> float | None:
        """The value of a query that yields at most one series; None when it yields none."""
        params = {"query": promql}
        if at is not None:
            params["time"] = _number(at)
        data = self._get("/api/v1/query", params, promql)
        result_type, result = data.get("resultType"), data.get("result")
        try:
            if result_type == "scalar":
                return float(result[1])  # type: ignore[index]
            if result_type != "vector" or not isinstance(result, list):
                raise TypeError(f"resultType {result_type!r}")
            if not result:
                return None
            if len(result) > 1:
                labels = ", ".join(str(series.get("metric")) for series in result[:3])
                raise SourceError(
                    f"{self.name}: {promql} returned {len(result)} series ({labels}...), expected one"
                )
            return float(result[0]["value"][1])
        except (TypeError, KeyError, IndexError, ValueError, AttributeError) as exc:
            raise SourceError(
                f"{self.name} at {self.base_url}: malformed answer to {promql}: {exc}"
            ) from None

    def _get(self, path: str, params: dict[str, str], promql: str) -> dict[str, Any]:
        url = self.base_url + path
        response, body = get_json(
            self._client, url, params, name=self.name, timeout_s=self.timeout_s, described=f"query: {promql}"
        )
        if response.status_code != 200:
            detail = ""
            if isinstance(body, dict) and body.get("error"):
                detail = f" {body.get('errorType', 'error')}: {body['error']}"
            raise SourceError(
                f"{self.name} at {url} answered HTTP {response.status_code}{detail} (query: {promql})"
            )
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise SourceError(f"{self.name} at {url}: malformed answer (not JSON with data) to {promql}")
        if body.get("status") != "success":
            raise SourceError(f"{self.name} at {url}: query failed: {body.get('error')} ({promql})")
        data: dict[str, Any] = body["data"]
        return data


def _display(url: str) -> str:
    """A URL without its user info: what messages may show."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl()
