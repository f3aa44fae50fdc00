"""The receiver's HTTP/1.1 front: a listener that keeps open connections under a cap that
fits the descriptor limit (the oldest idle connection makes room for a new one; connections
being answered are never dropped), and hands each connection to :mod:`.exchange`, which
enforces the per-request deadlines and refusals.

uvicorn has no deadline for reading request headers or bodies and caps connections only once
their headers arrived (docs/self-healing.md, "Serving"); the ASGI app itself is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import signal
import socket
from typing import Any

from . import asgi
from .exchange import Connection, Exchange, Limits, Precheck
from .refusals import RateLimitedLog, error_reply

__all__ = ["BACKLOG", "FD_RESERVE", "Front", "Limits", "fit_descriptor_limit", "run"]

log = logging.getLogger("pytest_perfsig.remediation")

BACKLOG = 128
#: descriptors kept free beside the connections: the store's files for each request thread,
#: AWS and HTTP client sockets, logs, the listening socket
FD_RESERVE = 256


def fit_descriptor_limit(max_connections: int) -> int:
    """Raise the soft descriptor limit toward ``max_connections`` plus :data:`FD_RESERVE` (up
    to the hard limit); return the connection cap that fits under it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections
    return max(8, soft - FD_RESERVE)


class Front:
    """Serves an ASGI app over HTTP/1.1 within :class:`Limits`; see the module docstring."""

    def __init__(
        self,
        app: asgi.App,
        precheck: Precheck,
        limits: Limits,
        flood: RateLimitedLog,
        *,
        cap: int | None = None,
    ) -> None:
        self.limits = limits
        self.flood = flood
        self.exchange = Exchange(app, precheck, limits, flood)
        self.cap = cap or limits.max_connections
        self.port = 0
        self._open: dict[Connection, None] = {}  # oldest first
        self._tasks: set[asyncio.Task[Any]] = set()

    async def main(self, host: str, port: int, stop: asyncio.Event | None = None) -> None:
        """Listen until ``stop`` is set (SIGTERM and SIGINT set it), then close gracefully."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_error)
        if stop is None:
            stop = asyncio.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
        listener = socket.create_server(
            (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=BACKLOG
        )
        listener.setblocking(False)
        self.port = int(listener.getsockname()[1])
        log.info(
            "perfsig remediate: listening on http://%s:%d (at most %d connections; request headers "
            "within %g s, bodies within %g s)",
            host,
            self.port,
            self.cap,
            self.limits.header_timeout_s,
            self.limits.body_timeout_s,
        )
        helpers = [asyncio.create_task(self._accept(listener)), asyncio.create_task(self._flush_regularly())]
        try:
            await stop.wait()
        finally:
            for helper in helpers:
                helper.cancel()
            listener.close()
            await self._drain()
            self.flood.flush()

    async def _drain(self) -> None:
        self.exchange.closing = True
        for connection in list(self._open):
            if not connection.busy:
                connection.abort()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.limits.shutdown_timeout_s)
        for task in list(self._tasks):
            task.cancel()

    async def _flush_regularly(self) -> None:
        while True:
            await asyncio.sleep(self.flood.interval_s / 2)
            self.flood.flush()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        detail = f": {type(error).__name__}: {error}" if error is not None else ""
        self.flood.log("event loop errors", logging.ERROR, "%s%s", context.get("message", "error"), detail)

    # ------------------------------------------------------------------ connections

    async def _accept(self, listener: socket.socket) -> None:
        """One connection at a time, each admitted (or refused) before the next is accepted,
        so that open connections never exceed the cap and descriptors never run out."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.flood.log("accept failures", logging.ERROR, "cannot accept: %s", exc.strerror)
                    self._make_room()
                    await asyncio.sleep(0.05)
                continue
            connection = Connection(sock, peer)
            if self.exchange.closing or (len(self._open) >= self.cap and not self._make_room()):
                self._refuse_busy(connection)
                continue
            self._open[connection] = None
            task = asyncio.create_task(self._serve(connection))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            # sock_accept does not yield while connections are waiting: let dropped ones close
            # (their descriptors are freed in a callback) and admitted ones start
            await asyncio.sleep(0)

    def _make_room(self) -> bool:
        """Drop the oldest connection not in the app; False when every one is."""
        idle = next((c for c in self._open if not c.busy), None)
        if idle is None:
            return False
        del self._open[idle]
        idle.abort()
        self.flood.log(
            "connections dropped at the connection cap",
            logging.WARNING,
            "dropped the oldest idle connection (from %s) for a new one: %d connections open",
            idle.peer[0],
            len(self._open) + 1,
        )
        return True

    def _refuse_busy(self, connection: Connection) -> None:
        self.flood.log(
            "connections refused: every connection busy",
            logging.WARNING,
            "refused a connection from %s: all %d connections are busy",
            connection.peer[0],
            len(self._open),
        )
        with contextlib.suppress(OSError):
            connection.sock.send(error_reply(503, "too many connections; retry later").as_http())
        connection.sock.close()

    async def _serve(self, connection: Connection) -> None:
        try:
            await self.exchange.serve(connection)
        finally:
            self._open.pop(connection, None)
            connection.abort()


def run(app: Any, precheck: Precheck, *, host: str, port: int, limits: Limits, flood: RateLimitedLog) -> None:
    """Serve ``app`` until SIGTERM or SIGINT. The connection cap is lowered when the descriptor
    limit cannot be raised enough for it (said in the log)."""
    limits.check()
    cap = fit_descriptor_limit(limits.max_connections)
    if cap < limits.max_connections:
        log.warning(
            "perfsig remediate: the descriptor limit (ulimit -n) allows %d connections, not %d; "
            "raise it for more",
            cap,
            limits.max_connections,
        )
    asyncio.run(Front(app, precheck, limits, flood, cap=cap).main(host, port))
