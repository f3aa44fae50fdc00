"""The Prometheus source: PromQL built from tags and windows (respx), HTTP failures against tiny
local servers, and the real thing — a Prometheus server (Debian's ``prometheus`` package) scraping
two sample apps under Locust load, judged by a Gate once with the local source and once with
Prometheus. The real-server tests skip without /usr/bin/prometheus, except in CI (env CI set),
where they fail: CI installs the package."""

from __future__ import annotations

import asyncio
import http.server
import itertools
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from pytest_perfsig.errors import NoDataError, SourceError, UsageError
from pytest_perfsig.gate import Gate, GateOptions
from pytest_perfsig.load.runner import LoadResult, LoadSpec, run_load
from pytest_perfsig.metrics import parse_aggregate, parse_metric
from pytest_perfsig.monspec import load_monspec
from pytest_perfsig.sources.prometheus import PrometheusSource
from pytest_perfsig.store import SqliteStore
from pytest_perfsig.windows import MetricQuery, Window
from sample_app.app import AppConfig, create_app
from sample_app.launcher import RunningApp, start_app
from sample_app.metrics import BUCKETS_S

ROOT = Path(__file__).resolve().parents[1]
SVC = "SampleJSonService"
PROMETHEUS_BIN = Path("/usr/bin/prometheus")
SCRAPE_S = 1.0
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
W = Window(T0, T0 + 10.0)
W_TEXT = "2023-11-14 22:13:20–22:13:30 UTC"
STAGING_TAGS = (("CONTEXTLESS", "DeploymentGroup", "Staging"),)
FAKE = "http://prom.test"


def q(
    metric: str,
    aggregate: str,
    *,
    env: str = "Staging",
    method: str | None = None,
    window: Window = W,
    tags: tuple[tuple[str, str, str | None], ...] = STAGING_TAGS,
) -> MetricQuery:
    parsed_metric, parsed_aggregate = parse_metric(metric), parse_aggregate(aggregate)
    assert parsed_metric is not None and parsed_aggregate is not None
    return MetricQuery(SVC, env, method, parsed_metric, parsed_aggregate, window, tags=tags)


def vector(value: float | str | None, **labels: str) -> dict[str, Any]:
    result = [] if value is None else [{"metric": labels, "value": [W.end, str(value)]}]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def fake_source(**kwargs: Any) -> PrometheusSource:
    return PrometheusSource(FAKE, settle_s=0, **kwargs)


# ---------------------------------------------------------------------------- URL


def test_from_url_schemes_parameters_and_credentials() -> None:
    source = PrometheusSource.from_url("prometheus://127.0.0.1:9090", min_samples=5)
    assert (source.base_url, source.min_samples, source.timeout_s) == ("http://127.0.0.1:9090", 5, 10.0)
    tls = PrometheusSource.from_url(
        "prometheus+https://bob:s3cret@prom.example.com/prom?step=5&settle=0"
        "&requests=app_requests_total&duration=app_latency_seconds&failed=5.."
    )
    assert tls.base_url == "https://prom.example.com/prom"  # credentials go to basic auth, not the URL
    assert (tls.config.step_s, tls.config.settle_s, tls.config.failed) == (5.0, 0.0, "5..")
    assert (tls.config.requests, tls.config.duration) == ("app_requests_total", "app_latency_seconds")
    with pytest.raises(UsageError, match=r"unknown parameter\(s\) nope") as info:
        PrometheusSource.from_url("prometheus://alice:hunter2@h:1?nope=1")
    assert "hunter2" not in str(info.value)
    with pytest.raises(UsageError, match="not a metric name"):
        PrometheusSource.from_url("prometheus://h:1?requests=bad-name")
    with pytest.raises(UsageError, match="not a prometheus URL"):
        PrometheusSource.from_url("http://h:1")


# ---------------------------------------------------------------------------- PromQL (respx)


