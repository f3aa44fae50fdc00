"""The one translation of AWS SDK failures into perfsig errors: which call failed on what,
AWS's error code and message, and what a user can do about it.

Every AWS call of the package goes through :func:`aws_call`, so a missing permission, expired
credentials, an unknown region or a throttled API read the same wherever they happen. botocore
is imported when a call fails, not with this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import AwsError

__all__ = ["HINTS", "SERVICES", "TRANSPORT_HINTS", "aws_call", "region_of", "translate"]

#: IAM service prefix -> the name users know the service by
SERVICES = {
    "codepipeline": "CodePipeline",
    "codedeploy": "CodeDeploy",
    "dynamodb": "DynamoDB",
    "cloudwatch": "CloudWatch",
    "s3": "S3",
}

_ACCESS_DENIED = "the role perfsig runs with needs {action}"
_CREDENTIALS = "the credentials are not valid for this account and region"
_THROTTLED = "still throttled after the retries: try again later"
_NOT_FOUND = "check the name and the region (AWS_REGION)"

#: AWS error code -> what to do; ``{action}`` is the IAM action (``codepipeline:GetPipeline``)
HINTS: dict[str, str] = {
    # permissions and credentials
    "AccessDeniedException": _ACCESS_DENIED,
    "AccessDenied": _ACCESS_DENIED,
    "UnauthorizedOperation": _ACCESS_DENIED,
    "UnrecognizedClientException": _CREDENTIALS,
    "InvalidClientTokenId": _CREDENTIALS,
    "InvalidSignatureException": "the secret key does not match the access key, or the clock is off",
    "ExpiredTokenException": "the credentials have expired",
    "ExpiredToken": "the credentials have expired",
    # throttling, once botocore's retries are spent
    "ThrottlingException": _THROTTLED,
    "Throttling": _THROTTLED,
    "TooManyRequestsException": _THROTTLED,
    "RequestLimitExceeded": _THROTTLED,
    "ProvisionedThroughputExceededException": _THROTTLED,
    "LimitExceededException": _THROTTLED,
    # not found
    "ResourceNotFoundException": "check the table name and the region (AWS_REGION)",
    "PipelineNotFoundException": (
        "check the pipeline name (--perfsig-pipeline, or CODEBUILD_INITIATOR inside CodeBuild) and the "
        "region (AWS_REGION)"
    ),
    "StageNotFoundException": "the pipeline changed while the gate ran",
    "ActionNotFoundException": "the pipeline changed while the gate ran",
    "DeploymentDoesNotExistException": "check the deployment id and the region (AWS_REGION)",
    "ApplicationDoesNotExistException": _NOT_FOUND,
    "DeploymentGroupDoesNotExistException": _NOT_FOUND,
    "RevisionDoesNotExistException": "the revision's artifact is gone (S3 object or GitHub commit)",
    "NoSuchBucket": "create the bucket, or check its name and the region (AWS_REGION)",
    # S3 conditional writes: another writer changed the object first
    "PreconditionFailed": "the object changed since it was read",
    "ConditionalRequestConflict": "another write to the object was in progress",
    # CodePipeline approvals decided elsewhere
    "InvalidApprovalTokenException": (
        "the approval action was restarted or decided while the gate ran: check it in the console"
    ),
    "ApprovalAlreadyCompletedException": "someone approved or rejected it while the gate ran",
    # CodeDeploy
    "DeploymentLimitExceededException": "another deployment to this group is still running",
}

#: botocore exception class name -> what to do, for failures below the service
TRANSPORT_HINTS = {
    "NoCredentialsError": "configure AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID...) or run with a role",
    "PartialCredentialsError": "incomplete credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "CredentialRetrievalError": "the AWS credentials could not be obtained: check the profile or the role",
    "NoRegionError": "set AWS_REGION",
    "EndpointConnectionError": "check the network, the region and AWS_ENDPOINT_URL",
    "ConnectTimeoutError": "AWS did not answer in time: check the network and AWS_ENDPOINT_URL",
    "ReadTimeoutError": "AWS did not answer in time: try again later",
}


def _service_call(operation: str) -> tuple[str, str]:
    """``codepipeline:GetPipeline`` -> (``CodePipeline``, ``GetPipeline``)."""
    prefix, _, name = operation.partition(":")
    if not name:
        return "AWS", prefix
    return SERVICES.get(prefix, prefix), name


def _hint(text: str) -> str:
    return f" ({text})" if text else ""


def translate(exc: Exception, operation: str, where: str, error: type[AwsError] = AwsError) -> AwsError:
    """The perfsig error for a botocore failure of ``operation`` (the IAM action,
    ``codepipeline:GetPipeline``) on ``where`` (``for pipeline 'x' (us-east-1)``):
    ``"CodePipeline GetPipeline for pipeline 'x' (us-east-1) failed: Code: message (what to do)"``.

    ``error`` is the class returned (:class:`~pytest_perfsig.errors.ApprovalError`...). A
    ClientError's code is kept in the error's ``code``.
    """
    service, name = _service_call(operation)
    head = f"{service} {name}{' ' + where if where else ''} failed"
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:  # a ClientError: AWS answered
        details = response.get("Error") or {}
        code = str(details.get("Code") or "UnknownError")
        text = str(details.get("Message") or exc)
        hint = HINTS.get(code, "").format(action=operation)
        return error(f"{head}: {code}: {text}{_hint(hint)}", code)
    kind = type(exc).__name__
    return error(f"{head}: {kind}: {exc}{_hint(TRANSPORT_HINTS.get(kind, ''))}")


def aws_call(
    operation: str,
    call: Callable[..., Any],
    *,
    where: str = "",
    error: type[AwsError] = AwsError,
    **params: Any,
) -> Any:
    """``call(**params)``; a botocore failure is raised as ``error`` (see :func:`translate`),
    with AWS's code in its ``code``."""
    try:
        return call(**params)
    except Exception as exc:
        if not _is_botocore(exc):
            raise
        raise translate(exc, operation, where, error) from exc


def _is_botocore(exc: Exception) -> bool:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - a client exists, so botocore does
        return False
    return isinstance(exc, BotoCoreError | ClientError)


def region_of(client: Any) -> str:
    """The region a boto3 client (or resource) talks to, for messages."""
    meta: Any = getattr(client, "meta", None)
    if hasattr(meta, "client"):  # a resource (a DynamoDB table): its client knows the region
        meta = getattr(meta.client, "meta", None)
    region = getattr(meta, "region_name", None)
    return region if isinstance(region, str) and region else "default region"
