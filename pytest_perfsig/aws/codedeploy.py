"""CodeDeploy: what was deployed where (``GetDeployment``), the group's earlier successful
deployments (``ListDeployments``), and a rollback as a new deployment of an earlier revision
(``CreateDeployment``). Every failure is a :class:`~pytest_perfsig.errors.CodeDeployError`
naming the call, its target and the AWS error.

Deciding *whether* and *to what* to roll back is :mod:`pytest_perfsig.remediation.rollback`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import CodeDeployError
from ..store import DeploymentEvent
from .errors import aws_call, region_of

__all__ = [
    "DEPLOYABLE_KEYS",
    "create_deployment",
    "default_client",
    "deployable",
    "describe_deployment",
    "get_deployment",
    "succeeded_deployments",
]

#: the fields of a revision ``CreateDeployment`` accepts (``GetDeployment`` answers more)
DEPLOYABLE_KEYS = ("revisionType", "s3Location", "gitHubLocation", "string", "appSpecContent")


def default_client() -> Any:
    """A CodeDeploy client from the one client factory (region and credentials from boto3's
    configuration chain)."""
    from .clients import codedeploy_client

    return codedeploy_client()


def _call(client: Any, operation: str, method: Callable[..., Any], target: str, **params: Any) -> Any:
    where = f"{target} ({region_of(client)})"
    return aws_call(f"codedeploy:{operation}", method, where=where, error=CodeDeployError, **params)


def get_deployment(client: Any, deployment_id: str) -> dict[str, Any]:
    """``GetDeployment``'s ``deploymentInfo`` (application, group, revision, previousRevision,
    createTime...)."""
    answer = _call(client, "GetDeployment", client.get_deployment, deployment_id, deploymentId=deployment_id)
    return dict(answer.get("deploymentInfo") or {})


def describe_deployment(event: DeploymentEvent, client: Any = None) -> DeploymentEvent:
    """Fill application, group and revision of an event from CodeDeploy's GetDeployment."""
    if not event.deployment_id:
        raise CodeDeployError(f"the deployment event {event.event_id} of {event.env} names no deployment id")
    info = get_deployment(client if client is not None else default_client(), event.deployment_id)
    return replace(
        event,
        application=event.application or info.get("applicationName"),
        deployment_group=event.deployment_group or info.get("deploymentGroupName"),
        revision=event.revision or info.get("revision"),
    )


def succeeded_deployments(client: Any, application: str, group: str, *, limit: int) -> list[str]:
    """Ids of the group's ``Succeeded`` deployments, as ``ListDeployments`` pages them (at most
    ``limit``, plus the rest of the last page)."""
    ids: list[str] = []
    token: str | None = None
    while len(ids) < limit:
        params: dict[str, Any] = {
            "applicationName": application,
            "deploymentGroupName": group,
            "includeOnlyStatuses": ["Succeeded"],
        }
        if token:
            params["nextToken"] = token
        page = _call(
            client, "ListDeployments", client.list_deployments, f"of {application}/{group}", **params
        )
        ids.extend(page.get("deployments", []))
        token = page.get("nextToken")
        if not token:
            break
    return ids


def deployable(revision: dict[str, Any]) -> dict[str, Any]:
    """The part of a revision ``CreateDeployment`` takes."""
    return {k: v for k, v in revision.items() if k in DEPLOYABLE_KEYS}


def create_deployment(
    client: Any, application: str, group: str, revision: dict[str, Any], description: str
) -> str:
    """Deploy ``revision`` to the group again; the new deployment's id."""
    answer = _call(
        client,
        "CreateDeployment",
        client.create_deployment,
        f"of {application}/{group}",
        applicationName=application,
        deploymentGroupName=group,
        revision=deployable(revision),
        description=description,
    )
    return str(answer["deploymentId"])