@respx.mock
def test_avg_latency_is_sum_over_count_in_the_exact_window() -> None:
    route = respx.get(f"{FAKE}/api/v1/query").mock(
        side_effect=[
            httpx.Response(200, json=vector(120)),  # requests
            httpx.Response(200, json=vector(0.0125)),  # seconds
        ]
    )
    m = fake_source().measure(q("service.responsetime", "avg"))
    assert (m.value, m.samples, m.observations, m.unit) == (12.5, 120, None, "ms")
    sent = [call.request.url.params for call in route.calls]
    assert sent[0]["query"] == 'sum(increase(http_requests_total{stage="Staging"}[10000ms] @ 1700000010))'
    assert sent[1]["query"] == (
        'sum(increase(http_request_duration_seconds_sum{stage="Staging"}[10000ms] @ 1700000010)) / '
        'sum(increase(http_request_duration_seconds_count{stage="Staging"}[10000ms] @ 1700000010))'
    )
    assert sent[0]["time"] == "1700000010"


@respx.mock
def test_percentile_from_histogram_and_method_selector() -> None:
    route = respx.get(f"{FAKE}/api/v1/query").mock(
        side_effect=[httpx.Response(200, json=vector(60)), httpx.Response(200, json=vector(0.0071))]
    )
    tags = (
        ("PROMETHEUS", "job", "shop"),
        ("PROMETHEUS", "env", 'pr"od'),
        ("CONTEXTLESS", "DeploymentGroup", "Production"),
    )
    m = fake_source().measure(
        q("servicemethod.responsetime", "p90", env="Production", method="/api/invoke", tags=tags)
    )
    assert m.value == pytest.approx(7.1)
    assert route.calls[1].request.url.params["query"] == (
        "histogram_quantile(0.9, sum by (le) (increase(http_request_duration_seconds_bucket"
        '{job="shop",env="pr\\"od",stage="Production",endpoint="/api/invoke"}[10000ms] @ 1700000010)))'
    )


@respx.mock
def test_a_prometheus_stage_tag_wins_over_the_deployment_group() -> None:
    route = respx.get(f"{FAKE}/api/v1/query").mock(return_value=httpx.Response(200, json=vector(100)))
    tags = (("CONTEXTLESS", "DeploymentGroup", "Staging"), ("PROMETHEUS", "stage", "stg"), ("AWS", "x", "y"))
    fake_source().measure(q("service.requests", "count", tags=tags))
    assert (
        route.calls[0]
        .request.url.params["query"]
        .startswith('sum(increase(http_requests_total{stage="stg"}[')
    )


@respx.mock
def test_failure_rate_counts_5xx_and_no_failed_series_is_zero() -> None:
    route = respx.get(f"{FAKE}/api/v1/query").mock(
        side_effect=[httpx.Response(200, json=vector(200)), httpx.Response(200, json=vector(25))]
    )
    assert fake_source().measure(q("service.failurerate", "avg")).value == 12.5
    assert route.calls[1].request.url.params["query"] == (
        'sum(increase(http_requests_total{stage="Staging",status=~"5..|0"}[10000ms] @ 1700000010))'
    )
    respx.get(f"{FAKE}/api/v1/query").mock(
        side_effect=[httpx.Response(200, json=vector(200)), httpx.Response(200, json=vector(None))]
    )
    assert fake_source().measure(q("service.failurerate", "avg")).value == 0.0


@respx.mock
def test_requests_per_minute_and_counts() -> None:
    respx.get(f"{FAKE}/api/v1/query").mock(return_value=httpx.Response(200, json=vector(48.4)))
    source = fake_source()
    assert source.measure(q("service.requestspermin", "count")).value == pytest.approx(48.4 * 6)
    requests = source.measure(q("service.requests", "sum"))
    assert (requests.value, requests.samples) == (48.4, 48)


