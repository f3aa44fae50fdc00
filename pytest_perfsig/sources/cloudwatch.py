"""The CloudWatch source: metrics of a load balancer (or any service publishing the same shape of
metrics) read with ``GetMetricData``.

URL: ``cloudwatch://<region>[?namespace=...&latency=...&requests=...&failures=...]``. Defaults
fit an Application Load Balancer:

| parameter | default | meaning |
|---|---|---|
| ``namespace`` | ``AWS/ApplicationELB`` | namespace of every metric below |
| ``latency`` | ``TargetResponseTime`` | per-request latency, its statistics are ours |
| ``latency_unit`` | ``s`` | ``s`` or ``ms``: the latency metric's unit (answers are in ms) |
| ``requests`` | ``RequestCount`` | requests (statistic Sum): counts, rates, samples |
| ``failures`` | ``HTTPCode_Target_5XX_Count`` | failed requests (Sum); a comma list is added up |
| ``method_dimension`` | — | dimension naming the endpoint; without it service-method entries are skipped |
| ``period`` | ``60`` | the metrics' resolution, s (1, 5, 10, 30 for high-resolution custom metrics) |
| ``endpoint_url`` | — | another endpoint (LocalStack, a moto server) |

Dimensions of an environment: its tags of context ``CLOUDWATCH`` (key = dimension name, value =
dimension value), e.g. ``{"context": "CLOUDWATCH", "key": "LoadBalancer", "value":
"app/staging/50dc6c495c0c9188"}``. An environment without one is an error: a metric without
dimensions is not that environment's.

CloudWatch keeps data per period, so a window is widened to whole periods (start rounded down,
end up) and asked for as one period: latencies use CloudWatch's own statistics (``Average``,
``Minimum``, ``Maximum``, ``Sum``, and the extended statistics ``p50`` for the median and
``p90``, ``p99.9``... for pXX), failure rate = Sum of failures / Sum of requests, request rates
= requests per minute of the widened window. min/max/median/pXX of failure and request rates
are taken over per-period buckets. A failure metric without data points means no failures (a
load balancer publishes none for a minute without errors); a requests metric without data
points is no data. Credentials and region resolution are boto3's (profiles, roles,
``AWS_*`` variables). ``observations`` are always None: the statistical judge falls back to the
scale-factor rule.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..aggregates import aggregate
from ..aws.errors import aws_call
from ..errors import AwsError, NoDataError, SourceError, UsageError
from ..metrics import DEFAULT_MIN_SAMPLES, MetricKind, parse_metric, required_samples
from ..windows import Measurement, MetricQuery, Window

DEFAULT_TIMEOUT_S = 10.0
TAG_CONTEXT = "CLOUDWATCH"
URL_PARAMS = (
    "namespace",
    "latency",
    "latency_unit",
    "requests",
    "failures",
    "method_dimension",
    "period",
    "endpoint_url",
)
HIGH_RESOLUTION_PERIODS = (1, 5, 10, 30)
SHORT_SPANS = (1, 5, 10, 20, 30)  # the periods below a minute GetMetricData accepts
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")  # us-east-1, us-gov-west-1, ap-southeast-2
LATENCY_STATS = {"avg": "Average", "min": "Minimum", "max": "Maximum", "sum": "Sum", "median": "p50"}


@dataclass(frozen=True)
class CloudWatchConfig:
    region: str
    namespace: str = "AWS/ApplicationELB"
    latency: str = "TargetResponseTime"
    latency_unit: str = "s"
    requests: str = "RequestCount"
    failures: tuple[str, ...] = ("HTTPCode_Target_5XX_Count",)
    method_dimension: str | None = None
    period: int = 60
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if self.latency_unit not in {"s", "ms"}:
            raise UsageError(f"cloudwatch source: latency_unit must be s or ms, not {self.latency_unit!r}")
        if not (self.period in HIGH_RESOLUTION_PERIODS or (self.period > 0 and self.period % 60 == 0)):
            raise UsageError(
                f"cloudwatch source: period must be 1, 5, 10, 30 or a multiple of 60, not {self.period}"
            )
        if not self.failures or not all(self.failures):
            raise UsageError("cloudwatch source: failures names no metric")


def _where(query: MetricQuery) -> str:
    runs = f" (run {', '.join(query.run_ids)})" if query.run_ids else ""
    return f"{query.env}{' ' + query.method if query.method else ''} in {query.window}{runs}"


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class CloudWatchSource:
    """Answers metric queries with CloudWatch ``GetMetricData``."""

    name = "cloudwatch"

    def __init__(
        self,
        config: CloudWatchConfig,
        *,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: Any = None,
    ) -> None:
        self.config = config
        self.min_samples = min_samples
        self.timeout_s = timeout_s
        self._client = client
        self._owns_client = client is None

    @classmethod
    def from_url(
        cls, url: str, *, min_samples: int = DEFAULT_MIN_SAMPLES, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> CloudWatchSource:
        """``cloudwatch://<region>?namespace=..&latency=..&requests=..&failures=a,b&period=60``."""
        parts = urlsplit(url)
        region = parts.netloc
        if parts.scheme != "cloudwatch" or not region or "@" in region or parts.path not in {"", "/"}:
            shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"  # no credentials
            raise UsageError(f"not a cloudwatch URL: {shown!r} (use cloudwatch://<region>)")
        params = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(params) - set(URL_PARAMS))
        if unknown:
            raise UsageError(
                f"cloudwatch URL: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(URL_PARAMS)})"
            )
        one = {key: values[-1] for key, values in params.items()}
        defaults = CloudWatchConfig(region)
        try:
            period = int(one.get("period", defaults.period))
        except ValueError:
            raise UsageError(f"cloudwatch URL: period must be whole seconds, not {one['period']!r}") from None
        failures = (
            tuple(m.strip() for m in one["failures"].split(",")) if "failures" in one else defaults.failures
        )
        config = CloudWatchConfig(
            region=region,
            namespace=one.get("namespace", defaults.namespace),
            latency=one.get("latency", defaults.latency),
            latency_unit=one.get("latency_unit", defaults.latency_unit),
            requests=one.get("requests", defaults.requests),
            failures=failures,
            method_dimension=one.get("method_dimension") or None,
            period=period,
            endpoint_url=one.get("endpoint_url") or None,
        )
        return cls(config, min_samples=min_samples, timeout_s=timeout_s)

    def close(self) -> None:
        """Release the connections of the client this source created (a given one is the giver's)."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def probe(self) -> None:
        """Credentials, region and endpoint in one cheap call: ``ListMetrics`` of the requests
        metric in the namespace (the credentials are looked up when the call is signed).
        botocore's standard retry mode retries it as every other call (``aws/clients.py``)."""
        cfg = self.config
        if cfg.endpoint_url is None and not _REGION_RE.match(cfg.region):
            raise SourceError(
                f"the {self.name} source: {cfg.region!r} is not an AWS region name (such as us-east-1)"
            )
        where = f"in {cfg.region}" + (f" at {cfg.endpoint_url}" if cfg.endpoint_url else "")
        try:
            aws_call(
                "cloudwatch:ListMetrics",
                self.client().list_metrics,
                where=where,
                Namespace=cfg.namespace,
                MetricName=cfg.requests,
            )
        except AwsError as exc:
            raise SourceError(f"{exc} (probe)") from None

    # ------------------------------------------------------------------ protocol

    def unsupported_reason(self, timeseries: str | None, smartscape: str | None) -> str | None:
        if smartscape is not None:
            return f"the {self.name} source has no topology (smartscape {smartscape!r})"
        metric = parse_metric(timeseries) if timeseries else None
        if metric is not None and metric.scope == "servicemethod" and self.config.method_dimension is None:
            return (
                f"the {self.name} source has no per-endpoint metrics for {metric.short}: "
                f"{self.config.namespace} has no endpoint dimension (set method_dimension= in the URL)"
            )
        return None

    def measure(self, query: MetricQuery) -> Measurement:
        spec, kind, cfg = query.aggregate, query.metric.family.kind, self.config
        if query.method is not None and cfg.method_dimension is None:
            raise SourceError(self.unsupported_reason(query.metric.short, None) or "no endpoint dimension")
        dimensions = self.dimensions(query)
        start, end = self.widened(query.window)
        where = _where(query)
        over_buckets = spec.percentile is not None or spec.name in {"min", "max", "median"}
        bucketed = kind in {MetricKind.RATE, MetricKind.FAILURE_RATE} and over_buckets
        period = cfg.period if bucketed else round(end - start)
        stats: dict[str, tuple[str, str]] = {"requests": (cfg.requests, "Sum")}
        if kind is MetricKind.FAILURE_RATE:
            stats.update({f"failures{i}": (metric, "Sum") for i, metric in enumerate(cfg.failures)})
        if kind is MetricKind.LATENCY and spec.name != "count":
            stat = f"p{spec.percentile:g}" if spec.percentile is not None else LATENCY_STATS[spec.name]
            stats["value"] = (cfg.latency, stat)
        described = (
            f"{cfg.requests} Sum in {cfg.namespace} "
            f"{{{', '.join(d['Name'] + '=' + d['Value'] for d in dimensions)}}} "
            f"{Window(start, end)}, period {period} s"
        )
        series = self._get_metric_data(stats, dimensions, start, end, period, described)
        counts = series["requests"]
        requests = sum(counts.values())
        samples = round(requests)
        if samples <= 0:
            raise NoDataError(f"no data for {where} ({self.name}: {described} returned nothing)")
        needed = required_samples(spec, self.min_samples)
        if samples < needed:
            raise NoDataError(
                f"too few samples for {where}: {samples} < {needed} needed for {spec} "
                f"({self.name}: {described} = {samples})"
            )
        failures: dict[datetime, float] = {}
        for key, points in series.items():
            if key.startswith("failures"):
                for ts, value in points.items():
                    failures[ts] = failures.get(ts, 0.0) + value
        if bucketed:
            if kind is MetricKind.RATE:
                buckets = _bucket_times(start, end, period)
                values = [60.0 * counts.get(ts, 0.0) / period for ts in buckets]
            else:
                values = [
                    100.0 * failures.get(ts, 0.0) / count for ts, count in sorted(counts.items()) if count
                ]
            return Measurement(query, aggregate(values, spec), samples, None)
        if kind is MetricKind.COUNT or (kind is MetricKind.LATENCY and spec.name == "count"):
            return Measurement(query, requests, samples, None)
        if kind is MetricKind.RATE:
            return Measurement(query, 60.0 * requests / (end - start), samples, None)
        if kind is MetricKind.FAILURE_RATE:
            return Measurement(query, 100.0 * sum(failures.values()) / requests, samples, None)
        points = series["value"]
        metric, stat = stats["value"]
        if not points:
            raise NoDataError(
                f"no data for {where} ({self.name}: {metric} {stat} in {cfg.namespace} returned nothing)"
            )
        if len(points) > 1:
            raise SourceError(
                f"{self.name}: {metric} {stat} returned {len(points)} data points for one period of "
                f"{period} s; cannot merge them"
            )
        value = next(iter(points.values()))
        return Measurement(query, value * 1000.0 if cfg.latency_unit == "s" else value, samples, None)

    # ------------------------------------------------------------------ request

    def dimensions(self, query: MetricQuery) -> list[dict[str, str]]:
        dimensions: list[dict[str, str]] = []
        for context, key, value in query.tags:
            if context.upper() != TAG_CONTEXT:
                continue
            if value is None:
                raise SourceError(f"{query.env}: CLOUDWATCH tag {key!r} needs a value (the dimension's)")
            dimensions.append({"Name": key, "Value": value})
        if not dimensions:
            raise SourceError(
                f"no tag of {query.env} names its CloudWatch dimensions: add one such as "
                '{"context": "CLOUDWATCH", "key": "LoadBalancer", "value": "app/<name>/<id>"}'
            )
        if query.method is not None and self.config.method_dimension is not None:
            dimensions.append({"Name": self.config.method_dimension, "Value": query.method})
        return dimensions

    def widened(self, window: Window) -> tuple[float, float]:
        """The window as one valid CloudWatch period: the shortest of 1, 5, 10, 20, 30 s (not
        below the metrics' resolution) that holds it, aligned to itself; else whole minutes
        (whole ``period`` s when that is longer), from the minute the window starts in."""
        period = self.config.period
        for span in SHORT_SPANS:
            if span < period or span % period:
                continue
            start = math.floor(window.start / span) * span
            if start + span >= window.end:
                return float(start), float(start + span)
        unit = max(60, period)
        start = math.floor(window.start / unit) * unit
        span = max(unit, math.ceil((window.end - start) / unit) * unit)
        return float(start), float(start + span)

    def _get_metric_data(
        self,
        stats: dict[str, tuple[str, str]],
        dimensions: list[dict[str, str]],
        start: float,
        end: float,
        period: int,
        described: str,
    ) -> dict[str, dict[datetime, float]]:
        queries = [
            {
                "Id": key,
                "MetricStat": {
                    "Metric": {
                        "Namespace": self.config.namespace,
                        "MetricName": metric,
                        "Dimensions": dimensions,
                    },
                    "Period": period,
                    "Stat": stat,
                },
                "ReturnData": True,
            }
            for key, (metric, stat) in stats.items()
        ]
        request: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": _utc(start),
            "EndTime": _utc(end),
            "ScanBy": "TimestampAscending",
        }
        out: dict[str, dict[datetime, float]] = {key: {} for key in stats}
        client = self.client()
        where = f"in {self.config.region}"
        while True:
            try:
                response = aws_call(
                    "cloudwatch:GetMetricData", client.get_metric_data, where=where, **request
                )
            except AwsError as exc:  # re-raised as SourceError: the gate's "could not measure" for any source
                raise SourceError(f"{exc} ({described})") from None
            try:
                for result in response["MetricDataResults"]:
                    status = result.get("StatusCode", "Complete")
                    if status not in {"Complete", "PartialData"}:
                        raise SourceError(
                            f"{self.name}: {stats[result['Id']][0]} answered {status} ({described})"
                        )
                    points = out[result["Id"]]
                    for ts, value in zip(result["Timestamps"], result["Values"], strict=True):
                        points[ts] = points.get(ts, 0.0) + float(value)
                token = response.get("NextToken")
            except (KeyError, TypeError, ValueError) as exc:
                raise SourceError(
                    f"{self.name}: malformed GetMetricData answer: {exc!r} ({described})"
                ) from None
            if not token:
                return out
            request["NextToken"] = token

    def client(self) -> Any:
        if self._client is None:
            from ..aws.clients import cloudwatch_client

            try:
                self._client = cloudwatch_client(
                    self.config.region, endpoint_url=self.config.endpoint_url, timeout_s=self.timeout_s
                )
            except AwsError as exc:  # boto3 missing: the gate reports it as this source's failure
                raise SourceError(f"the {self.name} source: {exc}") from None
        return self._client


def _bucket_times(start: float, end: float, period: int) -> list[datetime]:
    return [_utc(start + k * period) for k in range(round((end - start) / period))]
