"""Transient failures of the HTTP metric sources are retried, permanent ones are not: real
servers on 127.0.0.1 fail a given number of times, then answer, and count every attempt.

Retried (3 attempts, backoff with jitter, no attempt started more than 10 s after the first):
refused and reset connections, 429 (``Retry-After`` honoured when it fits), 502, 503, 504.
Not retried: 400, 401, 403, 404, time-outs, and writes. What remains is a SourceError naming
the status and the attempts, never a value. (CloudWatch relies on botocore's standard retry
mode: ``tests/test_source_cloudwatch_moto.py``.)"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pytest_perfsig.dynatrace.client import DynatraceClient, Retry
from pytest_perfsig.dynatrace.events import DynatraceEvents
from pytest_perfsig.dynatrace.source import DynatraceSource
from pytest_perfsig.errors import DynatraceError, SourceError
from pytest_perfsig.metrics import parse_aggregate, parse_metric
from pytest_perfsig.sources.http import RetryPolicy
from pytest_perfsig.sources.prometheus import PrometheusSource
from pytest_perfsig.windows import MetricQuery, Window
from tests.loopback import RESET, LoopbackServer, Reply, Request, free_port, json_reply, scripted, serving

T0 = 1_700_000_000.0  # long past: the Prometheus source does not wait for scrapes
W = Window(T0, T0 + 60.0)
TAGS = (("CONTEXTLESS", "DeploymentGroup", "Staging"),)
TOKEN = "dt0c01.RETRYTOKEN.abcdefghijklmnop"


def requests_query() -> MetricQuery:
    metric, aggregate = parse_metric("service.requests"), parse_aggregate("count")
    assert metric is not None and aggregate is not None
    return MetricQuery("Svc", "Staging", None, metric, aggregate, W, tags=TAGS)


PROMETHEUS_OK = json_reply(
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [T0, "120"]}]}}
)


def dynatrace_ok(request: Request) -> Reply:
    selector = request.param("metricSelector") or ""
    data = [{"dimensions": [], "dimensionMap": {}, "timestamps": [int(W.end * 1000)], "values": [120.0]}]
    return json_reply(
        {"totalCount": 1, "resolution": "Inf", "result": [{"metricId": selector, "data": data}]}
    )


def measure_prometheus(server: LoopbackServer) -> float:
    source = PrometheusSource.from_url(f"prometheus://127.0.0.1:{server.port}?settle=0")
    try:
        return source.measure(requests_query()).value
    finally:
        source.close()


def measure_dynatrace(server: LoopbackServer) -> float:
    source = DynatraceSource(server.url, token=TOKEN)
    try:
        return source.measure(requests_query()).value
    finally:
        source.close()


# ---------------------------------------------------------------------------- the policy


def test_backoff_is_exponential_with_jitter_and_bounded() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.budget_s) == (3, 10.0)
    assert [policy.backoff(n, lambda: 0.0) for n in (1, 2, 3, 5)] == [0.25, 0.5, 1.0, 2.0]
    assert [policy.backoff(n, lambda: 1.0) for n in (1, 2, 3, 5)] == [0.5, 1.0, 2.0, 4.0]
    assert Retry().backoff(2, lambda: 0.5) == policy.backoff(2, lambda: 0.5)  # Dynatrace: the same policy


# ---------------------------------------------------------------------------- Prometheus


@pytest.mark.parametrize(
    "failures",
    [
        [json_reply({"status": "error", "error": "overloaded"}, 503)] * 2,
        [json_reply(None, 502), json_reply(None, 504)],
        [RESET, RESET],
    ],
    ids=["503", "502-504", "reset"],
)
def test_prometheus_retries_transient_failures_then_answers(failures: list[Reply]) -> None:
    with serving(scripted(*failures, PROMETHEUS_OK)) as server:
        assert measure_prometheus(server) == 120.0
        assert server.paths() == ["/api/v1/query"] * 3


def test_prometheus_refused_connection_is_retried_until_the_server_listens() -> None:
    port = free_port()
    servers: list[LoopbackServer] = []
    # Nothing listens at the first attempt; the server binds before the first backoff (≥ 0.25 s) ends.
    timer = threading.Timer(
        0.15, lambda: servers.append(LoopbackServer(scripted(PROMETHEUS_OK), port).start())
    )
    source = PrometheusSource.from_url(f"prometheus://127.0.0.1:{port}?settle=0")
    timer.start()
    try:
        started = time.monotonic()
        assert source.measure(requests_query()).value == 120.0
        assert time.monotonic() - started >= 0.25
        assert len(servers[0].requests) == 1  # the refused attempt never reached it
    finally:
        timer.join()
        source.close()
        for server in servers:
            server.stop()


def test_prometheus_gives_up_after_three_attempts_with_a_clear_error() -> None:
    with serving(scripted(json_reply({"status": "error", "error": "overloaded"}, 503))) as server:
        started = time.monotonic()
        with pytest.raises(
            SourceError,
            match=rf"^prometheus at {server.url}/api/v1/query answered HTTP 503: overloaded "
            r"\(query: sum\(increase\(.*; 3 attempts in \d+\.\d s\)$",
        ):
            measure_prometheus(server)
        assert len(server.requests) == 3
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            json_reply({"status": "error", "errorType": "bad_data", "error": "parse error"}, 400),
            "HTTP 400 bad_data",
        ),
        (json_reply(None, 401), "HTTP 401"),
        (json_reply(None, 403), "HTTP 403"),
        (json_reply(None, 404), "HTTP 404"),
        (json_reply(None, 500), "HTTP 500"),
    ],
    ids=["400", "401", "403", "404", "500"],
)
def test_prometheus_permanent_failures_are_one_attempt(reply: Reply, expected: str) -> None:
    with serving(scripted(reply, PROMETHEUS_OK)) as server:
        with pytest.raises(SourceError, match=expected) as info:
            measure_prometheus(server)
        assert len(server.requests) == 1
        assert "attempts" not in str(info.value)


def test_prometheus_waits_as_long_as_retry_after_says() -> None:
    with serving(scripted(json_reply(None, 429, **{"Retry-After": "1"}), PROMETHEUS_OK)) as server:
        started = time.monotonic()
        assert measure_prometheus(server) == 120.0
        assert time.monotonic() - started >= 1.0
        assert len(server.requests) == 2


def test_prometheus_retry_after_beyond_the_budget_fails_at_once() -> None:
    with serving(scripted(json_reply(None, 429, **{"Retry-After": "60"}), PROMETHEUS_OK)) as server:
        started = time.monotonic()
        with pytest.raises(
            SourceError,
            match=r"answered HTTP 429 \(query: .*; asked to retry after 60 s, beyond the 10 s budget\)$",
        ):
            measure_prometheus(server)
        assert len(server.requests) == 1
        assert time.monotonic() - started < 2


# ---------------------------------------------------------------------------- Dynatrace


def test_dynatrace_retries_throttling_and_overload_then_answers() -> None:
    replies = [json_reply({"error": {"code": 429, "message": "busy"}}, 429, **{"Retry-After": "1"}), RESET]
    queue: list[Any] = list(replies)

    def answer(request: Request) -> Reply:
        return queue.pop(0) if queue else dynatrace_ok(request)

    with serving(answer) as server:
        started = time.monotonic()
        assert measure_dynatrace(server) == 120.0
        assert time.monotonic() - started >= 1.0
        assert server.paths() == ["/api/v2/metrics/query"] * 3


def test_dynatrace_gives_up_after_three_attempts() -> None:
    with serving(scripted(json_reply({"error": {"code": 503, "message": "maintenance"}}, 503))) as server:
        with pytest.raises(
            DynatraceError,
            match=rf"^dynatrace at {server.url}/api/v2/metrics/query answered HTTP 503: maintenance "
            r"\(builtin:service\.requestCount\.total:splitBy\(\); 3 attempts in \d+\.\d s\)$",
        ):
            measure_dynatrace(server)
        assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, r"answered HTTP 401: bad \(\$DT_API_TOKEN is not a valid token for this tenant"),
        (403, r"answered HTTP 403: bad \(the token in \$DT_API_TOKEN lacks the scope metrics\.read\)"),
        (400, r"answered HTTP 400: bad \(builtin"),
        (404, r"answered HTTP 404: bad \(builtin"),
    ],
)
def test_dynatrace_permanent_failures_are_one_attempt(status: int, expected: str) -> None:
    with serving(scripted(json_reply({"error": {"code": status, "message": "bad"}}, status))) as server:
        with pytest.raises(DynatraceError, match=expected):
            measure_dynatrace(server)
        assert len(server.requests) == 1


def test_dynatrace_writes_are_never_retried() -> None:
    with serving(scripted(json_reply(None, 503))) as server:
        events = DynatraceEvents(server.url, TOKEN)
        with pytest.raises(DynatraceError, match=r"answered HTTP 503 \(problem comment\)$"):
            events.comment_on_problem("P-1", "rolled back")
        events.close()
        assert server.paths() == ["/api/v2/problems/P-1/comments"]


def test_a_custom_retry_policy_is_kept_by_the_client() -> None:
    with serving(scripted(json_reply(None, 503))) as server:
        client = DynatraceClient(server.url, TOKEN, retry=Retry(attempts=5, base_s=0.01))
        with pytest.raises(DynatraceError, match="5 attempts"):
            client.get_json("/api/v2/metrics", {"pageSize": "1"}, described="probe")
        client.close()
        assert len(server.requests) == 5