@respx.mock
def test_rates_over_buckets_are_subqueries_of_step_width() -> None:
    route = respx.get(f"{FAKE}/api/v1/query").mock(
        side_effect=[httpx.Response(200, json=vector(100)), httpx.Response(200, json=vector(50))]
    )
    assert PrometheusSource(FAKE, settle_s=0, step_s=2).measure(q("service.failurerate", "max")).value == 50
    assert route.calls[1].request.url.params["query"] == (
        'max_over_time(((100 * (sum(rate(http_requests_total{stage="Staging",status=~"5..|0"}[2000ms])) '
        'or vector(0)) / sum(rate(http_requests_total{stage="Staging"}[2000ms]))) >= 0)'
        "[10000ms:2000ms] @ 1700000010)"
    )
    route = respx.get(f"{FAKE}/api/v1/query").mock(
        side_effect=[httpx.Response(200, json=vector(100)), httpx.Response(200, json=vector(480))]
    )
    assert (
        PrometheusSource(FAKE, settle_s=0, step_s=2).measure(q("service.requestspermin", "p50")).value == 480
    )
    assert route.calls.last.request.url.params["query"] == (
        'quantile_over_time(0.5, (60 * sum(rate(http_requests_total{stage="Staging"}[2000ms])))'
        "[10000ms:2000ms] @ 1700000010)"
    )


@respx.mock
def test_no_series_is_no_data_naming_the_query() -> None:
    respx.get(f"{FAKE}/api/v1/query").mock(return_value=httpx.Response(200, json=vector(None)))
    with pytest.raises(NoDataError) as info:
        fake_source().measure(q("servicemethod.responsetime", "avg", method="/api/invoke"))
    assert str(info.value) == (
        f"no data for Staging /api/invoke in {W_TEXT} (prometheus: sum(increase(http_requests_total"
        '{stage="Staging",endpoint="/api/invoke"}[10000ms] @ 1700000010)) returned nothing)'
    )


@respx.mock
def test_too_few_requests_respects_min_samples_and_percentile_needs() -> None:
    respx.get(f"{FAKE}/api/v1/query").mock(return_value=httpx.Response(200, json=vector(30.2)))
    with pytest.raises(
        NoDataError, match=rf"^too few samples for Staging in {W_TEXT}: 30 < 50 needed for p90 "
    ):
        fake_source().measure(q("service.responsetime", "p90"))
    with pytest.raises(NoDataError, match=r": 30 < 31 needed for avg "):
        fake_source(min_samples=31).measure(q("service.responsetime", "avg"))


@respx.mock
def test_nan_quantile_is_no_data_and_inf_is_an_error() -> None:
    respx.get(f"{FAKE}/api/v1/query").mock(
        side_effect=[
            httpx.Response(200, json=vector(100)),
            httpx.Response(200, json=vector("NaN")),
            httpx.Response(200, json=vector(100)),
            httpx.Response(200, json=vector("+Inf")),
        ]
    )
    source = fake_source()
    with pytest.raises(NoDataError, match="returned nothing"):
        source.measure(q("service.responsetime", "p50", window=W.shifted(60)))
    with pytest.raises(SourceError, match="beyond the histogram's largest finite bucket"):
        source.measure(q("service.responsetime", "p50", window=W.shifted(120)))


def test_min_and_max_latency_are_not_answerable() -> None:
    with pytest.raises(
        SourceError, match=r"cannot answer max of service\.responsetime: a histogram keeps no extremes"
    ):
        fake_source().measure(q("service.responsetime", "max"))


def test_environment_without_selecting_tags_is_an_error() -> None:
    with pytest.raises(SourceError, match=r"no tag of Staging selects its Prometheus series"):
        fake_source().measure(q("service.responsetime", "avg", tags=(("AWS", "k", "v"),)))
    with pytest.raises(SourceError, match="is not a label name"):
        fake_source().measure(q("service.responsetime", "avg", tags=(("PROMETHEUS", "a-b", "v"),)))


def test_smartscape_is_skipped_with_a_reason() -> None:
    source = fake_source()
    assert source.unsupported_reason("service.responsetime", None) is None
    assert source.unsupported_reason(None, "toRelationships:calls") == (
        "the prometheus source has no topology (smartscape 'toRelationships:calls')"
    )


