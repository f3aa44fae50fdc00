"""The CloudWatch source against moto in server mode: a real HTTP server on 127.0.0.1, started
here as a subprocess, holding metric data put with PutMetricData for Staging's and
Production's load balancers. A gate through the command line judges what moto's
GetMetricData answers: Average, Maximum and Sum (latency, failure rate, request rate). Moto
cannot compute extended statistics (percentiles such as p90): those are tested with botocore's
Stubber in ``tests/test_source_cloudwatch.py::test_percentiles_are_extended_statistics``.

Retries are botocore's standard mode (``aws/clients.py``: ``max_attempts`` 3 retries, so 4
attempts, exponential backoff with jitter, throttling and 5xx and connection errors retried,
other 4xx not): shown through a loopback proxy in front of moto that fails a given number of
times, counting the attempts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import httpx
import pytest

from pytest_perfsig.errors import SourceError
from pytest_perfsig.metrics import parse_aggregate, parse_metric
from pytest_perfsig.sources.cloudwatch import CloudWatchSource
from pytest_perfsig.windows import MetricQuery, Window
from sample_app.launcher import RunningApp
from tests.loopback import Answer, Reply, Request, free_port, serving

SVC = "SampleJSonService"
NS = "AWS/ApplicationELB"
# 10 s: Locust takes a second or two to send its first request on a busy machine, and the gate's
# window (first request + duration) must still end with requests in its last third.
LOAD = ["--perfsig-duration=10", "--perfsig-warmup=1", "--perfsig-users=3", "--perfsig-spawn-rate=3"]
STEP_S = 5  # one data point every 5 s, as a load balancer with 5 s metrics would publish
T0 = 1_700_000_000.0  # for the retry tests: a fixed past minute


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The moto server's URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"moto server exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                httpx.get(f"{url}/moto-api/", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto server did not listen within 60 s: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cloudwatch(endpoint: str) -> Any:
    return boto3.client(
        "cloudwatch",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def put(endpoint: str, lb: str, metrics: dict[str, float], start: float, end: float) -> None:
    """One data point of each metric every STEP_S seconds from ``start`` to ``end``."""
    client = cloudwatch(endpoint)
    stamps = [start + STEP_S * k for k in range(int((end - start) / STEP_S) + 1)]
    for name, value in metrics.items():
        data = [
            {
                "MetricName": name,
                "Timestamp": datetime.fromtimestamp(ts, UTC),
                "Value": value,
                "Dimensions": [{"Name": "LoadBalancer", "Value": lb}],
            }
            for ts in stamps
        ]
        for k in range(0, len(data), 500):
            client.put_metric_data(Namespace=NS, MetricData=data[k : k + 500])


def write_monspec(directory: Path, staging_lb: str) -> Path:
    lbs = {"Staging": staging_lb, "Production": "app/production/1"}
    path = directory / "monspec.json"
    path.write_text(
        json.dumps(
            {
                SVC: {
                    "environments": {
                        env: {"tags": [{"context": "CLOUDWATCH", "key": "LoadBalancer", "value": lb}]}
                        for env, lb in lbs.items()
                    },
                    "comparisons": [
                        {
                            "name": "StagingToProduction",
                            "source": "Staging",
                            "compare": "Production",
                            "scalefactorperc": {"default": 30, "service.requestspermin": 90},
                        }
                    ],
                    "perfsignature": [
                        {"timeseries": "service.failurerate", "aggregate": "avg"},
                        {"timeseries": "service.responsetime", "aggregate": "avg"},
                        {"timeseries": "service.responsetime", "aggregate": "max"},
                        {"timeseries": "service.requestspermin", "aggregate": "count", "validate": "lower"},
                    ],
                }
            }
        )
    )
    return path


@pytest.mark.e2e
def test_gate_judges_load_balancer_metrics_from_moto(
    gate_dir: pytest.Pytester, sample_app: Callable[..., RunningApp], moto: str
) -> None:
    # Data points from a minute ago to five minutes ahead: whatever minutes the gate's window
    # falls in, each holds the same values, so the judged numbers do not depend on timing.
    now = time.time()
    start, end = now - 60, now + 300
    put(moto, "app/production/1", {"TargetResponseTime": 0.010, "RequestCount": 100.0}, start, end)
    bad = {"TargetResponseTime": 0.030, "RequestCount": 100.0, "HTTPCode_Target_5XX_Count": 10.0}
    put(moto, "app/staging-bad/1", bad, start, end)
    put(moto, "app/staging-good/1", {"TargetResponseTime": 0.011, "RequestCount": 90.0}, start, end)
    staging = sample_app("Staging", build=1)  # takes the gate's load; its numbers come from CloudWatch
    source = f"cloudwatch://us-east-1?endpoint_url={moto}"

    def gate(lb: str) -> pytest.RunResult:
        return gate_dir.runpytest_subprocess(
            f"--monspec={write_monspec(gate_dir.path, lb)}",
            "--stage=Staging",
            f"--perfsig-url=Staging={staging.url}",
            f"--perfsig-source={source}",
            "-rA",
            *LOAD,
        )

    rejected = gate("app/staging-bad/1")
    out = rejected.stdout.str()
    assert rejected.ret == pytest.ExitCode.TESTS_FAILED, out
    rejected.stdout.fnmatch_lines_random(
        [
            "*service.failurerate avg: Staging 10 % > limit 0.5 % (Production 0.0 %*",
            "*service.responsetime avg: Staging 30 ms > limit 15 ms (Production 10 ms*",
            "*service.responsetime max: Staging 30 ms > limit 15 ms (Production 10 ms*",
            "PASSED *service.requestspermin[[]count[]]*",
            f"perfsig: Production: not loaded (its numbers come from {source})",
        ]
    )
    rejected.assert_outcomes(failed=3, passed=1)

    approved = gate("app/staging-good/1")
    assert approved.ret == pytest.ExitCode.OK, approved.stdout.str()
    approved.assert_outcomes(passed=4)


# ---------------------------------------------------------------------------- botocore's retries


def proxy(upstream: str, failures: list[int]) -> Answer:
    """Answers with the next of ``failures`` (an empty body) while there are any, then forwards
    the request to ``upstream`` as it came."""

    def answer(request: Request) -> Reply:
        if failures:
            return Reply(failures.pop(0), b"")
        headers = {
            k: v for k, v in request.headers.items() if k not in {"host", "content-length", "connection"}
        }
        query = f"?{urlencode(request.query, doseq=True)}" if request.query else ""
        forwarded = httpx.request(
            request.method,
            f"{upstream}{request.path}{query}",
            headers=headers,
            content=request.body,
            timeout=10,
        )
        kept = {
            k: v
            for k, v in forwarded.headers.items()
            if k.lower() == "content-type" or k.lower().startswith("x-amz")
        }
        return Reply(forwarded.status_code, forwarded.content, kept)

    return answer


def count_query(lb: str) -> MetricQuery:
    metric, aggregate = parse_metric("service.requests"), parse_aggregate("count")
    assert metric is not None and aggregate is not None
    tags = (("CLOUDWATCH", "LoadBalancer", lb),)
    return MetricQuery(SVC, "Staging", None, metric, aggregate, Window(T0 + 5, T0 + 50), tags=tags)


@pytest.fixture(scope="module")
def retry_data(moto: str) -> str:
    put(moto, "app/retry/1", {"RequestCount": 40.0}, T0, T0 + 55)  # 12 points in one minute
    return "app/retry/1"


@pytest.mark.parametrize(
    "failures", [[503, 503], [502], [500, 504, 503]], ids=["503x2", "502", "500-504-503"]
)
def test_transient_errors_are_retried_by_botocore(moto: str, retry_data: str, failures: list[int]) -> None:
    expected = len(failures) + 1
    with serving(proxy(moto, list(failures))) as server:
        source = CloudWatchSource.from_url(f"cloudwatch://us-east-1?endpoint_url={server.url}")
        assert source.measure(count_query(retry_data)).value == 480.0
        assert len(server.requests) == expected


def test_retries_are_bounded_and_end_in_a_source_error(moto: str, retry_data: str) -> None:
    with serving(proxy(moto, [503] * 10)) as server:
        source = CloudWatchSource.from_url(f"cloudwatch://us-east-1?endpoint_url={server.url}")
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"^CloudWatch GetMetricData in us-east-1 failed: .*503"):
            source.measure(count_query(retry_data))
        assert len(server.requests) == 4  # botocore's standard mode: max_attempts 3 retries
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("status", [400, 403, 404])
def test_client_errors_are_one_attempt(moto: str, retry_data: str, status: int) -> None:
    with serving(proxy(moto, [status])) as server:
        source = CloudWatchSource.from_url(f"cloudwatch://us-east-1?endpoint_url={server.url}")
        with pytest.raises(SourceError, match="CloudWatch GetMetricData in us-east-1 failed"):
            source.measure(count_query(retry_data))
        assert len(server.requests) == 1


def test_the_probe_reaches_moto(moto: str, retry_data: str) -> None:
    CloudWatchSource.from_url(f"cloudwatch://us-east-1?endpoint_url={moto}").probe()
