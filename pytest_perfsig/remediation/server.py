"""The self-healing webhook receiver: ``POST /problems`` (Starlette), and the request handling
it shares with the Lambda handler (authentication, size limit, JSON, payload, decision).

Authentication uses one shared secret (``PERFSIG_WEBHOOK_SECRET``), presented either as
``Authorization: Bearer <secret>`` (what Dynatrace custom integrations and Alertmanager's
``http_config.authorization`` send) or as a signature of the body::

    X-Perfsig-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

A signature is accepted within :data:`SIGNATURE_TOLERANCE_S` of its timestamp, and once: the
receiver remembers the signatures it accepted (in memory, until they expire), so a captured
request cannot be replayed. Several replicas each have their own memory: behind a load
balancer they need a shared store for it (see docs/self-healing.md).

Starlette and uvicorn are imported when the app is created, not with this module, so the Lambda
handler does not need them.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PerfsigError
from ..store import DEFAULT_STORE_PATH, SqliteStore
from .payloads import PayloadError, Problem, parse_problem
from .rollback import Outcome, remediate

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "DEFAULT_MAX_BODY",
    "MIN_SECRET_LENGTH",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_S",
    "AuthError",
    "Authenticator",
    "RemediationConfigError",
    "WebhookReceiver",
    "create_app",
    "secret_from_env",
    "serve",
    "sign",
]

log = logging.getLogger("pytest_perfsig.remediation")

SECRET_ENV = "PERFSIG_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Perfsig-Signature"
SIGNATURE_TOLERANCE_S = 300
DEFAULT_MAX_BODY = 64 * 1024
MIN_SECRET_LENGTH = 16
#: accepted signatures remembered at most (each for SIGNATURE_TOLERANCE_S); when full, signed
#: requests are refused (503) rather than forgetting one that could then be replayed
MAX_REMEMBERED_SIGNATURES = 10_000
DEFAULT_PORT = 8787


class RemediationConfigError(PerfsigError):
    """The receiver cannot start: no secret, an unusable store, a missing dependency."""


class AuthError(Exception):
    """A request without valid credentials (HTTP 401, or 503 when the replay memory is full)."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def secret_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The shared secret from ``PERFSIG_WEBHOOK_SECRET``; a clear error without a usable one."""
    secret = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    return check_secret(secret)


def check_secret(secret: str | None) -> str:
    if not secret or not secret.strip():
        raise RemediationConfigError(
            f"the self-healing receiver needs a shared secret: set {SECRET_ENV} "
            "(e.g. to the output of `openssl rand -hex 32`); it refuses to start without one"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise RemediationConfigError(
            f"{SECRET_ENV} is too short: use at least {MIN_SECRET_LENGTH} characters "
            "(e.g. `openssl rand -hex 32`)"
        )
    return secret


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Perfsig-Signature`` value for a body (what a sender computes)."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


class Authenticator:
    """Bearer token or HMAC signature with a timestamp tolerance and replay protection."""

    def __init__(
        self,
        secret: str,
        *,
        tolerance_s: float = SIGNATURE_TOLERANCE_S,
        clock: Callable[[], float] = time.time,
        max_remembered: int = MAX_REMEMBERED_SIGNATURES,
    ) -> None:
        self._secret = check_secret(secret).encode()
        self._secret_digest = hashlib.sha256(self._secret).digest()
        self.tolerance_s = tolerance_s
        self._clock = clock
        self._max_remembered = max_remembered
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the secret
        return f"Authenticator(tolerance_s={self.tolerance_s})"

    def precheck(self, headers: Mapping[str, str]) -> None:
        """What can be checked before the body is read: some credential is present, and a
        bearer token (when it is the only credential) is right."""
        authorization = headers.get("authorization")
        signature = headers.get(SIGNATURE_HEADER.lower())
        if authorization is None and signature is None:
            raise AuthError(f"missing credentials: Authorization: Bearer or {SIGNATURE_HEADER}")
        if authorization is not None:
            self._check_bearer(authorization)

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        """Every credential presented must be valid, and one must be presented."""
        self.precheck(headers)
        signature = headers.get(SIGNATURE_HEADER.lower())
        if signature is not None:
            self._check_signature(signature, body)

    def _check_bearer(self, authorization: str) -> None:
        scheme, _, token = authorization.strip().partition(" ")
        given = hashlib.sha256(token.strip().encode()).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self._secret_digest):
            raise AuthError("invalid credentials")

    def _check_signature(self, header: str, body: bytes) -> None:
        stamp: int | None = None
        candidates: list[str] = []
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key == "t" and value.isdigit() and len(value) <= 12:
                stamp = int(value)
            elif key == "v1" and value:
                candidates.append(value.strip().lower())
        if stamp is None or not candidates:
            raise AuthError(f"malformed {SIGNATURE_HEADER}: expected t=<unix seconds>,v1=<hex>")
        now = self._clock()
        if abs(now - stamp) > self.tolerance_s:
            raise AuthError(f"signature timestamp outside the {self.tolerance_s:g} s tolerance")
        expected = hmac.new(self._secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(c.encode(), expected.encode()) for c in candidates):
            raise AuthError("invalid signature")
        with self._lock:
            for key, expires in list(self._seen.items()):
                if expires < now:
                    del self._seen[key]
            if expected in self._seen:
                raise AuthError("signature already used (replay)")
            if len(self._seen) >= self._max_remembered:
                raise AuthError("too many signed requests to remember; retry later", status=503)
            self._seen[expected] = stamp + self.tolerance_s


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