@respx.mock
def test_rejected_query_and_malformed_answers_are_source_errors() -> None:
    route = respx.get(f"{FAKE}/api/v1/query")
    route.mock(
        return_value=httpx.Response(
            400, json={"status": "error", "errorType": "bad_data", "error": "parse error"}
        )
    )
    with pytest.raises(SourceError, match=r"answered HTTP 400 bad_data: parse error \(query: sum\(increase"):
        fake_source().measure(q("service.requests", "count"))
    for body in (
        "<html>",
        json.dumps({"status": "success"}),
        json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}),
        json.dumps({"status": "success", "data": {"resultType": "vector", "result": [{"value": []}]}}),
    ):
        route.mock(return_value=httpx.Response(200, text=body))
        with pytest.raises(SourceError, match="malformed answer"):
            fake_source().measure(q("service.requests", "count"))
    two = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"a": "1"}, "value": [0, "1"]}, {"metric": {"a": "2"}, "value": [0, "2"]}],
        },
    }
    route.mock(return_value=httpx.Response(200, json=two))
    with pytest.raises(SourceError, match="returned 2 series"):
        fake_source().measure(q("service.requests", "count"))


@respx.mock
def test_recent_window_waits_for_a_scrape_past_its_end() -> None:
    now = time.time()
    window = Window(now - 10, now - 1)
    newest = iter([now - 3, now - 0.5])
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params["query"])
        if request.url.params["query"].startswith("max(timestamp("):
            assert "time" not in request.url.params  # evaluated now
            return httpx.Response(200, json=vector(next(newest)))
        return httpx.Response(200, json=vector(100))

    respx.get(f"{FAKE}/api/v1/query").mock(side_effect=answer)
    assert (
        PrometheusSource(FAKE, settle_s=5).measure(q("service.requests", "count", window=window)).value == 100
    )
    assert calls[:2] == ['max(timestamp(http_requests_total{stage="Staging"}))'] * 2
    # Never past the end within `settle`: no data, saying why.
    respx.get(f"{FAKE}/api/v1/query").mock(return_value=httpx.Response(200, json=vector(now - 3)))
    with pytest.raises(NoDataError, match=r"Prometheus has not scraped past the window end within 0\.6 s"):
        PrometheusSource(FAKE, settle_s=0.6).measure(q("service.requests", "count", window=window))


# ---------------------------------------------------------------------------- HTTP failures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_closed_port_is_a_source_error() -> None:
    port = free_port()
    source = PrometheusSource.from_url(f"prometheus://u:pw-XYZ@127.0.0.1:{port}?settle=0", timeout_s=2)
    with pytest.raises(SourceError) as info:
        source.measure(q("service.requests", "count"))
    text = str(info.value)
    assert f"prometheus at http://127.0.0.1:{port}/api/v1/query is unreachable: ConnectError" in text
    assert "pw-XYZ" not in text and "u:" not in text


