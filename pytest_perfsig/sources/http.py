"""The one way HTTP metric sources call their APIs: a GET whose transient failures are retried
and whose failures become SourceErrors naming the source, the URL and the query (with secrets
scrubbed).

Retried, with exponential backoff and jitter, within a bounded time (:class:`RetryPolicy`:
3 attempts, no attempt started more than 10 s after the first): refused or reset connections,
HTTP 429, 502, 503 and 504. A ``Retry-After`` answer is waited for exactly when that fits the
bound; otherwise the call fails at once, saying so. Not retried: time-outs (the attempt already
used the time a retry would need), any other status (400, 401, 403, 404, 500, a rejected
query) and malformed answers. Whatever remains after the retries is an error, never a pass.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import SourceError

__all__ = ["DEFAULT_RETRY", "RETRY_STATUSES", "RetryPolicy", "Sent", "get_json", "send_with_retries"]

#: statuses that mean "not now" rather than "not this": throttled, or a proxy / server overloaded
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: how much of a non-JSON error answer a message quotes
DETAIL_CHARS = 200


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a transient failure is retried."""

    attempts: int = 3
    #: no attempt starts later than this after the first one started
    budget_s: float = 10.0
    #: the first wait's ceiling; each further wait doubles it, up to ``cap_s``
    base_s: float = 0.5
    cap_s: float = 4.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after failed attempt number ``attempt`` (from 1): half the exponential
        ceiling, plus up to as much again at random, so that clients do not retry in step."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + rand() * ceiling / 2


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Sent:
    """The end of a call and its retries: the last response, or the last transport error."""

    response: httpx.Response | None
    error: httpx.HTTPError | None
    attempts: int
    elapsed_s: float
    #: why the retries stopped early ("" when they did not)
    stopped: str = ""

    @property
    def note(self) -> str:
        """``"3 attempts in 1.4 s"`` (with why the retries stopped), or "" for one plain attempt."""
        parts = [self.stopped] if self.stopped else []
        if self.attempts > 1:
            parts.append(f"{self.attempts} attempts in {self.elapsed_s:.1f} s")
        return "; ".join(parts)


def retry_after_s(response: httpx.Response) -> float | None:
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


def _transient(exc: httpx.HTTPError) -> bool:
    # Refused, reset or dropped connections; a time-out is not retried (see the module doc).
    if isinstance(exc, httpx.TimeoutException):
        return False
    return isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError)


def send_with_retries(
    send: Callable[[], httpx.Response],
    policy: RetryPolicy = DEFAULT_RETRY,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Sent:
    """Call ``send`` until it answers with a status that is not transient, fails for good, or
    the policy is spent. Never raises an ``httpx`` error: the last one is in ``Sent.error``."""
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        response: httpx.Response | None = None
        error: httpx.HTTPError | None = None
        try:
            response = send()
        except httpx.HTTPError as exc:
            error = exc
        elapsed = clock() - started
        if error is not None and not _transient(error):
            return Sent(None, error, attempt, elapsed)
        if response is not None and response.status_code not in RETRY_STATUSES:
            return Sent(response, None, attempt, elapsed)
        if attempt >= policy.attempts:
            return Sent(response, error, attempt, elapsed)
        wait = policy.backoff(attempt)
        asked = retry_after_s(response) if response is not None else None
        if asked is not None:
            wait = asked
        if elapsed + wait > policy.budget_s:
            stopped = (
                f"asked to retry after {asked:g} s, beyond the {policy.budget_s:g} s budget"
                if asked is not None
                else f"retry budget of {policy.budget_s:g} s spent"
            )
            return Sent(response, error, attempt, elapsed, stopped)
        sleep(wait)


def detail(response: httpx.Response) -> str:
    """``": <the server's error message>"`` or the start of a non-JSON answer; "" for none."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return f": {text[:DETAIL_CHARS]}" if text else ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if error:
            return f": {str(error)[:DETAIL_CHARS]}"
    return ""


def get_json(
    client: httpx.Client,
    url: str,
    params: Any,
    *,
    name: str,
    timeout_s: float,
    described: str,
    scrub: Callable[[str], str] = lambda text: text,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> tuple[httpx.Response, Any]:
    """(response, decoded JSON body or None). Transient failures are retried (``retry``); what
    is left of them, time-outs and transport errors raise SourceError. Other statuses are
    returned for the caller to judge."""
    sent = send_with_retries(lambda: client.get(url, params=params), retry)
    note = f"; {sent.note}" if sent.note else ""
    if isinstance(sent.error, httpx.TimeoutException):
        raise SourceError(f"{name} at {url} did not answer within {timeout_s:g} s ({described}{note})")
    if sent.error is not None:
        exc = sent.error
        raise SourceError(
            scrub(f"{name} at {url} is unreachable: {type(exc).__name__}: {exc} ({described}{note})")
        )
    response = sent.response
    assert response is not None
    if response.status_code in RETRY_STATUSES:
        raise SourceError(
            scrub(
                f"{name} at {url} answered HTTP {response.status_code}{detail(response)} ({described}{note})"
            )
        )
    try:
        return response, response.json()
    except ValueError:
        return response, None
