"""One client connection of the receiver's HTTP/1.1 front (h11): request after request, each
within its deadlines (headers, body, writing the answer), refused before the body is read when
its headers already fail, answered by the ASGI app otherwise. Nothing logged here carries a
query string: the access log (DEBUG) names the path only, and h11's error messages, which quote
the offending line, are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import unquote

import h11

from . import asgi
from .auth import RemediationConfigError
from .refusals import RateLimitedLog, Reply, error_reply, reason_phrase

__all__ = ["Closed", "Connection", "Exchange", "Limits", "Precheck"]

#: one line per request at DEBUG: client, method, path (never the query), status, duration
access_log = logging.getLogger("pytest_perfsig.remediation.access")

READ_CHUNK = 64 * 1024
#: read and dropped at most, after refusing a request whose body was still coming
LINGER_BYTES = 256 * 1024

#: (method, path, headers) -> a refusal, before the body is read; None lets the request through
Precheck = Callable[[str, str, Mapping[str, str]], Reply | None]


@dataclass(frozen=True)
class Limits:
    """What one client may take: time to send headers and body, header and body size; and
    how many connections may be open at once."""

    max_connections: int = 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keepalive_timeout_s: float = 5.0
    write_timeout_s: float = 10.0
    linger_s: float = 2.0
    shutdown_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_body: int = 64 * 1024

    def check(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not 0 < value < math.inf:
                raise RemediationConfigError(f"{item.name} must be positive, not {value}")


class _Timeout(Exception):
    pass


class _TooLarge(Exception):
    pass


class Closed(Exception):
    """The client closed, or the connection was dropped to make room: nothing to answer."""


class Connection:
    __slots__ = ("busy", "peer", "reader", "server", "sock", "writer")

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.busy = False  # in the app: never dropped to make room
        self.peer: tuple[str, int] = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("?", 0)
        server = sock.getsockname()
        self.server: tuple[str, int] = (str(server[0]), int(server[1]))

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        else:
            self.sock.close()

    async def read(self) -> bytes:
        if self.reader is None:
            raise Closed
        return await self.reader.read(READ_CHUNK)

    async def write(self, data: bytes, timeout_s: float) -> None:
        if self.writer is None:
            raise Closed
        self.writer.write(data)
        async with asyncio.timeout(timeout_s):
            await self.writer.drain()

    def half_close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            if self.writer is not None and self.writer.can_write_eof():
                self.writer.write_eof()


class Exchange:
    """The HTTP side of every connection: see the module docstring."""

    def __init__(self, app: asgi.App, precheck: Precheck, limits: Limits, flood: RateLimitedLog) -> None:
        self.app = app
        self.precheck = precheck
        self.limits = limits
        self.flood = flood
        self.closing = False  # set when the server stops: answer, then close

    async def serve(self, connection: Connection) -> None:
        """Until the client closes, a deadline passes, or the connection cannot carry more."""
        try:
            connection.reader, connection.writer = await asyncio.open_connection(
                sock=connection.sock, limit=READ_CHUNK
            )
            await self._exchange(connection)
        except (Closed, ConnectionError, OSError, TimeoutError, h11.ProtocolError):
            pass  # gone, dropped, or it did not read its answer in time

    async def _exchange(self, connection: Connection) -> None:
        """Request after request on one connection (keep-alive), each within the deadlines."""
        limits = self.limits
        loop = asyncio.get_running_loop()
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        deadline, first = loop.time() + limits.header_timeout_s, True
        while True:
            try:
                event = await self._next_event(connection, h, deadline)
            except _Timeout:
                if first or h.trailing_data[0]:
                    self._dropped(
                        connection, f"no complete request headers within {limits.header_timeout_s:g} s"
                    )
                return
            except h11.RemoteProtocolError as exc:
                await self._malformed(connection, h, exc)
                return
            if not isinstance(event, h11.Request):
                return
            if not await self._request(connection, h, event):
                return
            if self.closing or h.our_state is not h11.DONE or h.their_state is not h11.DONE:
                return
            h.start_next_cycle()
            deadline, first = loop.time() + limits.keepalive_timeout_s + limits.header_timeout_s, False

    async def _next_event(self, connection: Connection, h: h11.Connection, deadline: float) -> Any:
        while True:
            event = h.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout_at(deadline):
                    data = await connection.read()
            except TimeoutError:
                raise _Timeout from None
            if not data:
                raise Closed
            h.receive_data(data)

    async def _request(self, connection: Connection, h: h11.Connection, request: h11.Request) -> bool:
        """One request; whether the connection may carry another."""
        started = time.monotonic()
        method = request.method.decode("ascii", "replace")
        path, _, query = request.target.decode("ascii", "replace").partition("?")
        headers: dict[str, str] = {}
        for name, value in request.headers:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        refusal = self.precheck(method, path, headers)
        body: bytes | None = None
        if refusal is None:
            try:
                body = await self._read_body(connection, h)
            except _Timeout:
                reason = f"the request body did not arrive within {self.limits.body_timeout_s:g} s"
                refusal = self._refused(connection, error_reply(408, reason))
            except _TooLarge:
                reason = f"body larger than {self.limits.max_body} bytes"
                refusal = self._refused(connection, error_reply(413, reason))
            except h11.RemoteProtocolError:  # e.g. broken chunked encoding
                refusal = self._refused(connection, error_reply(400, "malformed request body"))
        if refusal is not None:
            await self._send(
                connection, h, refusal.status, refusal.header_bytes(), refusal.encoded(), close=True
            )
            self._access(connection, method, path, refusal.status, started)
            await self._linger(connection)
            return False
        if body is None:
            return False  # closed by the client in the middle of its body
        connection.busy = True
        try:
            answer = await self._call_app(connection, method, path, query, request, body)
            payload = b"" if method == "HEAD" else answer.body
            await self._send(connection, h, answer.status, answer.headers, payload, close=self.closing)
        finally:
            connection.busy = False
        self._access(connection, method, path, answer.status, started)
        return True

    async def _read_body(self, connection: Connection, h: h11.Connection) -> bytes | None:
        if h.client_is_waiting_for_100_continue:  # only once the headers passed the precheck
            await self._write(
                connection, h.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        deadline = asyncio.get_running_loop().time() + self.limits.body_timeout_s
        body = bytearray()
        while True:
            event = await self._next_event(connection, h, deadline)
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.limits.max_body:
                    raise _TooLarge
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                return None

    async def _call_app(
        self, connection: Connection, method: str, path: str, query: str, request: h11.Request, body: bytes
    ) -> asgi.Response:
        try:
            return await asgi.call(
                self.app,
                method=method,
                path=path,
                query=query,
                headers=list(request.headers),
                body=body,
                client=connection.peer,
                server=connection.server,
            )
        except Exception:
            shown = unquote(path)[:200]
            self.flood.log(
                "internal errors", logging.ERROR, "internal error answering %s", shown, exc_info=True
            )
            reply = error_reply(500, "internal error")
            return asgi.Response(500, reply.header_bytes(), reply.encoded())

    # ------------------------------------------------------------------ writing, closing

    async def _send(
        self,
        connection: Connection,
        h: h11.Connection,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        close: bool,
    ) -> None:
        if close:
            headers = [*headers, (b"connection", b"close")]
        data = h.send(h11.Response(status_code=status, headers=headers, reason=reason_phrase(status))) or b""
        if body:
            data += h.send(h11.Data(data=body)) or b""
        data += h.send(h11.EndOfMessage()) or b""
        await self._write(connection, data)

    async def _write(self, connection: Connection, data: bytes) -> None:
        await connection.write(data, self.limits.write_timeout_s)

    async def _linger(self, connection: Connection) -> None:
        """Half-close, then read and drop what the client still sends for a moment: closing
        with unread input would reset the connection and could lose the answer on its way."""
        connection.half_close()
        received = 0
        with contextlib.suppress(TimeoutError, OSError, Closed):
            async with asyncio.timeout(self.limits.linger_s):
                while received < LINGER_BYTES:
                    data = await connection.read()
                    if not data:
                        break
                    received += len(data)

    async def _malformed(
        self, connection: Connection, h: h11.Connection, exc: h11.RemoteProtocolError
    ) -> None:
        # h11's message quotes the offending line, query string included: it is not logged
        status = exc.error_status_hint if exc.error_status_hint in (400, 431) else 400
        reason = (
            f"request headers larger than {self.limits.max_header_bytes} bytes"
            if status == 431
            else "malformed HTTP request"
        )
        reply = self._refused(connection, error_reply(status, reason))
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(h11.LocalProtocolError):
                await self._send(
                    connection, h, reply.status, reply.header_bytes(), reply.encoded(), close=True
                )
                await self._linger(connection)

    def _refused(self, connection: Connection, reply: Reply) -> Reply:
        self.flood.log(
            f"refused requests (HTTP {reply.status})",
            logging.WARNING,
            "refused a request from %s: %s (HTTP %d)",
            connection.peer[0],
            reply.body.get("reason"),
            reply.status,
        )
        return reply

    def _dropped(self, connection: Connection, reason: str) -> None:
        self.flood.log(
            "connections closed for slow request headers",
            logging.WARNING,
            "closed a connection from %s: %s",
            connection.peer[0],
            reason,
        )

    def _access(self, connection: Connection, method: str, path: str, status: int, started: float) -> None:
        access_log.debug(
            '%s "%s %s" %d %.0f ms',
            connection.peer[0],
            method,
            path[:200],
            status,
            (time.monotonic() - started) * 1000,
        )
