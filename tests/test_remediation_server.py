"""The self-healing receiver's front door: shared-secret authentication (bearer or HMAC
signature with timestamp tolerance and replay protection), body size limits, malformed and
unknown payloads, vendor test messages, and that the secret never leaks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_perfsig.lambdas import problem_handler
from pytest_perfsig.remediation import RemediationConfigError, create_app, secret_from_env, serve, sign
from pytest_perfsig.remediation.payloads import PayloadError, parse_problem
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
    from pytest_perfsig.remediation import front

    monkeypatch.setattr(front, "run", lambda *a, **k: pytest.fail("must not listen without a secret"))
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
    from pytest_perfsig.remediation import front

    monkeypatch.setenv("PERFSIG_WEBHOOK_SECRET", SECRET)
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(front, "run", lambda app, precheck, **kwargs: calls.append((app, kwargs)))
    serve("127.0.0.1", 8799, store_path, header_timeout_s=3)
    ((app, kwargs),) = calls
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8799
    assert kwargs["limits"].header_timeout_s == 3 and kwargs["limits"].max_body == 64 * 1024
    assert Client(app).post(PROBLEM, bearer()).status_code == 200


def test_serve_refuses_bad_limits_and_leases(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_perfsig.remediation import front

    monkeypatch.setenv("PERFSIG_WEBHOOK_SECRET", SECRET)
    monkeypatch.setattr(front, "run", lambda *a, **k: pytest.fail("must not listen"))
    with pytest.raises(RemediationConfigError, match="header_timeout_s must be positive"):
        serve("127.0.0.1", 0, store_path, header_timeout_s=0)
    monkeypatch.setenv("PERFSIG_REMEDIATION_LEASE", "soon")
    with pytest.raises(RemediationConfigError, match="PERFSIG_REMEDIATION_LEASE"):
        serve("127.0.0.1", 0, store_path)


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


# ------------------------------------------------------------------ hostile input: refusals, never 500

DEEP = 6000


def deep_details(as_text: bool) -> bytes:
    nested = "[" * DEEP + "]" * DEEP
    details = json.dumps(nested) if as_text else nested
    return (
        '{"PID": "deep-1", "State": "OPEN", "Tags": "DeploymentGroup:Production", '
        f'"ProblemDetailsJSON": {details}}}'
    ).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 60_000, "nested deeper than"),
        (deep_details(as_text=False), "nested deeper than"),
        (deep_details(as_text=True), "ProblemDetailsJSON: nested deeper than"),
        (b'{"PID": NaN, "State": "OPEN", "Tags": "DeploymentGroup:Production"}', "NaN is not JSON"),
        (b'{"PID": "1", "State": "OPEN", "ProblemStartTime": -Infinity}', "-Infinity is not JSON"),
        (b'{"PID": "1", "State": "OPEN", "ProblemStartTime": 1e999}', "number out of range"),
        (b'{"PID": 1.5, "State": "OPEN"}', "PID must be a string or an integer"),
        (
            b'{"PID": "1", "State": "OPEN", "ProblemDetailsJSON": {"tagsOfAffectedEntities": 7}}',
            "tagsOfAffectedEntities must be a list",
        ),
    ],
    ids=[
        "60KB-of-brackets",
        "deep-details",
        "deep-details-as-text",
        "NaN",
        "Infinity",
        "1e999",
        "float-PID",
        "tags-not-a-list",
    ],
)
def test_hostile_bodies_are_400_with_the_reason_and_logged(
    client: Client, store_path: Path, caplog: pytest.LogCaptureFixture, body: bytes, reason: str
) -> None:
    answer = client.post(body, bearer())
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["reason"]
    assert remediations(store_path) == []  # nothing claimed, nothing rolled back
    assert f"refused a problem notification: {answer.json()['reason']}" in caplog.text


def test_numbers_too_large_for_a_time_are_ignored_not_a_500(client: Client) -> None:
    body = b'{"PID": "big-1", "State": "OPEN", "ProblemStartTime": 1' + b"0" * 400 + b"}"
    answer = client.post(body, bearer())
    assert answer.status_code == 200 and answer.json()["status"] == "skipped"


@pytest.mark.parametrize(
    "signature",
    ["t=\xb2,v1=" + "0" * 64, "t=\u0661\u0662,v1=" + "0" * 64, "t=" + "9" * 5000 + ",v1=" + "0" * 64],
    ids=["superscript-two", "arabic-indic-digits", "5000-digits"],
)
def test_signature_with_non_ascii_digits_is_401(client: Client, signature: str) -> None:
    body = json.dumps(PROBLEM).encode()
    answer = client.post(
        body, {"X-Perfsig-Signature": signature.encode("utf-8" if "\u0661" in signature else "latin-1")}
    )
    assert answer.status_code == 401 and "malformed" in answer.json()["reason"]


def test_lambda_handler_refuses_hostile_events_with_400_or_401(
    store_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PERFSIG_STORE", str(store_path))
    monkeypatch.setenv("PERFSIG_WEBHOOK_SECRET", SECRET)
    body = json.dumps(PROBLEM).encode()
    auth = {"Authorization": f"Bearer {SECRET}"}
    events = {
        "content-length ²": (lambda_event(body, {**auth, "Content-Length": "\xb2"}), 400),
        "content-length of 5000 digits": (lambda_event(body, {**auth, "Content-Length": "9" * 5000}), 413),
        "signature t=²": (lambda_event(body, {"X-Perfsig-Signature": "t=\xb2,v1=" + "0" * 64}), 401),
        "60 KB of [": (lambda_event(b"[" * 60_000, auth), 400),
        "NaN": (lambda_event(b'{"PID": NaN, "State": "OPEN"}', auth), 400),
        "lone surrogate in the body": ({**lambda_event(b"", auth), "body": '{"PID": "\ud800"}'}, 400),
        "lone surrogate in the bearer": (lambda_event(body, {"Authorization": "Bearer \ud800"}), 401),
        "body not a string": ({**lambda_event(b"", auth), "body": {"PID": "1"}}, 400),
        "headers not an object": ({**lambda_event(body, {}), "headers": ["Authorization"]}, 400),
        "event not an object": (["POST"], 400),
    }
    for name, (event, status) in events.items():
        answer = problem_handler(event, None)  # type: ignore[arg-type]
        assert answer["statusCode"] == status, f"{name}: {answer}"
        assert json.loads(answer["body"])["reason"], name
    assert remediations(store_path) == []
    assert "refused a problem notification: invalid Content-Length" in caplog.text


# ------------------------------------------------------------------ a flood is logged once per interval


def test_a_flood_of_refusals_is_logged_once_per_interval(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(200):
        assert client.post(PROBLEM, {"Authorization": "Bearer nope"}).status_code == 401
    refusals = [r for r in caplog.records if "refused a problem notification" in r.getMessage()]
    assert len(refusals) == 1


def test_rate_limited_log_counts_what_it_leaves_out(caplog: pytest.LogCaptureFixture) -> None:
    from pytest_perfsig.remediation.refusals import RateLimitedLog

    caplog.set_level(logging.INFO)
    now = [100.0]
    flood = RateLimitedLog(
        logging.getLogger("pytest_perfsig.remediation"), interval_s=10, clock=lambda: now[0]
    )
    for i in range(1000):
        flood.log("refused problem notifications (HTTP 401)", logging.WARNING, "refused %d", i)
    flood.log("dropped connections", logging.INFO, "dropped one")
    flood.flush()  # the interval has not run out: nothing more yet
    assert [r.getMessage() for r in caplog.records] == ["refused 0", "dropped one"]
    now[0] += 10
    flood.flush()
    assert caplog.records[-1].getMessage() == (
        "999 more refused problem notifications (HTTP 401) in the last 10 s (logged once per 10 s)"
    )
    flood.flush()
    assert len(caplog.records) == 3
    now[0] += 10
    flood.log("refused problem notifications (HTTP 401)", logging.WARNING, "refused %d", 1000)
    assert caplog.records[-1].getMessage() == "refused 1000"


# ------------------------------------------------------------------ fuzzing the payload parser

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
_keys = st.sampled_from(
    [
        "PID",
        "ProblemID",
        "State",
        "ProblemTitle",
        "ImpactedEntities",
        "Tags",
        "ProblemDetailsJSON",
        "ProblemStartTime",
        "alerts",
        "groupKey",
        "status",
        "version",
        "commonLabels",
        "groupLabels",
        "labels",
        "startsAt",
        "fingerprint",
        "tagsOfAffectedEntities",
        "startTime",
        "key",
        "value",
        "name",
        "entity",
        "annotations",
        "summary",
    ]
)
_payloads = st.recursive(
    _scalars | st.sampled_from(["OPEN", "RESOLVED", "firing", "resolved", "4", "DeploymentGroup:Production"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(payload=_payloads | _json)
def test_fuzzed_payloads_parse_or_fail_with_payload_error(payload: Any) -> None:
    with contextlib.suppress(PayloadError):  # anything else fails the test
        parse_problem(payload, known_envs=["Production", "Staging"])
