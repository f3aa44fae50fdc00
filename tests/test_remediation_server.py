"""The self-healing receiver's front door: shared-secret authentication (bearer or HMAC
signature with timestamp tolerance and replay protection), body size limits, malformed and
unknown payloads, vendor test messages, and that the secret never leaks."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_perfsig.lambdas import problem_handler
from pytest_perfsig.remediation import RemediationConfigError, create_app, secret_from_env, serve, sign
from pytest_perfsig.remediation.server import Authenticator
from pytest_perfsig.store import SqliteStore

SECRET = "s3cret-for-tests-7f1c2a9b"
MAX_BODY = 64 * 1024

# A problem on Production with no deployment event recorded: authenticated requests get a
# "skipped" 200 without any AWS call.
PROBLEM = {
    "PID": "-1_V2",
    "ProblemID": "P-1",
    "State": "OPEN",
    "ProblemTitle": "Failure rate increase",
    "ImpactedEntities": [{"type": "SERVICE", "name": "svc", "entity": "SERVICE-1"}],
    "Tags": "DeploymentGroup:Production",
}
# The notification Dynatrace sends from "Send test notification".
DYNATRACE_TEST = {
    "ImpactedEntities": [
        {"type": "HOST", "name": "MyHost1", "entity": "HOST-XXXXXXXXXXXXX"},
        {"type": "SERVICE", "name": "MyService1", "entity": "SERVICE-XXXXXXXXXXXXX"},
    ],
    "ImpactedEntity": "MyHost1, MyService1",
    "PID": "99999",
    "ProblemDetailsHTML": "<h1>Dynatrace problem notification test run details</h1>",
    "ProblemDetailsJSON": {"ID": "99999"},
    "ProblemID": "999",
    "ProblemImpact": "INFRASTRUCTURE",
    "ProblemTitle": "Dynatrace problem notification test run",
    "Problem URL": "https://example.com",
    "State": "OPEN",
    "Tags": "testtag1, testtag2, DeploymentGroup:Production",
}
ALERTMANAGER_TEST = {
    "version": "4",
    "groupKey": '{}:{alertname="TestAlert"}',
    "status": "firing",
    "receiver": "perfsig",
    "groupLabels": {"alertname": "TestAlert"},
    "commonLabels": {"alertname": "TestAlert", "instance": "Grafana"},
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "TestAlert", "instance": "Grafana", "stage": "Production"},
            "annotations": {"summary": "Notification test"},
            "startsAt": "2030-01-01T00:00:00Z",
            "fingerprint": "57c6d9296de2ad39",
        }
    ],
}


class Client:
    """Requests straight into the ASGI app; every response is kept (to look for the secret)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.responses: list[httpx.Response] = []

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
                return await client.request(method, url, **kwargs)

        response = asyncio.run(send())
        self.responses.append(response)
        return response

    def post(self, body: bytes | Any, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) or hasattr(body, "__aiter__") else json.dumps(body).encode()
        return self.request("POST", "/problems", content=content, headers=headers or {}, **kwargs)


def bearer(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    return {
        "X-Perfsig-Signature": sign(secret, body, None if at is None else int(at)),
        "Content-Type": "application/json",
    }


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "perfsig.db"


@pytest.fixture
def client(store_path: Path, caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG)
    client = Client(create_app(store_path, secret=SECRET, max_body=MAX_BODY))
    yield client
    for response in client.responses:  # the secret is in no response, header or log line
        assert SECRET not in response.text
        assert all(SECRET not in value for value in response.headers.values())
    assert SECRET not in caplog.text


def remediations(store_path: Path) -> list[dict[str, Any]]:
    with SqliteStore(store_path) as store:
        return store.remediations()


# ------------------------------------------------------------------ authentication


def test_no_credentials_is_401(client: Client, store_path: Path) -> None:
    answer = client.post(PROBLEM, {"Content-Type": "application/json"})
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert remediations(store_path) == []


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {SECRET}x", "Bearer wrong", f"Bearer {SECRET[:-1]}", f"Basic {SECRET}", "Bearer", SECRET],
)
def test_wrong_bearer_is_401(client: Client, store_path: Path, authorization: str) -> None:
    answer = client.post(PROBLEM, {"Authorization": authorization})
    assert answer.status_code == 401 and answer.json()["reason"] == "invalid credentials"
    assert remediations(store_path) == []


def test_valid_bearer_is_200(client: Client, store_path: Path) -> None:
    answer = client.post(PROBLEM, bearer())
    assert answer.status_code == 200 and answer.json()["status"] == "skipped"
    assert [r["status"] for r in remediations(store_path)] == ["skipped"]


