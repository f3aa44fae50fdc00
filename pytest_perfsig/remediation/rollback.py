"""What to do about a problem: roll the environment back to the revision deployed before the
latest one (CodeDeploy), or call the latest deployment's remediation URL instead.

:func:`remediate` is the whole decision, shared by the webhook server and the Lambda handler:

1. a vendor test message, a problem that is not OPEN: nothing (and nothing stored);
2. ``claim_remediation(problem_id, env)`` in the store; a problem already claimed is "already
   handled" (the same problem notified twice rolls back once);
3. no environment, a non-production one, no deployment event, no known revision, no earlier
   revision: ``skipped``, with the reason;
4. the latest deployment event has a ``remediation_url``: POST the problem there *instead of*
   rolling back (the original's Ansible Tower variant); its answer decides the outcome;
5. otherwise ``CreateDeployment`` of the previous revision in the same application and
   deployment group, and a new deployment event for the rollback itself.

Every claimed problem ends with ``finish_remediation``: ``rolled_back``, ``remediation_called``,
``skipped`` or ``error`` — never left ``started`` by an error of ours, never a silent success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..aws.codedeploy import (
    create_deployment,
    default_client,
    describe_deployment,
    get_deployment,
    succeeded_deployments,
)
from ..errors import AwsError, StoreError
from ..store.sqlite import DeploymentEvent, SqliteStore
from .payloads import Problem

__all__ = [
    "ROLLBACK_STAGE",
    "Outcome",
    "describe_revision",
    "find_previous_revision",
    "is_rollback_event",
    "redact_url",
    "remediate",
    "same_revision",
]

log = logging.getLogger("pytest_perfsig.remediation")

#: the ``stage`` of the deployment events perfsig records for its own rollbacks
#: (``perfsig:rollback:<problem id>``): how a later problem knows what was rolled back from
ROLLBACK_STAGE = "perfsig:rollback"
#: deployment events of an environment looked at (newest first)
EVENT_LOOKBACK = 200
#: CodeDeploy deployments looked at when the store knows no earlier revision
CODEDEPLOY_LOOKBACK = 25
REMEDIATION_URL_TIMEOUT_S = 10.0

# One decision at a time in this process: a second problem about the same bad deployment then
# sees the first one's rollback event (and is skipped, see _superseded) instead of racing it.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """What was done about a problem, and the HTTP status the sender gets."""

    status: str  # rolled_back | remediation_called | skipped | already_handled | error | test
    http_status: int
    reason: str
    problem_id: str | None = None
    env: str | None = None
    action: str | None = None
    previous_revision: dict[str, Any] | None = None
    new_deployment_id: str | None = None
    rolled_back_deployment_id: str | None = None
    deployment_event_id: str | None = None
    previous_status: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "problem_id": self.problem_id,
            "env": self.env,
            "action": self.action,
            "previous_revision": self.previous_revision,
            "new_deployment_id": self.new_deployment_id,
        }
        if self.rolled_back_deployment_id:
            body["rolled_back_deployment_id"] = self.rolled_back_deployment_id
        if self.previous_status:
            body["previous_status"] = self.previous_status
        return body


def remediate(
    problem: Problem,
    store: SqliteStore,
    *,
    codedeploy: Any = None,
    http: Any = None,
    production_prefix: str = "Production",
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """Decide and act on one problem; see the module docstring for the rules.

    ``codedeploy`` is a boto3 CodeDeploy client (created on demand when ``None``), ``http`` an
    ``httpx.Client`` for remediation URLs (created on demand). Raises only for errors of the
    store itself; everything else is an :class:`Outcome`.
    """
    base: dict[str, Any] = {"problem_id": problem.problem_id, "env": problem.env}
    if problem.test:
        return Outcome("test", 200, f"{problem.source} test notification: nothing done", **base)
    if problem.state != "OPEN":
        return Outcome(
            "skipped", 200, f"problem is {problem.vendor_state or problem.state}: nothing to do", **base
        )
    with _LOCK:
        if not store.claim_remediation(problem.problem_id, problem.env):
            previous = _stored_status(store, problem.problem_id)
            reason = "already handled" + (f" (status {previous})" if previous else "")
            return Outcome("already_handled", 200, reason, previous_status=previous, **base)
        try:
            outcome = _decide(problem, store, codedeploy, http, production_prefix, clock)
        except Exception as exc:
            store.finish_remediation(
                problem.problem_id, "error", detail=f"internal error: {type(exc).__name__}"
            )
            raise
        store.finish_remediation(
            problem.problem_id,
            outcome.status,
            action=outcome.action,
            deployment_event_id=outcome.deployment_event_id,
            new_deployment_id=outcome.new_deployment_id,
            detail=outcome.reason,
        )
    log.info(
        "problem %r (%s, env %s): %s: %s",
        problem.problem_id,
        problem.source,
        problem.env,
        outcome.status,
        outcome.reason,
    )
    return outcome


def _decide(
    problem: Problem,
    store: SqliteStore,
    codedeploy: Any,
    http: Any,
    prefix: str,
    clock: Callable[[], float],
) -> Outcome:
    base: dict[str, Any] = {"problem_id": problem.problem_id, "env": problem.env}
    env = problem.env
    if not env:
        return Outcome(
            "skipped",
            200,
            "the problem names no environment (Dynatrace tag DeploymentGroup:<Env>, Alertmanager "
            "label stage or env)",
            **base,
        )
    if not env.startswith(prefix):
        return Outcome("skipped", 200, f"environment {env} is not production (not {prefix}*)", **base)
    events = store.deployment_events(env, limit=EVENT_LOOKBACK)
    if not events:
        return Outcome("skipped", 200, f"no deployment event recorded for {env}", **base)
    latest = events[0]
    base["deployment_event_id"] = latest.event_id
    if latest.remediation_url:
        return _call_remediation_url(problem, latest, http, base)
    if _superseded(problem, latest):
        return Outcome(
            "skipped",
            200,
            f"the problem began before the rollback {latest.deployment_id} of "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(latest.ts))}, which addresses it",
            **base,
        )
    try:
        client = codedeploy if codedeploy is not None else default_client()
        if latest.deployment_id and not (latest.application and latest.deployment_group and latest.revision):
            latest = describe_deployment(latest, client)
        if not (latest.application and latest.deployment_group):
            return Outcome(
                "skipped",
                200,
                f"the latest deployment event of {env} names no CodeDeploy application and group",
                **base,
            )
        if not latest.revision:
            return Outcome(
                "skipped", 200, f"the revision of the latest deployment to {env} is unknown", **base
            )
        previous, source = find_previous_revision(latest, events, client)
        if previous is None:
            return Outcome(
                "skipped",
                200,
                f"no revision of {latest.application}/{latest.deployment_group} before "
                f"{describe_revision(latest.revision)} to roll back to",
                **base,
            )
        description = (
            f"perfsig self-healing: problem {problem.problem_id[:100]} on {env}; rolling back "
            f"{latest.deployment_id or 'the latest deployment'} to the previous revision"
        )
        new_id = create_deployment(client, latest.application, latest.deployment_group, previous, description)
    except AwsError as exc:  # a CodeDeploy call failed, or boto3 is missing: the sender gets a 502
        return Outcome("error", 502, str(exc), action="codedeploy_rollback", **base)

    reason = (
        f"rolled back {latest.application}/{latest.deployment_group} from "
        f"{describe_revision(latest.revision)} ({latest.deployment_id or 'unknown deployment'}) to "
        f"{describe_revision(previous)} (found in {source}): new deployment {new_id}"
    )
    rollback = DeploymentEvent(
        env=env,
        deployment_id=new_id,
        application=latest.application,
        deployment_group=latest.deployment_group,
        revision=previous,
        pipeline=latest.pipeline,
        stage=f"{ROLLBACK_STAGE}:{problem.problem_id}",
        ts=clock(),
    )
    try:
        store.add_deployment_event(rollback)
    except StoreError as exc:  # the rollback happened: say so, and that it is not recorded
        reason += f"; its deployment event could not be recorded: {exc}"
    return Outcome(
        "rolled_back",
        200,
        reason,
        action="codedeploy_rollback",
        previous_revision=previous,
        new_deployment_id=new_id,
        rolled_back_deployment_id=latest.deployment_id,
        **base,
    )


# ------------------------------------------------------------------ previous revision


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


def _superseded(problem: Problem, latest: DeploymentEvent) -> bool:
    """A problem that began before perfsig's latest rollback is the one it rolled back for (or
    another symptom of the same deployment): rolling back again would go one revision too far."""
    return is_rollback_event(latest) and problem.started_at is not None and problem.started_at < latest.ts


# ------------------------------------------------------------------ remediation URL


def _call_remediation_url(
    problem: Problem, latest: DeploymentEvent, http: Any, base: dict[str, Any]
) -> Outcome:
    import httpx

    url = latest.remediation_url or ""
    shown = redact_url(url)
    action = "remediation_url"
    if urlsplit(url).scheme not in ("http", "https"):
        return Outcome("error", 502, f"remediation URL {shown} is not http(s)", action=action, **base)
    client = http if http is not None else httpx.Client(timeout=REMEDIATION_URL_TIMEOUT_S)
    try:
        response = client.post(url, json=problem.raw, timeout=REMEDIATION_URL_TIMEOUT_S)
    except httpx.HTTPError as exc:
        message = str(exc).replace(url, shown)
        return Outcome(
            "error",
            502,
            f"remediation URL {shown} failed: {type(exc).__name__}: {message}"[:500],
            action=action,
            **base,
        )
    finally:
        if http is None:
            client.close()
    if response.is_success:
        return Outcome(
            "remediation_called",
            200,
            f"called remediation URL {shown} instead of rolling back: HTTP {response.status_code}",
            action=action,
            **base,
        )
    return Outcome(
        "error",
        502,
        f"remediation URL {shown} answered HTTP {response.status_code}",
        action=action,
        **base,
    )


def redact_url(url: str) -> str:
    """Scheme, host and port only: user info, path, query may carry credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}/…" if parts.scheme else "<invalid URL>"


# ------------------------------------------------------------------ helpers


def _stored_status(store: SqliteStore, problem_id: str) -> str | None:
    for row in store.remediations(limit=500):
        if row["problem_id"] == problem_id:
            return str(row["status"])
    return None


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
