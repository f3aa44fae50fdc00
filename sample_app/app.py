"""Starlette sample app: a Python port of the Unbreakable Pipeline demo app.

Everything mutable lives in one :class:`AppState` per app so tests can run
many apps side by side in one process.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import logging
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sample_app.builds import BuildPolicy, is_production
from sample_app.metrics import instrument
from sample_app.urls import format_host, parse_loopback_url

DOWNSTREAM_TIMEOUT_S = 5.0
# Caps the demo "minimum sleep" so one request cannot wedge the app for hours.
MAX_MIN_SLEEP_MS = 60_000.0
# Caps the injected slowdown (percent more latency on every request).
MAX_LATENCY_PERC = 1000.0
# Guards against /api/invoke?url=<this app>/api/invoke recursing forever.
HOP_HEADER = "x-sample-app-hops"
MAX_HOPS = 3
REQUESTS_LOG_EVERY = 100
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"

_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}
_logger_ids = itertools.count(1)


@dataclass(frozen=True)
class AppConfig:
    """Static configuration of one app instance (what the CLI flags set)."""

    stage: str = "Staging"
    build: int = 1
    host: str = "127.0.0.1"
    port: int = 8080
    latency_ms: float = 5.0
    log_file: Path = Path("serviceoutput.log")
    downstream_url: str | None = None

    @property
    def production(self) -> bool:
        return is_production(self.stage)

    def default_downstream_url(self, port: int | None = None) -> str:
        """The app itself, as the original demo's default downstream."""
        host = _WILDCARD_HOSTS.get(self.host, self.host)
        return f"http://{format_host(host)}:{port or self.port}/api/echo?text=downstream"


@dataclass
class AppState:
    """Mutable per-app state.

    Plain ints are enough for the counters: all handlers run on one asyncio
    event loop thread, and no ``await`` sits between a read and its write.
    """

    build: int
    min_sleep_ms: float = 0.0
    # Injected regressions (/api/regression): percent more latency on every request, and the
    # percentage of requests that fail with HTTP 500.
    latency_perc: float = 0.0
    failure_perc: float = 0.0
    requests_served: int = 0
    invoke_count: int = 0
    client: httpx.AsyncClient | None = None
    rng: random.Random = field(default_factory=random.Random)


class _IsoFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = datetime.fromtimestamp(record.created).astimezone()
        return stamp.isoformat(timespec="milliseconds")


