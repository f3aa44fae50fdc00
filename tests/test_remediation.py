"""Self-healing, the whole loop: a problem notification for Production (Dynatrace or
Alertmanager) makes the receiver roll the deployment group back to the previous revision with
CodeDeploy (moto), once; what it must leave alone; remediation URLs on a loopback server."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import uvicorn
from moto import mock_aws

from pytest_perfsig.lambdas import problem_handler
from pytest_perfsig.remediation import Problem, create_app, parse_problem, remediate, sign
from pytest_perfsig.remediation.payloads import PayloadError
from pytest_perfsig.remediation.rollback import describe_revision, same_revision
from pytest_perfsig.store import DeploymentEvent, SqliteStore

SECRET = "test-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}
APP, GROUP = "SampleApp", "Production"


def revision(build: int) -> dict[str, Any]:
    return {
        "revisionType": "S3",
        "s3Location": {"bucket": "perfsig-builds", "key": f"app-build{build}.zip", "bundleType": "zip"},
    }


def dynatrace(
    pid: str = "-4711_1700000000000V2",
    state: str = "OPEN",
    env: str = "Production",
    started_ms: int | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "PID": pid,
        "ProblemID": "P-4711",
        "State": state,
        "ProblemTitle": "Failure rate increase",
        "ProblemImpact": "SERVICE",
        "ProblemSeverity": "ERROR",
        "ImpactedEntities": [
            {"type": "SERVICE", "name": "SampleNodeJsService", "entity": "SERVICE-8E2B9F1A"}
        ],
        "Tags": f"DeploymentGroup:{env}, [Environment]Owner:team-a",
        "ProblemDetailsJSON": {"id": pid, "status": state},
    }
    if started_ms is not None:
        payload["ProblemDetailsJSON"]["startTime"] = started_ms
    return payload


def alertmanager(
    status: str = "firing",
    stage: str = "Production",
    starts_at: str = "2030-01-01T10:00:00Z",
    alertname: str = "HighFailureRate",
) -> dict[str, Any]:
    labels = {"alertname": alertname, "stage": stage, "service": "sample-app", "severity": "critical"}
    return {
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="' + alertname + '"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "perfsig",
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "failure rate above 5 %"},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "failure rate above 5 %"},
                "startsAt": starts_at,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": "c0ffee12deadbeef",
            }
        ],
    }


@dataclass
class World:
    codedeploy: Any
    store_path: Path
    deployments: dict[int, str] = field(default_factory=dict)
    events: dict[int, DeploymentEvent] = field(default_factory=dict)

    def deploy(
        self,
        build: int,
        *,
        ts: float,
        record: bool = True,
        group: str = GROUP,
        remediation_url: str | None = None,
    ) -> str:
        deployment_id = self.codedeploy.create_deployment(
            applicationName=APP, deploymentGroupName=group, revision=revision(build)
        )["deploymentId"]
        self.deployments[build] = deployment_id
        if record:
            event = DeploymentEvent(
                env=group,
                deployment_id=deployment_id,
                application=APP,
                deployment_group=group,
                revision=revision(build),
                pipeline="demo",
                stage=group,
                remediation_url=remediation_url,
                ts=ts,
            )
            with SqliteStore(self.store_path) as store:
                store.add_deployment_event(event)
            self.events[build] = event
        return deployment_id

    def group_deployments(self, group: str = GROUP) -> list[dict[str, Any]]:
        ids = self.codedeploy.list_deployments(applicationName=APP, deploymentGroupName=group)["deployments"]
        return [self.codedeploy.get_deployment(deploymentId=i)["deploymentInfo"] for i in ids]

    def new_deployments(self) -> list[dict[str, Any]]:
        known = set(self.deployments.values())
        return [d for d in self.group_deployments() if d["deploymentId"] not in known]

    def remediations(self) -> list[dict[str, Any]]:
        with SqliteStore(self.store_path) as store:
            return store.remediations()

    def events_now(self) -> list[DeploymentEvent]:
        with SqliteStore(self.store_path) as store:
            return store.deployment_events("Production")

    def client(self, **kwargs: Any) -> AsgiClient:
        return AsgiClient(create_app(self.store_path, secret=SECRET, codedeploy=self.codedeploy, **kwargs))


class AsgiClient:
    """Requests straight into the ASGI app (httpx's ASGITransport), one event loop each."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def empty_world(tmp_path: Path) -> Iterator[World]:
    with mock_aws():
        codedeploy = boto3.client("codedeploy", region_name="us-east-1")
        codedeploy.create_application(applicationName=APP)
        for group in ("Production", "Staging"):
            codedeploy.create_deployment_group(
                applicationName=APP,
                deploymentGroupName=group,
                serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
            )
        yield World(codedeploy, tmp_path / "perfsig.db")


@pytest.fixture
def world(empty_world: World) -> World:
    """Production got build 1, then build 4 (the bad one); both recorded as deployment events."""
    empty_world.deploy(1, ts=time.time() - 7200)
    empty_world.deploy(4, ts=time.time() - 600)
    return empty_world


def s3_key(info: dict[str, Any]) -> str:
    return str(info["revision"]["s3Location"]["key"])


# ------------------------------------------------------------------ the loop


def test_dynatrace_problem_rolls_production_back_once(world: World) -> None:
    client = world.client()
    answer = client.post("/problems", json=dynatrace(), headers=AUTH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "rolled_back" and body["action"] == "codedeploy_rollback"
    assert body["previous_revision"]["s3Location"]["key"] == "app-build1.zip"
    assert body["rolled_back_deployment_id"] == world.deployments[4]

    (rollback,) = world.new_deployments()
    assert rollback["deploymentId"] == body["new_deployment_id"]
    assert (rollback["applicationName"], rollback["deploymentGroupName"]) == (APP, GROUP)
    assert s3_key(rollback) == "app-build1.zip"
    assert "-4711_1700000000000V2" in rollback["description"]

    (stored,) = world.remediations()
    assert stored["problem_id"] == "-4711_1700000000000V2" and stored["env"] == "Production"
    assert stored["status"] == "rolled_back" and stored["action"] == "codedeploy_rollback"
    assert stored["new_deployment_id"] == body["new_deployment_id"]
    assert stored["deployment_event_id"] == world.events[4].event_id
    assert "app-build4.zip" in stored["detail"] and "app-build1.zip" in stored["detail"]

    newest = world.events_now()[0]  # the rollback is a deployment event of its own
    assert newest.deployment_id == body["new_deployment_id"] and newest.revision == revision(1)
    assert newest.stage and newest.stage.startswith("perfsig:rollback:")

    again = client.post("/problems", json=dynatrace(), headers=AUTH)
    assert again.status_code == 200
    assert again.json()["status"] == "already_handled" and again.json()["previous_status"] == "rolled_back"
    assert len(world.new_deployments()) == 1
    assert len(world.remediations()) == 1 and len(world.events_now()) == 3


@contextlib.contextmanager
def running(app: Any) -> Iterator[httpx.Client]:
    """The app under uvicorn on 127.0.0.1 (a free port), in a thread."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_alertmanager_over_real_http_with_a_signature_rolls_back(world: World) -> None:
    app = create_app(world.store_path, secret=SECRET, codedeploy=world.codedeploy)
    body = json.dumps(alertmanager()).encode()
    with running(app) as client:
        assert client.get("/health").json() == {"status": "ok"}
        answer = client.post(
            "/problems",
            content=body,
            headers={"Content-Type": "application/json", "X-Perfsig-Signature": sign(SECRET, body)},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "rolled_back"
        # Alertmanager repeats the group's notification: the same problem, one rollback
        repeat = client.post(
            "/problems",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Perfsig-Signature": sign(SECRET, body, int(time.time()) + 1),
            },
        )
        assert repeat.json()["status"] == "already_handled"
    (rollback,) = world.new_deployments()
    assert s3_key(rollback) == "app-build1.zip"
    (stored,) = world.remediations()
    assert stored["problem_id"].startswith("alertmanager:") and "c0ffee12deadbeef" in stored["problem_id"]
    assert stored["status"] == "rolled_back"


def test_lambda_handler_rolls_back_once(world: World) -> None:
    event = {
        "httpMethod": "POST",
        "headers": {"authorization": f"Bearer {SECRET}"},
        "body": json.dumps(dynatrace(pid="lambda-1")),
        "isBase64Encoded": False,
    }
    first = problem_handler(
        event, None, codedeploy=world.codedeploy, secret=SECRET, store_path=str(world.store_path)
    )
    assert first["statusCode"] == 200 and json.loads(first["body"])["status"] == "rolled_back"
    second = problem_handler(
        event, None, codedeploy=world.codedeploy, secret=SECRET, store_path=str(world.store_path)
    )
    assert json.loads(second["body"])["status"] == "already_handled"
    assert [s3_key(d) for d in world.new_deployments()] == ["app-build1.zip"]


# ------------------------------------------------------------------ nothing to do


def test_resolved_problem_does_nothing(world: World) -> None:
    answer = world.client().post("/problems", json=dynatrace(state="RESOLVED"), headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["status"] == "skipped" and "RESOLVED" in answer.json()["reason"]
    assert world.new_deployments() == [] and world.remediations() == []  # not even claimed
    resolved = world.client().post("/problems", json=alertmanager(status="resolved"), headers=AUTH)
    assert resolved.json()["status"] == "skipped" and world.new_deployments() == []


def test_staging_problem_does_nothing(world: World) -> None:
    world.deploy(2, ts=time.time() - 300, group="Staging")
    answer = world.client().post("/problems", json=dynatrace(env="Staging"), headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["status"] == "skipped" and "not production" in answer.json()["reason"]
    assert (
        world.new_deployments() == []
        and world.group_deployments("Staging")[0]["deploymentId"] == world.deployments[2]
    )
    assert len(world.group_deployments("Staging")) == 1
    (stored,) = world.remediations()
    assert stored["status"] == "skipped" and "Staging" in stored["detail"]


def test_no_deployment_event_is_skipped_with_the_reason(empty_world: World) -> None:
    answer = empty_world.client().post("/problems", json=dynatrace(), headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() | {"problem_id": None} == answer.json() | {
        "status": "skipped",
        "action": None,
        "new_deployment_id": None,
        "problem_id": None,
        "reason": "no deployment event recorded for Production",
    }
    (stored,) = empty_world.remediations()
    assert stored["status"] == "skipped" and stored["detail"] == "no deployment event recorded for Production"


def test_no_previous_revision_is_skipped(empty_world: World) -> None:
    empty_world.deploy(4, ts=time.time() - 60)
    answer = empty_world.client().post("/problems", json=dynatrace(), headers=AUTH)
    assert answer.json()["status"] == "skipped" and "to roll back to" in answer.json()["reason"]
    assert empty_world.new_deployments() == []


def test_problem_without_environment_is_skipped(world: World) -> None:
    payload = dynatrace()
    payload["Tags"] = "Owner:team-a"
    answer = world.client().post("/problems", json=payload, headers=AUTH)
    assert answer.json()["status"] == "skipped" and "no environment" in answer.json()["reason"]
    assert world.new_deployments() == []


# ------------------------------------------------------------------ errors


def test_codedeploy_error_is_a_502_and_stored(world: World) -> None:
    from moto.codedeploy.models import codedeploy_backends

    del codedeploy_backends["123456789012"]["us-east-1"].applications[APP]  # application deleted
    answer = world.client().post("/problems", json=dynatrace(), headers=AUTH)
    assert answer.status_code == 502
    assert answer.json()["status"] == "error"
    assert (
        "CreateDeployment" in answer.json()["reason"] and "ApplicationDoesNotExist" in answer.json()["reason"]
    )
    (stored,) = world.remediations()
    assert stored["status"] == "error" and "ApplicationDoesNotExist" in stored["detail"]
    assert stored["new_deployment_id"] is None
    assert len(world.events_now()) == 2  # no rollback event for a rollback that did not happen


# ------------------------------------------------------------------ history


def test_a_later_problem_rolls_back_further_not_back_and_forth(empty_world: World) -> None:
    world = empty_world
    now = time.time()
    world.deploy(3, ts=now - 9000)
    world.deploy(1, ts=now - 7200)
    world.deploy(4, ts=now - 600)
    client = world.client()
    first = client.post(
        "/problems", json=dynatrace(pid="p-1", started_ms=int((now - 300) * 1000)), headers=AUTH
    )
    assert first.json()["previous_revision"] == revision(1)
    # another symptom of build 4 that began before that rollback: the rollback addresses it
    late = client.post(
        "/problems", json=dynatrace(pid="p-2", started_ms=int((now - 200) * 1000)), headers=AUTH
    )
    assert late.json()["status"] == "skipped" and "began before the rollback" in late.json()["reason"]
    # a new problem on build 1 after the rollback: back to build 3, never forth to build 4
    time.sleep(0.01)
    second = client.post(
        "/problems", json=dynatrace(pid="p-3", started_ms=int(time.time() * 1000) + 1000), headers=AUTH
    )
    assert second.json()["status"] == "rolled_back", second.json()
    assert second.json()["previous_revision"] == revision(3)
    assert [s3_key(d) for d in world.new_deployments()] == ["app-build1.zip", "app-build3.zip"]
    third = client.post("/problems", json=dynatrace(pid="p-4"), headers=AUTH)
    assert third.json()["status"] == "skipped" and "to roll back to" in third.json()["reason"]


def test_previous_revision_from_codedeploy_when_the_store_knows_none(empty_world: World) -> None:
    from moto.codedeploy.models import codedeploy_backends

    world = empty_world
    world.deploy(1, ts=0, record=False)
    backend = codedeploy_backends["123456789012"]["us-east-1"]
    backend.deployments[world.deployments[1]].status = "Succeeded"
    time.sleep(0.01)  # createTime has millisecond resolution
    world.deploy(4, ts=time.time())
    answer = world.client().post("/problems", json=dynatrace(), headers=AUTH)
    assert answer.status_code == 200 and answer.json()["status"] == "rolled_back", answer.json()
    assert answer.json()["previous_revision"]["s3Location"]["key"] == "app-build1.zip"
    assert "Succeeded" in world.remediations()[0]["detail"]


# ------------------------------------------------------------------ remediation URL


@contextlib.contextmanager
def remediation_server(status: int) -> Iterator[tuple[str, list[Any]]]:
    received: list[Any] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"http://tower:hunter2@127.0.0.1:{server.server_address[1]}/api/v2/job_templates/7/launch/?token=abc",
            received,
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [201, 500])
def test_remediation_url_is_called_instead_of_rolling_back(empty_world: World, status: int) -> None:
    world = empty_world
    with remediation_server(status) as (url, received):
        world.deploy(1, ts=time.time() - 7200)
        world.deploy(4, ts=time.time() - 600, remediation_url=url)
        with httpx.Client(trust_env=False) as http_client:
            answer = world.client(http=http_client).post("/problems", json=dynatrace(), headers=AUTH)
    assert received == [dynatrace()]  # the problem, as notified
    assert world.new_deployments() == []  # instead of CodeDeploy, not as well
    (stored,) = world.remediations()
    assert stored["action"] == "remediation_url"
    assert (
        "hunter2" not in answer.text and "token=abc" not in answer.text and "hunter2" not in stored["detail"]
    )
    if status == 201:
        assert answer.status_code == 200 and answer.json()["status"] == "remediation_called"
        assert stored["status"] == "remediation_called" and "HTTP 201" in stored["detail"]
    else:
        assert answer.status_code == 502 and answer.json()["status"] == "error"
        assert stored["status"] == "error" and "answered HTTP 500" in stored["detail"]


def test_unreachable_remediation_url_is_an_error(empty_world: World) -> None:
    with remediation_server(200) as (url, _):
        pass  # stopped: nothing listens there any more
    empty_world.deploy(4, ts=time.time(), remediation_url=url)
    answer = empty_world.client().post("/problems", json=dynatrace(), headers=AUTH)
    assert answer.status_code == 502 and "ConnectError" in answer.json()["reason"]
    assert "hunter2" not in answer.text


# ------------------------------------------------------------------ payloads


def test_dynatrace_payload_mapping() -> None:
    problem = parse_problem(
        {
            "PID": 12345,
            "State": "OPEN",
            "ProblemTitle": "Slow",
            "Tags": "[AWS]Name:web, DeploymentGroup:Staging, DeploymentGroup:Production-EU",
        }
    )
    assert (problem.problem_id, problem.state, problem.env, problem.source) == (
        "12345",
        "OPEN",
        "Production-EU",
        "dynatrace",
    )
    assert problem.envs == ("Staging", "Production-EU")
    merged = parse_problem({"PID": "x", "State": "MERGED"})
    assert merged.state == "RESOLVED" and merged.vendor_state == "MERGED" and merged.env is None
    by_name = parse_problem(
        {
            "PID": "y",
            "State": "OPEN",
            "ImpactedEntities": json.dumps(
                [{"type": "HOST", "name": "web-Production-1", "entity": "HOST-1"}]
            ),
        },
        known_envs=["Production", "Staging"],
    )
    assert by_name.env == "Production"
    detailed = parse_problem(
        {
            "PID": "z",
            "State": "OPEN",
            "ProblemDetailsJSON": {
                "startTime": 1_700_000_000_000,
                "tagsOfAffectedEntities": [{"key": "DeploymentGroup", "value": "Production"}],
            },
        }
    )
    assert detailed.env == "Production" and detailed.started_at == 1_700_000_000.0


def test_alertmanager_payload_mapping() -> None:
    payload = alertmanager()
    payload["alerts"].append(
        {**payload["alerts"][0], "fingerprint": "aaaa", "startsAt": "2030-01-01T11:00:00.123456789Z"}
    )
    problem = parse_problem(payload)
    assert problem.state == "OPEN" and problem.env == "Production" and problem.source == "alertmanager"
    assert problem.problem_id.endswith(":c0ffee12deadbeef:2030-01-01T10:00:00Z")  # the oldest alert
    assert problem.title == "HighFailureRate: failure rate above 5 %"
    env_label = alertmanager()
    env_label["alerts"][0]["labels"] = {"alertname": "X", "env": "Production"}
    env_label["commonLabels"] = {}
    assert parse_problem(env_label).env == "Production"
    with pytest.raises(PayloadError, match="version"):
        parse_problem({**alertmanager(), "version": "3"})
    with pytest.raises(PayloadError, match="alerts"):
        parse_problem({**alertmanager(), "alerts": []})


def test_revision_identity() -> None:
    a = {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "app.zip", "eTag": "1"}}
    b = {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "app.zip", "eTag": "2"}}
    assert not same_revision(a, b) and same_revision(
        a, {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "app.zip"}}
    )
    assert describe_revision(revision(1)) == "s3://perfsig-builds/app-build1.zip"
    assert describe_revision(a) == "s3://b/app.zip@1"


def test_remediate_direct_call_without_server(world: World) -> None:
    problem = Problem(problem_id="direct", title="t", state="OPEN", env="Production", raw={})
    with SqliteStore(world.store_path) as store:
        outcome = remediate(problem, store, codedeploy=world.codedeploy)
    assert outcome.status == "rolled_back" and outcome.http_status == 200
    assert outcome.to_json()["previous_revision"] == revision(1)


def test_dynatrace_is_told_what_was_done(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The original Lambda commented on the problem; so does the receiver when Dynatrace is set up."""
    import respx

    monkeypatch.setenv("PERFSIG_DYNATRACE_URL", "https://abc12345.live.dynatrace.com")
    monkeypatch.setenv("DT_API_TOKEN", "dt0c01.TOKEN")
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(
            url__regex=r"https://abc12345\.live\.dynatrace\.com/api/v2/problems/.*/comments"
        ).mock(return_value=httpx.Response(201, json={"id": "c"}))
        answer = world.client().post("/problems", json=dynatrace(), headers=AUTH)
    assert answer.status_code == 200 and answer.json()["status"] == "rolled_back"
    comment = json.loads(route.calls.last.request.content)["message"]
    assert comment.startswith("pytest-perfsig: rolled_back:") and "app-build1.zip" in comment


# ------------------------------------------------------------------ hostile numbers


def test_nan_problem_id_is_refused_and_rolls_nothing_back(world: World) -> None:
    body = b'{"PID": NaN, "State": "OPEN", "ProblemTitle": "x", "Tags": "DeploymentGroup:Production"}'
    answer = world.client().post(
        "/problems", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400 and "NaN is not JSON" in answer.json()["reason"]
    assert world.new_deployments() == [] and world.remediations() == []


# ------------------------------------------------------------------ leases on started claims


def test_started_claim_is_taken_over_only_after_its_lease(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "perfsig.db") as store:
        assert store.claim_remediation("p", "Production", lease_s=60, owner="a", now=1000.0)
        assert not store.claim_remediation("p", "Production", lease_s=60, owner="b", now=1059.0)
        assert store.claim_remediation("p", "Production", lease_s=60, owner="b", now=1061.0)  # a died
        assert not store.renew_remediation("p", "a", lease_s=60, now=1062.0)
        assert not store.finish_remediation("p", "rolled_back", owner="a")  # a's result is not b's
        assert store.renew_remediation("p", "b", lease_s=60, now=1100.0)
        assert not store.claim_remediation("p", "Production", lease_s=60, owner="c", now=1159.0)
        assert store.finish_remediation("p", "rolled_back", owner="b", detail="done")
        assert not store.claim_remediation("p", "Production", lease_s=60, owner="c", now=99_999.0)  # final
        (row,) = store.remediations()
    assert (row["status"], row["attempts"], row["lease_until"], row["detail"]) == (
        "rolled_back",
        2,
        None,
        "done",
    )


def test_claim_interrupted_again_and_again_ends_as_an_error(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "perfsig.db") as store:
        for attempt in range(3):
            assert store.claim_remediation(
                "p", "Production", lease_s=60, owner=f"w{attempt}", now=100.0 * attempt
            )
        assert not store.claim_remediation("p", "Production", lease_s=60, owner="w3", now=400.0)
        (row,) = store.remediations()
    assert row["status"] == "error" and "3 attempts" in row["detail"] and row["attempts"] == 3


def test_an_expired_claim_is_taken_over_by_exactly_one_of_many(tmp_path: Path) -> None:
    path = tmp_path / "perfsig.db"
    with SqliteStore(path) as store:
        assert store.claim_remediation("p", "Production", lease_s=1, owner="dead", now=time.time() - 10)
    barrier = threading.Barrier(8)
    won: list[bool] = []

    def contend(i: int) -> None:
        with SqliteStore(path) as store:
            barrier.wait()
            won.append(store.claim_remediation("p", "Production", lease_s=60, owner=f"w{i}"))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False] * 7 + [True]


def test_migration_gives_claims_left_started_a_lease(tmp_path: Path) -> None:
    import sqlite3

    from pytest_perfsig.store.migrations import MIGRATIONS

    path = tmp_path / "perfsig.db"
    db = sqlite3.connect(path, isolation_level=None)
    for version, step in enumerate(MIGRATIONS[:2]):  # a store of schema version 2
        step(db)
        db.execute(f"PRAGMA user_version = {version + 1}")
    db.execute(
        "INSERT INTO remediation_events (problem_id, ts, env, status) VALUES ('old', 1000, 'Production', 'started')"
    )
    db.execute(
        "INSERT INTO remediation_events (problem_id, ts, env, status) VALUES ('done', 1000, 'Production', 'skipped')"
    )
    db.close()
    with SqliteStore(path) as store:
        rows = {r["problem_id"]: r for r in store.remediations()}
        assert (rows["old"]["lease_until"], rows["old"]["attempts"]) == (1900.0, 1)
        assert rows["done"]["lease_until"] is None
        assert store.claim_remediation("old", "Production", lease_s=60, owner="new", now=1901.0)


def test_retry_after_a_rollback_recorded_by_an_interrupted_attempt_does_not_roll_back_again(
    world: World,
) -> None:
    pid = "interrupted-1"
    with SqliteStore(world.store_path) as store:  # the first attempt deployed, recorded, then died
        assert store.claim_remediation(pid, "Production", lease_s=60, owner="dead", now=time.time() - 120)
    new_id = world.codedeploy.create_deployment(
        applicationName=APP, deploymentGroupName=GROUP, revision=revision(1)
    )["deploymentId"]
    with SqliteStore(world.store_path) as store:
        store.add_deployment_event(
            DeploymentEvent(
                env=GROUP,
                deployment_id=new_id,
                application=APP,
                deployment_group=GROUP,
                revision=revision(1),
                stage=f"perfsig:rollback:{pid}",
                ts=time.time() - 60,
            )
        )
    answer = world.client().post("/problems", json=dynatrace(pid=pid), headers=AUTH)
    assert answer.status_code == 200 and answer.json()["status"] == "rolled_back", answer.text
    assert answer.json()["new_deployment_id"] == new_id and "interrupted" in answer.json()["reason"]
    assert [d["deploymentId"] for d in world.new_deployments()] == [new_id]  # no second rollback
    (stored,) = world.remediations()
    assert stored["status"] == "rolled_back" and stored["attempts"] == 2
