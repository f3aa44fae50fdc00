"""Requests that never got an answer still count.

When Locust stops its users (the run time is over), a request still waiting for its answer is
killed with the user, and Locust reports nothing for it: a stage that hangs would look like a
stage that was simply quiet. Every HTTP client request runs through a wrapper here; one killed
before its answer is reported as a failed request, its latency the time it was outstanding.
Installed in the Locust process by :mod:`.locust_main`, for any locustfile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from greenlet import GreenletExit


class UnansweredRequest(Exception):
    """A request still waiting for its answer when the load stopped."""


def _wrap(request: Callable[..., Any], events: Any) -> Callable[..., Any]:
    def wrapped(self: Any, method: Any, url: Any, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        started = time.time()
        try:
            return request(self, method, url, name, *args, **kwargs)
        except GreenletExit:
            outstanding = time.time() - started
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