@pytest.fixture
def failing_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"internal error")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_500_is_a_source_error(failing_server: str) -> None:
    source = PrometheusSource.from_url(f"prometheus://{failing_server}?settle=0")
    with pytest.raises(
        SourceError,
        match=rf"^prometheus at http://{failing_server}/api/v1/query answered HTTP 500 "
        r"\(query: sum\(increase\(http_requests_total",
    ):
        source.measure(q("service.requests", "count"))


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        source = PrometheusSource.from_url(f"prometheus://127.0.0.1:{port}?settle=0", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(
            SourceError,
            match=rf"^prometheus at http://127.0.0.1:{port}/api/v1/query did not answer "
            r"within 0\.5 s \(query: ",
        ):
            source.measure(q("service.requests", "count"))
        assert time.monotonic() - started < 3


# ---------------------------------------------------------------------------- the app's /metrics


def test_sample_app_exposes_labelled_request_metrics(tmp_path: Path) -> None:
    apps = [
        create_app(
            AppConfig(stage=stage, build=build, port=8, latency_ms=0, log_file=tmp_path / f"{stage}.log")
        )
        for stage, build in (("Staging", 2), ("Production", 1))
    ]  # two registries in one process

    async def scenario() -> tuple[str, str]:
        def client(app: Any) -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")

        async with client(apps[0]) as staging, client(apps[1]) as production:
            for _ in range(2):
                await staging.get("/api/echo?text=x")
                await staging.get("/api/causeerror")
            await staging.get("/health")
            await staging.get("/no/such/page")
            await production.get("/version")
            await staging.get("/api/version?newBuildNumber=3")
            await staging.get("/version")
            return (await staging.get("/metrics")).text, (await production.get("/metrics")).text

    text, production_text = asyncio.run(scenario())
    assert 'http_requests_total{build="2",endpoint="/api/echo",stage="Staging",status="200"} 2.0' in text
    assert (
        'http_requests_total{build="2",endpoint="/api/causeerror",stage="Staging",status="500"} 2.0' in text
    )
    assert 'http_requests_total{build="2",endpoint="other",stage="Staging",status="404"} 1.0' in text
    assert 'http_requests_total{build="3",endpoint="/version",stage="Staging",status="200"} 1.0' in text
    assert 'endpoint="/health"' not in text and 'endpoint="/metrics"' not in text
    assert "Production" not in text
    assert (
        'http_request_duration_seconds_bucket{build="2",endpoint="/api/echo",le="0.005",stage="Staging",'
        'status="200"} 2.0'
    ) in text
    assert 'stage="Production"' in production_text and 'stage="Staging"' not in production_text
    assert BUCKETS_S[0] == 0.001 and BUCKETS_S[-1] == 10.0
    assert all(b - a <= 0.001 + 1e-12 for a, b in itertools.pairwise(BUCKETS_S) if b <= 0.02)


# ---------------------------------------------------------------------------- a real Prometheus


@dataclass
class Scraped:
    port: int
    store: SqliteStore
    results: list[LoadResult]


def _prometheus_binary() -> Path:
    if PROMETHEUS_BIN.is_file():
        return PROMETHEUS_BIN
    reason = f"{PROMETHEUS_BIN} not installed (Debian package prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must install it")
    pytest.skip(reason)


def _query(port: int, promql: str) -> list[Any]:
    response = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    result: list[Any] = response.json()["data"]["result"]
    return result


