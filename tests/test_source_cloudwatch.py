"""The CloudWatch source. Percentiles (extended statistics such as ``p90``) are tested with
botocore's Stubber, asserting the exact GetMetricData request: moto cannot compute percentiles
(it fails on them). Averages, counts and failure rates run against moto's CloudWatch after
PutMetricData; errors come from the Stubber (ClientError) and a closed port (connection)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pytest_perfsig.errors import NoDataError, SourceError, UsageError
from pytest_perfsig.metrics import parse_aggregate, parse_metric
from pytest_perfsig.sources.cloudwatch import CloudWatchConfig, CloudWatchSource
from pytest_perfsig.windows import MetricQuery, Window

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
W = Window(T0 + 5, T0 + 125)  # 22:13:25–22:15:25 → asked for as 22:13:00–22:16:00
MINUTE = datetime(2023, 11, 14, 22, 13, tzinfo=UTC)
START, END = MINUTE, datetime(2023, 11, 14, 22, 16, tzinfo=UTC)
SVC = "SampleJSonService"
STAGING_LB = "app/staging/50dc6c495c0c9188"
PRODUCTION_LB = "app/production/8a1f0e5c3b2d4e6f"
TAGS = {
    "Staging": (("CONTEXTLESS", "DeploymentGroup", "Staging"), ("CLOUDWATCH", "LoadBalancer", STAGING_LB)),
    "Production": (("CLOUDWATCH", "LoadBalancer", PRODUCTION_LB),),
}
NS = "AWS/ApplicationELB"


def q(
    metric: str,
    aggregate: str,
    *,
    env: str = "Staging",
    method: str | None = None,
    window: Window = W,
    tags: tuple[tuple[str, str, str | None], ...] | None = None,
) -> MetricQuery:
    parsed_metric, parsed_aggregate = parse_metric(metric), parse_aggregate(aggregate)
    assert parsed_metric is not None and parsed_aggregate is not None
    return MetricQuery(
        SVC,
        env,
        method,
        parsed_metric,
        parsed_aggregate,
        window,
        tags=TAGS.get(env, ()) if tags is None else tags,
    )


def stat_query(
    key: str,
    metric: str,
    stat: str,
    period: int = 180,
    lb: str = STAGING_LB,
    extra: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "Id": key,
        "ReturnData": True,
        "MetricStat": {
            "Metric": {
                "Namespace": NS,
                "MetricName": metric,
                "Dimensions": [{"Name": "LoadBalancer", "Value": lb}, *(extra or [])],
            },
            "Period": period,
            "Stat": stat,
        },
    }


def result(key: str, values: list[float], start: datetime = MINUTE, period: int = 180) -> dict[str, Any]:
    stamps = [datetime.fromtimestamp(start.timestamp() + k * period, UTC) for k in range(len(values))]
    return {"Id": key, "Label": key, "Timestamps": stamps, "Values": values, "StatusCode": "Complete"}


@pytest.fixture
def stubbed() -> Iterator[tuple[CloudWatchSource, Stubber]]:
    client = boto3.client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield CloudWatchSource(CloudWatchConfig("us-east-1"), client=client), stubber
        stubber.assert_no_pending_responses()


def expect(
    stubber: Stubber,
    queries: list[dict[str, Any]],
    results: list[dict[str, Any]],
    *,
    start: datetime = START,
    end: datetime = END,
    token: str | None = None,
    next_token: str | None = None,
) -> None:
    params: dict[str, Any] = {
        "MetricDataQueries": queries,
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }
    if token:
        params["NextToken"] = token
    response: dict[str, Any] = {"MetricDataResults": results, "Messages": []}
    if next_token:
        response["NextToken"] = next_token
    stubber.add_response("get_metric_data", response, params)


# ---------------------------------------------------------------------------- URL


def test_from_url_defaults_and_parameters() -> None:
    alb = CloudWatchSource.from_url("cloudwatch://eu-west-1", min_samples=7)
    assert alb.config == CloudWatchConfig("eu-west-1")
    assert (alb.config.namespace, alb.config.latency, alb.config.requests, alb.config.failures) == (
        NS,
        "TargetResponseTime",
        "RequestCount",
        ("HTTPCode_Target_5XX_Count",),
    )
    assert (alb.min_samples, alb.timeout_s) == (7, 10.0)
    custom = CloudWatchSource.from_url(
        "cloudwatch://us-east-1?namespace=Shop&latency=Latency&latency_unit=ms&requests=Requests"
        "&failures=Errors5xx,Timeouts&method_dimension=Endpoint&period=10&endpoint_url=http://127.0.0.1:5000"
    )
    assert custom.config == CloudWatchConfig(
        "us-east-1",
        "Shop",
        "Latency",
        "ms",
        "Requests",
        ("Errors5xx", "Timeouts"),
        "Endpoint",
        10,
        "http://127.0.0.1:5000",
    )
    for bad, message in (
        ("cloudwatch://us-east-1?nope=1", r"unknown parameter\(s\) nope"),
        ("cloudwatch://us-east-1?period=45", "period must be 1, 5, 10, 30 or a multiple of 60"),
        ("cloudwatch://us-east-1?period=x", "period must be whole seconds"),
        ("cloudwatch://us-east-1?latency_unit=h", "latency_unit must be s or ms"),
        ("cloudwatch://key:secret@us-east-1", "not a cloudwatch URL"),
        ("cloudwatch://", "not a cloudwatch URL"),
    ):
        with pytest.raises(UsageError, match=message) as info:
            CloudWatchSource.from_url(bad)
        assert "secret" not in str(info.value)


def test_windows_become_one_valid_period() -> None:
    alb = CloudWatchSource(CloudWatchConfig("us-east-1"))
    assert alb.widened(W) == (MINUTE.timestamp(), END.timestamp())
    assert alb.widened(Window(T0, T0 + 10)) == (T0 - 20, T0 + 40)  # 22:13:00–22:14:00
    fine = CloudWatchSource(CloudWatchConfig("us-east-1", period=1))
    assert fine.widened(Window(T0 + 2, T0 + 9)) == (T0, T0 + 10)
    assert fine.widened(Window(T0 + 2, T0 + 12)) == (T0, T0 + 20)
    assert fine.widened(Window(T0 + 2, T0 + 50)) == (T0 - 20, T0 + 100)  # whole minutes
    assert CloudWatchSource(CloudWatchConfig("us-east-1", period=300)).widened(W) == (T0 - 200, T0 + 400)


# ---------------------------------------------------------------------------- Stubber: percentiles


@pytest.mark.parametrize(
    ("aggregate", "stat", "seconds", "ms"),
    [
        ("p90", "p90", 0.0315, 31.5),
        ("p99.9", "p99.9", 0.25, 250.0),
        ("median", "p50", 0.008, 8.0),
    ],
)
def test_percentiles_are_extended_statistics(
    stubbed: tuple[CloudWatchSource, Stubber], aggregate: str, stat: str, seconds: float, ms: float
) -> None:
    source, stubber = stubbed
    source.min_samples = 1
    expect(
        stubber,
        [stat_query("requests", "RequestCount", "Sum"), stat_query("value", "TargetResponseTime", stat)],
        [result("requests", [6000.0]), result("value", [seconds])],
    )
    m = source.measure(q("service.responsetime", aggregate))
    assert (m.value, m.samples, m.observations, m.unit) == (pytest.approx(ms), 6000, None, "ms")


def test_method_dimension_and_pagination(stubbed: tuple[CloudWatchSource, Stubber]) -> None:
    source, stubber = stubbed
    source.config = CloudWatchConfig("us-east-1", method_dimension="Endpoint")
    endpoint = [{"Name": "Endpoint", "Value": "/api/invoke"}]
    queries = [
        stat_query("requests", "RequestCount", "Sum", extra=endpoint),
        stat_query("value", "TargetResponseTime", "p90", extra=endpoint),
    ]
    partial = {**result("requests", [100.0]), "StatusCode": "PartialData"}
    expect(stubber, queries, [partial, result("value", [])], next_token="page-2")
    expect(stubber, queries, [result("requests", []), result("value", [0.012])], token="page-2")
    m = source.measure(q("servicemethod.responsetime", "p90", method="/api/invoke"))
    assert (m.value, m.samples) == (pytest.approx(12.0), 100)


def test_failure_rate_over_minutes(stubbed: tuple[CloudWatchSource, Stubber]) -> None:
    source, stubber = stubbed
    expect(
        stubber,
        [
            stat_query("requests", "RequestCount", "Sum", period=60),
            stat_query("failures0", "HTTPCode_Target_5XX_Count", "Sum", period=60),
        ],
        [result("requests", [100.0, 0.0, 300.0], period=60), result("failures0", [10.0], period=60)],
    )
    assert source.measure(q("service.failurerate", "max")).value == 10.0  # minute 2 has no requests


def test_client_errors_and_bad_status_are_source_errors(stubbed: tuple[CloudWatchSource, Stubber]) -> None:
    source, stubber = stubbed
    stubber.add_client_error(
        "get_metric_data",
        service_error_code="AccessDenied",
        service_message="User is not authorized to perform cloudwatch:GetMetricData",
        http_status_code=403,
    )
    with pytest.raises(
        SourceError,
        match=r"^CloudWatch GetMetricData in us-east-1 failed: AccessDenied: User is not "
        r"authorized to perform cloudwatch:GetMetricData \(the role perfsig runs with needs cloudwatch:GetMetricData\) "
        r"\(RequestCount Sum in AWS/ApplicationELB "
        rf"\{{LoadBalancer={STAGING_LB}\}} 2023-11-14 22:13:00–22:16:00 UTC, "
        r"period 180 s\)$",
    ):
        source.measure(q("service.requests", "count"))
    expect(
        stubber,
        [stat_query("requests", "RequestCount", "Sum")],
        [{**result("requests", []), "StatusCode": "InternalError"}],
    )
    with pytest.raises(SourceError, match="RequestCount answered InternalError"):
        source.measure(q("service.requests", "count"))


def test_unreachable_endpoint_is_a_source_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = CloudWatchSource.from_url(
        f"cloudwatch://us-east-1?endpoint_url=http://127.0.0.1:{port}", timeout_s=1
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "secret-key-never-shown")
        with pytest.raises(
            SourceError,
            match=r"^CloudWatch GetMetricData in us-east-1 failed: EndpointConnectionError: .* "
            r"\(check the network, the region and AWS_ENDPOINT_URL\) \(RequestCount Sum",
        ) as info:
            source.measure(q("service.requests", "count"))
    assert "secret-key-never-shown" not in str(info.value)


def test_tags_and_skipped_entries() -> None:
    source = CloudWatchSource(CloudWatchConfig("us-east-1"))
    with pytest.raises(SourceError, match="no tag of Testing names its CloudWatch dimensions"):
        source.measure(q("service.requests", "count", env="Testing"))
    with pytest.raises(SourceError, match="needs a value"):
        source.measure(q("service.requests", "count", tags=(("CLOUDWATCH", "LoadBalancer", None),)))
    assert source.unsupported_reason(None, "toRelationships:calls") == (
        "the cloudwatch source has no topology (smartscape 'toRelationships:calls')"
    )
    assert source.unsupported_reason("com.dynatrace.builtin:servicemethod.responsetime", None) == (
        "the cloudwatch source has no per-endpoint metrics for servicemethod.responsetime: AWS/ApplicationELB "
        "has no endpoint dimension (set method_dimension= in the URL)"
    )
    assert source.unsupported_reason("service.responsetime", None) is None
    with_method = CloudWatchSource(CloudWatchConfig("us-east-1", method_dimension="Endpoint"))
    assert with_method.unsupported_reason("servicemethod.responsetime", None) is None


# ---------------------------------------------------------------------------- moto: avg, counts, failures


@pytest.fixture
def moto_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudWatchSource]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        at = datetime(2023, 11, 14, 22, 14, 10, tzinfo=UTC)

        def put(lb: str, name: str, values: list[float], counts: list[float] | None = None) -> None:
            datum: dict[str, Any] = {
                "MetricName": name,
                "Timestamp": at,
                "Values": values,
                "Dimensions": [{"Name": "LoadBalancer", "Value": lb}],
            }
            if counts:
                datum["Counts"] = counts
            client.put_metric_data(Namespace=NS, MetricData=[datum])

        put(STAGING_LB, "TargetResponseTime", [0.010, 0.020, 0.030], [100, 100, 200])
        put(STAGING_LB, "RequestCount", [400.0])
        put(STAGING_LB, "HTTPCode_Target_5XX_Count", [50.0])
        put(PRODUCTION_LB, "TargetResponseTime", [0.005], [120])
        put(PRODUCTION_LB, "RequestCount", [120.0])  # and no 5xx metric at all
        yield CloudWatchSource.from_url("cloudwatch://us-east-1")


def test_moto_average_latency_counts_and_rates(moto_source: CloudWatchSource) -> None:
    avg = moto_source.measure(q("service.responsetime", "avg"))
    assert (avg.value, avg.samples) == (pytest.approx(22.5), 400)  # (10×100 + 20×100 + 30×200) / 400 ms
    assert moto_source.measure(q("service.responsetime", "max")).value == pytest.approx(30.0)
    assert moto_source.measure(q("service.requests", "count")).value == 400.0
    assert moto_source.measure(q("service.requestspermin", "count")).value == pytest.approx(400 / 3)
    assert moto_source.measure(q("service.responsetime", "avg", env="Production")).value == pytest.approx(5.0)


def test_moto_failure_rate_and_missing_failure_metric(moto_source: CloudWatchSource) -> None:
    assert moto_source.measure(q("service.failurerate", "avg")).value == 12.5
    assert moto_source.measure(q("service.failurerate", "avg", env="Production")).value == 0.0


def test_moto_no_data_and_too_few_samples(moto_source: CloudWatchSource) -> None:
    with pytest.raises(NoDataError) as info:
        moto_source.measure(q("service.responsetime", "avg", window=W.shifted(3600)))
    assert str(info.value) == (
        "no data for Staging in 2023-11-14 21:13:25–21:15:25 UTC (cloudwatch: RequestCount Sum in AWS/ApplicationELB "
        f"{{LoadBalancer={STAGING_LB}}} 2023-11-14 21:13:00–21:16:00 UTC, period 180 s returned nothing)"
    )
    moto_source.min_samples = 500
    with pytest.raises(
        NoDataError, match=r"^too few samples for Production in .*: 120 < 500 needed for avg "
    ):
        moto_source.measure(q("service.responsetime", "avg", env="Production"))


def test_close_releases_only_the_client_it_created(stubbed: tuple[CloudWatchSource, Stubber]) -> None:
    given, _ = stubbed
    client = given.client()
    given.close()
    assert given.client() is client  # the caller's client, left to the caller
    owned = CloudWatchSource.from_url("cloudwatch://us-east-1")
    first = owned.client()
    owned.close()
    assert owned.client() is not first


def test_client_from_the_one_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    source = CloudWatchSource.from_url(
        "cloudwatch://eu-west-1?endpoint_url=http://127.0.0.1:5000", timeout_s=4
    )
    client = source.client()
    assert (client.meta.region_name, client.meta.endpoint_url) == ("eu-west-1", "http://127.0.0.1:5000")
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (4, 4)
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(SourceError, match=r"^the cloudwatch source: .*pip install 'pytest-perfsig\[aws\]'"):
        CloudWatchSource.from_url("cloudwatch://eu-west-1").client()
