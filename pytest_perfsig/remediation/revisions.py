"""Which revision a rollback goes back to, and telling revisions apart.

The store's deployment events of the environment are walked newest first; revisions that a
perfsig rollback replaced count as bad, so a later problem rolls back *further*, never back
and forth. CodeDeploy is asked only when the store knows no earlier revision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..aws.codedeploy import get_deployment, succeeded_deployments
from ..store.sqlite import DeploymentEvent

__all__ = [
    "CODEDEPLOY_LOOKBACK",
    "ROLLBACK_STAGE",
    "describe_revision",
    "find_previous_revision",
    "is_rollback_event",
    "same_revision",
]

#: the ``stage`` of the deployment events perfsig records for its own rollbacks
#: (``perfsig:rollback:<problem id>``): how a later problem knows what was rolled back from
ROLLBACK_STAGE = "perfsig:rollback"
#: CodeDeploy deployments looked at when the store knows no earlier revision
CODEDEPLOY_LOOKBACK = 25


def find_previous_revision(
    latest: DeploymentEvent, events: Sequence[DeploymentEvent], codedeploy: Any = None
) -> tuple[dict[str, Any] | None, str]:
    """The revision to roll ``latest`` back to, and where it was found.

    The store's events of the same application and group are walked newest first. The latest
    revision is bad; so is every revision a perfsig rollback replaced (the event just before a
    rollback event), so after a rollback a new problem rolls back *further*, never back to the
    revision just rolled back from. The first other revision is the answer. When the store
    knows none, CodeDeploy is asked: ``GetDeployment(latest).previousRevision``, then the
    group's last ``Succeeded`` deployments (``ListDeployments`` + ``GetDeployment``).
    """
    key = (latest.application, latest.deployment_group)
    bad: list[dict[str, Any]] = [latest.revision] if latest.revision else []
    same_group = [e for e in events if (e.application, e.deployment_group) == key]
    older = [e for e in same_group if e.event_id != latest.event_id]
    replaced = is_rollback_event(latest)
    for event in older:
        if replaced:
            if event.revision:
                bad.append(event.revision)
        elif event.revision and not any(same_revision(event.revision, b) for b in bad):
            return event.revision, f"deployment event {event.event_id} ({event.deployment_id or '-'})"
        replaced = is_rollback_event(event)
    if codedeploy is None or not latest.deployment_id:
        return None, ""
    return _previous_from_codedeploy(latest, latest.deployment_id, bad, codedeploy)


def _previous_from_codedeploy(
    latest: DeploymentEvent, deployment_id: str, bad: list[dict[str, Any]], client: Any
) -> tuple[dict[str, Any] | None, str]:
    info = get_deployment(client, deployment_id)
    previous = info.get("previousRevision") or None
    if previous and previous.get("revisionType") and not any(same_revision(previous, b) for b in bad):
        return previous, f"CodeDeploy previousRevision of {deployment_id}"
    if not (latest.application and latest.deployment_group):
        return None, ""
    latest_created = _epoch(info.get("createTime"))
    listed = succeeded_deployments(
        client, latest.application, latest.deployment_group, limit=CODEDEPLOY_LOOKBACK + 1
    )
    ids = [d for d in listed if d != deployment_id][:CODEDEPLOY_LOOKBACK]
    candidates = []
    for other in ids:
        found = get_deployment(client, other)
        created = _epoch(found.get("createTime"))
        if latest_created is not None and created is not None and created >= latest_created:
            continue
        if found.get("revision"):
            candidates.append((created or 0.0, other, found["revision"]))
    for _created, other, revision in sorted(candidates, key=lambda c: c[0], reverse=True):
        if not any(same_revision(revision, b) for b in bad):
            return revision, f"CodeDeploy deployment {other} (last Succeeded before)"
    return None, ""


def is_rollback_event(event: DeploymentEvent) -> bool:
    """A deployment event perfsig recorded for a rollback of its own."""
    return (event.stage or "").startswith(ROLLBACK_STAGE)


def same_revision(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two CodeDeploy revisions are the same artifact.

    S3: same bucket and key, and no identifying field (version, eTag) present on both differs:
    the original pipeline overwrote one ``app.zip``, so only version / eTag tell builds apart.
    """
    if a.get("revisionType") and b.get("revisionType") and a["revisionType"] != b["revisionType"]:
        return False
    s3a, s3b = a.get("s3Location"), b.get("s3Location")
    if isinstance(s3a, dict) and isinstance(s3b, dict):
        if (s3a.get("bucket"), s3a.get("key")) != (s3b.get("bucket"), s3b.get("key")):
            return False
        return all(s3a.get(f) == s3b.get(f) for f in ("version", "eTag") if s3a.get(f) and s3b.get(f))
    gha, ghb = a.get("gitHubLocation"), b.get("gitHubLocation")
    if isinstance(gha, dict) and isinstance(ghb, dict):
        return (gha.get("repository"), gha.get("commitId")) == (ghb.get("repository"), ghb.get("commitId"))
    for kind in ("string", "appSpecContent"):
        ca, cb = a.get(kind), b.get(kind)
        if isinstance(ca, dict) and isinstance(cb, dict):
            if ca.get("sha256") and cb.get("sha256"):
                return bool(ca["sha256"] == cb["sha256"])
            return bool(ca.get("content") == cb.get("content"))
    return a == b


def describe_revision(revision: dict[str, Any] | None) -> str:
    """``s3://bucket/key`` (with version / eTag), ``repo@commit``, or the revision type."""
    if not revision:
        return "unknown revision"
    s3 = revision.get("s3Location")
    if isinstance(s3, dict):
        text = f"s3://{s3.get('bucket', '?')}/{s3.get('key', '?')}"
        tag = s3.get("version") or s3.get("eTag")
        return f"{text}@{tag}" if tag else text
    github = revision.get("gitHubLocation")
    if isinstance(github, dict):
        return f"{github.get('repository', '?')}@{str(github.get('commitId', '?'))[:12]}"
    return str(revision.get("revisionType") or "revision")


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    timestamp = getattr(value, "timestamp", None)
    if callable(timestamp):
        return float(timestamp())
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
