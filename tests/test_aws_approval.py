"""Approving / rejecting a CodePipeline manual approval from a gate's result.

moto implements CodePipeline's ``CreatePipeline`` / ``GetPipeline`` but not ``GetPipelineState``
or ``PutApprovalResult``. So ``GetPipeline`` runs against moto (a real pipeline definition,
created with ``CreatePipeline``), and the other two calls go to a second client wrapped in
botocore's ``Stubber``, which validates every request against the real service model and
checks the exact parameters of ``PutApprovalResult`` (``expected_params``). A test that queues
no ``PutApprovalResult`` and ends with ``assert_no_pending_responses()`` proves nothing was
sent: an unexpected call would fail with ``UnStubbedResponseError``.

Fake credentials and ``us-east-1`` come from the environment, so nothing reaches AWS.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber
from moto import mock_aws

from pytest_perfsig.aws.codepipeline import (
    SUMMARY_LIMIT,
    ApprovalOutcome,
    GateSummary,
    approval_result,
    approval_summary,
    decide_approval,
    default_pipeline_name,
)
from pytest_perfsig.errors import ApprovalError, AwsError, PerfsigError

PIPELINE = "perfsig-pipeline"
TOKEN = "3f2a9c1e-4b5d-4e6f-8a7b-9c0d1e2f3a4b"
NOW = dt.datetime(2026, 11, 28, 3, 56, 11, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CODEPIPELINE", "CODEBUILD_INITIATOR"):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- helpers


def _action(name: str, category: str, provider: str, run_order: int, **configuration: str) -> dict[str, Any]:
    action: dict[str, Any] = {
        "name": name,
        "actionTypeId": {"category": category, "owner": "AWS", "provider": provider, "version": "1"},
        "runOrder": run_order,
    }
    if configuration:
        action["configuration"] = configuration
    return action


def pipeline_definition(
    name: str = PIPELINE, role_arn: str = "arn:aws:iam::123456789012:role/x"
) -> dict[str, Any]:
    """The original pipeline's shape: source, Staging (deploy, gate beside ApproveStaging),
    Production (deploy, gate beside ApproveProduction)."""
    return {
        "name": name,
        "roleArn": role_arn,
        "artifactStore": {"type": "S3", "location": "perfsig-artifacts"},
        "stages": [
            {
                "name": "Source",
                "actions": [
                    {
                        **_action(
                            "Source", "Source", "S3", 1, S3Bucket="perfsig-source", S3ObjectKey="app.zip"
                        ),
                        "outputArtifacts": [{"name": "SourceOutput"}],
                    }
                ],
            },
            {
                "name": "Staging",
                "actions": [
                    _action("DeployStaging", "Deploy", "CodeDeploy", 1, ApplicationName="app"),
                    _action("GateStaging", "Build", "CodeBuild", 2, ProjectName="perfsig-gate"),
                    _action("ApproveStaging", "Approval", "Manual", 2),
                ],
            },
            {
                "name": "Production",
                "actions": [
                    _action("DeployProduction", "Deploy", "CodeDeploy", 1, ApplicationName="app"),
                    _action("GateProduction", "Build", "CodeBuild", 2, ProjectName="perfsig-gate"),
                    _action("ApproveProduction", "Approval", "Manual", 2),
                ],
            },
        ],
    }


@pytest.fixture
def moto_client() -> Iterator[Any]:
    """A CodePipeline client talking to moto, with the pipeline created there."""
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "codepipeline.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role = iam.create_role(RoleName="perfsig-pipeline-role", AssumeRolePolicyDocument=json.dumps(trust))
        client = boto3.client("codepipeline", region_name="us-east-1")
        client.create_pipeline(pipeline=pipeline_definition(role_arn=role["Role"]["Arn"]))
        yield client


class SplitClient:
    """``GetPipeline`` from moto, ``GetPipelineState`` / ``PutApprovalResult`` from a stub."""

    def __init__(self, moto: Any, stubbed: Any) -> None:
        self.meta = stubbed.meta
        self.get_pipeline = moto.get_pipeline
        self.get_pipeline_state = stubbed.get_pipeline_state
        self.put_approval_result = stubbed.put_approval_result


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("codepipeline", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber


@pytest.fixture
def split(moto_client: Any, stubbed: tuple[Any, Stubber]) -> tuple[SplitClient, Stubber]:
    client, stubber = stubbed
    return SplitClient(moto_client, client), stubber


def pipeline_state(
    stage: str = "Staging",
    action: str = "ApproveStaging",
    status: str | None = "InProgress",
    token: bool = True,
) -> dict[str, Any]:
    """A ``GetPipelineState`` response: the gate running, the approval action in ``status``."""
    latest: dict[str, Any] | None = None
    if status is not None:
        latest = {
            "actionExecutionId": "a1b2c3d4-0000-4000-8000-000000000001",
            "status": status,
            "lastStatusChange": NOW,
        }
        if status == "InProgress" and token:
            latest["token"] = TOKEN
        if status != "InProgress":
            latest["lastUpdatedBy"] = "arn:aws:iam::123456789012:user/release-manager"
    approval_state: dict[str, Any] = {"actionName": action}
    if latest is not None:
        approval_state["latestExecution"] = latest
    return {
        "pipelineName": PIPELINE,
        "pipelineVersion": 1,
        "stageStates": [
            {
                "stageName": "Source",
                "actionStates": [
                    {
                        "actionName": "Source",
                        "latestExecution": {"status": "Succeeded", "lastStatusChange": NOW},
                    }
                ],
                "latestExecution": {"pipelineExecutionId": "exec-1", "status": "Succeeded"},
            },
            {
                "stageName": stage,
                "actionStates": [
                    {
                        "actionName": "GateStaging",
                        "latestExecution": {"status": "InProgress", "lastStatusChange": NOW},
                    },
                    approval_state,
                ],
                "latestExecution": {"pipelineExecutionId": "exec-1", "status": "InProgress"},
            },
        ],
        "created": NOW,
        "updated": NOW,
    }


def summary(
    status: str = "pass",
    counts: dict[str, int] | None = None,
    problems: list[str] | None = None,
    report_url: str | None = "https://reports.example.com/perfsig/20261128T035611-d994d703.html",
) -> GateSummary:
    return GateSummary(
        gate_id="20261128T035611-d994d703",
        stage="Staging",
        status=status,
        counts={"pass": 8, "violation": 0, "error": 0} if counts is None else counts,
        problems=problems or [],
        report_url=report_url,
    )


def expect_put(
    stubber: Stubber, gate: GateSummary, status: str, stage: str = "Staging", action: str = "ApproveStaging"
) -> None:
    stubber.add_response(
        "put_approval_result",
        {"approvedAt": NOW},
        expected_params={
            "pipelineName": PIPELINE,
            "stageName": stage,
            "actionName": action,
            "result": {"summary": approval_summary(gate), "status": status},
            "token": TOKEN,
        },
    )


# --------------------------------------------------------------------------- deciding


def test_pass_is_approved_with_the_exact_request(split: tuple[SplitClient, Stubber]) -> None:
    client, stubber = split
    gate = summary()
    stubber.add_response("get_pipeline_state", pipeline_state(), expected_params={"name": PIPELINE})
    stubber.add_response(
        "put_approval_result",
        {"approvedAt": NOW},
        expected_params={
            "pipelineName": "perfsig-pipeline",
            "stageName": "Staging",
            "actionName": "ApproveStaging",
            "result": {
                "summary": "Approved by perfsig: PASS in gate 20261128T035611-d994d703 on Staging "
                "(8 pass, 0 violation, 0 error). "
                "Report: https://reports.example.com/perfsig/20261128T035611-d994d703.html",
                "status": "Approved",
            },
            "token": TOKEN,
        },
    )

    outcome = decide_approval(client, PIPELINE, "ApproveStaging", gate)

    stubber.assert_no_pending_responses()
    assert outcome == ApprovalOutcome(
        pipeline=PIPELINE,
        stage="Staging",
        action="ApproveStaging",
        result="Approved",
        sent=True,
        message=outcome.message,
    )
    assert "Approved ApproveStaging" in outcome.message
    text = approval_summary(gate)
    assert text.startswith("Approved by perfsig: PASS in gate 20261128T035611-d994d703 on Staging")
    assert "8 pass, 0 violation, 0 error" in text
    assert text.endswith(" Report: https://reports.example.com/perfsig/20261128T035611-d994d703.html")


def test_production_approval_is_found_in_its_stage(split: tuple[SplitClient, Stubber]) -> None:
    client, stubber = split
    gate = summary()
    stubber.add_response("get_pipeline_state", pipeline_state("Production", "ApproveProduction"))
    expect_put(stubber, gate, "Approved", stage="Production", action="ApproveProduction")

    outcome = decide_approval(client, PIPELINE, "Production/ApproveProduction", gate)

    stubber.assert_no_pending_responses()
    assert (outcome.stage, outcome.action, outcome.result) == ("Production", "ApproveProduction", "Approved")


@pytest.mark.parametrize(
    ("status", "counts", "problems"),
    [
        pytest.param(
            "violation",
            {"pass": 6, "violation": 2, "error": 0, "skipped": 1},
            [
                "service.failurerate avg: Staging 12.4 % > limit 0.5 % (Production 0.0 % × 1.30 + 0.5 abs)",
                "servicemethod.responsetime p90: Staging 31.0 ms > limit 20.7 ms",
            ],
            id="violation",
        ),
        pytest.param(
            "error",
            {"pass": 7, "violation": 0, "error": 1},
            ["too few samples for Production /api/invoke: 31 < 50 needed for p90"],
            id="error",
        ),
        pytest.param("", {"pass": 5}, [], id="unknown-status"),
        pytest.param("skipped", {"pass": 8}, [], id="any-other-status"),
    ],
)
def test_anything_but_pass_is_rejected(
    split: tuple[SplitClient, Stubber], status: str, counts: dict[str, int], problems: list[str]
) -> None:
    client, stubber = split
    gate = summary(status, counts, problems)
    stubber.add_response("get_pipeline_state", pipeline_state())
    expect_put(stubber, gate, "Rejected")

    outcome = decide_approval(client, PIPELINE, "ApproveStaging", gate)

    stubber.assert_no_pending_responses()
    assert (outcome.result, outcome.sent, outcome.stage) == ("Rejected", True, "Staging")
    text = approval_summary(gate)
    assert text.startswith("Rejected by perfsig: ")
    for problem in problems:
        assert problem in text


@pytest.mark.parametrize(
    ("counts", "counts_text"),
    [
        pytest.param(
            {"pass": 0, "violation": 0, "error": 0, "skipped": 3},
            "0 pass, 0 violation, 0 error, 3 skipped",
            id="nothing-passed",
        ),
        pytest.param({}, "0 pass, 0 violation, 0 error", id="no-counts"),
        pytest.param({"pass": 5, "error": 1}, "5 pass, 0 violation, 1 error", id="counts-with-an-error"),
    ],
)
def test_approved_follows_the_gate_status_only(
    split: tuple[SplitClient, Stubber], counts: dict[str, int], counts_text: str
) -> None:
    """The status is decided once, by the gate; the counts only describe it."""
    client, stubber = split
    gate = summary("pass", counts, report_url=None)
    stubber.add_response("get_pipeline_state", pipeline_state())
    stubber.add_response(
        "put_approval_result",
        {"approvedAt": NOW},
        expected_params={
            "pipelineName": "perfsig-pipeline",
            "stageName": "Staging",
            "actionName": "ApproveStaging",
            "result": {
                "summary": "Approved by perfsig: PASS in gate 20261128T035611-d994d703 on Staging "
                f"({counts_text}).",
                "status": "Approved",
            },
            "token": TOKEN,
        },
    )

    outcome = decide_approval(client, PIPELINE, "ApproveStaging", gate)

    stubber.assert_no_pending_responses()
    assert (outcome.result, outcome.sent) == ("Approved", True)
    assert "Problems:" not in approval_summary(gate)


def test_violation_sends_the_exact_rejection(split: tuple[SplitClient, Stubber]) -> None:
    client, stubber = split
    gate = summary(
        "violation",
        {"pass": 6, "violation": 2, "error": 0, "skipped": 1},
        [
            "service.failurerate avg: Staging 12.4 % > limit 0.5 %",
            "service.responsetime p90: 31.0 ms > limit 20.7 ms",
        ],
        report_url=None,
    )
    stubber.add_response("get_pipeline_state", pipeline_state())
    stubber.add_response(
        "put_approval_result",
        {"approvedAt": NOW},
        expected_params={
            "pipelineName": "perfsig-pipeline",
            "stageName": "Staging",
            "actionName": "ApproveStaging",
            "result": {
                "summary": "Rejected by perfsig: VIOLATION in gate 20261128T035611-d994d703 on Staging "
                "(6 pass, 2 violation, 0 error, 1 skipped). Problems: service.failurerate avg: Staging "
                "12.4 % > limit 0.5 %; service.responsetime p90: 31.0 ms > limit 20.7 ms",
                "status": "Rejected",
            },
            "token": "3f2a9c1e-4b5d-4e6f-8a7b-9c0d1e2f3a4b",
        },
    )

    outcome = decide_approval(client, PIPELINE, "ApproveStaging", gate)

    stubber.assert_no_pending_responses()
    assert (outcome.result, outcome.sent) == ("Rejected", True)
    assert outcome.message.startswith("Rejected ApproveStaging in stage Staging of pipeline perfsig-pipeline")


def test_violation_summary_names_the_worst_problem_first() -> None:
    gate = summary(
        "violation", {"pass": 6, "violation": 2, "error": 0, "skipped": 1}, ["worst one", "second one"]
    )
    text = approval_summary(gate)
    assert text.startswith(
        "Rejected by perfsig: VIOLATION in gate 20261128T035611-d994d703 on Staging "
        "(6 pass, 2 violation, 0 error, 1 skipped). Problems: worst one; second one Report: https://"
    )


@pytest.mark.parametrize("status", ["Succeeded", "Failed"])
def test_action_decided_by_hand_is_left_alone(split: tuple[SplitClient, Stubber], status: str) -> None:
    client, stubber = split
    stubber.add_response("get_pipeline_state", pipeline_state(status=status))  # and no PutApprovalResult

    outcome = decide_approval(
        client, PIPELINE, "ApproveStaging", summary("violation", {"pass": 1, "violation": 1})
    )

    stubber.assert_no_pending_responses()
    assert (outcome.result, outcome.sent, outcome.stage) == (None, False, "Staging")
    assert outcome.message.startswith(f"left alone: ApproveStaging is {status} (decided by hand?)")
    assert "Rejected" in outcome.message  # what the gate would have said


@pytest.mark.parametrize(
    ("status", "token", "expected"),
    [
        pytest.param(None, True, "has not started", id="no-execution"),
        pytest.param("Abandoned", True, "is Abandoned", id="abandoned"),
        pytest.param("InProgress", False, "has no approval token", id="no-token"),
    ],
)
def test_action_not_waiting_is_left_alone(
    split: tuple[SplitClient, Stubber], status: str | None, token: bool, expected: str
) -> None:
    client, stubber = split
    stubber.add_response("get_pipeline_state", pipeline_state(status=status, token=token))

    outcome = decide_approval(client, PIPELINE, "ApproveStaging", summary())

    stubber.assert_no_pending_responses()
    assert not outcome.sent and outcome.result is None
    assert expected in outcome.message


def test_action_waiting_for_another_execution_is_left_alone(split: tuple[SplitClient, Stubber]) -> None:
    client, stubber = split
    stubber.add_response("get_pipeline_state", pipeline_state())

    outcome = decide_approval(client, PIPELINE, "ApproveStaging", summary(), execution_id="exec-0")

    stubber.assert_no_pending_responses()
    assert not outcome.sent
    assert "exec-1" in outcome.message and "exec-0" in outcome.message


# --------------------------------------------------------------------------- errors


def test_unknown_action_lists_the_approval_actions(split: tuple[SplitClient, Stubber]) -> None:
    client, stubber = split
    with pytest.raises(ApprovalError) as raised:
        decide_approval(client, PIPELINE, "ApproveStagign", summary())
    message = str(raised.value)
    assert PIPELINE in message and "ApproveStagign" in message
    assert "Staging/ApproveStaging, Production/ApproveProduction" in message
    stubber.assert_no_pending_responses()  # GetPipelineState never called


def test_action_that_is_not_an_approval_is_refused(split: tuple[SplitClient, Stubber]) -> None:
    client, _ = split
    with pytest.raises(ApprovalError, match="Staging/GateStaging is a Build action, not an approval"):
        decide_approval(client, PIPELINE, "GateStaging", summary())


def test_same_approval_name_in_two_stages_needs_the_stage() -> None:
    definition = pipeline_definition()
    definition["stages"][2]["actions"][2]["name"] = "ApproveStaging"
    client = boto3.client("codepipeline", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("get_pipeline", {"pipeline": definition})
        with pytest.raises(ApprovalError, match="in stages Staging, Production: name it as STAGE/ACTION"):
            decide_approval(client, PIPELINE, "ApproveStaging", summary())
        stubber.assert_no_pending_responses()


def test_unknown_pipeline_from_moto(moto_client: Any) -> None:
    with pytest.raises(ApprovalError) as raised:
        decide_approval(moto_client, "no-such-pipeline", "ApproveStaging", summary())
    message = str(raised.value)
    assert (
        "GetPipeline for pipeline 'no-such-pipeline' (us-east-1) failed: PipelineNotFoundException" in message
    )
    assert "--perfsig-pipeline" in message
    assert isinstance(raised.value, PerfsigError) and isinstance(raised.value, AwsError)


@pytest.mark.parametrize(
    ("operation", "code", "text", "hint"),
    [
        ("get_pipeline_state", "ThrottlingException", "Rate exceeded", "still throttled after the retries"),
        (
            "get_pipeline_state",
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/gate/x is not authorized to perform: "
            "codepipeline:GetPipelineState",
            "needs codepipeline:GetPipelineState",
        ),
        ("put_approval_result", "ThrottlingException", "Rate exceeded", "still throttled"),
        (
            "put_approval_result",
            "InvalidApprovalTokenException",
            "The token is not valid",
            "restarted or decided",
        ),
        (
            "put_approval_result",
            "AccessDeniedException",
            "not authorized",
            "needs codepipeline:PutApprovalResult",
        ),
    ],
)
def test_aws_errors_raise_and_approve_nothing(
    split: tuple[SplitClient, Stubber], operation: str, code: str, text: str, hint: str
) -> None:
    """The stub answers with the error the client raises once its retries are spent."""
    client, stubber = split
    if operation == "put_approval_result":
        stubber.add_response("get_pipeline_state", pipeline_state())
    stubber.add_client_error(operation, service_error_code=code, service_message=text, http_status_code=400)

    with pytest.raises(ApprovalError) as raised:
        decide_approval(client, PIPELINE, "ApproveStaging", summary())

    stubber.assert_no_pending_responses()  # and nothing else was sent after the error
    message = str(raised.value)
    call = "".join(part.title() for part in operation.split("_"))
    assert f"{call} for pipeline {PIPELINE!r} (us-east-1) failed: {code}: {text}" in message
    assert hint in message


def test_access_denied_on_get_pipeline() -> None:
    client = boto3.client("codepipeline", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_pipeline",
            service_error_code="AccessDeniedException",
            service_message="not authorized to perform: codepipeline:GetPipeline",
            http_status_code=400,
            expected_params={"name": PIPELINE},
        )
        with pytest.raises(ApprovalError, match=r"GetPipeline .* AccessDeniedException: not authorized"):
            decide_approval(client, PIPELINE, "ApproveStaging", summary())
        stubber.assert_no_pending_responses()


def test_pipeline_not_found_from_the_service_model() -> None:
    client = boto3.client("codepipeline", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_pipeline",
            service_error_code="PipelineNotFoundException",
            service_message="Account '123456789012' does not have a pipeline with name 'x'",
            http_status_code=400,
        )
        with pytest.raises(ApprovalError, match="PipelineNotFoundException: Account"):
            decide_approval(client, PIPELINE, "ApproveStaging", summary())


class RaisingClient:
    """A client whose calls fail below the service: no credentials, no network."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.sent: list[str] = []

    def get_pipeline(self, **_: Any) -> Any:
        raise self.error

    def get_pipeline_state(self, **_: Any) -> Any:  # pragma: no cover - never reached
        raise AssertionError("must not be called")

    def put_approval_result(self, **_: Any) -> Any:  # pragma: no cover - never reached
        self.sent.append("PutApprovalResult")
        raise AssertionError("must not be called")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoCredentialsError(), "NoCredentialsError: Unable to locate credentials (configure AWS credentials"),
        (
            EndpointConnectionError(endpoint_url="https://codepipeline.us-east-1.amazonaws.com/"),
            "EndpointConnectionError: Could not connect to the endpoint URL",
        ),
    ],
)
def test_botocore_errors_raise(error: Exception, expected: str) -> None:
    client = RaisingClient(error)
    with pytest.raises(ApprovalError, match="GetPipeline for pipeline 'perfsig-pipeline'") as raised:
        decide_approval(client, PIPELINE, "ApproveStaging", summary())
    assert expected in str(raised.value)
    assert client.sent == []


