"""Found before any load: every metric source the selected comparisons read is probed when the
gate is built (one cheap call: Prometheus's build info, Dynatrace's token check and a one-item
metric list, CloudWatch's ListMetrics). A wrong URL, a missing or refused token, missing AWS
credentials and an unreachable source are usage errors (exit 4) naming the environment, the URL
(without credentials) and the cause, before a single request reaches the stage; the deferred
worker records such a request as ``error`` and never approves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pytest_perfsig.dynatrace.source import DynatraceSource
from pytest_perfsig.errors import DynatraceError, SourceError
from pytest_perfsig.gate.deferred import work_once
from pytest_perfsig.gate.status import GateOutcome
from pytest_perfsig.registry import new_request
from pytest_perfsig.registry.base import ValidationRequest
from pytest_perfsig.registry.sqlite import SqliteRegistry
from pytest_perfsig.sources import open_source
from pytest_perfsig.sources.cloudwatch import CloudWatchConfig, CloudWatchSource
from pytest_perfsig.sources.prometheus import PrometheusSource
from pytest_perfsig.store import SqliteStore
from tests.loopback import LoopbackServer, Reply, Request, free_port, json_reply, scripted, serving

SVC = "Svc"
TOKEN = "dt0c01.PROBETOKEN.abcdefghijklmnop"
BUILDINFO = json_reply({"status": "success", "data": {"version": "2.53.0", "revision": "x"}})
NO_AWS = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_SECURITY_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None,
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
    "AWS_WEB_IDENTITY_TOKEN_FILE": None,
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def without_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3's default session keeps the credentials an earlier test found: start a new one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    for key, value in NO_AWS.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


# ---------------------------------------------------------------------------- each source's probe


def test_prometheus_probe_asks_for_build_info() -> None:
    with serving(scripted(BUILDINFO)) as server:
        PrometheusSource.from_url(f"prometheus://127.0.0.1:{server.port}").probe()
        assert server.paths() == ["/api/v1/status/buildinfo"]
    # A Prometheus-compatible server without build info: a constant query instead.
    ok = json_reply({"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}})
    with serving(scripted(json_reply(None, 404), ok)) as server:
        PrometheusSource.from_url(f"prometheus://127.0.0.1:{server.port}/prom").probe()
        assert server.paths() == ["/prom/api/v1/status/buildinfo", "/prom/api/v1/query"]
        assert server.requests[1].param("query") == "1"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (json_reply(None, 401), r"answered HTTP 401: the credentials \(user:password@ in the URL\)"),
        (json_reply({"hello": "world"}), r"answered HTTP 200, not as Prometheus's HTTP API does"),
        (json_reply(None, 404), r"no Prometheus HTTP API there \(HTTP 404"),
    ],
    ids=["401", "not-prometheus", "404"],
)
def test_prometheus_probe_refusals(reply: Reply, expected: str) -> None:
    with serving(scripted(reply)) as server:
        source = PrometheusSource.from_url(f"prometheus://bob:s3cret@127.0.0.1:{server.port}")
        with pytest.raises(SourceError, match=expected) as info:
            source.probe()
        assert "s3cret" not in str(info.value)
        assert server.requests[0].headers["authorization"].startswith("Basic ")


def test_dynatrace_probe_checks_the_token_and_lists_one_metric() -> None:
    metrics = json_reply({"totalCount": 1200, "nextPageKey": "x", "metrics": [{"metricId": "builtin:a"}]})
    with serving(scripted(metrics)) as server:
        DynatraceSource(server.url, token=TOKEN).probe()
        (request,) = server.requests
        assert (request.path, request.query) == ("/api/v2/metrics", {"pageSize": ["1"]})
        assert request.headers["authorization"] == f"Api-Token {TOKEN}"
    with serving(scripted(json_reply({"clusterVersion": "1.300"}))) as server:
        DynatraceSource(server.url, token=TOKEN, api="v1").probe()
        assert server.paths() == ["/api/v1/config/clusterversion"]


@pytest.mark.parametrize(
    ("api", "status", "expected"),
    [
        ("v2", 401, r"HTTP 401: Token is invalid \(\$DT_API_TOKEN is not a valid token for this tenant"),
        (
            "v2",
            403,
            r"HTTP 403: Token is missing required scope \(the token in \$DT_API_TOKEN lacks the scope metrics\.read\)",
        ),
        (
            "v1",
            403,
            r"HTTP 403: Token is missing required scope \(the token in \$DT_API_TOKEN lacks the scope DataExport\)",
        ),
    ],
)
def test_dynatrace_probe_says_which_scope_is_missing(api: str, status: int, expected: str) -> None:
    message = "Token is invalid" if status == 401 else "Token is missing required scope"
    with serving(scripted(json_reply({"error": {"code": status, "message": message}}, status))) as server:
        with pytest.raises(DynatraceError, match=expected) as info:
            DynatraceSource(server.url, token=TOKEN, api=api).probe()
        assert TOKEN not in str(info.value)
        assert len(server.requests) == 1


def test_dynatrace_probe_without_token_calls_nothing() -> None:
    with serving(scripted(json_reply({}))) as server:
        with pytest.raises(DynatraceError, match=r"^dynatrace: \$DT_API_TOKEN is not set"):
            DynatraceSource(server.url, token=None).probe()
        assert server.requests == []


def test_cloudwatch_probe_lists_the_requests_metric() -> None:
    client = boto3.client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    source = CloudWatchSource(CloudWatchConfig("us-east-1", namespace="Shop", requests="Hits"), client=client)
    with Stubber(client) as stubber:
        stubber.add_response("list_metrics", {"Metrics": []}, {"Namespace": "Shop", "MetricName": "Hits"})
        source.probe()
        stubber.add_client_error("list_metrics", "AccessDenied", "not authorized", 403)
        with pytest.raises(
            SourceError,
            match=r"^CloudWatch ListMetrics in us-east-1 failed: AccessDenied: not authorized "
            r"\(the role perfsig runs with needs cloudwatch:ListMetrics\) \(probe\)$",
        ):
            source.probe()


def test_cloudwatch_probe_without_credentials_or_with_a_bad_region(monkeypatch: pytest.MonkeyPatch) -> None:
    without_aws_credentials(monkeypatch)
    source = CloudWatchSource.from_url(f"cloudwatch://us-east-1?endpoint_url=http://127.0.0.1:{free_port()}")
    with pytest.raises(SourceError, match=r"NoCredentialsError: .*\(configure AWS credentials"):
        source.probe()
    with pytest.raises(SourceError, match=r"'useast1' is not an AWS region name"):
        CloudWatchSource.from_url("cloudwatch://useast1").probe()


def test_local_probe_needs_nothing(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        open_source("local", store).probe()


# ---------------------------------------------------------------------------- through pytest


@pytest.fixture
def stage() -> Iterator[LoopbackServer]:
    """Where the stage under test would take load: it must see no request at all."""
    with serving(scripted(Reply(200, b"ok"))) as server:
        yield server


def write_monspec(directory: Path, stage_url: str, **sources: str) -> Path:
    environments: dict[str, Any] = {
        env: {"tags": [{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": env}]}
        for env in ("Staging", "Production")
    }
    environments["Staging"]["url"] = stage_url
    for env, url in sources.items():
        environments[env]["source"] = url
    path = directory / "monspec.json"
    path.write_text(
        json.dumps(
            {
                SVC: {
                    "environments": environments,
                    "comparisons": [{"name": "C", "source": "Staging", "compare": "Production"}],
                    "perfsignature": [
                        {"timeseries": "service.failurerate", "aggregate": "avg"},
                        {"timeseries": "service.responsetime", "aggregate": "avg"},
                    ],
                }
            }
        )
    )
    return path


def run_gate(pytester: pytest.Pytester, monspec: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(
        f"--monspec={monspec}", "--stage=Staging", f"--perfsig-store={pytester.path / 's.db'}", *args
    )


def assert_usage_error_before_load(result: pytest.RunResult, stage: LoopbackServer, *expected: str) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    for fragment in expected:
        assert fragment in text, text
    assert "perfsig load" not in text and "Traceback" not in text
    assert stage.requests == []  # not one request of load
    return text


def test_unreachable_prometheus_is_a_usage_error_before_any_load(
    pytester: pytest.Pytester, stage: LoopbackServer
) -> None:
    port = free_port()
    monspec = write_monspec(pytester.path, stage.url)
    result = run_gate(pytester, monspec, f"--perfsig-source=prometheus://alice:hunter2@127.0.0.1:{port}")
    text = assert_usage_error_before_load(
        result,
        stage,
        f"perfsig: Staging and Production read metrics from prometheus://127.0.0.1:{port}, which cannot be "
        f"used: prometheus at http://127.0.0.1:{port}/api/v1/status/buildinfo is unreachable: ConnectError",
        "(probe; 3 attempts in",
    )
    assert "hunter2" not in text and "alice" not in text


def test_missing_dynatrace_token_is_a_usage_error_naming_the_environment(
    pytester: pytest.Pytester, stage: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DT_API_TOKEN", raising=False)
    with serving(scripted(json_reply({"metrics": []}))) as tenant:
        url = f"dynatrace+http://127.0.0.1:{tenant.port}"
        result = run_gate(pytester, write_monspec(pytester.path, stage.url, Production=url))
        assert_usage_error_before_load(
            result,
            stage,
            f"perfsig: Production reads metrics from {url}, which cannot be used: dynatrace: $DT_API_TOKEN "
            "is not set: an API token with scopes metrics.read and entities.read",
        )
        assert tenant.requests == []


def test_refused_dynatrace_token_is_a_usage_error_without_the_token(
    pytester: pytest.Pytester, stage: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DT_API_TOKEN", TOKEN)

    def refuse(request: Request) -> Reply:
        return json_reply({"error": {"code": 401, "message": f"Token {TOKEN} is not valid"}}, 401)

    with serving(refuse) as tenant:
        url = f"dynatrace+http://127.0.0.1:{tenant.port}"
        result = run_gate(pytester, write_monspec(pytester.path, stage.url), f"--perfsig-source={url}")
        text = assert_usage_error_before_load(
            result,
            stage,
            f"Staging and Production read metrics from {url}, which cannot be used: dynatrace at "
            f"http://127.0.0.1:{tenant.port}/api/v2/metrics answered HTTP 401: Token *** is not valid "
            "($DT_API_TOKEN is not a valid token for this tenant",
        )
        assert TOKEN not in text
        assert tenant.paths() == ["/api/v2/metrics"]


def test_cloudwatch_without_credentials_is_a_usage_error(
    pytester: pytest.Pytester, stage: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_aws_credentials(monkeypatch)
    url = f"cloudwatch://us-east-1?endpoint_url=http://127.0.0.1:{free_port()}"
    result = run_gate(pytester, write_monspec(pytester.path, stage.url, Production=url))
    assert_usage_error_before_load(
        result,
        stage,
        f"Production reads metrics from {url}, which cannot be used: CloudWatch ListMetrics in us-east-1",
        "NoCredentialsError",
    )


def test_a_malformed_source_url_is_a_usage_error(pytester: pytest.Pytester, stage: LoopbackServer) -> None:
    result = run_gate(pytester, write_monspec(pytester.path, stage.url), "--perfsig-source=influx://h:1")
    assert_usage_error_before_load(result, stage, "unknown metric source 'influx://h:1'")


def test_listing_the_items_probes_nothing(pytester: pytest.Pytester, stage: LoopbackServer) -> None:
    result = run_gate(
        pytester,
        write_monspec(pytester.path, stage.url),
        f"--perfsig-source=prometheus://127.0.0.1:{free_port()}",
        "--co",
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*C::service.failurerate[[]avg[]]*"])


def test_a_reachable_source_passes_the_probe(pytester: pytest.Pytester, stage: LoopbackServer) -> None:
    """The probe alone: the gate goes on to its load (which the scripted stage cannot take)."""
    with serving(scripted(BUILDINFO)) as prometheus:
        result = run_gate(
            pytester,
            write_monspec(pytester.path, stage.url),
            f"--perfsig-source=prometheus://127.0.0.1:{prometheus.port}",
            "--perfsig-duration=1",
            "--perfsig-users=1",
        )
        assert result.ret != pytest.ExitCode.USAGE_ERROR
        assert prometheus.paths()[0] == "/api/v1/status/buildinfo"
        assert "perfsig load" in result.stdout.str()


# ---------------------------------------------------------------------------- the deferred worker


class Approver:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, request: ValidationRequest, gate: Any, outcome: GateOutcome | None) -> str:
        self.calls.append(outcome.status if outcome is not None else "error")
        return "rejected"


def test_worker_records_an_unreachable_source_as_error_and_never_approves(tmp_path: Path) -> None:
    port = free_port()
    monspec = write_monspec(tmp_path, "http://127.0.0.1:1", Staging=f"prometheus://127.0.0.1:{port}")
    store = SqliteStore(tmp_path / "s.db")
    registry = SqliteRegistry(store)
    registry.register(
        new_request("pipe", "C", 1, str(monspec), now=1_800_000_000.0, approval_action="Approve")
    )
    approver = Approver()
    (done,) = work_once(registry, store, worker="w", approve=approver, now=1_800_000_100.0)
    assert done.status == "error" and done.recorded
    assert (done.reason or "").startswith(
        f"Staging reads metrics from prometheus://127.0.0.1:{port}, which cannot be used: prometheus at "
        f"http://127.0.0.1:{port}/api/v1/status/buildinfo is unreachable"
    )
    assert approver.calls == ["error"]
    (stored,) = registry.recent()
    assert stored.status == "error" and "cannot be used" in (stored.reason or "")
    assert store.gates(5) == []  # nothing was judged


def test_perfsig_worker_command_says_why(tmp_path: Path) -> None:
    port = free_port()
    monspec = write_monspec(tmp_path, "http://127.0.0.1:1", Production=f"prometheus://127.0.0.1:{port}")
    store = tmp_path / "s.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def perfsig(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest_perfsig.cli", *args, f"--store={store}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    registered = perfsig("register", "C,0.002", f"--monspec={monspec}", "--pipeline=pipe")  # due in 0.12 s
    assert registered.returncode == 0, registered.stderr
    for _ in range(5):  # due by the time a worker has started, unless the machine is very busy
        worked = perfsig("worker", "--once", "--no-approve")
        if "0 request(s) processed" not in worked.stdout:
            break
    assert worked.returncode == 0, worked.stderr
    assert (
        f"C: error (Production reads metrics from prometheus://127.0.0.1:{port}, which cannot be used: "
        in worked.stdout
    ), worked.stdout
    assert "1 request(s) processed" in worked.stdout