def _wait(what: str, check: Any, timeout_s: float, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"prometheus: {what} within {timeout_s:g} s; log: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """Prometheus scraping Staging (build 2) and Production (build 1) every second, after a few
    seconds of Locust load on both, scraped past the end of the load."""
    binary = _prometheus_binary()
    tmp = tmp_path_factory.mktemp("prometheus")
    apps: list[RunningApp] = []
    process = None
    try:
        apps = [start_app("Staging", 2, tmp / "apps"), start_app("Production", 1, tmp / "apps")]
        port = free_port()
        targets = [app.url.removeprefix("http://") for app in apps]
        config = tmp / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {SCRAPE_S:g}s\n  scrape_timeout: {SCRAPE_S:g}s\n"
            f"scrape_configs:\n  - job_name: sample_app\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        log = tmp / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _wait("both targets up", lambda: len(_query(port, "up == 1")) == 2, 30, process, log)
        store = SqliteStore(tmp / "perfsig.db")
        think = {"PERFSIG_THINK_S": "0.2"}
        specs = [
            LoadSpec(
                SVC,
                app.stage,
                app.url,
                str(ROOT / "loadtests" / f"{app.stage.lower()}.py"),
                users=5,
                spawn_rate=5,
                # Locust may take two seconds to send its first request on a busy machine, and the
                # window (first request + duration) must still end with requests in its last third.
                duration_s=10,
                extra_env=think,
                build=str(app.build),
            )
            for app in apps
        ]
        results = run_load(specs, store)
        end = max(r.window[1] for r in results)
        _wait(
            "scraped past the load",
            lambda: (
                float(_query(port, "max(timestamp(http_requests_total))")[0]["value"][1])
                >= end + 2 * SCRAPE_S
            ),
            15,
            process,
            log,
        )
        yield Scraped(port, store, results)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for app in apps:
            app.stop()


def _gate(scraped: Scraped, source_url: str | None) -> Gate:
    options = GateOptions(
        stage="Staging",
        comparisons=("StagingToProduction",),
        store_path=scraped.store.path,
        source_url=source_url,
    )
    gate = Gate(load_monspec(ROOT / "monspec.json"), options, store=scraped.store)
    gate.load_results = {(r.spec.service, r.spec.env): r for r in scraped.results}
    return gate


@pytest.mark.e2e
def test_gate_with_prometheus_agrees_with_the_local_source(scraped: Scraped) -> None:
    local, remote = _gate(scraped, None), _gate(scraped, f"prometheus://127.0.0.1:{scraped.port}")
    pairs = {check.check_id: (local.verdict(check), remote.verdict(check)) for check in local.checks}
    assert len(pairs) == 8
    table = "\n".join(
        f"{cid}: local {lv.status} {lv.source_value} / {lv.compare_value}; "
        f"prometheus {pv.status} {pv.source_value} / {pv.compare_value} {pv.message}"
        for cid, (lv, pv) in pairs.items()
    )
    for check_id, (lv, pv) in pairs.items():
        assert lv.status == pv.status, table
        if "smartscape" in check_id:
            assert lv.status == "skipped", table
        elif "failurerate" in check_id:
            assert lv.status == "violation", table
            assert abs(pv.source_value - lv.source_value) < 5, table
            assert abs(pv.compare_value - lv.compare_value) < 1, table
        elif "responsetime" in check_id:
            assert lv.status == "pass", table
            if "[avg]" in check_id:
                # The server's latency leaves out the network and the client's queueing, which a
                # busy machine makes long: below the client's (with slack), not far below it.
                assert lv.source_value / 3 <= pv.source_value <= lv.source_value * 1.3, table
        else:  # requestspermin: the server also counts invoke's downstream calls to its own echo
            assert lv.status == "pass", table
            assert pv.source_value == pytest.approx(lv.source_value, rel=0.3), table
        if lv.status != "skipped":
            assert pv.source_samples == pytest.approx(lv.source_samples, rel=0.3), table


@pytest.mark.e2e
def test_real_prometheus_bucket_rates_no_data_and_method_counts(scraped: Scraped) -> None:
    staging = next(r for r in scraped.results if r.spec.env == "Staging")
    window = Window(*staging.window)
    source = PrometheusSource.from_url(f"prometheus://127.0.0.1:{scraped.port}?step=2", min_samples=1)
    invoke = source.measure(q("servicemethod.requests", "count", method="/api/invoke", window=window))
    local = sum(
        1
        for ep in scraped.store.samples(SVC, "Staging", window.start, window.end).endpoint
        if ep == "/api/invoke"
    )
    assert invoke.value == pytest.approx(local, rel=0.25)
    # Buckets wholly inside the load: the first 2 s bucket would also see the time before it.
    inner = Window(window.start + 2, window.end)
    low = source.measure(q("service.requestspermin", "min", window=inner)).value
    high = source.measure(q("service.requestspermin", "max", window=inner)).value
    assert 0 < low <= high
    failures = source.measure(
        q("servicemethod.failurerate", "median", method="/api/invoke", window=window)
    ).value
    assert 40 <= failures <= 60  # build 2 fails every second invoke
    with pytest.raises(
        NoDataError,
        match=r"^no data for Testing in .* \(prometheus: sum\(increase\(http_requests_total"
        r'\{stage="Testing"\}.* returned nothing\)$',
    ):
        source.measure(
            q(
                "service.responsetime",
                "avg",
                env="Testing",
                window=window,
                tags=(("CONTEXTLESS", "DeploymentGroup", "Testing"),),
            )
        )
