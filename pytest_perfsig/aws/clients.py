"""boto3 clients with the retry policy every AWS call of pytest-perfsig uses.

boto3 is imported when a client is created, not when this module is imported, so the rest of
the package works without it. Endpoints, credentials and the region come from boto3's own
configuration chain: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, profiles, the CodeBuild or Lambda
role, and ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` for local endpoints.
"""

from __future__ import annotations

from typing import Any

from ..errors import AwsError

__all__ = [
    "MAX_ATTEMPTS",
    "RETRY_MODE",
    "SOURCE_MAX_ATTEMPTS",
    "client_config",
    "cloudwatch_client",
    "codedeploy_client",
    "codepipeline_client",
    "dynamodb_resource",
    "s3_client",
]

RETRY_MODE = "standard"
#: botocore's ``max_attempts``: retries after the first attempt (6 attempts in all)
MAX_ATTEMPTS = 5
#: a metric source's retries: a gate waits on every query, so it fails sooner
SOURCE_MAX_ATTEMPTS = 3
USER_AGENT_EXTRA = "pytest-perfsig"


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise AwsError(
            "the AWS integration needs boto3, which is not installed: pip install 'pytest-perfsig[aws]'"
        ) from exc
    return boto3


def client_config(*, max_attempts: int = MAX_ATTEMPTS, timeout_s: float | None = None) -> Any:
    """The botocore ``Config`` of every client: standard retry mode (exponential backoff with
    jitter, throttling and transient errors retried), ``max_attempts`` 5 unless told; connect
    and read timeouts of ``timeout_s`` when given (botocore's 60 s otherwise)."""
    _boto3()
    from botocore.config import Config

    timeouts = {} if timeout_s is None else {"connect_timeout": timeout_s, "read_timeout": timeout_s}
    return Config(
        retries={"mode": RETRY_MODE, "max_attempts": max_attempts},
        user_agent_extra=USER_AGENT_EXTRA,
        **timeouts,
    )


def codepipeline_client(region: str | None = None) -> Any:
    """A CodePipeline client (``GetPipeline``, ``GetPipelineState``, ``PutApprovalResult``)."""
    return _boto3().client("codepipeline", region_name=region, config=client_config())


def codedeploy_client(region: str | None = None) -> Any:
    """A CodeDeploy client (deployments and rollbacks)."""
    return _boto3().client("codedeploy", region_name=region, config=client_config())


def dynamodb_resource(region: str | None = None) -> Any:
    """A DynamoDB service resource (the ``BuildValidationRequests`` table)."""
    return _boto3().resource("dynamodb", region_name=region, config=client_config())


def s3_client(region: str | None = None) -> Any:
    """An S3 client (the persisted store: ``GetObject``, conditional ``PutObject``)."""
    return _boto3().client("s3", region_name=region, config=client_config())


def cloudwatch_client(region: str, *, endpoint_url: str | None = None, timeout_s: float | None = None) -> Any:
    """A CloudWatch client for the metric source (``GetMetricData``): fewer retries and the
    source's timeouts; ``endpoint_url`` for LocalStack or a moto server."""
    config = client_config(max_attempts=SOURCE_MAX_ATTEMPTS, timeout_s=timeout_s)
    return _boto3().client("cloudwatch", region_name=region, endpoint_url=endpoint_url, config=config)
