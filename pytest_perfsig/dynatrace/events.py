"""Writing to Dynatrace: deployment events on the entities of an environment, as the original
pipeline pushed them after each CodeDeploy deployment, and comments on problems saying what
self-healing did.

Configured by ``PERFSIG_DYNATRACE_URL`` (``https://<tenant>``) and ``DT_API_TOKEN`` (scopes
``events.ingest`` and ``problems.write``); both calls go through the one
:class:`~pytest_perfsig.dynatrace.client.DynatraceClient`, so the token never appears in a
message, a log line or a report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from ..store import DeploymentEvent
from .client import DEFAULT_TIMEOUT_S, TOKEN_ENV, DynatraceClient

__all__ = ["ENV_TOKEN", "ENV_URL", "DynatraceEvents", "deployment_selector"]

ENV_URL = "PERFSIG_DYNATRACE_URL"
ENV_TOKEN = TOKEN_ENV
SCOPES = "events.ingest and problems.write"


def deployment_selector(env: str) -> str:
    """The services of an environment, by the original tutorial's rule-based tag."""
    return f'type(SERVICE),tag("DeploymentGroup:{env}")'


class DynatraceEvents:
    """Deployment events and problem comments on one tenant."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        http: httpx.Client | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        # Writing is asked for explicitly (the URL is set): a missing token is an error now,
        # not after a deployment was stored.
        self.client = DynatraceClient(base_url, token, scopes=SCOPES, timeout_s=timeout_s, http=http)
        if not self.client.has_token:
            raise self.client.missing_token()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DynatraceEvents | None:
        """None when Dynatrace is not configured (writing to it is optional)."""
        url = environ.get(ENV_URL)
        return cls(url, environ.get(ENV_TOKEN, "")) if url else None

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:  # never the token
        return f"DynatraceEvents({self.base_url!r})"

    def push_deployment_event(
        self, event: DeploymentEvent, entity_selector: str | None = None
    ) -> dict[str, Any]:
        """A CUSTOM_DEPLOYMENT event on the environment's services (Events API v2)."""
        revision = event.revision or {}
        s3 = revision.get("s3Location", {}) if isinstance(revision, dict) else {}
        properties = {
            "PipelineName": event.pipeline,
            "PipelineStage": event.stage,
            "Environment": event.env,
            "CodeDeployApplication": event.application,
            "CodeDeployDeploymentGroup": event.deployment_group,
            "CodeDeployDeploymentId": event.deployment_id,
            "remediationAction": event.remediation_url,
            "dt.event.deployment.version": s3.get("eTag") or s3.get("key"),
        }
        body = {
            "eventType": "CUSTOM_DEPLOYMENT",
            "title": f"Deployment {event.deployment_id or event.event_id} to {event.env}",
            "entitySelector": entity_selector or deployment_selector(event.env),
            "properties": {k: str(v) for k, v in properties.items() if v is not None},
        }
        return self.client.post_json("/api/v2/events/ingest", body, described="deployment event")

    def comment_on_problem(self, problem_id: str, message: str) -> dict[str, Any]:
        """Say on the problem what was done about it (Problems API v2)."""
        body = {"message": message, "context": "pytest-perfsig self-healing"}
        return self.client.post_json(
            f"/api/v2/problems/{problem_id}/comments", body, described="problem comment"
        )
