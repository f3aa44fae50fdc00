"""`perfsig remediate serve` as a real process on 127.0.0.1, under attack and in trouble:
thousands of slow unauthenticated connections, credentials in query strings, refusals before
the body is read, read deadlines, and a receiver killed in the middle of a rollback."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_perfsig.remediation import sign
from pytest_perfsig.store import DeploymentEvent, SqliteStore

SECRET = "s3cret-for-serve-tests-5f0e9c1d"
BEARER = {"Authorization": f"Bearer {SECRET}"}
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Receiver:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_receiver(
    store: Path,
    log: Path,
    *args: str,
    env: dict[str, str] | None = None,
    nofile: int | None = None,
) -> Receiver:
    """The receiver in its own process; its stdout and stderr go to ``log``. ``nofile`` lowers
    the process's soft descriptor limit (hard limit unchanged), as a usual default is 1024."""
    port = free_port()

    def limit() -> None:
        if nofile is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PERFSIG_", "DT_"))}
    environment.update({"PERFSIG_WEBHOOK_SECRET": SECRET, **(env or {})})
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_perfsig.cli",
                "remediate",
                "serve",
                "--port",
                str(port),
                "--store",
                str(store),
                *args,
            ],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
            cwd=ROOT,
        )
    receiver = Receiver(process, f"http://127.0.0.1:{port}", port, log)
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, f"the receiver exited: {receiver.log_text()[-2000:]}"
        assert time.monotonic() < deadline, "the receiver did not start"
        try:
            if httpx.get(f"{receiver.url}/health", timeout=1, trust_env=False).status_code == 200:
                return receiver
        except httpx.HTTPError:
            time.sleep(0.1)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    started = start_receiver(tmp_path / "perfsig.db", tmp_path / "receiver.log", "--log-level", "debug")
    yield started
    started.stop()


def problem(pid: str, env: str = "Production") -> dict[str, Any]:
    return {
        "PID": pid,
        "State": "OPEN",
        "ProblemTitle": "Failure rate increase",
        "ImpactedEntities": [{"type": "SERVICE", "name": "svc", "entity": "SERVICE-1"}],
        "Tags": f"DeploymentGroup:{env}",
    }


def signed_post(url: str, payload: dict[str, Any], timeout: float) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Perfsig-Signature": sign(SECRET, body)}
    return httpx.post(f"{url}/problems", content=body, headers=headers, timeout=timeout, trust_env=False)


def bearer_post(url: str, payload: dict[str, Any], timeout: float) -> httpx.Response:
    """A notification with the bearer secret (the same problem may be sent twice a second)."""
    return httpx.post(f"{url}/problems", json=payload, headers=BEARER, timeout=timeout, trust_env=False)


def raw_exchange(port: int, request: bytes, timeout: float = 2.0) -> bytes:
    """Send ``request`` as is and read what comes back until the server closes or ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                if b"\r\n\r\n" in received and b'"reason"' in received:
                    break
        return received


# ------------------------------------------------------------------ slow clients (slowloris)

SLOW_CONNECTIONS = 5000


def slow_request(kind: int) -> bytes:
    """The start of a request that never completes: headers trickling; a malformed signature
    and a large body announced; a well-formed but wrong signature and a body trickling."""
    if kind == 0:
        return b"POST /problems HTTP/1.1\r\nHost: receiver\r\nX-Perfsig-Sig"
    if kind == 1:
        return (
            b"POST /problems HTTP/1.1\r\nHost: receiver\r\nX-Perfsig-Signature: t=now,v1=zz\r\n"
            b"Content-Length: 60000\r\n\r\n{"
        )
    stamp = int(time.time())
    return (
        f"POST /problems HTTP/1.1\r\nHost: receiver\r\nX-Perfsig-Signature: t={stamp},v1={'0' * 64}\r\n"
        f"Content-Length: 60000\r\n\r\n{{"
    ).encode()


def open_slow_connections(port: int, count: int, within_s: float = 30.0) -> tuple[list[socket.socket], int]:
    """``count`` raw connections, each having sent the start of a request; and how many of them
    the server's host accepted within ``within_s``."""
    sockets: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    for i in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
        selector.register(sock, selectors.EVENT_WRITE, i % 3)
    pending, deadline = count, time.monotonic() + within_s
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(0.2):
            selector.unregister(key.fileobj)
            pending -= 1
            with contextlib.suppress(OSError):
                key.fileobj.send(slow_request(key.data))  # type: ignore[union-attr]
    selector.close()
    return sockets, count - pending


