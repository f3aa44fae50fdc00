"""Refusals: the receiver's answer to a request it does not act on, and log lines that a flood
cannot multiply (each kind of event is written at most once per interval, with a count of the
ones left out).

The HTTP front, the Starlette app and the Lambda handler all answer with :class:`Reply` and log
through one :class:`RateLimitedLog` per receiver.
"""

from __future__ import annotations

import http
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["LOG_INTERVAL_S", "RateLimitedLog", "Reply", "error_reply", "reason_phrase"]

#: a kind of event (refusals with one status, dropped connections...) is logged once per interval
LOG_INTERVAL_S = 10.0

_ERROR_NAMES = {
    400: "bad request",
    401: "unauthorized",
    404: "not found",
    405: "method not allowed",
    408: "request timeout",
    413: "payload too large",
    431: "request header fields too large",
    500: "internal error",
    503: "unavailable",
}


@dataclass(frozen=True)
class Reply:
    """A status and a JSON body."""

    status: int
    body: dict[str, Any]

    def headers(self) -> list[tuple[str, str]]:
        headers = [("content-type", "application/json"), ("cache-control", "no-store")]
        if self.status == 401:
            headers.append(("www-authenticate", 'Bearer realm="perfsig"'))
        return headers

    def header_bytes(self) -> list[tuple[bytes, bytes]]:
        return [(name.encode(), value.encode()) for name, value in self.headers()]

    def encoded(self) -> bytes:
        return json.dumps(self.body).encode()

    def as_http(self) -> bytes:
        """The whole HTTP/1.1 response, closing the connection: for a client that sent no
        request to answer."""
        body = self.encoded()
        head = [f"HTTP/1.1 {self.status} {reason_phrase(self.status).decode()}"]
        head += [f"{name}: {value}" for name, value in self.headers()]
        head += [f"content-length: {len(body)}", "connection: close", "", ""]
        return "\r\n".join(head).encode() + body


def reason_phrase(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def error_reply(status: int, reason: str, *, error: str | None = None) -> Reply:
    """A refusal: ``{"status": "rejected", "error": ..., "reason": ...}``."""
    name = error or _ERROR_NAMES.get(status, "error")
    return Reply(status, {"status": "rejected", "error": name, "reason": reason})


@dataclass
class _Kind:
    last: float
    left_out: int = 0


class RateLimitedLog:
    """Writes the first event of a kind in each interval; counts the others and says how many
    there were with the next line of that kind, or at :meth:`flush` once the interval ran out.

    ``kind`` names a bounded family of events ("refused problem notifications (HTTP 401)"),
    never something a client chooses, so the bookkeeping stays small however many come.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}
        self._levels: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, kind: str, level: int, message: str, *args: Any, exc_info: bool = False) -> None:
        now = self._clock()
        with self._lock:
            state = self._kinds.get(kind)
            if state is not None and now - state.last < self.interval_s:
                state.left_out += 1
                self._levels[kind] = max(self._levels.get(kind, level), level)
                return
            self._kinds[kind] = _Kind(last=now)
            left_level = self._levels.pop(kind, level)
        if state is not None and state.left_out:
            self._summary(kind, left_level, state.left_out, now - state.last)
        self.logger.log(level, message, *args, exc_info=exc_info)

    def flush(self) -> None:
        """Write the counts of kinds whose interval ran out (the front calls this regularly)."""
        now = self._clock()
        due: list[tuple[str, int, int, float]] = []
        with self._lock:
            for kind, state in self._kinds.items():
                if state.left_out and now - state.last >= self.interval_s:
                    due.append((kind, self._levels.pop(kind, logging.INFO), state.left_out, now - state.last))
                    state.last, state.left_out = now, 0
        for kind, level, left_out, elapsed in due:
            self._summary(kind, level, left_out, elapsed)

    def _summary(self, kind: str, level: int, count: int, elapsed: float) -> None:
        self.logger.log(
            level,
            "%d more %s in the last %.0f s (logged once per %g s)",
            count,
            kind,
            elapsed,
            self.interval_s,
        )
