"""The self-healing webhook receiver: ``POST /problems`` (Starlette), the request handling it
shares with the Lambda handler (authentication, size limit, JSON, payload, decision), and
:func:`serve`, which runs it behind the HTTP front of :mod:`.front`.

Authentication is :mod:`.auth`'s; refusals and their rate-limited log lines are
:mod:`.refusals`'. Starlette and h11 are imported when the app is created or served, not with
this module, so the Lambda handler needs neither.
"""

from __future__ import annotations

import importlib
import ipaddress
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PerfsigError
from ..store import DEFAULT_STORE_PATH, SqliteStore
from .auth import (
    MIN_SECRET_LENGTH,
    SECRET_ENV,
    SIGNATURE_HEADER,
    SIGNATURE_TOLERANCE_S,
    Authenticator,
    AuthError,
    RemediationConfigError,
    check_secret,
    secret_from_env,
    sign,
)
from .payloads import PayloadError, Problem, decode_json, parse_problem
from .refusals import RateLimitedLog, Reply, error_reply
from .rollback import DEFAULT_LEASE_S, Outcome, remediate

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "DEFAULT_MAX_BODY",
    "LEASE_ENV",
    "MIN_SECRET_LENGTH",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_S",
    "AuthError",
    "Authenticator",
    "RemediationConfigError",
    "Reply",
    "WebhookReceiver",
    "create_app",
    "error_reply",
    "lease_from_env",
    "secret_from_env",
    "serve",
    "sign",
]

log = logging.getLogger("pytest_perfsig.remediation")

DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_PORT = 8787
#: seconds a claimed problem stays with the receiver deciding it (see rollback.DEFAULT_LEASE_S)
LEASE_ENV = "PERFSIG_REMEDIATION_LEASE"
_LENGTH = re.compile(r"[0-9]+")


