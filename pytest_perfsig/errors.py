"""The error hierarchy. Every failure the gate can meet is one of these, so the faces
(pytest plugin, CLI) can print a message a user can act on instead of a traceback."""

from __future__ import annotations


class PerfsigError(Exception):
    """Base class of every error pytest-perfsig raises on purpose."""


class MonspecError(PerfsigError):
    """A monspec file that cannot be read or does not describe a valid gate."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(
            f"{path}: " + ("\n  ".join(problems) if len(problems) == 1 else "\n  " + "\n  ".join(problems))
        )


class UsageError(PerfsigError):
    """Options that contradict each other or the monspec (unknown stage, comparison...)."""


class LoadError(PerfsigError):
    """The load phase could not run or did not produce usable data."""


class StoreError(PerfsigError):
    """The sample/verdict store could not be opened, read or written."""


class SourceError(PerfsigError):
    """A metric source failed to answer a query."""


class NoDataError(SourceError):
    """A window holds no samples, or too few to judge."""


class NoBaselineError(NoDataError):
    """A comparison whose baseline is stored runs found none at all: the first run of that
    environment (what a comparison's ``first_run`` policy decides)."""


class UnsupportedMetricError(SourceError):
    """The active metric source cannot answer this kind of signature entry."""


class AwsError(PerfsigError):
    """An AWS call failed, or the AWS SDK is missing or not configured.

    ``code`` is AWS's error code (``AccessDeniedException``...) when AWS answered with one, so
    callers can tell an expected refusal (a failed condition) from a failure.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ApprovalError(AwsError):
    """The gate's result could not be applied to the pipeline's manual-approval action.

    Raised for every failure on the way (unknown pipeline or action, AWS errors, missing
    credentials): the action is then left waiting, never approved.
    """


class CodeDeployError(AwsError):
    """CodeDeploy could not describe a deployment or start a rollback (a remediation's outcome
    is then ``error``, HTTP 502)."""


class RegistryError(AwsError):
    """The DynamoDB validation registry could not be read or written."""


class DynatraceError(SourceError):
    """A Dynatrace API call failed: unreachable, timed out, refused or answered nonsense."""
