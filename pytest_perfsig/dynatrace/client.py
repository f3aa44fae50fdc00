"""The one HTTP client of a Dynatrace tenant's REST API, shared by the metric source (reads)
and the deployment events and problem comments (writes).

The token is sent as ``Authorization: Api-Token ...``, comes from ``$DT_API_TOKEN`` unless given,
and is scrubbed from every error message, even when the tenant echoes it back. Proxies from the
environment are not used (``trust_env=False``: a token must not travel through a proxy nobody
configured for it), redirects are not followed, and every call has a timeout. Every failure is a
:class:`~pytest_perfsig.errors.DynatraceError` naming the URL and what was asked.

Reads (GET) whose failure is transient are retried as the metric sources' HTTP calls are
(``sources/http.py``; the two packages may not import each other): refused or reset
connections and HTTP 429, 502, 503, 504, with exponential backoff and jitter, 3 attempts, none
started more than 10 s after the first; a ``Retry-After`` that fits in that time is waited for
exactly, a longer one ends the retries at once. Time-outs, 400, 401, 403, 404 and other statuses
are not retried. Writes (POST) are never retried: an event posted twice is two events.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import DynatraceError

__all__ = ["DEFAULT_RETRY", "DEFAULT_TIMEOUT_S", "TOKEN_ENV", "DynatraceClient", "Retry"]

log = logging.getLogger(__name__)

TOKEN_ENV = "DT_API_TOKEN"
DEFAULT_TIMEOUT_S = 10.0
#: how much of a non-JSON error answer a message quotes
DETAIL_CHARS = 200
#: statuses that mean "not now": throttled (Dynatrace's 429 when its request queue is full), overloaded
RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Retry:
    """How often and how long a transient failure of a read is retried."""

    attempts: int = 3
    #: no attempt starts later than this after the first one started
    budget_s: float = 10.0
    #: the first wait's ceiling; each further wait doubles it, up to ``cap_s``
    base_s: float = 0.5
    cap_s: float = 4.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after failed attempt ``attempt`` (from 1): half the exponential ceiling plus
        up to as much again at random."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + rand() * ceiling / 2


DEFAULT_RETRY = Retry()


class DynatraceClient:
    """GET and POST JSON on one tenant (``https://<tenant>[/e/<environment-id>]``)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        scopes: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        name: str = "dynatrace",
        http: httpx.Client | None = None,
        retry: Retry = DEFAULT_RETRY,
    ) -> None:
        """``scopes`` names the token scopes the caller needs, for the messages that ask for a
        token; ``name`` starts every message; ``http`` replaces the client built here;
        ``retry`` says how transient failures of reads are retried."""
        self.base_url = base_url.rstrip("/")
        self.scopes = scopes
        self.timeout_s = timeout_s
        self.name = name
        self.retry = retry
        self._token = token or None
        self._http = http or httpx.Client(
            timeout=timeout_s,
            headers={"Accept": "application/json"},
            trust_env=False,
            follow_redirects=False,
        )

    @classmethod
    def from_env(
        cls, base_url: str, environ: Mapping[str, str] = os.environ, **options: Any
    ) -> DynatraceClient:
        """A client whose token is ``$DT_API_TOKEN`` (checked when a call is made)."""
        return cls(base_url, environ.get(TOKEN_ENV), **options)

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:  # never the token
        return f"DynatraceClient({self.base_url!r})"

    def scrub(self, text: str) -> str:
        """``text`` with the token replaced by ``***``."""
        return text.replace(self._token, "***") if self._token else text

    def missing_token(self) -> DynatraceError:
        needed = f" with scopes {self.scopes}" if self.scopes else ""
        return DynatraceError(f"{self.name}: ${TOKEN_ENV} is not set: an API token{needed} is needed")

    # ------------------------------------------------------------------ calls

    def get_json(self, path: str, params: Any, *, described: str, scope: str | None = None) -> dict[str, Any]:
        """The JSON object ``GET path?params`` answers; ``described`` says what was asked,
        ``scope`` the token scope it needs (named when the tenant refuses the token)."""
        response = self._send("GET", path, described, scope, params=params)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise DynatraceError(
                f"{self.name} at {self.base_url + path}: malformed answer (not a JSON object) to {described}"
            )
        return body

    def post_json(self, path: str, body: dict[str, Any], *, described: str) -> dict[str, Any]:
        """``POST path`` with a JSON body; the answer's JSON object, or ``{}`` when it has none
        (the write was accepted: its answer only informs)."""
        response = self._send("POST", path, described, None, json=body)
        try:
            answer = response.json()
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def _send(
        self, method: str, path: str, described: str, scope: str | None, **request: Any
    ) -> httpx.Response:
        url = self.base_url + path
        if self._token is None:
            raise self.missing_token()
        headers = {"Authorization": f"Api-Token {self._token}"}
        started = time.monotonic()
        attempts = self.retry.attempts if method == "GET" else 1
        attempt = 0
        while True:
            attempt += 1
            log.debug("%s: %s %s (%s), attempt %d", self.name, method, url, described, attempt)
            response, failure = self._attempt(method, url, described, headers, request)
            if response is not None and response.status_code not in RETRY_STATUSES:
                break
            if response is not None:
                failure = f"answered HTTP {response.status_code}{_detail(response)}"
            wait, stopped = self._next_wait(attempt, attempts, started, response)
            if wait is None:
                raise DynatraceError(
                    self.scrub(
                        f"{self.name} at {url} {failure} ({described}{_note(attempt, started, stopped)})"
                    )
                )
            time.sleep(wait)
        if not response.is_success:
            raise DynatraceError(
                self.scrub(
                    f"{self.name} at {url} answered HTTP {response.status_code}{_detail(response)}"
                    f"{self._refused(response.status_code, scope)} ({described}{_note(attempt, started)})"
                )
            )
        return response

    def _attempt(
        self, method: str, url: str, described: str, headers: dict[str, str], request: dict[str, Any]
    ) -> tuple[httpx.Response | None, str]:
        """One request: (its response, "") or, for a refused or reset connection, (None, why)."""
        try:
            return self._http.request(method, url, headers=headers, **request), ""
        except httpx.TimeoutException:  # not retried: the attempt used the time a retry would need
            raise DynatraceError(
                f"{self.name} at {url} did not answer within {self.timeout_s:g} s ({described})"
            ) from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            return None, f"is unreachable: {type(exc).__name__}: {exc}"
        except httpx.HTTPError as exc:  # from None: the chain would carry the request and its token
            raise DynatraceError(
                self.scrub(f"{self.name} at {url} is unreachable: {type(exc).__name__}: {exc} ({described})")
            ) from None

    def _next_wait(
        self, attempt: int, attempts: int, started: float, response: httpx.Response | None
    ) -> tuple[float | None, str]:
        """(seconds to wait before the next attempt, or None to stop; why it stopped early)."""
        if attempt >= attempts:
            return None, ""
        asked = _retry_after_s(response) if response is not None else None
        wait = asked if asked is not None else self.retry.backoff(attempt)
        if time.monotonic() - started + wait <= self.retry.budget_s:
            return wait, ""
        if asked is not None:
            return (
                None,
                f"asked to retry after {asked:g} s, beyond the {self.retry.budget_s:g} s retry budget",
            )
        return None, f"retry budget of {self.retry.budget_s:g} s spent"

    def _refused(self, status: int, scope: str | None) -> str:
        """What a 401 or 403 means for the token; with the scope the call needs, which it is."""
        if status not in {401, 403}:
            return ""
        if scope is None:
            return f" (check ${TOKEN_ENV} and its scopes{': ' + self.scopes if self.scopes else ''})"
        if status == 401:
            return (
                f" (${TOKEN_ENV} is not a valid token for this tenant: check it, and that it has not expired)"
            )
        return f" (the token in ${TOKEN_ENV} lacks the scope {scope})"


def _note(attempt: int, started: float, stopped: str = "") -> str:
    """``"; <why the retries stopped>; 3 attempts in 1.4 s"``, or "" for one plain attempt."""
    parts = [stopped] if stopped else []
    if attempt > 1:
        parts.append(f"{attempt} attempts in {time.monotonic() - started:.1f} s")
    return "".join(f"; {part}" for part in parts)


def _retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(response: httpx.Response) -> str:
    """``": <the tenant's error message>"``, or the start of a non-JSON answer; "" for none."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return f": {text[:DETAIL_CHARS]}" if text else ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return f": {body['error'].get('message', '')}"
    return ""
