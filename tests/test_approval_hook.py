"""The plugin's end-of-session approval (``--perfsig-approve``), pytest run in-process so the
CodePipeline client can be replaced by a botocore Stubber. moto implements neither
GetPipelineState nor PutApprovalResult; the Stubber checks every request against the real
service model, and ``expected_params`` pins what is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpcore  # noqa: F401  (imported before pytester's in-process runs snapshot sys.modules)
import httpx  # noqa: F401
import pytest
from botocore.stub import ANY, Stubber

from pytest_perfsig.aws import clients
from sample_app.launcher import RunningApp

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = "perfsig-demo"

PIPELINE_DEFINITION = {
    "pipeline": {
        "name": PIPELINE,
        "roleArn": "arn:aws:iam::123456789012:role/pipeline",
        "version": 1,
        "artifactStore": {"type": "S3", "location": "bucket"},
        "stages": [
            {
                "name": "Source",
                "actions": [
                    {
                        "name": "Source",
                        "actionTypeId": {
                            "category": "Source",
                            "owner": "AWS",
                            "provider": "S3",
                            "version": "1",
                        },
                    }
                ],
            },
            {
                "name": "Staging",
                "actions": [
                    {
                        "name": "GateStaging",
                        "actionTypeId": {
                            "category": "Test",
                            "owner": "AWS",
                            "provider": "CodeBuild",
                            "version": "1",
                        },
                    },
                    {
                        "name": "ApproveStaging",
                        "actionTypeId": {
                            "category": "Approval",
                            "owner": "AWS",
                            "provider": "Manual",
                            "version": "1",
                        },
                    },
                ],
            },
        ],
    },
}


def state(status: str) -> dict[str, Any]:
    return {
        "pipelineName": PIPELINE,
        "stageStates": [
            {
                "stageName": "Staging",
                "actionStates": [
                    {"actionName": "ApproveStaging", "latestExecution": {"status": status, "token": "tok-1"}}
                ],
            }
        ],
    }


@pytest.fixture
def codepipeline(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client(
        "codepipeline", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    stubber = Stubber(client)
    monkeypatch.setattr(clients, "codepipeline_client", lambda region=None: client)
    with stubber:
        yield stubber


def expect_decision(stubber: Stubber, status: str | None, error: str | None = None) -> None:
    stubber.add_response("get_pipeline", PIPELINE_DEFINITION, {"name": PIPELINE})
    stubber.add_response(
        "get_pipeline_state", state("InProgress" if status else "Succeeded"), {"name": PIPELINE}
    )
    if status is None:
        return
    params = {
        "pipelineName": PIPELINE,
        "stageName": "Staging",
        "actionName": "ApproveStaging",
        "result": {"summary": ANY, "status": status},
        "token": "tok-1",
    }
    if error:
        stubber.add_client_error(
            "put_approval_result",
            service_error_code=error,
            service_message="Rate exceeded",
            expected_params=params,
        )
    else:
        stubber.add_response("put_approval_result", {"approvedAt": "2026-11-28T00:00:00Z"}, params)


SMALL = """{"Svc": {"environments": {"Staging": {}, "Production": {}},
  "comparisons": [{"name": "StagingToProduction", "source": "Staging", "compare": "Production",
                   "scalefactorperc": {"default": 30}}],
  "perfsignature": [%s]}}"""
TOPOLOGY_ONLY = SMALL % '{"smartscape": "toRelationships:calls", "aggregate": "count"}'
FAILURE_RATE = SMALL % '{"timeseries": "service.failurerate", "aggregate": "avg"}'


def approve_args(url: str, *extra: str) -> list[str]:
    return [
        "--monspec=monspec.json",
        "--stage=Staging",
        f"--perfsig-url=Staging={url}",
        "--perfsig-approve=ApproveStaging",
        f"--perfsig-pipeline={PIPELINE}",
        *extra,
    ]


def test_unreachable_stage_is_rejected(gate_dir: pytest.Pytester, codepipeline: Stubber) -> None:
    gate_dir.makefile(".json", monspec=FAILURE_RATE)
    expect_decision(codepipeline, "Rejected")
    result = gate_dir.runpytest_inprocess(*approve_args("http://127.0.0.1:9"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    codepipeline.assert_no_pending_responses()
    result.stdout.fnmatch_lines([f"*perfsig: {PIPELINE}/ApproveStaging: *Rejected*"])


def test_nothing_judged_is_rejected_and_not_green(gate_dir: pytest.Pytester, codepipeline: Stubber) -> None:
    # Every entry skipped: pytest alone would exit 0; the gate judged nothing, so it fails.
    gate_dir.makefile(".json", monspec=TOPOLOGY_ONLY)
    expect_decision(codepipeline, "Rejected")
    result = gate_dir.runpytest_inprocess(
        *approve_args("http://127.0.0.1:9", "--perfsig-optional=smartscape")
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(skipped=1)
    codepipeline.assert_no_pending_responses()


def test_decided_by_hand_is_left_alone(gate_dir: pytest.Pytester, codepipeline: Stubber) -> None:
    gate_dir.makefile(".json", monspec=FAILURE_RATE)
    expect_decision(codepipeline, None)  # no PutApprovalResult queued: sending one would fail
    result = gate_dir.runpytest_inprocess(*approve_args("http://127.0.0.1:9"))
    codepipeline.assert_no_pending_responses()
    result.stdout.fnmatch_lines(["*left alone: *Succeeded*"])


def test_missing_pipeline_name_fails_the_run(
    gate_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CODEBUILD_INITIATOR", raising=False)
    gate_dir.makefile(".json", monspec=TOPOLOGY_ONLY)
    args = [a for a in approve_args("http://127.0.0.1:9") if not a.startswith("--perfsig-pipeline")]
    result = gate_dir.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*cannot approve ApproveStaging: no --perfsig-pipeline and no CODEBUILD_INITIATOR*"]
    )


@pytest.mark.e2e
def test_passing_gate_is_approved_and_aws_errors_fail_the_run(
    gate_dir: pytest.Pytester, codepipeline: Stubber, sample_app: Callable[..., RunningApp]
) -> None:
    gate_dir.makefile(".json", monspec=FAILURE_RATE)
    staging, production = sample_app("Staging", build=1), sample_app("Production", build=1)
    load = ["--perfsig-duration=3", "--perfsig-users=4", f"--perfsig-url=Production={production.url}"]

    expect_decision(codepipeline, "Approved")
    approved = gate_dir.runpytest_inprocess(*approve_args(staging.url, *load))
    assert approved.ret == pytest.ExitCode.OK, approved.stdout.str()
    codepipeline.assert_no_pending_responses()
    approved.stdout.fnmatch_lines([f"*perfsig: {PIPELINE}/ApproveStaging: *Approved*"])

    expect_decision(codepipeline, "Approved", error="ThrottlingException")
    throttled = gate_dir.runpytest_inprocess(*approve_args(staging.url, *load))
    assert throttled.ret == pytest.ExitCode.TESTS_FAILED
    throttled.assert_outcomes(passed=1)
    throttled.stdout.fnmatch_lines(
        ["*approval of ApproveStaging in perfsig-demo failed, nothing approved:*ThrottlingException*"]
    )