def test_no_pipeline_name_raises() -> None:
    with pytest.raises(ApprovalError, match="--perfsig-pipeline"):
        decide_approval(RaisingClient(AssertionError()), "", "ApproveStaging", summary())


# --------------------------------------------------------------------------- the summary


LONG_PROBLEMS = [
    f"servicemethod.responsetime p{n:02d} of /api/endpoint/{n}: Staging {100 + n}.0 ms > limit 20.7 ms "
    "(Production 13.1 ms × 1.30 + 2 ms abs) over a window of 10 s with 400 samples each side"
    for n in range(50)
]


def test_summary_fits_the_limit_and_keeps_a_long_url_whole() -> None:
    url = (
        "https://perfsig-reports.s3.eu-central-1.amazonaws.com/pipelines/perfsig-pipeline/Staging/"
        + "x" * 150
        + ".html"
    )
    gate = summary("violation", {"pass": 3, "violation": 50, "error": 0}, LONG_PROBLEMS, url)

    text = approval_summary(gate)

    assert len(text) <= SUMMARY_LIMIT == 512
    assert text.endswith(f" Report: {url}")  # whole, though the problems had to give way
    assert text.startswith(
        "Rejected by perfsig: VIOLATION in gate 20261128T035611-d994d703 on Staging (3 pass, 50 violation, 0 error). Problems: servicemethod.responsetime p00 of /api/endpoint/0: Staging 100.0 ms > limit"
    )
    assert f"… (+49 more) Report: {url}" in text  # the worst one cut cleanly, the rest counted