@contextlib.contextmanager
def descriptors(needed: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_slow_unauthenticated_connections_leave_health_and_signed_calls_answering(tmp_path: Path) -> None:
    log = tmp_path / "receiver.log"
    with descriptors(SLOW_CONNECTIONS + 1000):
        # soft limit 1024, a usual default: fewer descriptors than there are slow clients
        receiver = start_receiver(tmp_path / "perfsig.db", log, nofile=1024)
        sockets: list[socket.socket] = []
        timings: list[float] = []
        try:
            started = time.monotonic()
            sockets, connected = open_slow_connections(receiver.port, SLOW_CONNECTIONS)
            assert connected == SLOW_CONNECTIONS, f"only {connected} connections were accepted"
            opened_s = time.monotonic() - started
            for round_ in range(3):
                started = time.monotonic()
                health = httpx.get(f"{receiver.url}/health", timeout=2, trust_env=False)
                timings.append(time.monotonic() - started)
                assert health.status_code == 200 and timings[-1] < 2
                started = time.monotonic()
                answer = signed_post(receiver.url, problem(f"slowloris-{round_}"), timeout=2)
                timings.append(time.monotonic() - started)
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] == "skipped" and timings[-1] < 2
                for sock in sockets:  # the slow clients trickle on
                    with contextlib.suppress(OSError):
                        sock.send(b"x")
                time.sleep(0.5)
        finally:
            for sock in sockets:
                sock.close()
            alive = receiver.process.poll() is None
            receiver.stop()
    assert alive, "the receiver died"
    text = log.read_text(errors="replace")
    print(
        f"{SLOW_CONNECTIONS} slow connections opened in {opened_s:.1f} s; /health "
        f"{', '.join(f'{t * 1000:.0f}' for t in timings[::2])} ms; signed notification "
        f"{', '.join(f'{t * 1000:.0f}' for t in timings[1::2])} ms; log {log.stat().st_size} bytes"
    )
    assert log.stat().st_size < 32 * 1024, f"{log.stat().st_size} bytes of log:\n{text[-3000:]}"
    assert "Too many open files" not in text and SECRET not in text


def test_unauthenticated_requests_are_refused_before_the_body_is_sent(receiver: Receiver) -> None:
    stale = sign(SECRET, b"{}", int(time.time()) - 3600)
    cases = {
        "no credentials": ("", 401),
        "malformed signature": ("X-Perfsig-Signature: t=now,v1=zz\r\n", 401),
        "signature without v1": (f"X-Perfsig-Signature: t={int(time.time())}\r\n", 401),
        "stale signature": (f"X-Perfsig-Signature: {stale}\r\n", 401),
        "wrong bearer": ("Authorization: Bearer nope\r\n", 401),
        "body over the cap": (f"Authorization: Bearer {SECRET}\r\n", 413),
    }
    for name, (credentials, status) in cases.items():
        length = 10_000_000 if status == 413 else 60_000
        request = (
            f"POST /problems HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
            f"{credentials}Content-Length: {length}\r\n\r\n"
        ).encode()
        started = time.monotonic()
        answer = raw_exchange(receiver.port, request)  # the body is never sent
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), f"{name}: {answer[:200]!r}"
        assert time.monotonic() - started < 1.5, name
    assert SECRET not in receiver.log_text()


