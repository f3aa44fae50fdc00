"""Writing to Dynatrace (the metric source, sources/dynatrace.py, only reads): deployment
events on the entities of an environment, as the original pipeline pushed them after each
CodeDeploy deployment, and comments on problems saying what self-healing did.

Configured by ``PERFSIG_DYNATRACE_URL`` (``https://<tenant>``) and ``DT_API_TOKEN`` (scopes
``events.ingest`` and ``problems.write``). The token is sent in a header and never appears in
a message, a log line or a report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from .errors import PerfsigError
from .store.sqlite import DeploymentEvent

ENV_URL = "PERFSIG_DYNATRACE_URL"
ENV_TOKEN = "DT_API_TOKEN"


class DynatraceApiError(PerfsigError):
    """A Dynatrace write API call failed."""


def deployment_selector(env: str) -> str:
    """The services of an environment, by the original tutorial's rule-based tag."""
    return f'type(SERVICE),tag("DeploymentGroup:{env}")'


class DynatraceApi:
    def __init__(
        self, base_url: str, token: str, *, client: httpx.Client | None = None, timeout_s: float = 10.0
    ) -> None:
        if not token:
            raise DynatraceApiError(f"no Dynatrace API token: set {ENV_TOKEN}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._client = client or httpx.Client(timeout=timeout_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DynatraceApi | None:
        """None when Dynatrace is not configured (writing to it is optional)."""
        url = environ.get(ENV_URL)
        return cls(url, environ.get(ENV_TOKEN, "")) if url else None

    def __repr__(self) -> str:  # never the token
        return f"DynatraceApi({self.base_url!r})"

    def _post(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            response = self._client.post(
                url, json=body, headers={"Authorization": f"Api-Token {self._token}"}
            )
        except httpx.HTTPError as exc:
            raise DynatraceApiError(f"Dynatrace {what} ({url}): {type(exc).__name__}") from None
        if response.status_code >= 300:
            detail = response.text[:300].replace(self._token, "***")
            raise DynatraceApiError(f"Dynatrace {what} ({url}): HTTP {response.status_code}: {detail}")
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        return answer if isinstance(answer, dict) else {}

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
        return self._post("/api/v2/events/ingest", body, "deployment event")

    def comment_on_problem(self, problem_id: str, message: str) -> dict[str, Any]:
        """Say on the problem what was done about it (Problems API v2)."""
        body = {"message": message, "context": "pytest-perfsig self-healing"}
        return self._post(f"/api/v2/problems/{problem_id}/comments", body, "problem comment")