def test_summary_shows_as_many_whole_problems_as_fit() -> None:
    url = "https://reports.example.com/perfsig/20261128T035611-d994d703.html"
    gate = summary("violation", {"pass": 3, "violation": 50, "error": 0}, LONG_PROBLEMS, url)

    text = approval_summary(gate)

    assert len(text) <= 512
    assert LONG_PROBLEMS[0] in text  # the worst one whole
    assert "; servicemethod.responsetime p01 of /api/endpoint/1: Staging 101.0 ms" in text  # the next one cut
    shown = text.count("/api/endpoint/")
    assert shown == 2
    assert text.endswith(f"… (+48 more) Report: {url}")


def test_summary_cuts_a_single_huge_problem_cleanly() -> None:
    gate = summary("error", {"pass": 0, "error": 1}, ["could not reach Staging " + "because " * 200])
    text = approval_summary(gate)
    assert len(text) <= 512
    assert "could not reach Staging because" in text
    assert "…" in text
    assert text.endswith(" Report: https://reports.example.com/perfsig/20261128T035611-d994d703.html")


def test_summary_without_url_and_with_a_smaller_limit() -> None:
    gate = summary("violation", {"pass": 1, "violation": 3}, ["a" * 30, "b" * 30, "c" * 30], report_url=None)
    text = approval_summary(gate, limit=200)
    assert len(text) <= 200
    assert "Report:" not in text
    assert text.endswith("(+1 more)") or text.endswith("c" * 30)