class WebhookReceiver:
    """Everything between an HTTP request and the remediation decision, without a framework:
    the Starlette app and the Lambda handler both call :meth:`precheck` and :meth:`handle`."""

    def __init__(
        self,
        store_path: str | Path,
        *,
        secret: str,
        codedeploy: Any = None,
        http: Any = None,
        production_prefix: str = "Production",
        max_body: int = DEFAULT_MAX_BODY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_body <= 0:
            raise RemediationConfigError(f"max_body must be positive, not {max_body}")
        self.auth = Authenticator(secret, clock=clock)
        self.store_path = Path(store_path)
        self.codedeploy = codedeploy
        self.http = http
        self.production_prefix = production_prefix
        self.max_body = max_body
        self.clock = clock
        try:  # refuse to start with a store that cannot be opened, not at the first problem
            SqliteStore(self.store_path).close()
        except PerfsigError as exc:
            raise RemediationConfigError(str(exc)) from exc

    def __repr__(self) -> str:
        return f"WebhookReceiver(store_path={str(self.store_path)!r})"

    def precheck(self, headers: Mapping[str, str]) -> Reply | None:
        """Before reading the body: declared size, presence of credentials, a bearer token."""
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return error_reply(400, "invalid Content-Length")
            if int(length) > self.max_body:
                return self.too_large()
        try:
            self.auth.precheck(headers)
        except AuthError as exc:
            return self._unauthorized(exc)
        return None

    def too_large(self) -> Reply:
        return error_reply(413, f"body larger than {self.max_body} bytes")

    def handle(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """Authenticate, decode, parse and act; ``headers`` must be looked up case-insensitively
        (lower-case keys)."""
        if len(body) > self.max_body:
            return self.too_large()
        try:
            self.auth.authenticate(headers, body)
        except AuthError as exc:
            return self._unauthorized(exc)
        try:
            document = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            return error_reply(400, "malformed JSON: the body is not UTF-8")
        except ValueError as exc:
            return error_reply(400, f"malformed JSON: {exc}")
        try:
            with SqliteStore(self.store_path) as store:
                known_envs = {event.env for event in store.deployment_events(limit=200)}
                problem = parse_problem(
                    document, known_envs=known_envs, production_prefix=self.production_prefix
                )
                outcome = remediate(
                    problem,
                    store,
                    codedeploy=self.codedeploy,
                    http=self.http,
                    production_prefix=self.production_prefix,
                    clock=self.clock,
                )
        except PayloadError as exc:
            return error_reply(400, str(exc))
        except PerfsigError as exc:
            log.error("remediation failed: %s", exc)
            return error_reply(500, f"remediation failed: {exc}")
        if outcome.status == "error":
            log.error("problem %r: %s", outcome.problem_id, outcome.reason)
        comment_on_problem(problem, outcome)
        return Reply(outcome.http_status, outcome.to_json())

    def _unauthorized(self, exc: AuthError) -> Reply:
        log.warning("refused a problem notification: %s", exc.reason)
        return error_reply(
            exc.status, exc.reason, error="unauthorized" if exc.status == 401 else "unavailable"
        )


def comment_on_problem(problem: Problem, outcome: Outcome) -> None:
    """Tell Dynatrace what was done (as the original Lambda did), when it is configured and
    the problem came from it. Best effort: a failed comment never changes the outcome."""
    from ..dynatrace.events import DynatraceEvents

    if problem.source != "dynatrace" or outcome.status in ("test", "already_handled"):
        return
    problem_id = str(problem.raw.get("ProblemID") or problem.problem_id)
    try:
        dynatrace = DynatraceEvents.from_env()
        if dynatrace is not None:
            try:
                dynatrace.comment_on_problem(
                    problem_id, f"pytest-perfsig: {outcome.status}: {outcome.reason}"
                )
            finally:
                dynatrace.close()
    except PerfsigError as exc:
        log.warning("could not comment on problem %r: %s", problem_id, exc)


def error_reply(status: int, reason: str, *, error: str | None = None) -> Reply:
    """A refusal: ``{"status": "rejected", "error": ..., "reason": ...}``."""
    names = {400: "bad request", 413: "payload too large", 500: "internal error"}
    return Reply(
        status, {"status": "rejected", "error": error or names.get(status, "error"), "reason": reason}
    )


# ------------------------------------------------------------------ Starlette


def create_app(
    store_path: str | Path,
    *,
    secret: str,
    codedeploy: Any = None,
    http: Any = None,
    production_prefix: str = "Production",
    max_body: int = DEFAULT_MAX_BODY,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver as an ASGI app: ``POST /problems`` and ``GET /health``.

    ``secret`` is required (see :func:`secret_from_env`); ``codedeploy`` a boto3 CodeDeploy
    client and ``http`` an ``httpx.Client`` for remediation URLs (both created on demand).
    """
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError as exc:
        raise RemediationConfigError(
            "the self-healing receiver needs Starlette: pip install 'pytest-perfsig[app]'"
        ) from exc

    receiver = WebhookReceiver(
        store_path,
        secret=secret,
        codedeploy=codedeploy,
        http=http,
        production_prefix=production_prefix,
        max_body=max_body,
        clock=clock,
    )

    def respond(reply: Reply) -> Response:
        headers = {"Cache-Control": "no-store"}
        if reply.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="perfsig"'
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)

    async def problems(request: Request) -> Response:
        early = receiver.precheck(request.headers)
        if early is not None:
            return respond(early)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():  # a lying or absent Content-Length ends here
            size += len(chunk)
            if size > receiver.max_body:
                return respond(receiver.too_large())
            chunks.append(chunk)
        reply = await run_in_threadpool(receiver.handle, request.headers, b"".join(chunks))
        return respond(reply)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[Route("/problems", problems, methods=["POST"]), Route("/health", health, methods=["GET"])]
    )
    app.state.receiver = receiver
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    store_path: str | Path = DEFAULT_STORE_PATH,
    *,
    secret: str | None = None,
    production_prefix: str = "Production",
    max_body: int = DEFAULT_MAX_BODY,
    log_level: str = "info",
) -> None:
    """Run the receiver with uvicorn until interrupted (``perfsig remediate serve``).

    The secret comes from ``PERFSIG_WEBHOOK_SECRET`` unless given; without one (or with a store
    that cannot be opened) this raises :class:`RemediationConfigError` before listening.
    """
    secret = check_secret(secret) if secret is not None else secret_from_env()
    app = create_app(store_path, secret=secret, production_prefix=production_prefix, max_body=max_body)
    try:
        import uvicorn
    except ImportError as exc:
        raise RemediationConfigError(
            "the self-healing receiver needs uvicorn: pip install 'pytest-perfsig[app]'"
        ) from exc
    if not log.handlers and not logging.getLogger().handlers:  # decisions and refusals: stderr
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(log_level.upper() if log_level.upper() in logging.getLevelNamesMapping() else "INFO")
    if not _is_loopback(host):
        log.warning(
            "perfsig remediate: listening on %s: terminate TLS in front of it, the bearer secret "
            "travels in every request",
            host,
        )
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
