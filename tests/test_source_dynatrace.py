"""The Dynatrace source against respx mocks answering like the documented APIs: Metrics API v2
(``/api/v2/metrics/query``), Timeseries API v1 (``/api/v1/timeseries/...``, the original's) and
the entities API v2 (smartscape counts). The token must never show in an error or a log record."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from pytest_perfsig.dynatrace.source import DynatraceSource
from pytest_perfsig.errors import DynatraceError, NoDataError, SourceError, UsageError
from pytest_perfsig.gate import Gate, GateOptions
from pytest_perfsig.load.runner import LoadResult, LoadSpec
from pytest_perfsig.metrics import parse_aggregate, parse_metric
from pytest_perfsig.monspec import parse_monspec
from pytest_perfsig.sources import TopologySource, open_source
from pytest_perfsig.store import SqliteStore
from pytest_perfsig.windows import Measurement, MetricQuery, Window

TENANT = "http://dt.test"
TOKEN = "dt0c01.SECRETTOKEN.abcdefghijklmnop"
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
W = Window(T0, T0 + 120.0)
W_TEXT = "2023-11-14 22:13:20–22:15:20 UTC"
SVC = "SampleJSonService"
STAGING = (("CONTEXTLESS", "DeploymentGroup", "Staging"),)
SERVICES = 'type(SERVICE),tag("DeploymentGroup:Staging")'
METRICS = f"{TENANT}/api/v2/metrics/query"


def q(
    metric: str,
    aggregate: str,
    *,
    env: str = "Staging",
    method: str | None = None,
    window: Window = W,
    tags: tuple[tuple[str, str, str | None], ...] = STAGING,
) -> MetricQuery:
    parsed_metric, parsed_aggregate = parse_metric(metric), parse_aggregate(aggregate)
    assert parsed_metric is not None and parsed_aggregate is not None
    return MetricQuery(SVC, env, method, parsed_metric, parsed_aggregate, window, tags=tags)


def source(api: str = "v2", **kwargs: Any) -> DynatraceSource:
    return DynatraceSource(TENANT, token=TOKEN, api=api, **kwargs)


def series(values: list[float | None], timestamps: list[int] | None = None) -> dict[str, Any]:
    return {
        "dimensions": [],
        "dimensionMap": {},
        "timestamps": timestamps or [int(W.end * 1000)] * len(values),
        "values": values,
    }


def metrics_answer(request: httpx.Request, data: dict[str, list[dict[str, Any]]]) -> httpx.Response:
    """A Metrics API v2 answer: one result per selector of the request, data by metric key."""
    selectors = request.url.params["metricSelector"].split(",")
    result = [
        {
            "metricId": sel,
            "dataPointCountRatio": 1e-6,
            "dimensionCountRatio": 1e-5,
            "data": data.get(sel.split(":splitBy")[0], []),
        }
        for sel in selectors
    ]
    return httpx.Response(
        200,
        json={
            "totalCount": len(result),
            "nextPageKey": None,
            "resolution": request.url.params["resolution"],
            "result": result,
        },
    )


def mock_metrics(data: dict[str, list[dict[str, Any]]]) -> respx.Route:
    return respx.get(METRICS).mock(side_effect=lambda request: metrics_answer(request, data))


# ---------------------------------------------------------------------------- URL and token


def test_from_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DT_API_TOKEN", TOKEN)
    saas = DynatraceSource.from_url("dynatrace://abc123.live.dynatrace.com", min_samples=5)
    assert (saas.base_url, saas.api, saas.min_samples, saas.timeout_s) == (
        "https://abc123.live.dynatrace.com",
        "v2",
        5,
        10.0,
    )
    managed = DynatraceSource.from_url("dynatrace+v1://dt.example.com/e/env-1", timeout_s=3)
    assert (managed.base_url, managed.api, managed.timeout_s) == ("https://dt.example.com/e/env-1", "v1", 3)
    local = DynatraceSource.from_url("dynatrace+http://127.0.0.1:8080")
    assert (local.base_url, local.api) == ("http://127.0.0.1:8080", "v2")
    assert DynatraceSource.from_url("dynatrace+v1+http://127.0.0.1:1").base_url == "http://127.0.0.1:1"
    assert TOKEN not in repr(saas)
    for bad in ("dynatrace+ftp://h", "prometheus://h", "dynatrace://"):
        with pytest.raises(UsageError, match="not a dynatrace URL"):
            DynatraceSource.from_url(bad)
    with pytest.raises(UsageError, match="no credentials") as info:
        DynatraceSource.from_url(f"dynatrace://user:{TOKEN}@h")
    assert TOKEN not in str(info.value)


@respx.mock
def test_missing_token_is_an_error_when_queried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DT_API_TOKEN", raising=False)
    route = respx.get(METRICS)
    dt = DynatraceSource.from_url("dynatrace+http://dt.test")  # opening needs no token
    with pytest.raises(SourceError, match=r"\$DT_API_TOKEN is not set"):
        dt.measure(q("service.responsetime", "avg"))
    assert not route.called


# ---------------------------------------------------------------------------- Metrics API v2


@respx.mock
def test_avg_response_time_in_ms_with_token_and_window() -> None:
    route = mock_metrics(
        {
            "builtin:service.requestCount.total": [series([480])],
            "builtin:service.response.time": [series([12_500.0])],
        }
    )
    m = source().measure(q("service.responsetime", "avg"))
    assert (m.value, m.samples, m.observations, m.unit) == (12.5, 480, None, "ms")
    first, second = (call.request for call in route.calls)
    assert dict(first.url.params) == {
        "metricSelector": "builtin:service.requestCount.total:splitBy()",
        "entitySelector": SERVICES,
        "from": "1700000000000",
        "to": "1700000120000",
        "resolution": "Inf",
    }
    assert second.url.params["metricSelector"] == "builtin:service.response.time:splitBy():avg"
    assert first.headers["Authorization"] == f"Api-Token {TOKEN}"


@pytest.mark.parametrize(
    ("aggregate", "selector", "value", "expected"),
    [
        ("p90", "percentile(90)", 31_000.0, 31.0),
        ("p99.9", "percentile(99.9)", 90_000.0, 90.0),
        ("median", "median", 8_000.0, 8.0),
        ("max", "max", 250_000.0, 250.0),
        ("min", "min", 900.0, 0.9),
        ("sum", "sum", 6_000_000.0, 6000.0),
        ("count", "count", 10_000.0, 10_000.0),  # a count, not microseconds
    ],
)
@respx.mock
def test_key_request_response_time_aggregates(
    aggregate: str, selector: str, value: float, expected: float
) -> None:
    route = mock_metrics(
        {
            "builtin:service.keyRequest.count.total": [series([10_000])],
            "builtin:service.keyRequest.response.time": [series([value])],
        }
    )
    m = source(min_samples=1).measure(q("servicemethod.responsetime", aggregate, method="/api/invoke"))
    assert m.value == pytest.approx(expected)
    request = route.calls.last.request
    assert (
        request.url.params["metricSelector"]
        == f"builtin:service.keyRequest.response.time:splitBy():{selector}"
    )
    assert request.url.params["entitySelector"] == (
        'type(SERVICE_METHOD),entityName.equals("/api/invoke"),'
        f"fromRelationships.isServiceMethodOfService({SERVICES})"
    )


@respx.mock
def test_failure_rate_is_failed_over_all_requests() -> None:
    route = mock_metrics(
        {
            "builtin:service.requestCount.total": [series([400])],
            "builtin:service.errors.total.count": [series([50])],
        }
    )
    assert source().measure(q("service.failurerate", "avg")).value == 12.5
    assert (
        route.calls.last.request.url.params["metricSelector"]
        == "builtin:service.errors.total.count:splitBy()"
    )
    mock_metrics(
        {
            "builtin:service.keyRequest.count.total": [series([100])],
            "builtin:service.keyRequest.errors.server.count": [],
        }
    )  # no error series: none failed
    assert source().measure(q("servicemethod.failurerate", "avg", method="/api/invoke")).value == 0.0


@respx.mock
def test_request_counts_and_rates() -> None:
    mock_metrics({"builtin:service.requestCount.total": [series([600])]})
    dt = source()
    assert dt.measure(q("service.requestspermin", "count")).value == 300.0  # 600 in two minutes
    requests = dt.measure(q("service.requests", "sum"))
    assert (requests.value, requests.samples) == (600.0, 600)


@respx.mock
def test_rates_over_minutes() -> None:
    minutes = [int(T0 * 1000) + 60_000 * k for k in range(3)]
    route = mock_metrics(
        {
            "builtin:service.requestCount.total": [series([100, None, 300], minutes)],
            "builtin:service.errors.total.count": [series([10, None], minutes[:2])],
        }
    )
    dt = source()
    assert (
        dt.measure(q("service.failurerate", "max")).value == 10.0
    )  # minute 3: 0 of 300; minute 2: no requests
    assert dt.measure(q("service.failurerate", "min")).value == 0.0
    assert route.calls.last.request.url.params["resolution"] == "1m"
    assert route.calls.last.request.url.params["metricSelector"] == (
        "builtin:service.requestCount.total:splitBy(),builtin:service.errors.total.count:splitBy()"
    )
    assert dt.measure(q("service.requestspermin", "max")).value == 300.0
    assert dt.measure(q("service.requestspermin", "median")).value == 100.0  # 100, 0, 300


@respx.mock
def test_no_data_is_an_error_naming_the_query() -> None:
    mock_metrics({})
    with pytest.raises(NoDataError) as info:
        source().measure(q("service.responsetime", "avg"))
    assert str(info.value) == (
        f"no data for Staging in {W_TEXT} (dynatrace: builtin:service.requestCount.total:"
        f"splitBy() for {SERVICES} returned nothing)"
    )
    mock_metrics({"builtin:service.requestCount.total": [series([None])]})
    with pytest.raises(NoDataError, match=r"^no data for Staging in"):
        source().measure(q("service.responsetime", "avg"))
    mock_metrics(
        {
            "builtin:service.requestCount.total": [series([100])],
            "builtin:service.response.time": [series([None])],
        }
    )
    with pytest.raises(
        NoDataError, match=r"builtin:service\.response\.time:splitBy\(\):avg for .* returned nothing"
    ):
        source().measure(q("service.responsetime", "avg"))


@respx.mock
def test_too_few_requests() -> None:
    mock_metrics({"builtin:service.requestCount.total": [series([49])]})
    with pytest.raises(
        NoDataError, match=rf"^too few samples for Staging in {W_TEXT}: 49 < 50 needed for p90 "
    ):
        source().measure(q("service.responsetime", "p90"))
    with pytest.raises(NoDataError, match=r": 49 < 60 needed for avg "):
        source(min_samples=60).measure(q("service.responsetime", "avg"))


@respx.mock
def test_malformed_answers() -> None:
    route = respx.get(METRICS)
    for body in (
        {"result": []},
        {"result": [{"metricId": "x"}]},
        {"nope": 1},
        {"result": [{"data": [series([1]), series([2])]}]},
        [1, 2],
    ):
        route.mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(SourceError, match=r"malformed answer|returned 2 series"):
            source().measure(q("service.requests", "count"))
    route.mock(return_value=httpx.Response(200, text="<html>"))
    with pytest.raises(SourceError, match="not a JSON object"):
        source().measure(q("service.requests", "count"))


def test_entity_selectors_from_tags() -> None:
    tags = (
        ("CONTEXTLESS", "DeploymentGroup", "Prod"),
        ("AWS", "team", 'a"b~c'),
        ("CONTEXTLESS", "canary", None),
        ("PROMETHEUS", "job", "x"),
        ("CLOUDWATCH", "LoadBalancer", "y"),
        ("DYNATRACE", "entityName.equals", "checkout"),
    )
    assert source().entity_selector(q("service.requests", "count", tags=tags)) == (
        'type(SERVICE),tag("DeploymentGroup:Prod"),tag("[AWS]team:a~"b~~c"),tag("canary"),'
        'entityName.equals("checkout")'
    )
    with pytest.raises(SourceError, match="no tag of Staging identifies its services"):
        source().measure(q("service.requests", "count", tags=(("PROMETHEUS", "job", "x"),)))
    with pytest.raises(SourceError, match="must name an entity-selector predicate"):
        source().entity_selector(q("service.requests", "count", tags=(("DYNATRACE", "bad(", "x"),)))


# ---------------------------------------------------------------------------- HTTP failures


@respx.mock
def test_http_errors_and_timeouts_never_show_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    route = respx.get(METRICS)
    failures: list[tuple[Any, str]] = [
        (
            httpx.Response(401, json={"error": {"code": 401, "message": f"Token '{TOKEN}' is invalid"}}),
            r"answered HTTP 401: Token '\*\*\*' is invalid \(\$DT_API_TOKEN is not a valid token for this "
            r"tenant: check it, and that it has not expired\) \(builtin:service\.requestCount",
        ),
        (
            httpx.Response(403, json={"error": {"code": 403, "message": "Token is missing required scope"}}),
            r"answered HTTP 403: Token is missing required scope \(the token in \$DT_API_TOKEN lacks the "
            r"scope metrics\.read\)",
        ),
        (httpx.Response(500, text="oops"), r"answered HTTP 500: oops \(builtin:service\.requestCount"),
        (httpx.ReadTimeout("timed out"), r"did not answer within 2 s \(builtin:service\.requestCount"),
        (httpx.ConnectError(f"refused {TOKEN}"), r"is unreachable: ConnectError: refused \*\*\*"),
    ]
    messages = []
    for answer, expected in failures:
        route.mock(side_effect=[answer] * 3)
        route.reset()
        with pytest.raises(
            DynatraceError, match=rf"^dynatrace at {TENANT}/api/v2/metrics/query {expected}"
        ) as info:
            source(timeout_s=2).measure(q("service.responsetime", "avg"))
        # A refused connection is retried; an answer, even an error, and a time-out are not.
        assert route.call_count == (3 if isinstance(answer, httpx.ConnectError) else 1)
        messages.append(str(info.value))
        messages.append(repr(info.value))
    route.mock(
        side_effect=lambda request: metrics_answer(
            request,
            {
                "builtin:service.requestCount.total": [series([100])],
                "builtin:service.response.time": [series([1.0])],
            },
        )
    )
    source().measure(q("service.responsetime", "avg"))
    logged = [record.getMessage() for record in caplog.records]
    assert any("dynatrace: GET" in line for line in logged)
    assert all(TOKEN not in text for text in messages + logged)


# ---------------------------------------------------------------------------- Timeseries API v1


def v1_answer(
    timeseries: str, unit: str, points: dict[str, float | None], aggregation: str
) -> dict[str, Any]:
    return {
        "timeseriesId": timeseries,
        "displayName": "x",
        "dimensions": ["SERVICE"],
        "unit": unit,
        "aggregationTypes": ["AVG", "MIN", "MAX", "MEDIAN", "PERCENTILE", "SUM", "COUNT"],
        "dataResult": {
            "dataPoints": {e: [[int(W.end * 1000), v]] for e, v in points.items()},
            "unit": unit,
            "resolutionInMillisUTC": 120000,
            "aggregationType": aggregation,
            "entities": {e: f"name of {e}" for e in points},
            "timeseriesId": timeseries,
        },
    }


def mock_v1(answers: dict[str, Callable[[httpx.Request], dict[str, Any]]]) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        timeseries = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json=answers[timeseries](request))

    respx.get(url__startswith=f"{TENANT}/api/v1/timeseries/").mock(side_effect=answer)
    return seen


REQUESTS_V1 = "com.dynatrace.builtin:service.requestspermin"
RESPONSE_V1 = "com.dynatrace.builtin:service.responsetime"
FAILURES_V1 = "com.dynatrace.builtin:service.failurerate"


@respx.mock
def test_v1_percentile_response_time_as_the_original_asked() -> None:
    seen = mock_v1(
        {
            REQUESTS_V1: lambda r: v1_answer(REQUESTS_V1, "Count (count)", {"SERVICE-1": 400}, "COUNT"),
            RESPONSE_V1: lambda r: v1_answer(
                RESPONSE_V1, "MicroSecond (µs)", {"SERVICE-1": 31_500.0}, "PERCENTILE"
            ),
        }
    )
    m = source("v1").measure(q("service.responsetime", "p90", tags=(*STAGING, ("AWS", "team", "a"))))
    assert (m.value, m.samples) == (31.5, 400)
    assert seen[1].url.path == f"/api/v1/timeseries/{RESPONSE_V1}"
    assert seen[1].url.params.multi_items() == [
        ("includeData", "true"),
        ("queryMode", "TOTAL"),
        ("aggregationType", "PERCENTILE"),
        ("startTimestamp", "1700000000000"),
        ("endTimestamp", "1700000120000"),
        ("percentile", "90"),
        ("tag", "DeploymentGroup:Staging"),
        ("tag", "[AWS]team:a"),
    ]
    assert seen[0].url.params["aggregationType"] == "COUNT"
    assert seen[0].headers["Authorization"] == f"Api-Token {TOKEN}"


@respx.mock
def test_v1_failure_rate_requests_and_limits() -> None:
    mock_v1(
        {
            REQUESTS_V1: lambda r: v1_answer(
                REQUESTS_V1, "Count (count)", {"SERVICE-1": 300, "SERVICE-2": 300}, "COUNT"
            ),
            FAILURES_V1: lambda r: v1_answer(
                FAILURES_V1, "Percent (%)", {"SERVICE-1": 4.0, "SERVICE-2": None}, "AVG"
            ),
            RESPONSE_V1: lambda r: v1_answer(
                RESPONSE_V1, "MicroSecond (µs)", {"SERVICE-1": 1.0, "SERVICE-2": 2.0}, "AVG"
            ),
        }
    )
    dt = source("v1")
    assert dt.measure(q("service.failurerate", "avg")).value == 4.0  # SERVICE-2 has no data
    assert dt.measure(q("service.requestspermin", "count")).value == 300.0  # 600 in 2 min, both services
    with pytest.raises(
        SourceError, match=r"matches 2 entities \(SERVICE-1, SERVICE-2\); the v1 API cannot merge"
    ):
        dt.measure(q("service.responsetime", "avg"))
    with pytest.raises(
        SourceError, match=r"v1 API mode answers service\.failurerate with avg/count/sum only"
    ):
        dt.measure(q("service.failurerate", "max"))
    assert dt.unsupported_reason("com.dynatrace.builtin:servicemethod.responsetime", None) == (
        "the dynatrace v1 API mode has no service-method metrics by name (servicemethod.responsetime): "
        "use dynatrace:// (Metrics API v2)"
    )
    assert source().unsupported_reason("servicemethod.responsetime", None) is None


@respx.mock
def test_v1_no_data() -> None:
    mock_v1({REQUESTS_V1: lambda r: v1_answer(REQUESTS_V1, "Count (count)", {}, "COUNT")})
    with pytest.raises(
        NoDataError,
        match=rf"^no data for Staging in {W_TEXT} \(dynatrace: {REQUESTS_V1} COUNT "
        r"tagged DeploymentGroup:Staging returned nothing\)$",
    ):
        source("v1").measure(q("service.responsetime", "avg"))


# ---------------------------------------------------------------------------- smartscape


@respx.mock
def test_smartscape_counts_distinct_callers_over_pages() -> None:
    pages = [
        {
            "totalCount": 3,
            "pageSize": 2,
            "nextPageKey": "PAGE2",
            "entities": [
                {
                    "entityId": "SERVICE-A",
                    "type": "SERVICE",
                    "displayName": "a",
                    "toRelationships": {
                        "calls": [
                            {"id": "SERVICE-X", "type": "SERVICE"},
                            {"id": "SERVICE-Y", "type": "SERVICE"},
                        ]
                    },
                },
                {"entityId": "SERVICE-B", "type": "SERVICE", "displayName": "b", "toRelationships": {}},
            ],
        },
        {
            "totalCount": 3,
            "pageSize": 2,
            "nextPageKey": None,
            "entities": [
                {
                    "entityId": "SERVICE-C",
                    "type": "SERVICE",
                    "displayName": "c",
                    "toRelationships": {"calls": [{"id": "SERVICE-X", "type": "SERVICE"}]},
                }
            ],
        },
    ]
    route = respx.get(f"{TENANT}/api/v2/entities").mock(
        side_effect=[httpx.Response(200, json=page) for page in pages]
    )
    dt = source()
    assert dt.unsupported_reason(None, "toRelationships:calls") is None
    assert "cannot count smartscape" in (dt.unsupported_reason(None, "calls") or "")
    count = dt.count_relationships("Staging", "toRelationships:calls", W, STAGING)
    assert isinstance(dt, TopologySource) and isinstance(count, Measurement)
    assert (count.value, count.samples, count.observations, count.baseline) == (2.0, 3, None, None)
    assert (count.query.env, count.query.window, count.query.tags) == ("Staging", W, STAGING)
    assert (str(count.query.metric), str(count.query.aggregate), count.unit) == (
        "smartscape.toRelationships:calls",
        "count",
        "",
    )
    first, second = (call.request for call in route.calls)
    assert dict(first.url.params) == {
        "entitySelector": SERVICES,
        "fields": "toRelationships.calls",
        "from": "1700000000000",
        "to": "1700000120000",
        "pageSize": "500",
    }
    assert dict(second.url.params) == {"nextPageKey": "PAGE2"}


@respx.mock
def test_smartscape_without_entities_is_no_data() -> None:
    respx.get(f"{TENANT}/api/v2/entities").mock(
        return_value=httpx.Response(200, json={"totalCount": 0, "pageSize": 500, "entities": []})
    )
    with pytest.raises(
        NoDataError, match=rf"^no data for Staging in {W_TEXT} \(dynatrace: entities .* matched no entity\)"
    ):
        source().count_relationships("Staging", "toRelationships:calls", W, STAGING)


# ---------------------------------------------------------------------------- through a Gate


def tagged_monspec(comparison: dict[str, Any], entry: dict[str, Any], source: str | None = None) -> str:
    """Staging and Production tagged by DeploymentGroup; ``source`` as the environments' own."""
    environments = {}
    for env in ("Staging", "Production"):
        environments[env] = {"tags": [{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": env}]}
        if source is not None:
            environments[env]["source"] = source
    return json.dumps(
        {
            SVC: {
                "environments": environments,
                "comparisons": [{"name": "C", "source": "Staging", "compare": "Production", **comparison}],
                "perfsignature": [entry],
            }
        }
    )


def judged_gate(tmp_path: Path, text: str, source_url: str | None) -> Gate:
    """A gate whose load ran in W (no Locust here): only the judging is exercised."""
    store = SqliteStore(tmp_path / "s.db")
    options = GateOptions(stage="Staging", store_path=store.path, source_url=source_url, warmup_s=0)
    gate = Gate(parse_monspec(text, "m.json"), options, store=store)
    spec = LoadSpec(SVC, "Staging", "http://127.0.0.1:1", "x.py", 1, 1, 120)
    gate.load_results = {(SVC, "Staging"): LoadResult(spec, "run", 0, 0, (W.start, W.end), Path("x.log"))}
    return gate


def test_the_dispatch_opens_dynatrace_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DT_API_TOKEN", TOKEN)
    with SqliteStore(tmp_path / "s.db") as store:
        opened = open_source("dynatrace+v1+http://dt.test:8080/e/env-1", store, 7)
    assert isinstance(opened, DynatraceSource) and isinstance(opened, TopologySource)
    assert (opened.base_url, opened.api, opened.min_samples) == ("http://dt.test:8080/e/env-1", "v1", 7)
    opened.close()


@respx.mock
def test_gate_judges_dynatrace_numbers_with_the_scale_factor_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No raw observations: a mannwhitney comparison falls back to the scale-factor rule. The
    gate opens the source from --perfsig-source's URL, with the token from the environment."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Api-Token {TOKEN}"
        staging = "Staging" in request.url.params["entitySelector"]
        return metrics_answer(
            request,
            {
                "builtin:service.requestCount.total": [series([1000 if staging else 2000])],
                "builtin:service.response.time": [series([30_000.0 if staging else 20_000.0])],
            },
        )

    respx.get(METRICS).mock(side_effect=answer)
    monkeypatch.setenv("DT_API_TOKEN", TOKEN)
    text = tagged_monspec(
        {"judge": "mannwhitney", "scalefactorperc": {"default": 20}},
        {"timeseries": "service.responsetime", "aggregate": "avg"},
    )
    gate = judged_gate(tmp_path, text, source_url=TENANT.replace("http://", "dynatrace+http://"))
    (check,) = gate.checks
    verdict = gate.verdict(check)
    assert (verdict.status, verdict.source_value, verdict.compare_value) == ("violation", 30.0, 20.0)
    assert (verdict.source_samples, verdict.compare_samples) == (1000, 2000)
    assert verdict.limit == pytest.approx(20.0 * 1.2 + 2.0)
    assert verdict.details is None  # the scale-factor rule, not the rank test


@respx.mock
def test_gate_judges_smartscape_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environments name Dynatrace as their own source in the monspec."""

    def answer(request: httpx.Request) -> httpx.Response:
        callers = 3 if "Staging" in request.url.params["entitySelector"] else 5
        calls = [{"id": f"SERVICE-{k}", "type": "SERVICE"} for k in range(callers)]
        return httpx.Response(
            200, json={"totalCount": 1, "entities": [{"entityId": "S", "toRelationships": {"calls": calls}}]}
        )

    respx.get(f"{TENANT}/api/v2/entities").mock(side_effect=answer)
    monkeypatch.setenv("DT_API_TOKEN", TOKEN)
    text = tagged_monspec(
        {"scalefactorperc": {"default": 10}},
        {"smartscape": "toRelationships:calls", "aggregate": "count", "validate": "lower"},
        source="dynatrace+http://dt.test",
    )
    gate = judged_gate(tmp_path, text, source_url=None)
    (check,) = gate.checks
    verdict = gate.verdict(check)
    assert (verdict.status, verdict.source_value, verdict.compare_value) == ("violation", 3.0, 5.0)
    assert (verdict.source_samples, verdict.compare_samples) == (1, 1)  # one service matched each
    assert (verdict.source_window, verdict.compare_window) == (W, W)
    assert verdict.limit == pytest.approx(4.5)
