"""Requests that never got an answer still count.

When Locust stops its users (the run time is over), a request still waiting for its answer is
killed with the user, and Locust reports nothing for it: a stage that hangs would look like a
stage that was simply quiet. Every HTTP client request runs through a wrapper here; one killed
before its answer is reported as a failed request, its latency the time it was outstanding.

In the closed model every user has one request in flight when the run ends, most of them sent
a few milliseconds earlier: those were cut off, not left unanswered, and only a request
outstanding for ``UNANSWERED_AFTER_S`` (``PERFSIG_UNANSWERED_S``) or more counts. The open
model's scheduler stops its tasks only after their drain time: everything it stops counts
(:func:`count_every_stopped`). Installed in the Locust process by :mod:`.locust_main`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from greenlet import GreenletExit

UNANSWERED_AFTER_S = float(os.environ.get("PERFSIG_UNANSWERED_S", "2"))
_every_stopped = False


def count_every_stopped() -> None:
    """From now on, every request stopped before its answer counts (the open model's drain
    is over: what is still in flight went unanswered)."""
    global _every_stopped
    _every_stopped = True


class UnansweredRequest(Exception):
    """A request still waiting for its answer when the load stopped."""


def _wrap(request: Callable[..., Any], events: Any) -> Callable[..., Any]:
    def wrapped(self: Any, method: Any, url: Any, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        started = time.time()
        try:
            return request(self, method, url, name, *args, **kwargs)
        except GreenletExit:
            outstanding = time.time() - started
            if outstanding < UNANSWERED_AFTER_S and not _every_stopped:
                raise  # cut off by the end of the run, not left unanswered
            events.request.fire(
                request_type=str(method.decode() if isinstance(method, bytes) else method),
                name=str(name or url),
                response_time=outstanding * 1000.0,
                response_length=0,
                response=None,
                context=kwargs.get("context") or {},
                exception=UnansweredRequest(f"no answer after {outstanding:.1f} s, when the load stopped"),
                start_time=started,
                url=str(url),
            )
            raise

    wrapped.__wrapped__ = request  # type: ignore[attr-defined]
    return wrapped


def install(events: Any) -> None:
    """Wrap Locust's HTTP clients (requests-based and fast) once per process."""
    from locust.clients import HttpSession
    from locust.contrib.fasthttp import FastHttpSession

    for session in (HttpSession, FastHttpSession):
        if not hasattr(session.request, "__wrapped__"):
            session.request = _wrap(session.request, events)  # type: ignore[method-assign]