def test_url_too_long_to_fit_whole_is_left_out_not_cut() -> None:
    url = "https://example.com/" + "y" * 600
    text = approval_summary(summary(report_url=url))
    assert len(text) <= 512
    assert "https://example.com/" not in text


def test_summary_never_exceeds_the_limit() -> None:
    import random

    rng = random.Random(7)
    for _ in range(300):
        problems = ["word " * rng.randint(0, 120) + "end" for _ in range(rng.randint(0, 60))]
        url = rng.choice([None, "https://r.example.com/" + "u" * rng.randint(0, 520)])
        limit = rng.choice([512, 512, 300, 120])
        gate = summary(rng.choice(["pass", "violation", "error"]), {"pass": 2, "violation": 1}, problems, url)
        text = approval_summary(gate, limit=limit)
        assert len(text) <= limit
        if url and url in text:
            assert text.endswith(f" Report: {url}")  # never cut
        elif url and len(url) + 40 <= limit:
            raise AssertionError(f"a URL that fits was left out: {text}")


def test_approval_result() -> None:
    assert approval_result(summary()) == "Approved"
    assert approval_result(summary(counts={"pass": 1, "skipped": 4})) == "Approved"
    assert approval_result(summary(counts={"pass": 1, "violation": 1})) == "Approved"  # the status decides
    assert approval_result(summary(counts={})) == "Approved"
    assert approval_result(summary("violation", {"pass": 5})) == "Rejected"
    assert approval_result(summary("error", {"pass": 5})) == "Rejected"
    assert approval_result(summary("PASS")) == "Rejected"  # only the gate's own vocabulary


