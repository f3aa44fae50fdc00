"""The one translation of AWS failures: every call names the service, the operation and its
target, AWS's code and message, and what to do; the code is kept for callers that expect one."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, NoRegionError
from botocore.stub import Stubber

from pytest_perfsig.aws.errors import aws_call, region_of, translate
from pytest_perfsig.errors import ApprovalError, AwsError, CodeDeployError, PerfsigError, RegistryError


@pytest.fixture
def codedeploy() -> Stubber:
    client = boto3.client(
        "codedeploy", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return Stubber(client)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("AccessDeniedException", "(the role perfsig runs with needs codedeploy:GetDeployment)"),
        ("ThrottlingException", "(still throttled after the retries: try again later)"),
        ("ExpiredTokenException", "(the credentials have expired)"),
        ("DeploymentDoesNotExistException", "(check the deployment id and the region (AWS_REGION))"),
        ("SomethingNewException", ""),
    ],
)
def test_client_errors_name_call_code_message_and_hint(codedeploy: Stubber, code: str, hint: str) -> None:
    client = codedeploy.client
    codedeploy.add_client_error("get_deployment", service_error_code=code, service_message="it failed")
    with codedeploy, pytest.raises(CodeDeployError) as raised:
        aws_call(
            "codedeploy:GetDeployment",
            client.get_deployment,
            where="d-123 (eu-west-1)",
            error=CodeDeployError,
            deploymentId="d-123",
        )
    expected = f"CodeDeploy GetDeployment d-123 (eu-west-1) failed: {code}: it failed"
    assert str(raised.value) == (f"{expected} {hint}" if hint else expected)
    assert raised.value.code == code
    assert isinstance(raised.value, AwsError) and isinstance(raised.value, PerfsigError)
    assert isinstance(raised.value.__cause__, Exception)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            NoCredentialsError(),
            "DynamoDB GetItem on table T failed: NoCredentialsError: Unable to locate credentials "
            "(configure AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID...) or run with a role)",
        ),
        (
            NoRegionError(),
            "DynamoDB GetItem on table T failed: NoRegionError: You must specify a region. (set AWS_REGION)",
        ),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            "DynamoDB GetItem on table T failed: EndpointConnectionError: Could not connect to the endpoint URL: "
            '"http://127.0.0.1:1" (check the network, the region and AWS_ENDPOINT_URL)',
        ),
    ],
)
def test_failures_below_the_service(error: Exception, expected: str) -> None:
    def fail(**_: object) -> None:
        raise error

    with pytest.raises(RegistryError) as raised:
        aws_call("dynamodb:GetItem", fail, where="on table T", error=RegistryError)
    assert str(raised.value) == expected
    assert raised.value.code is None


def test_other_exceptions_pass_through_untouched() -> None:
    def broken(**_: object) -> None:
        raise KeyError("deploymentInfo")

    with pytest.raises(KeyError):
        aws_call("codedeploy:GetDeployment", broken, error=CodeDeployError)


def test_answers_pass_through_with_their_parameters(codedeploy: Stubber) -> None:
    codedeploy.add_response(
        "list_deployments", {"deployments": ["d-1"]}, expected_params={"applicationName": "App"}
    )
    with codedeploy:
        answer = aws_call(
            "codedeploy:ListDeployments", codedeploy.client.list_deployments, applicationName="App"
        )
    assert answer["deployments"] == ["d-1"]


def test_translate_defaults_and_region() -> None:
    error = translate(NoRegionError(), "codepipeline:GetPipeline", "")
    assert type(error) is AwsError
    assert str(error).startswith("CodePipeline GetPipeline failed: NoRegionError")
    approval = translate(NoRegionError(), "codepipeline:GetPipeline", "for pipeline 'p'", ApprovalError)
    assert isinstance(approval, ApprovalError)
    client = boto3.client("codepipeline", region_name="ap-south-1")
    table = boto3.resource("dynamodb", region_name="sa-east-1").Table("T")
    assert (region_of(client), region_of(table), region_of(object())) == (
        "ap-south-1",
        "sa-east-1",
        "default region",
    )
