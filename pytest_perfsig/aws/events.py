"""Deployment events from CodeDeploy: what was deployed where, and what ran before it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import PerfsigError
from ..store.sqlite import DeploymentEvent


class DeploymentLookupError(PerfsigError):
    """CodeDeploy could not tell us about a deployment."""


def describe_deployment(event: DeploymentEvent, client: Any = None) -> DeploymentEvent:
    """Fill application, group and revision of an event from CodeDeploy's GetDeployment."""
    from botocore.exceptions import BotoCoreError, ClientError

    if client is None:
        from .clients import codedeploy_client

        client = codedeploy_client()
    try:
        info = client.get_deployment(deploymentId=event.deployment_id)["deploymentInfo"]
    except ClientError as exc:
        error = exc.response["Error"]
        raise DeploymentLookupError(
            f"CodeDeploy GetDeployment {event.deployment_id}: {error['Code']}: {error['Message']}"
        ) from exc
    except BotoCoreError as exc:
        raise DeploymentLookupError(f"CodeDeploy GetDeployment {event.deployment_id}: {exc}") from exc
    return replace(
        event,
        application=event.application or info.get("applicationName"),
        deployment_group=event.deployment_group or info.get("deploymentGroupName"),
        revision=event.revision or info.get("revision"),
    )
