"""The AWS Lambda functions of pytest-perfsig, one handler each:

- :func:`register_handler`: the original system's ``registerDynatraceBuildValidation``, a
  CodePipeline invoke action that registers a deferred validation;
- :func:`worker_handler`: the original ``validateBuildDynatraceWorker``, scheduled every 2
  minutes: judges every due validation, approves or rejects its pipeline action;
- :func:`problem_handler`: the original ``handleDynatraceProblemNotification``, the self-healing
  receiver behind API Gateway (proxy integration), with authentication.

Configuration by environment variables:

- ``PERFSIG_REGISTRY``: registry URL (default ``dynamodb:BuildValidationRequests``);
  register and worker;
- ``PERFSIG_MONSPEC``: the monspec file shipped with the function (default ``monspec.json``);
  register;
- ``PERFSIG_LEASE``: seconds a worker holds a claimed request before another may retry it,
  renewed while it is judged (default 600); worker;
- ``PERFSIG_STORE``: the store: the samples and history the worker judges, the deployment
  events the problem handler rolls back from. For the worker, ``s3://BUCKET/KEY`` is the store
  the gates persist: downloaded before each run, saved after it with a conditional write
  (working copy under ``PERFSIG_STORE_WORKDIR``, default ``/tmp/perfsig``). A file path works
  for both handlers (shared storage such as EFS; default ``/tmp/perfsig.db``, which only holds
  what one Lambda instance saw);
- ``PERFSIG_WEBHOOK_SECRET``: the problem handler's shared secret (required; without it every
  request gets a 500 that says so, and nothing is done);
- ``PERFSIG_PRODUCTION_PREFIX``: environments whose name starts with it are rolled back
  (default ``Production``); problem handler;
- ``PERFSIG_REMEDIATION_LEASE``: seconds a claimed problem stays with the invocation deciding
  it before a later notification may take it over (default 900, the longest a function runs);
  problem handler;
- ``PERFSIG_DYNATRACE_URL``, ``DT_API_TOKEN``: where the problem handler comments on Dynatrace
  problems (optional);
- AWS region and credentials: the function's own (``AWS_REGION``, its role).

The problem handler's replay protection remembers signatures per execution environment
(container): concurrent containers do not share that memory; see docs/self-healing.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from .errors import PerfsigError
from .remediation.server import (
    SECRET_ENV,
    RemediationConfigError,
    Reply,
    WebhookReceiver,
    error_reply,
    lease_from_env,
)

__all__ = ["problem_handler", "register_handler", "worker_handler"]

# The self-healing logger, as the webhook server's: one name to follow, wherever it runs.
log = logging.getLogger("pytest_perfsig.remediation")

DEFAULT_REGISTRY = "dynamodb:BuildValidationRequests"
DEFAULT_STORE = "/tmp/perfsig.db"
DEFAULT_WORKDIR = "/tmp/perfsig"  # Lambda's only writable place


def _store_path() -> str:
    return os.environ.get("PERFSIG_STORE", DEFAULT_STORE)


def _registry() -> Any:
    from .registry import open_registry

    return open_registry(os.environ.get("PERFSIG_REGISTRY", DEFAULT_REGISTRY), _store_path())


# ------------------------------------------------------------------ deferred validation


def register_handler(
    event: dict[str, Any], context: Any, *, codepipeline: Any = None, registry: Any = None
) -> dict[str, Any]:
    """CodePipeline invoke action; UserParameters ``"StagingToProduction,5,ApproveStaging"``.
    The job fails (and with it the pipeline action) when anything is wrong: never silently."""
    from .aws.clients import codepipeline_client
    from .monspec import load_monspec
    from .registry import new_request, parse_user_parameters

    codepipeline = codepipeline or codepipeline_client()
    job_id = event["CodePipeline.job"]["id"]
    try:
        details = codepipeline.get_job_details(jobId=job_id)["jobDetails"]["data"]
        context_ = details["pipelineContext"]
        parameters = details["actionConfiguration"]["configuration"].get("UserParameters", "")
        comparison, minutes, approval = parse_user_parameters(parameters)
        monspec_path = os.environ.get("PERFSIG_MONSPEC", "monspec.json")
        monspec = load_monspec(monspec_path)
        if not any(entity.comparison(comparison) for entity in monspec.entities.values()):
            raise PerfsigError(f"comparison {comparison!r} is not defined in {monspec_path}")
        request = new_request(
            context_["pipelineName"],
            comparison,
            minutes,
            Path(monspec_path).read_text(encoding="utf-8"),
            approval_action=approval,
            stage=context_["stage"]["name"],
            action=context_["action"]["name"],
        )
        (registry or _registry()).register(request)
    except (PerfsigError, KeyError) as exc:
        message = f"perfsig register failed: {exc}"
        codepipeline.put_job_failure_result(
            jobId=job_id, failureDetails={"type": "ConfigurationError", "message": message[:5000]}
        )
        return {"status": "failed", "message": message}
    codepipeline.put_job_success_result(jobId=job_id)
    return {"status": "registered", "pipeline": request.pipeline, "timestamp": request.timestamp_ms}


def worker_handler(
    event: dict[str, Any], context: Any, *, registry: Any = None, approve: Any = None
) -> dict[str, Any]:
    """Scheduled: judge every due request, approve / reject, record the outcome."""
    from .gate.deferred import DEFAULT_LEASE_S, codepipeline_approver, describe, work_once
    from .gate.storage import ENV_WORKDIR, opened_store

    lease = os.environ.get("PERFSIG_LEASE", "")
    try:
        lease_s = float(lease) if lease else DEFAULT_LEASE_S
    except ValueError:
        raise PerfsigError(f"PERFSIG_LEASE must be a number of seconds, got {lease!r}") from None
    registry = registry or _registry()
    workdir = Path(os.environ.get(ENV_WORKDIR) or DEFAULT_WORKDIR)
    # An s3:// store is downloaded for this run and saved (merged if need be) after it.
    with opened_store(_store_path(), write=True, workdir=workdir) as store:
        processed = work_once(registry, store, approve=approve or codepipeline_approver(), lease_s=lease_s)
    return {"processed": [describe(p) for p in processed]}


# ------------------------------------------------------------------ self-healing

_receivers: dict[tuple[str, str, str, float, int, int], WebhookReceiver] = {}
_lock = threading.Lock()


def problem_handler(
    event: dict[str, Any],
    context: Any,
    *,
    codedeploy: Any = None,
    http: Any = None,
    secret: str | None = None,
    store_path: str | None = None,
) -> dict[str, Any]:
    """API Gateway proxy event (REST or HTTP API, payload 1.0 or 2.0) -> proxy response.
    Whatever the event holds, the answer is a response: a malformed event is a 400."""
    try:
        receiver = _receiver(secret, store_path, codedeploy, http)
    except RemediationConfigError as exc:
        log.error("perfsig problem handler is not configured: %s", exc)
        return _response(error_reply(500, str(exc), error="not configured"))
    try:
        return _response(_handle(receiver, event))
    except Exception:  # a bug of ours: logged (at most once per interval), answered without detail
        receiver.flood.log("internal errors", logging.ERROR, "perfsig problem handler failed", exc_info=True)
        return _response(error_reply(500, "internal error"))


def _handle(receiver: WebhookReceiver, event: Any) -> Reply:
    if not isinstance(event, dict):
        return receiver.refuse(error_reply(400, "the event is not an API Gateway proxy event"))
    context = event.get("requestContext")
    http_context = context.get("http") if isinstance(context, dict) else None
    method = event.get("httpMethod") or (http_context or {}).get("method") or "POST"
    if str(method).upper() != "POST":
        return error_reply(405, "POST only", error="method not allowed")
    headers = _headers(event)
    if headers is None:
        return receiver.refuse(error_reply(400, "the event's headers are not an object"))
    early = receiver.precheck(headers)
    if early is not None:
        return early
    raw = event.get("body")
    if raw is None:
        raw = ""
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError, TypeError):
            return receiver.refuse(error_reply(400, "invalid base64 body"))
    elif isinstance(raw, str):
        body = raw.encode("utf-8", "surrogatepass")  # a lone surrogate then fails as "not UTF-8"
    elif isinstance(raw, bytes | bytearray):
        body = bytes(raw)
    else:
        return receiver.refuse(error_reply(400, "the event's body is not a string"))
    return receiver.handle(headers, body)


def _receiver(secret: str | None, store_path: str | None, codedeploy: Any, http: Any) -> WebhookReceiver:
    secret = secret if secret is not None else os.environ.get(SECRET_ENV, "")
    store_path = store_path or _store_path()
    if "://" in store_path:
        raise RemediationConfigError(
            f"PERFSIG_STORE={store_path}: the problem handler needs a store file (shared storage "
            "such as EFS); a store synced per run cannot hold its claims"
        )
    prefix = os.environ.get("PERFSIG_PRODUCTION_PREFIX", "Production")
    lease = lease_from_env()
    key = (secret, store_path, prefix, lease, id(codedeploy), id(http))
    with _lock:  # one per container, so its replay memory lasts across invocations
        if key not in _receivers:
            receiver = WebhookReceiver(
                store_path,
                secret=secret,
                codedeploy=codedeploy,
                http=http,
                production_prefix=prefix,
                lease_s=lease,
            )
            _receivers.clear()
            _receivers[key] = receiver
        return _receivers[key]


def _headers(event: dict[str, Any]) -> dict[str, str] | None:
    """Lower-case names; the first of several values. None when they are not objects."""
    single, multiple = event.get("headers") or {}, event.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multiple, dict):
        return None
    headers: dict[str, str] = {}
    for name, values in multiple.items():
        if isinstance(values, list) and values:
            headers[str(name).lower()] = str(values[0])
    for name, value in single.items():
        if value is not None:
            headers[str(name).lower()] = str(value)
    return headers


def _response(reply: Reply) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    if reply.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="perfsig"'
    return {"statusCode": reply.status, "headers": headers, "body": json.dumps(reply.body)}