def _make_logger(log_file: Path) -> tuple[logging.Logger, logging.FileHandler]:
    # A unique child name per app keeps handlers from piling up on a shared
    # logger when tests create many apps; propagate=False keeps the demo log
    # lines out of the root logger (and pytest's capture).
    logger = logging.getLogger(f"sample_app.instance{next(_logger_ids)}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # delay=True: no file descriptor is held by apps that never log.
    handler = logging.FileHandler(log_file, mode="a", encoding="utf-8", delay=True)
    handler.setFormatter(_IsoFormatter(LOG_FORMAT))
    logger.addHandler(handler)
    return logger, handler


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def startup_line(config: AppConfig, port: int) -> str:
    """The readiness line ``python -m sample_app`` prints once listening."""
    return (
        f"sample_app {config.stage} build {config.build} "
        f"listening on http://{format_host(config.host)}:{port}"
    )


def create_app(config: AppConfig) -> Starlette:
    """Build an independent app instance (own state, logger and client).

    Raises:
        ValueError: ``config.downstream_url`` is set but not a loopback URL.
    """
    if config.downstream_url is not None:
        parse_loopback_url(config.downstream_url)  # fail fast on bad config
    state = AppState(build=config.build)
    logger, log_handler = _make_logger(config.log_file)

    def policy() -> BuildPolicy:
        return BuildPolicy.for_build(state.build, config.production)

    async def simulate_work(injected: bool = True) -> None:
        # Sleeping on every request (not only when asked, as the original
        # did) is what makes build 4's production slowdown measurable.
        factor = policy().latency_factor * (1.0 + state.latency_perc / 100.0) if injected else 1.0
        computed = config.latency_ms * factor * state.rng.uniform(0.8, 1.2)
        await asyncio.sleep(max(state.min_sleep_ms, computed) / 1000.0)
        # After the work, as build 2's failures: a failing request is not a fast one.
        if injected and state.failure_perc and state.rng.random() * 100.0 < state.failure_perc:
            raise HTTPException(500, f"injected failure ({state.failure_perc:g} % of requests)")
        state.requests_served += 1
        if state.requests_served % REQUESTS_LOG_EVERY == 0:
            logger.info("Just served another %d requests!", REQUESTS_LOG_EVERY)

    async def index(request: Request) -> Response:
        await simulate_work()
        esc = html.escape
        body = (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            "<title>sample_app</title></head><body>\n"
            f"<h1>sample_app build {esc(str(state.build))}</h1>\n"
            f"<p>Stage: {esc(config.stage)}"
            f" ({'production' if config.production else 'non-production'})</p>\n"
            f"<p>Host: {esc(socket.gethostname())}"
            f" (requested as {esc(request.headers.get('host', ''))})</p>\n"
            "</body></html>\n"
        )
        return HTMLResponse(body)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def version(request: Request) -> Response:
        await simulate_work()
        return JSONResponse({"build": state.build, "stage": config.stage, "production": config.production})

    async def echo(request: Request) -> Response:
        await simulate_work()
        return JSONResponse({"text": request.query_params.get("text", "")})

    async def login(request: Request) -> Response:
        await simulate_work()
        username = request.query_params.get("username") or "anonymous"
        return JSONResponse({"username": username, "message": f"Welcome {username}!"})

    async def invoke(request: Request) -> Response:
        await simulate_work()
        raw_url = request.query_params.get("url")
        if raw_url is None:
            raw_url = config.downstream_url
        if raw_url is None:
            # With --port 0 only the bound socket knows the real port.
            own_port = config.port or _server_port(request)
            if own_port is None:
                return _error(503, "cannot determine own port for the default downstream")
            raw_url = config.default_downstream_url(own_port)
        try:
            target = parse_loopback_url(raw_url)
        except ValueError as exc:
            return _error(400, str(exc))
        hops = _hops(request)
        if hops >= MAX_HOPS:
            return _error(508, f"downstream call chain deeper than {MAX_HOPS} hops")

        # Failure injection comes before the downstream call, so a failing
        # build never generates downstream traffic.
        state.invoke_count += 1
        if policy().invoke_fails(state.invoke_count):
            return _error(500, f"build {state.build} failed invoke #{state.invoke_count} (injected)")

        client = state.client
        if client is None:
            return _error(503, "app not started: the lifespan did not run")
        try:
            downstream = await client.get(target, headers={HOP_HEADER: str(hops + 1)})
        except httpx.HTTPError as exc:
            return _error(502, f"downstream call failed: {type(exc).__name__}: {exc}")
        return JSONResponse({"url": str(target), "status": downstream.status_code, "build": state.build})

    async def sleeptime(request: Request) -> Response:
        await simulate_work(injected=False)
        raw = request.query_params.get("min")
        try:
            value = float(raw) if raw is not None else float("nan")
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= MAX_MIN_SLEEP_MS:  # also rejects NaN
            return _error(
                400,
                f"min must be a number of milliseconds between 0 and {MAX_MIN_SLEEP_MS:g}",
            )
        state.min_sleep_ms = value
        return JSONResponse({"minSleepMs": value})

    async def switch_version(request: Request) -> Response:
        """Switch the running build. DEMO feature only.

        Lets the demo flip a deployed app into a bad build without a
        redeploy; a real service must never expose this.
        """
        await simulate_work(injected=False)
        raw = request.query_params.get("newBuildNumber", "")
        try:
            new_build = int(raw)
        except ValueError:
            return _error(400, "newBuildNumber must be an integer")
        old_build = state.build
        state.build = new_build
        # A fresh counter makes the new build's failure pattern start anew.
        state.invoke_count = 0
        logger.warning("Somebody is changing! buildNumber from %d to %d", old_build, new_build)
        return JSONResponse({"build": new_build, "previousBuild": old_build})

    async def regression(request: Request) -> Response:
        """Inject a regression of a chosen size. DEMO feature only, like the build switch.

        ``latencyperc``: percent more latency on every request (0 to 1000);
        ``failureperc``: percent of requests that fail with HTTP 500 (0 to 100). A parameter
        left out keeps its value; none at all reports the current ones.
        """
        wanted = {"latencyperc": MAX_LATENCY_PERC, "failureperc": 100.0}
        values: dict[str, float] = {}
        for name, ceiling in wanted.items():
            raw = request.query_params.get(name)
            if raw is None:
                continue
            try:
                value = float(raw)
            except ValueError:
                value = float("nan")
            if not 0.0 <= value <= ceiling:  # also rejects NaN
                return _error(400, f"{name} must be a number between 0 and {ceiling:g}")
            values[name] = value
        if values:
            state.latency_perc = values.get("latencyperc", state.latency_perc)
            state.failure_perc = values.get("failureperc", state.failure_perc)
            logger.warning(
                "Somebody injected a regression: %g %% more latency, %g %% of requests failing",
                state.latency_perc,
                state.failure_perc,
            )
        return JSONResponse({"latencyPerc": state.latency_perc, "failurePerc": state.failure_perc})

    async def cause_error(request: Request) -> Response:
        await simulate_work()
        logger.error("somebody called /api/causeerror")
        return _error(500, "somebody called /api/causeerror")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.client = httpx.AsyncClient(
            timeout=DOWNSTREAM_TIMEOUT_S,
            # No proxies from the environment and no redirects: either could
            # carry a loopback URL off the machine.
            trust_env=False,
            follow_redirects=False,
        )
        try:
            yield
        finally:
            client, state.client = state.client, None
            await client.aclose()
            log_handler.close()

    routes = [
        Route("/", index),
        Route("/health", health),
        Route("/version", version),
        Route("/api/echo", echo),
        Route("/api/login", login),
        Route("/api/invoke", invoke),
        Route("/api/sleeptime", sleeptime),
        Route("/api/version", switch_version),
        Route("/api/regression", regression),
        Route("/api/causeerror", cause_error),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    instrument(app, stage=config.stage, build=lambda: state.build)
    # Exposed for introspection in tests and debugging.
    app.state.sample_state = state
    app.state.config = config
    app.state.logger = logger
    return app


def _server_port(request: Request) -> int | None:
    server = request.scope.get("server")
    return int(server[1]) if server and server[1] else None


def _hops(request: Request) -> int:
    try:
        return max(0, int(request.headers.get(HOP_HEADER, "0")))
    except ValueError:
        return 0
