"""The self-healing receiver as an AWS Lambda function behind API Gateway (proxy integration):
the original system's ``handleDynatraceProblemNotification``, with authentication.

Configuration by environment variables:
- ``PERFSIG_WEBHOOK_SECRET``: the shared secret (required; without it every request gets a 500
  that says so, and nothing is done);
- ``PERFSIG_STORE``: the SQLite store with the deployment events (shared storage such as EFS;
  default ``/tmp/perfsig.db``);
- ``PERFSIG_PRODUCTION_PREFIX``: environments whose name starts with it are rolled back
  (default ``Production``).

Replay protection remembers signatures per execution environment (container): concurrent
containers do not share that memory; see docs/self-healing.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from typing import Any

from .server import SECRET_ENV, RemediationConfigError, Reply, WebhookReceiver, error_reply

__all__ = ["problem_handler"]

log = logging.getLogger("pytest_perfsig.remediation")

_receivers: dict[tuple[str, str, str, int, int], WebhookReceiver] = {}
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
    """API Gateway proxy event (REST or HTTP API, payload 1.0 or 2.0) -> proxy response."""
    try:
        receiver = _receiver(secret, store_path, codedeploy, http)
    except RemediationConfigError as exc:
        log.error("perfsig problem handler is not configured: %s", exc)
        return _response(error_reply(500, str(exc), error="not configured"))
    method = (
        event.get("httpMethod")
        or ((event.get("requestContext") or {}).get("http") or {}).get("method")
        or "POST"
    )
    if str(method).upper() != "POST":
        return _response(error_reply(405, "POST only", error="method not allowed"))
    headers = _headers(event)
    early = receiver.precheck(headers)
    if early is not None:
        return _response(early)
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return _response(error_reply(400, "invalid base64 body"))
    else:
        body = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    return _response(receiver.handle(headers, body))


def _receiver(secret: str | None, store_path: str | None, codedeploy: Any, http: Any) -> WebhookReceiver:
    secret = secret if secret is not None else os.environ.get(SECRET_ENV, "")
    store_path = store_path or os.environ.get("PERFSIG_STORE", "/tmp/perfsig.db")
    prefix = os.environ.get("PERFSIG_PRODUCTION_PREFIX", "Production")
    key = (secret, store_path, prefix, id(codedeploy), id(http))
    with _lock:  # one per container, so its replay memory lasts across invocations
        if key not in _receivers:
            receiver = WebhookReceiver(
                store_path, secret=secret, codedeploy=codedeploy, http=http, production_prefix=prefix
            )
            _receivers.clear()
            _receivers[key] = receiver
        return _receivers[key]


def _headers(event: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if values:
            headers[str(name).lower()] = str(values[0])
    for name, value in (event.get("headers") or {}).items():
        if value is not None:
            headers[str(name).lower()] = str(value)
    return headers


def _response(reply: Reply) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    if reply.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="perfsig"'
    return {"statusCode": reply.status, "headers": headers, "body": json.dumps(reply.body)}