# --------------------------------------------------------------------------- pipeline name, clients


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"CODEBUILD_INITIATOR": "codepipeline/perfsig-pipeline"}, "perfsig-pipeline"),
        ({"CODEBUILD_INITIATOR": "codepipeline/"}, None),
        ({"CODEBUILD_INITIATOR": "alice"}, None),  # started by hand
        ({"CODEBUILD_INITIATOR": "GitHub-Hookshot/abc"}, None),
        ({}, None),
    ],
)
def test_default_pipeline_name(environ: dict[str, str], expected: str | None) -> None:
    assert default_pipeline_name(environ) == expected


def test_default_pipeline_name_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_pipeline_name() is None
    monkeypatch.setenv("CODEBUILD_INITIATOR", "codepipeline/release")
    assert default_pipeline_name() == "release"


def test_clients_use_standard_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_perfsig.aws.clients import codedeploy_client, codepipeline_client, dynamodb_resource

    monkeypatch.setenv("AWS_ENDPOINT_URL_CODEPIPELINE", "http://127.0.0.1:1")
    pipeline = codepipeline_client()
    # botocore's max_attempts 5 counts retries: 6 attempts in all
    assert pipeline.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}
    assert pipeline.meta.region_name == "us-east-1"
    assert pipeline.meta.endpoint_url == "http://127.0.0.1:1"  # boto3's own override is respected
    deploy = codedeploy_client("eu-west-1")
    assert deploy.meta.region_name == "eu-west-1"
    assert deploy.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}
    table_client = dynamodb_resource().meta.client
    assert table_client.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}


def test_clients_without_boto3_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pytest_perfsig.aws.clients import codepipeline_client

    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(AwsError, match=r"pip install 'pytest-perfsig\[aws\]'"):
        codepipeline_client()
