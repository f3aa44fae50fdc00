"""One ASGI exchange with a request read whole: the HTTP front reads and bounds the body
before the app sees it, then collects the app's whole (small, JSON) response."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

__all__ = ["App", "Response", "call"]

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


@dataclass
class Response:
    """What the app answered; ``started`` is False when it raised before answering."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    started: bool = False


async def call(
    app: App,
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    client: tuple[str, int],
    server: tuple[str, int],
) -> Response:
    """Call ``app`` for one request; exceptions of the app propagate, after ``response`` got
    what was sent before them (see :class:`Response`)."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": server,
    }
    response = Response()
    chunks: list[bytes] = []
    answered = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            response.started = True
            response.status = int(message["status"])
            response.headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                answered.set()

    try:
        await app(scope, receive, send)
    finally:
        answered.set()
        response.body = b"".join(chunks)
        if not any(name == b"content-length" for name, _ in response.headers):
            response.headers.append((b"content-length", str(len(response.body)).encode()))
    return response