def test_header_and_body_reads_have_deadlines(tmp_path: Path) -> None:
    receiver = start_receiver(
        tmp_path / "perfsig.db", tmp_path / "receiver.log", "--header-timeout", "1", "--body-timeout", "1"
    )
    try:
        body = json.dumps(problem("slow-body")).encode()
        headers = (
            f"POST /problems HTTP/1.1\r\nHost: receiver\r\nX-Perfsig-Signature: {sign(SECRET, body)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with (
            socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as slow_headers,
            socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as slow_body,
        ):
            started = time.monotonic()
            slow_headers.sendall(b"POST /problems HTTP/1.1\r\nHost: rec")
            slow_body.sendall(headers + body[:10])
            assert slow_headers.recv(100) == b""  # closed, without a word
            assert time.monotonic() - started < 3
            answer = slow_body.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408 ") and b"within 1 s" in answer
            assert time.monotonic() - started < 3
        assert httpx.get(f"{receiver.url}/health", timeout=2, trust_env=False).status_code == 200
    finally:
        receiver.stop()


# ------------------------------------------------------------------ query strings


def test_query_strings_never_reach_a_log(receiver: Receiver) -> None:
    query = f"?token={SECRET}&x=1"
    assert httpx.post(f"{receiver.url}/problems{query}", json=problem("q-1"), timeout=5).status_code == 401
    accepted = httpx.post(f"{receiver.url}/problems{query}", json=problem("q-2"), headers=BEARER, timeout=5)
    assert accepted.status_code == 200
    assert httpx.get(f"{receiver.url}/health{query}", timeout=5).status_code == 200
    assert httpx.get(f"{receiver.url}/elsewhere{query}", timeout=5).status_code == 404
    malformed = raw_exchange(receiver.port, f"GET /problems{query} HTTP/1.1 trailing\r\n\r\n".encode())
    assert malformed.startswith(b"HTTP/1.1 400 ")
    oversized = raw_exchange(
        receiver.port, f"GET /health{query} HTTP/1.1\r\nX-Pad: {'a' * 40_000}\r\n\r\n".encode()
    )
    assert oversized.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 "))
    receiver.stop()
    text = receiver.log_text()
    assert "/problems" in text and "/health" in text  # the access log is there: paths, no queries
    assert SECRET not in text and "token=" not in text


# ------------------------------------------------------------------ a rollback interrupted by a crash

APP = "SampleApp"


def revision(build: int) -> dict[str, Any]:
    return {
        "revisionType": "S3",
        "s3Location": {"bucket": "builds", "key": f"app-build{build}.zip", "bundleType": "zip"},
    }


