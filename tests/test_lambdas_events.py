"""Lambda handlers (CodePipeline job API through botocore's Stubber: moto does not implement
GetJobDetails / PutJobSuccessResult; DynamoDB through moto) and deployment events (CodeDeploy
through moto)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from pytest_perfsig.aws.codedeploy import describe_deployment
from pytest_perfsig.cli import main as perfsig
from pytest_perfsig.errors import CodeDeployError
from pytest_perfsig.lambdas import register_handler, worker_handler
from pytest_perfsig.registry.dynamodb import DynamoDbRegistry, create_table
from pytest_perfsig.store import DeploymentEvent, RunRecord, SqliteStore

MONSPEC = {
    "Svc": {
        "environments": {"Staging": {}, "Production": {}},
        "comparisons": [
            {
                "name": "StagingToProduction",
                "source": "Staging",
                "compare": "Production",
                "scalefactorperc": {"default": 30},
            }
        ],
        "perfsignature": [{"timeseries": "service.failurerate", "aggregate": "avg"}],
    }
}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "monspec.json").write_text(json.dumps(MONSPEC))
    monkeypatch.setenv("PERFSIG_MONSPEC", str(tmp_path / "monspec.json"))
    monkeypatch.setenv("PERFSIG_STORE", str(tmp_path / "s.db"))


@pytest.fixture
def registry() -> Iterator[DynamoDbRegistry]:
    with mock_aws():
        yield DynamoDbRegistry(create_table(boto3.resource("dynamodb", region_name="us-east-1")))


def job_client(parameters: str, *, success: bool) -> tuple[Any, Stubber]:
    client = boto3.client("codepipeline", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response(
        "get_job_details",
        {
            "jobDetails": {
                "id": "job-1",
                "accountId": "123456789012",
                "data": {
                    "actionConfiguration": {"configuration": {"UserParameters": parameters}},
                    "pipelineContext": {
                        "pipelineName": "demo",
                        "stage": {"name": "Staging"},
                        "action": {"name": "RegisterStagingValidation"},
                    },
                },
            }
        },
        {"jobId": "job-1"},
    )
    if success:
        stubber.add_response("put_job_success_result", {}, {"jobId": "job-1"})
    else:
        stubber.add_response(
            "put_job_failure_result",
            {},
            {"jobId": "job-1", "failureDetails": {"type": "ConfigurationError", "message": ANY}},
        )
    return client, stubber


EVENT = {"CodePipeline.job": {"id": "job-1", "data": {}}}


def test_register_handler_writes_the_original_item(registry: DynamoDbRegistry) -> None:
    client, stubber = job_client("StagingToProduction,5,ApproveStaging", success=True)
    with stubber:
        answer = register_handler(EVENT, None, codepipeline=client, registry=registry)
    stubber.assert_no_pending_responses()
    assert answer["status"] == "registered"
    item = registry.table.get_item(Key={"PipelineName": "demo", "Timestamp": answer["timestamp"]})["Item"]
    assert item["Status"] == "waiting" and item["ComparisonName"] == "StagingToProduction"
    assert item["ApprovalAction"] == "ApproveStaging" and item["Validationtimeframe"] == 5
    assert item["PipelineStage"] == "Staging" and item["PipelineAction"] == "RegisterStagingValidation"
    assert float(item["ReadyToValidateTimestamp"]) == pytest.approx(answer["timestamp"] / 1000 + 300, abs=1)
    assert json.loads(item["Monspec"]) == MONSPEC


@pytest.mark.parametrize(
    "parameters", ["NoSuchComparison,5,ApproveStaging", "StagingToProduction", "X,five,Y"]
)
def test_register_handler_fails_the_job_on_bad_input(registry: DynamoDbRegistry, parameters: str) -> None:
    client, stubber = job_client(parameters, success=False)
    with stubber:
        answer = register_handler(EVENT, None, codepipeline=client, registry=registry)
    stubber.assert_no_pending_responses()
    assert answer["status"] == "failed"
    assert registry.table.scan()["Items"] == []


def test_worker_handler_processes_due_requests(registry: DynamoDbRegistry, tmp_path: Path) -> None:
    from pytest_perfsig.registry import new_request

    start = time.time() - 3600
    with SqliteStore(tmp_path / "s.db") as store:
        for env, failures in (("Staging", 40), ("Production", 0)):
            store.create_run(
                RunRecord(run_id=env, service="Svc", env=env, started_at=start, status="completed")
            )
            store.add_samples(
                [(env, start + 2.0 * k, "Svc", env, "/", 10.0, int(k >= failures), 200) for k in range(100)]
            )
    registry.register(
        new_request(
            "demo", "StagingToProduction", 5, json.dumps(MONSPEC), now=start, approval_action="ApproveStaging"
        )
    )
    decisions: list[str] = []
    answer = worker_handler(
        {},
        None,
        registry=registry,
        approve=lambda request, gate, outcome: decisions.append(outcome.status) or "sent",
    )
    assert decisions == ["violation"]
    assert len(answer["processed"]) == 1 and "violation" in answer["processed"][0]
    (stored,) = registry.recent()
    assert stored.status == "violation" and stored.results and stored.results[0]["source_value"] == 40.0


def test_dynamodb_registry_reads_legacy_ok_as_pass_and_writes_the_gate_status(
    registry: DynamoDbRegistry,
) -> None:
    from pytest_perfsig.registry import new_request
    from pytest_perfsig.registry.base import PASS

    legacy = {"PipelineName": "old", "Timestamp": 1, "ComparisonName": "C", "Validationtimeframe": 5}
    registry.table.put_item(Item={**legacy, "Monspec": "{}", "Status": "ok", "ReadyToValidateTimestamp": 0})
    (old,) = registry.recent("old")
    assert old.status == "pass"

    request = new_request("demo", "C", 5, "{}", now=1000.0)
    registry.register(request)
    assert registry.claim(request, "w1", 2000.0, 60.0)
    assert not registry.finish(
        request, "w2", "violation", results=[], reason=None, gate_id=None
    )  # not its claim
    assert registry.finish(request, "w1", PASS, results=[], reason=None, gate_id="g-1")
    item = registry.table.get_item(Key={"PipelineName": "demo", "Timestamp": request.timestamp_ms})["Item"]
    assert (item["Status"], item["GateId"]) == ("pass", "g-1")
    stored = registry.get("demo", request.timestamp_ms)
    assert stored is not None and stored.status == "pass"


def test_dynamodb_registry_errors_name_table_and_code(registry: DynamoDbRegistry) -> None:
    from pytest_perfsig.errors import RegistryError
    from pytest_perfsig.registry import new_request

    request = new_request("demo", "C", 5, "{}", now=1000.0)
    registry.register(request)
    with pytest.raises(RegistryError, match="a request for demo at 1000000 exists already"):
        registry.register(request)
    missing = DynamoDbRegistry(boto3.resource("dynamodb", region_name="us-east-1").Table("NoSuchTable"))
    with pytest.raises(
        RegistryError,
        match=r"^DynamoDB GetItem on table NoSuchTable \(us-east-1\) failed: ResourceNotFoundException: .* "
        r"\(check the table name and the region \(AWS_REGION\)\)$",
    ):
        missing.get("demo", 1)


def test_deployment_event_from_codedeploy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws():
        codedeploy = boto3.client("codedeploy", region_name="us-east-1")
        codedeploy.create_application(applicationName="SampleApp")
        codedeploy.create_deployment_group(
            applicationName="SampleApp",
            deploymentGroupName="Production",
            serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
        )
        revision = {
            "revisionType": "S3",
            "s3Location": {"bucket": "b", "key": "app.zip", "bundleType": "zip", "eTag": "e4"},
        }
        deployment = codedeploy.create_deployment(
            applicationName="SampleApp", deploymentGroupName="Production", revision=revision
        )["deploymentId"]
        code = perfsig(
            [
                "deployment-event",
                "--stage",
                "Production",
                "--pipeline",
                "demo",
                "--codedeploy-deployment-id",
                deployment,
                "--remediation-url",
                "http://127.0.0.1:9/fix",
                "--store",
                str(tmp_path / "s.db"),
            ]
        )
        assert code == 0
        with pytest.raises(
            CodeDeployError,
            match=r"^CodeDeploy GetDeployment d-missing \(us-east-1\) failed: DeploymentDoesNotExistException",
        ):
            describe_deployment(DeploymentEvent(env="Production", deployment_id="d-missing"), codedeploy)
    assert "deployment event" in capsys.readouterr().out
    (event,) = SqliteStore(tmp_path / "s.db").deployment_events("Production")
    assert (event.application, event.deployment_group, event.deployment_id) == (
        "SampleApp",
        "Production",
        deployment,
    )
    assert (
        event.revision == revision
        and event.pipeline == "demo"
        and event.remediation_url == "http://127.0.0.1:9/fix"
    )
