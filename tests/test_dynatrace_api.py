"""Writes to Dynatrace (respx, payloads as the Events and Problems API v2 document them):
deployment events and problem comments. The token never shows in errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from pytest_perfsig.dynatrace.events import DynatraceEvents, deployment_selector
from pytest_perfsig.errors import DynatraceError
from pytest_perfsig.store import DeploymentEvent

TENANT = "https://abc12345.live.dynatrace.com"
TOKEN = "dt0c01.SECRETTOKENVALUE.XYZ"
EVENT = DeploymentEvent(
    env="Production",
    deployment_id="d-ABC123",
    application="SampleApp",
    deployment_group="Production",
    pipeline="demo",
    stage="Production",
    revision={"revisionType": "S3", "s3Location": {"bucket": "b", "key": "app.zip", "eTag": "e4"}},
    remediation_url="http://127.0.0.1:9/fix",
)


@respx.mock
def test_deployment_event_is_a_custom_deployment_on_the_environment() -> None:
    route = respx.post(f"{TENANT}/api/v2/events/ingest").mock(
        return_value=httpx.Response(
            201, json={"reportCount": 1, "eventIngestResults": [{"correlationId": "c1", "status": "OK"}]}
        )
    )
    answer = DynatraceEvents(TENANT, TOKEN).push_deployment_event(EVENT)
    assert answer["reportCount"] == 1
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Api-Token {TOKEN}"
    body = json.loads(request.content)
    assert body["eventType"] == "CUSTOM_DEPLOYMENT"
    assert (
        body["entitySelector"]
        == deployment_selector("Production")
        == 'type(SERVICE),tag("DeploymentGroup:Production")'
    )
    assert body["properties"]["CodeDeployDeploymentId"] == "d-ABC123"
    assert body["properties"]["remediationAction"] == "http://127.0.0.1:9/fix"
    assert body["properties"]["dt.event.deployment.version"] == "e4"


@respx.mock
def test_problem_comment() -> None:
    route = respx.post(f"{TENANT}/api/v2/problems/-4711_1700000000000V2/comments").mock(
        return_value=httpx.Response(201, json={"id": "comment-1"})
    )
    DynatraceEvents(TENANT, TOKEN).comment_on_problem("-4711_1700000000000V2", "rolled back")
    assert json.loads(route.calls.last.request.content) == {
        "message": "rolled back",
        "context": "pytest-perfsig self-healing",
    }


@respx.mock
@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            httpx.Response(401, json={"error": {"message": f"bad token {TOKEN}"}}),
            r"answered HTTP 401: bad token \*\*\* "
            r"\(check \$DT_API_TOKEN and its scopes: events\.ingest and problems\.write\)",
        ),
        (httpx.Response(500, text="oops"), "answered HTTP 500: oops"),
        (httpx.ConnectTimeout("timed out"), "did not answer within 10 s"),
        (httpx.ConnectError(f"refused {TOKEN}"), r"is unreachable: ConnectError: refused \*\*\*"),
    ],
)
def test_errors_name_the_call_and_never_the_token(reply: Any, expected: str) -> None:
    route = respx.post(f"{TENANT}/api/v2/events/ingest")
    route.mock(side_effect=reply) if isinstance(reply, Exception) else route.mock(return_value=reply)
    api = DynatraceEvents(TENANT, TOKEN)
    with pytest.raises(
        DynatraceError, match=rf"^dynatrace at {TENANT}/api/v2/events/ingest {expected} \(deployment event\)$"
    ) as excinfo:
        api.push_deployment_event(EVENT)
    assert TOKEN not in str(excinfo.value) and TOKEN not in repr(api)


@respx.mock
def test_an_accepted_write_without_a_json_answer_is_no_error() -> None:
    respx.post(f"{TENANT}/api/v2/problems/P-1/comments").mock(return_value=httpx.Response(204))
    assert DynatraceEvents(TENANT, TOKEN).comment_on_problem("P-1", "done") == {}


def test_configured_by_environment() -> None:
    assert DynatraceEvents.from_env({}) is None
    configured = DynatraceEvents.from_env({"PERFSIG_DYNATRACE_URL": TENANT, "DT_API_TOKEN": TOKEN})
    assert configured is not None and configured.base_url == TENANT
    with pytest.raises(
        DynatraceError,
        match=r"^dynatrace: \$DT_API_TOKEN is not set: an API token with scopes events\.ingest and "
        r"problems\.write is needed$",
    ):
        DynatraceEvents.from_env({"PERFSIG_DYNATRACE_URL": TENANT})
