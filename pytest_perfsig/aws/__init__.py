"""AWS integration: approve or reject a CodePipeline manual-approval action from a gate's result.

Nothing here talks to AWS at import time, and importing this package does not need boto3: the
clients are created on demand (:mod:`pytest_perfsig.aws.clients`), and
:mod:`pytest_perfsig.aws.approval` only needs botocore once a client exists.
"""

from __future__ import annotations

from pytest_perfsig.errors import PerfsigError

__all__ = ["ApprovalError", "AwsError"]


class AwsError(PerfsigError):
    """An AWS call failed, or the AWS SDK is missing or not configured."""


class ApprovalError(AwsError):
    """The gate's result could not be applied to the pipeline's approval action.

    Raised for every failure on the way (unknown pipeline or action, AWS errors, missing
    credentials): the action is then left waiting, never approved.
    """