@dataclass
class FakeCodeDeploy:
    """CodeDeploy's JSON protocol on loopback for the calls a rollback makes (GetDeployment,
    CreateDeployment). CreateDeployment into a group in ``hang`` waits until ``release`` is set,
    then fails: a call that never completed created nothing."""

    hang: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    created: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)
    url: str = ""

    def answer(self, operation: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if operation == "CreateDeployment":
            group = request["deploymentGroupName"]
            if group in self.hang:
                self.hung.append(group)
                self.release.wait(120)
                return 503, {"__type": "ServiceUnavailableException", "message": "gave up"}
            deployment_id = "d-" + uuid.uuid4().hex[:9].upper()
            self.created.append((deployment_id, group, request["revision"]))
            return 200, {"deploymentId": deployment_id}
        if operation == "GetDeployment":
            for deployment_id, group, rev in self.created:
                if deployment_id == request["deploymentId"]:
                    info = {
                        "deploymentId": deployment_id,
                        "applicationName": APP,
                        "deploymentGroupName": group,
                        "revision": rev,
                        "status": "Created",
                    }
                    return 200, {"deploymentInfo": info}
            return 400, {"__type": "DeploymentDoesNotExistException", "message": "no such deployment"}
        return 400, {"__type": "InvalidOperationException", "message": operation}

    def created_in(self, group: str) -> list[dict[str, Any]]:
        return [rev for _, g, rev in self.created if g == group]


@contextlib.contextmanager
def fake_codedeploy(fake: FakeCodeDeploy) -> Iterator[FakeCodeDeploy]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            operation = self.headers["X-Amz-Target"].rpartition(".")[2]
            status, answer = fake.answer(operation, request)
            payload = json.dumps(answer).encode()
            with contextlib.suppress(OSError):  # the caller may have been killed meanwhile
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()


def stored(store: Path, problem_id: str) -> dict[str, Any]:
    with SqliteStore(store) as opened:
        (row,) = [r for r in opened.remediations(limit=100) if r["problem_id"] == problem_id]
        return row


def test_rollback_interrupted_by_a_crash_is_taken_over_after_its_lease(tmp_path: Path) -> None:
    store = tmp_path / "perfsig.db"
    now = time.time()
    with SqliteStore(store) as opened:
        for env in ("Production", "Production-EU"):
            for build, age in ((1, 7200), (4, 600)):
                opened.add_deployment_event(
                    DeploymentEvent(
                        env=env,
                        deployment_id=f"d-{env}-{build}",
                        application=APP,
                        deployment_group=env,
                        revision=revision(build),
                        stage=env,
                        ts=now - age,
                    )
                )
    lease = 10.0
    with fake_codedeploy(FakeCodeDeploy(hang={"Production"})) as fake:
        env = {
            "AWS_ENDPOINT_URL_CODEDEPLOY": fake.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PERFSIG_REMEDIATION_LEASE": str(lease),
        }
        first = start_receiver(store, tmp_path / "first.log", env=env)
        hanging = threading.Thread(target=_post_quietly, args=(first.url, problem("crash-1")), daemon=True)
        try:
            hanging.start()
            deadline = time.monotonic() + 20
            while not fake.hung:
                assert time.monotonic() < deadline, "the rollback never reached CodeDeploy"
                time.sleep(0.05)
            # an unrelated problem is not held up by the hanging call
            started = time.monotonic()
            other = bearer_post(first.url, problem("crash-2", env="Production-EU"), timeout=5)
            assert other.status_code == 200 and other.json()["status"] == "rolled_back", other.text
            assert time.monotonic() - started < 2
            # the same problem again, meanwhile: it is being handled
            started = time.monotonic()
            again = bearer_post(first.url, problem("crash-1"), timeout=5)
            assert (
                again.json()["status"] == "already_handled" and again.json()["previous_status"] == "started"
            )
            assert time.monotonic() - started < 2
        finally:
            first.process.kill()  # kill -9, in the middle of CreateDeployment
            first.process.wait()
        assert stored(store, "crash-1")["status"] == "started"
        fake.hang.clear()
        fake.release.set()

        second = start_receiver(store, tmp_path / "second.log", env=env)
        try:
            lease_until = stored(store, "crash-1")["lease_until"]
            if time.time() < lease_until - 1:  # still leased to the killed receiver: not yet retried
                early = bearer_post(second.url, problem("crash-1"), timeout=10)
                assert early.json()["status"] == "already_handled", early.text
            time.sleep(max(0.0, lease_until - time.time()) + 0.2)
            retry = bearer_post(second.url, problem("crash-1"), timeout=10)
            assert retry.status_code == 200 and retry.json()["status"] == "rolled_back", retry.text
            assert retry.json()["previous_revision"] == revision(1)
            final = bearer_post(second.url, problem("crash-1"), timeout=10)
            assert (
                final.json()["status"] == "already_handled"
                and final.json()["previous_status"] == "rolled_back"
            )
        finally:
            second.stop()
    assert fake.created_in("Production") == [revision(1)]  # exactly one rollback
    assert fake.created_in("Production-EU") == [revision(1)]
    row = stored(store, "crash-1")
    assert row["status"] == "rolled_back" and row["attempts"] == 2


def _post_quietly(url: str, payload: dict[str, Any]) -> None:
    with contextlib.suppress(httpx.HTTPError):
        bearer_post(url, payload, timeout=120)