def lease_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``PERFSIG_REMEDIATION_LEASE`` in seconds, else :data:`~.rollback.DEFAULT_LEASE_S`."""
    text = (os.environ if environ is None else environ).get(LEASE_ENV, "").strip()
    if not text:
        return DEFAULT_LEASE_S
    try:
        lease = float(text)
    except ValueError:
        lease = -1.0
    if not 0 < lease < float("inf"):
        raise RemediationConfigError(f"{LEASE_ENV} must be a positive number of seconds, not {text[:20]!r}")
    return lease


class WebhookReceiver:
    """Everything between an HTTP request and the remediation decision, without a framework:
    the HTTP front, the Starlette app and the Lambda handler call :meth:`precheck` (before the
    body) and :meth:`handle`."""

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
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        if max_body <= 0:
            raise RemediationConfigError(f"max_body must be positive, not {max_body}")
        if not 0 < lease_s < float("inf"):
            raise RemediationConfigError(f"the lease must be a positive number of seconds, not {lease_s}")
        self.auth = Authenticator(secret, clock=clock)
        self.store_path = Path(store_path)
        self.codedeploy = codedeploy
        self.http = http
        self.production_prefix = production_prefix
        self.max_body = max_body
        self.clock = clock
        self.lease_s = lease_s
        self.flood = RateLimitedLog(log)
        try:  # refuse to start with a store that cannot be opened, not at the first problem
            SqliteStore(self.store_path).close()
        except PerfsigError as exc:
            raise RemediationConfigError(str(exc)) from exc

    def __repr__(self) -> str:
        return f"WebhookReceiver(store_path={str(self.store_path)!r})"

    def precheck(self, headers: Mapping[str, str]) -> Reply | None:
        """Before reading the body: declared size and credentials (see Authenticator.precheck)."""
        length = headers.get("content-length")
        if length is not None:
            length = length.strip()
            if not _LENGTH.fullmatch(length):  # ASCII digits only: int() refuses "²"
                return self.refuse(error_reply(400, "invalid Content-Length"))
            if len(length) > 15 or int(length) > self.max_body:
                return self.too_large()
        try:
            self.auth.precheck(headers)
        except AuthError as exc:
            return self._unauthorized(exc)
        return None

    def too_large(self) -> Reply:
        return self.refuse(error_reply(413, f"body larger than {self.max_body} bytes"))

    def refuse(self, reply: Reply) -> Reply:
        """Log a refusal (once per interval and status, with a count of the others) and return it."""
        self.flood.log(
            f"refused problem notifications (HTTP {reply.status})",
            logging.WARNING,
            "refused a problem notification: %s (HTTP %d)",
            reply.body.get("reason"),
            reply.status,
        )
        return reply

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
            document = decode_json(body.decode("utf-8"))
        except UnicodeDecodeError:
            return self.refuse(error_reply(400, "malformed JSON: the body is not UTF-8"))
        except PayloadError as exc:
            return self.refuse(error_reply(400, str(exc)))
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
                    lease_s=self.lease_s,
                )
        except PayloadError as exc:
            return self.refuse(error_reply(400, str(exc)))
        except PerfsigError as exc:
            log.error("remediation failed: %s", exc)
            return error_reply(500, f"remediation failed: {exc}")
        if outcome.status == "error":
            log.error("problem %r: %s", outcome.problem_id, outcome.reason)
        comment_on_problem(problem, outcome)
        return Reply(outcome.http_status, outcome.to_json())

    def _unauthorized(self, exc: AuthError) -> Reply:
        error = "unauthorized" if exc.status == 401 else "unavailable"
        return self.refuse(error_reply(exc.status, exc.reason, error=error))


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
    lease_s: float = DEFAULT_LEASE_S,
) -> Starlette:
    """The receiver as an ASGI app: ``POST /problems`` and ``GET /health``.

    ``secret`` is required (see :func:`secret_from_env`); ``codedeploy`` a boto3 CodeDeploy
    client and ``http`` an ``httpx.Client`` for remediation URLs (both created on demand).
    Served by another ASGI server, the app has that server's limits: :func:`serve` puts the
    front of :mod:`.front` before it (read deadlines, connection cap).
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
        lease_s=lease_s,
    )

    def respond(reply: Reply) -> Response:
        headers = {name: value for name, value in reply.headers() if name != "content-type"}
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
    lease_s: float | None = None,
    max_connections: int | None = None,
    header_timeout_s: float | None = None,
    body_timeout_s: float | None = None,
) -> None:
    """Run the receiver until SIGTERM or SIGINT (``perfsig remediate serve``).

    The secret comes from ``PERFSIG_WEBHOOK_SECRET`` unless given, the lease from
    ``PERFSIG_REMEDIATION_LEASE`` (else 900 s); the front's limits default to
    :class:`.front.Limits`'. Without a secret, with a store that cannot be opened or a bad
    setting this raises :class:`RemediationConfigError` before listening.
    """
    secret = check_secret(secret) if secret is not None else secret_from_env()
    lease = lease_s if lease_s is not None else lease_from_env()
    app = create_app(
        store_path, secret=secret, production_prefix=production_prefix, max_body=max_body, lease_s=lease
    )
    receiver: WebhookReceiver = app.state.receiver
    try:
        from . import front
    except ImportError as exc:
        raise RemediationConfigError(
            "the self-healing receiver needs h11: pip install 'pytest-perfsig[app]'"
        ) from exc
    default = front.Limits()
    limits = front.Limits(
        max_connections=default.max_connections if max_connections is None else max_connections,
        header_timeout_s=default.header_timeout_s if header_timeout_s is None else header_timeout_s,
        body_timeout_s=default.body_timeout_s if body_timeout_s is None else body_timeout_s,
        max_body=max_body,
    )
    limits.check()
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

    def precheck(method: str, path: str, headers: Mapping[str, str]) -> Reply | None:
        return receiver.precheck(headers) if (method, path) == ("POST", "/problems") else None

    # imported now rather than while the first notification waits (httpx: about 0.2 s)
    importlib.import_module("pytest_perfsig.dynatrace.events")

    front.run(app, precheck, host=host, port=port, limits=limits, flood=receiver.flood)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
