"""Prometheus instrumentation of the sample app: what the ``prometheus://`` metric source reads.

Every request except ``/metrics`` and ``/health`` is counted and timed, labelled with

- ``endpoint``: the path of the route that answered (no query string: ``/api/invoke``), or
  ``other`` for paths no route knows (a 404 must not create a series per scanned URL);
- ``status``: the HTTP status sent, ``500`` when the app raised before answering;
- ``stage`` and ``build``: the app's stage and the build running when the request arrived
  (``/api/version`` switches builds of a running app).

Each app has its own ``CollectorRegistry``: tests run many apps in one process, and the default
global registry would refuse a second set of metrics with the same names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRICS_PATH = "/metrics"
EXCLUDED_PATHS = frozenset({METRICS_PATH, "/health"})
OTHER_ENDPOINT = "other"
LABELS = ("endpoint", "status", "stage", "build")
DURATION_METRIC = "http_request_duration_seconds"
REQUESTS_METRIC = "http_requests"  # exposed as http_requests_total

# 1 ms steps where the sample app answers (5–50 ms), so that a p90 interpolated inside a
# bucket is off by well under a millisecond; coarser up to 10 s.
BUCKETS_MS = (
    *range(1, 21),
    *(22.5, 25, 27.5, 30, 32.5, 35, 37.5, 40, 45, 50, 55, 60, 70, 80, 90, 100),
    *(125, 150, 175, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000),
)
BUCKETS_S = tuple(ms / 1000.0 for ms in BUCKETS_MS)


@dataclass(frozen=True)
class AppMetrics:
    registry: CollectorRegistry
    duration: Histogram
    requests: Counter

    @classmethod
    def create(cls) -> AppMetrics:
        registry = CollectorRegistry()
        duration = Histogram(
            DURATION_METRIC,
            "Time from receiving a request to sending the last byte of its response.",
            LABELS,
            buckets=BUCKETS_S,
            registry=registry,
        )
        requests = Counter(REQUESTS_METRIC, "Requests answered.", LABELS, registry=registry)
        return cls(registry, duration, requests)

    def observe(self, endpoint: str, status: int, stage: str, build: str, seconds: float) -> None:
        labels = (endpoint, str(status), stage, build)
        self.duration.labels(*labels).observe(seconds)
        self.requests.labels(*labels).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def route_path(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route that answers ``scope``, or ``other``."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            path = getattr(route, "path", None)
            return path if isinstance(path, str) else OTHER_ENDPOINT
    return OTHER_ENDPOINT


class MetricsMiddleware:
    """Pure ASGI middleware (no response buffering) that times and counts every request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: AppMetrics,
        routes: Sequence[BaseRoute],
        stage: str,
        build: Callable[[], object],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.stage = stage
        self.build = build

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXCLUDED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        endpoint = route_path(self.routes, scope)
        build = str(self.build())
        status = 500  # what the server sends when the app raises before answering

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self.metrics.observe(endpoint, status, self.stage, build, time.perf_counter() - started)


def instrument(app: Starlette, *, stage: str, build: Callable[[], object]) -> AppMetrics:
    """Count and time the app's requests and serve them at ``/metrics``; call it before the
    app serves its first request."""
    metrics = AppMetrics.create()

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_route(METRICS_PATH, metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.routes, stage=stage, build=build)
    app.state.metrics = metrics
    return metrics
