"""Real HTTP servers on 127.0.0.1 for the metric-source tests: a server whose answers a test
scripts (and which counts every request), and a free-port finder. Real sockets, so that the
sources' HTTP clients, retries and time-outs run exactly as against a real system."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: drop the connection without answering (a reset, as a crashing proxy does)
    reset: bool = False


def json_reply(body: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(status, body, headers)


RESET = Reply(reset=True)

Answer = Callable[[Request], Reply]


class LoopbackServer:
    """``answer(request) -> Reply`` for every request, in a thread; ``requests`` records them."""

    def __init__(self, answer: Answer, port: int = 0) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                owner.requests.append(request)
                reply = owner.answer(request)
                if reply.reset:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = reply.body
                data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
                self.send_response(reply.status)
                content_type = "application/octet-stream" if isinstance(body, bytes) else "application/json"
                self.send_header("Content-Type", reply.headers.get("Content-Type", content_type))
                for key, value in reply.headers.items():
                    if key != "Content-Type":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def start(self) -> LoopbackServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serving(answer: Answer, port: int = 0) -> Iterator[LoopbackServer]:
    server = LoopbackServer(answer, port).start()
    try:
        yield server
    finally:
        server.stop()


def scripted(*replies: Reply) -> Answer:
    """The replies in order, then the last one again for every further request."""
    queue = list(replies)

    def answer(request: Request) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return answer
