"""What to do about a problem: roll the environment back to the revision deployed before the
latest one (CodeDeploy), or call the latest deployment's remediation URL instead.

:func:`remediate` is the whole decision, shared by the webhook server and the Lambda handler:

1. a vendor test message, a problem that is not OPEN: nothing (and nothing stored);
2. ``claim_remediation`` in the store, with a lease; a problem already claimed is "already
   handled" (the same problem notified twice rolls back once), unless its claim is still
   ``started`` and its lease ran out: the receiver deciding it died, and this one takes over;
3. no environment, a non-production one, no deployment event, no known revision, no earlier
   revision: ``skipped``, with the reason;
4. the latest deployment event has a ``remediation_url``: POST the problem there *instead of*
   rolling back (the original's Ansible Tower variant); its answer decides the outcome;
5. otherwise ``CreateDeployment`` of the previous revision in the same application and
   deployment group, and a new deployment event for the rollback itself.

Every claimed problem ends with ``finish_remediation``: ``rolled_back``, ``remediation_called``,
``skipped`` or ``error`` — never left ``started`` by an error of ours, never a silent success.
Only a process that dies mid-decision leaves ``started``; its lease says when to take over.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..aws.codedeploy import create_deployment, default_client, describe_deployment
from ..errors import AwsError, StoreError
from ..store.sqlite import DeploymentEvent, SqliteStore
from .payloads import Problem
from .revisions import (
    ROLLBACK_STAGE,
    describe_revision,
    find_previous_revision,
    is_rollback_event,
    same_revision,
)

__all__ = [
    "DEFAULT_LEASE_S",
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

#: deployment events of an environment looked at (newest first)
EVENT_LOOKBACK = 200
REMEDIATION_URL_TIMEOUT_S = 10.0
#: how long a claimed problem stays with the receiver deciding it before another may take it
#: over: longer than the slowest CodeDeploy call with botocore's retries (60 s read timeout,
#: 6 attempts), and than a Lambda function may run (15 minutes)
DEFAULT_LEASE_S = 900.0


class _EnvironmentLock:
    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()


# Two problems about one environment are decided one after the other in this process, so the
# second sees the first one's rollback event (see _superseded) instead of racing it. Nothing
# else waits: repeats are answered by the claim, other environments have their own lock.
_LOCKS: weakref.WeakValueDictionary[str, _EnvironmentLock] = weakref.WeakValueDictionary()
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _one_at_a_time(env: str | None) -> Iterator[None]:
    if env is None:
        yield
        return
    with _LOCKS_GUARD:
        holder = _LOCKS.get(env)
        if holder is None:
            holder = _LOCKS[env] = _EnvironmentLock()
    with holder.lock:
        yield


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
    lease_s: float = DEFAULT_LEASE_S,
) -> Outcome:
    """Decide and act on one problem; see the module docstring for the rules.

    ``codedeploy`` is a boto3 CodeDeploy client (created on demand when ``None``), ``http`` an
    ``httpx.Client`` for remediation URLs (created on demand). ``lease_s`` is how long the claim
    stays this call's without it finishing. Raises only for errors of the store itself;
    everything else is an :class:`Outcome`.
    """
    base: dict[str, Any] = {"problem_id": problem.problem_id, "env": problem.env}
    if problem.test:
        return Outcome("test", 200, f"{problem.source} test notification: nothing done", **base)
    if problem.state != "OPEN":
        return Outcome(
            "skipped", 200, f"problem is {problem.vendor_state or problem.state}: nothing to do", **base
        )
    claim = _Claim(store, problem.problem_id, uuid.uuid4().hex, lease_s, clock)
    if not store.claim_remediation(
        problem.problem_id, problem.env, lease_s=lease_s, owner=claim.owner, now=clock()
    ):
        previous = _stored_status(store, problem.problem_id)
        reason = "already handled" + (f" (status {previous})" if previous else "")
        return Outcome("already_handled", 200, reason, previous_status=previous, **base)
    production = problem.env if problem.env and problem.env.startswith(production_prefix) else None
    try:
        with _one_at_a_time(production):
            outcome = _decide(problem, store, codedeploy, http, production_prefix, clock, claim)
    except Exception as exc:
        claim.finish("error", detail=f"internal error: {type(exc).__name__}")
        raise
    if not claim.finish(
        outcome.status,
        action=outcome.action,
        deployment_event_id=outcome.deployment_event_id,
        new_deployment_id=outcome.new_deployment_id,
        detail=outcome.reason,
    ):
        log.warning(
            "problem %r: its claim ran out and another attempt took it over; this outcome is not stored",
            problem.problem_id,
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


@dataclass(frozen=True)
class _Claim:
    """This call's claim on a problem: renewed before acting, finished only while it is ours."""

    store: SqliteStore
    problem_id: str
    owner: str
    lease_s: float
    clock: Callable[[], float]

    def renew(self) -> bool:
        return self.store.renew_remediation(
            self.problem_id, self.owner, lease_s=self.lease_s, now=self.clock()
        )

    def finish(self, status: str, **fields: Any) -> bool:
        return self.store.finish_remediation(self.problem_id, status, owner=self.owner, **fields)


def _lost(base: dict[str, Any], action: str) -> Outcome:
    return Outcome(
        "error",
        503,
        "the claim on this problem ran out before acting and another attempt took it over: nothing done",
        action=action,
        **base,
    )


def _decide(
    problem: Problem,
    store: SqliteStore,
    codedeploy: Any,
    http: Any,
    prefix: str,
    clock: Callable[[], float],
    claim: _Claim,
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
    if latest.stage == f"{ROLLBACK_STAGE}:{problem.problem_id}":  # taken over after the rollback
        return Outcome(
            "rolled_back",
            200,
            f"an earlier attempt, interrupted before it finished, rolled back to "
            f"{describe_revision(latest.revision)}: deployment {latest.deployment_id}",
            action="codedeploy_rollback",
            previous_revision=latest.revision,
            new_deployment_id=latest.deployment_id,
            **base,
        )
    if latest.remediation_url:
        if not claim.renew():
            return _lost(base, "remediation_url")
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
        if not claim.renew():  # the lease now covers the CreateDeployment call
            return _lost(base, "codedeploy_rollback")
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


def _stored_status(store: SqliteStore, problem_id: str) -> str | None:
    for row in store.remediations(limit=500):
        if row["problem_id"] == problem_id:
            return str(row["status"])
    return None
