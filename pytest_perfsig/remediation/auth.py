"""The receiver's authentication: one shared secret (``PERFSIG_WEBHOOK_SECRET``), presented as
``Authorization: Bearer <secret>`` or as a signature of the body::

    X-Perfsig-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

A signature is accepted within :data:`SIGNATURE_TOLERANCE_S` of its timestamp, and once: the
signatures accepted are remembered (in memory, until they expire), so a captured request cannot
be replayed. Everything that can be checked without the body (a credential is there, a bearer
token is right, a signature is well formed, fresh and not a replay) is checked by
:meth:`Authenticator.precheck`, so that a request failing it is refused before its body is read.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Callable, Mapping

from ..errors import PerfsigError

__all__ = [
    "MAX_REMEMBERED_SIGNATURES",
    "MIN_SECRET_LENGTH",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_S",
    "AuthError",
    "Authenticator",
    "RemediationConfigError",
    "check_secret",
    "secret_from_env",
    "sign",
]

SECRET_ENV = "PERFSIG_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Perfsig-Signature"
SIGNATURE_TOLERANCE_S = 300
MIN_SECRET_LENGTH = 16
#: accepted signatures remembered at most (each for SIGNATURE_TOLERANCE_S); when full, signed
#: requests are refused (503) rather than forgetting one that could then be replayed
MAX_REMEMBERED_SIGNATURES = 10_000

# ASCII only: str.isdigit() also accepts "²" and "١", which int() then refuses
_STAMP = re.compile(r"[0-9]{1,12}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MALFORMED = f"malformed {SIGNATURE_HEADER}: expected t=<unix seconds>,v1=<64 hex digits>"


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


def _parse_signature(header: str) -> tuple[int, list[str]]:
    stamp: int | None = None
    candidates: list[str] = []
    for part in header.split(",")[:16]:
        key, _, value = part.strip().partition("=")
        value = value.strip().lower()
        if key == "t" and _STAMP.fullmatch(value):
            stamp = int(value)
        elif key == "v1" and _DIGEST.fullmatch(value):
            candidates.append(value)
    if stamp is None or not candidates:
        raise AuthError(_MALFORMED)
    return stamp, candidates


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
        self._pruned = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the secret
        return f"Authenticator(tolerance_s={self.tolerance_s})"

    def precheck(self, headers: Mapping[str, str]) -> None:
        """All that can be checked before the body is read: a credential is presented, a bearer
        token is right, a signature is well formed, within the tolerance and not a replay."""
        authorization = headers.get("authorization")
        signature = headers.get(SIGNATURE_HEADER.lower())
        if authorization is None and signature is None:
            raise AuthError(f"missing credentials: Authorization: Bearer or {SIGNATURE_HEADER}")
        if authorization is not None:
            self._check_bearer(authorization)
        if signature is not None:
            stamp, candidates = _parse_signature(signature)
            self._check_stamp(stamp)
            with self._lock:
                if any(candidate in self._seen for candidate in candidates):
                    raise AuthError("signature already used (replay)")

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        """Every credential presented must be valid, and one must be presented."""
        self.precheck(headers)
        signature = headers.get(SIGNATURE_HEADER.lower())
        if signature is not None:
            self._check_signature(signature, body)

    def _check_bearer(self, authorization: str) -> None:
        scheme, _, token = authorization.strip().partition(" ")
        # surrogatepass: a header decoded from JSON may hold lone surrogates; they never match
        given = hashlib.sha256(token.strip().encode("utf-8", "surrogatepass")).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self._secret_digest):
            raise AuthError("invalid credentials")

    def _check_stamp(self, stamp: int) -> None:
        if abs(self._clock() - stamp) > self.tolerance_s:
            raise AuthError(f"signature timestamp outside the {self.tolerance_s:g} s tolerance")

    def _check_signature(self, header: str, body: bytes) -> None:
        stamp, candidates = _parse_signature(header)
        self._check_stamp(stamp)
        expected = hmac.new(self._secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(c.encode(), expected.encode()) for c in candidates):
            raise AuthError("invalid signature")
        now = self._clock()
        with self._lock:
            if now - self._pruned >= 1.0:  # at most once a second: a flood must not make it O(n²)
                self._pruned = now
                for key, expires in list(self._seen.items()):
                    if expires < now:
                        del self._seen[key]
            if expected in self._seen:
                raise AuthError("signature already used (replay)")
            if len(self._seen) >= self._max_remembered:
                raise AuthError("too many signed requests to remember; retry later", status=503)
            self._seen[expected] = stamp + self.tolerance_s