def test_valid_signature_is_200(client: Client) -> None:
    body = json.dumps(PROBLEM).encode()
    answer = client.post(body, signed(body))
    assert answer.status_code == 200, answer.text
    assert answer.json()["reason"] == "no deployment event recorded for Production"


@pytest.mark.parametrize("case", ["wrong secret", "tampered body", "malformed", "no v1"])
def test_invalid_signature_is_401(client: Client, case: str) -> None:
    body = json.dumps(PROBLEM).encode()
    headers = {
        "wrong secret": signed(body, secret="another-secret-0000000000"),
        "tampered body": signed(body.replace(b"OPEN", b"OPEN ")),
        "malformed": {"X-Perfsig-Signature": "sha256=abcdef"},
        "no v1": {"X-Perfsig-Signature": f"t={int(time.time())}"},
    }[case]
    answer = client.post(body, headers)
    assert answer.status_code == 401


@pytest.mark.parametrize("offset", [-301, +301, -3600])
def test_stale_signature_is_401(client: Client, offset: int) -> None:
    body = json.dumps(PROBLEM).encode()
    answer = client.post(body, signed(body, at=time.time() + offset))
    assert answer.status_code == 401 and "tolerance" in answer.json()["reason"]


def test_replayed_signature_is_401(client: Client, store_path: Path) -> None:
    body = json.dumps(PROBLEM).encode()
    headers = signed(body)
    assert client.post(body, headers).status_code == 200
    replay = client.post(body, headers)
    assert replay.status_code == 401 and "replay" in replay.json()["reason"]
    assert len(remediations(store_path)) == 1
    # the sender re-signs with a new timestamp: accepted (and then idempotent)
    fresh = client.post(body, signed(body, at=time.time() + 1))
    assert fresh.status_code == 200 and fresh.json()["status"] == "already_handled"


def test_signature_with_a_wrong_bearer_is_401(client: Client) -> None:
    body = json.dumps(PROBLEM).encode()
    answer = client.post(body, {**signed(body), "Authorization": "Bearer nope"})
    assert answer.status_code == 401


def test_replay_memory_expires_and_is_bounded() -> None:
    now = [1_000_000.0]
    auth = Authenticator(SECRET, clock=lambda: now[0], max_remembered=2)
    body = b"{}"
    first = {"x-perfsig-signature": sign(SECRET, body, int(now[0]))}
    auth.authenticate(first, body)
    auth.authenticate({"x-perfsig-signature": sign(SECRET, body, int(now[0]) + 1)}, body)
    with pytest.raises(Exception, match="retry later"):  # full: refuse rather than forget
        auth.authenticate({"x-perfsig-signature": sign(SECRET, body, int(now[0]) + 2)}, body)
    now[0] += 400  # all remembered signatures expired (and are stale anyway)
    auth.authenticate({"x-perfsig-signature": sign(SECRET, body, int(now[0]))}, body)
    assert SECRET not in repr(auth)


# ------------------------------------------------------------------ size and shape


def test_oversized_body_with_honest_content_length_is_413(client: Client, store_path: Path) -> None:
    body = b'{"PID": "1", "State": "OPEN", "pad": "' + b"x" * MAX_BODY + b'"}'
    answer = client.post(body, bearer())
    assert answer.status_code == 413 and answer.json()["error"] == "payload too large"
    assert remediations(store_path) == []


def test_oversized_body_with_lying_content_length_is_413(client: Client, store_path: Path) -> None:
    body = b'{"PID": "1", "State": "OPEN", "pad": "' + b"x" * MAX_BODY + b'"}'
    answer = client.post(body, {**bearer(), "Content-Length": "100"})
    assert answer.status_code == 413
    assert remediations(store_path) == []


def test_oversized_chunked_body_is_413(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * (MAX_BODY // 4)

    answer = client.post(chunks(), bearer())
    assert answer.status_code == 413


def test_invalid_content_length_is_400(client: Client) -> None:
    assert client.post(PROBLEM, {**bearer(), "Content-Length": "ten"}).status_code == 400


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"PID": "1", "State": ', "malformed JSON: Expecting value"),
        (b"\xff\xfe{}", "malformed JSON: the body is not UTF-8"),
        (b"", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'{"hello": "world"}', "neither a Dynatrace problem notification"),
        (b'{"PID": "1"}', "without State"),
        (b'{"PID": "1", "State": "SLEEPY"}', "unknown State"),
        (b'{"status": "firing", "groupKey": "g", "alerts": "no"}', "alerts must be a non-empty list"),
    ],
)
def test_malformed_or_unknown_payload_is_400_with_reason(
    client: Client, store_path: Path, body: bytes, reason: str
) -> None:
    answer = client.post(body, bearer())
    assert answer.status_code == 400
    assert answer.json()["status"] == "rejected" and reason in answer.json()["reason"]
    assert remediations(store_path) == []


@pytest.mark.parametrize("payload", [DYNATRACE_TEST, ALERTMANAGER_TEST], ids=["dynatrace", "alertmanager"])
def test_vendor_test_message_is_200_and_does_nothing(client: Client, store_path: Path, payload: Any) -> None:
    answer = client.post(payload, bearer())
    assert answer.status_code == 200
    assert answer.json()["status"] == "test" and "test notification" in answer.json()["reason"]
    assert remediations(store_path) == []


def test_health_and_methods(client: Client) -> None:
    assert client.request("GET", "/health").json() == {"status": "ok"}
    assert client.request("GET", "/problems").status_code == 405


def test_errors_are_logged_without_the_secret(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    client.post(PROBLEM, {"Authorization": f"Bearer {SECRET}-but-longer"})
    assert "refused a problem notification: invalid credentials" in caplog.text
    client.post(PROBLEM, bearer())
    assert "'-1_V2'" in caplog.text  # the decision is logged (the fixture checks the secret is not)


# ------------------------------------------------------------------ configuration


def test_refuses_to_start_without_a_secret(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERFSIG_WEBHOOK_SECRET", raising=False)
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("must not listen without a secret"))
    with pytest.raises(RemediationConfigError, match="PERFSIG_WEBHOOK_SECRET"):
        serve("127.0.0.1", 0, store_path)
    with pytest.raises(RemediationConfigError, match="PERFSIG_WEBHOOK_SECRET"):
        secret_from_env({"PERFSIG_WEBHOOK_SECRET": "   "})
    with pytest.raises(RemediationConfigError, match="too short"):
        secret_from_env({"PERFSIG_WEBHOOK_SECRET": "short"})
    for secret in ("", "   "):
        with pytest.raises(RemediationConfigError):
            create_app(store_path, secret=secret)


def test_serve_takes_the_secret_from_the_environment(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.setenv("PERFSIG_WEBHOOK_SECRET", SECRET)
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    serve("127.0.0.1", 8799, store_path)
    ((app, kwargs),) = calls
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8799
    assert Client(app).post(PROBLEM, bearer()).status_code == 200


def test_unusable_store_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(RemediationConfigError, match="cannot open store"):
        create_app(tmp_path / "file" / "perfsig.db", secret=SECRET)


# ------------------------------------------------------------------ Lambda


def lambda_event(body: bytes, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "httpMethod": "POST",
        "headers": headers,
        "body": body.decode(),
        "isBase64Encoded": False,
        **extra,
    }


def test_lambda_handler_authenticates_like_the_server(
    store_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PERFSIG_STORE", str(store_path))
    body = json.dumps(PROBLEM).encode()
    monkeypatch.delenv("PERFSIG_WEBHOOK_SECRET", raising=False)
    unconfigured = problem_handler(lambda_event(body, bearer()), None)
    assert unconfigured["statusCode"] == 500 and "PERFSIG_WEBHOOK_SECRET" in unconfigured["body"]

    monkeypatch.setenv("PERFSIG_WEBHOOK_SECRET", SECRET)
    answers = [
        problem_handler(lambda_event(body, {"authorization": "Bearer nope"}), None),
        problem_handler(lambda_event(body, {"Authorization": f"Bearer {SECRET}"}), None),
    ]
    assert [a["statusCode"] for a in answers] == [401, 200]
    headers = {"X-Perfsig-Signature": sign(SECRET, body)}
    answers.append(problem_handler(lambda_event(body, headers), None))
    answers.append(problem_handler(lambda_event(body, headers), None))  # replayed
    assert [a["statusCode"] for a in answers[2:]] == [200, 401]
    encoded = {
        "httpMethod": "POST",
        "headers": bearer(),
        "isBase64Encoded": True,
        "body": base64.b64encode(json.dumps(DYNATRACE_TEST).encode()).decode(),
    }
    answers.append(problem_handler(encoded, None))
    assert json.loads(answers[-1]["body"])["status"] == "test"
    big = b"x" * (MAX_BODY + 1)
    answers.append(problem_handler(lambda_event(big, bearer()), None))
    assert answers[-1]["statusCode"] == 413
    answers.append(
        problem_handler({"requestContext": {"http": {"method": "GET"}}, "headers": bearer()}, None)
    )
    assert answers[-1]["statusCode"] == 405
    for answer in [unconfigured, *answers]:
        assert SECRET not in json.dumps(answer)
    assert SECRET not in caplog.text
