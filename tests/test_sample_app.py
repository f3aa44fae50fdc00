"""Tests of the demo app under test (sample_app), over real HTTP."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from sample_app import (
    LOOPBACK_ONLY_MESSAGE,
    AppConfig,
    BuildPolicy,
    create_app,
    is_loopback_host,
    is_production,
    parse_loopback_url,
    startup_line,
)
from sample_app.__main__ import parse_config
from sample_app.app import HOP_HEADER, MAX_HOPS

REPO_ROOT = Path(__file__).resolve().parent.parent
# ISO 8601 local time with milliseconds and UTC offset, then level and message.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (?P<level>[A-Z]+) (?P<msg>.*)$")


@contextlib.contextmanager
def running_app(config: AppConfig) -> Iterator[httpx.Client]:
    """Run the real app with uvicorn in a thread; yield a client bound to it."""
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=config.port, log_level="warning", access_log=False, lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn thread died during startup"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn thread did not stop"


def make_config(tmp_path: Path, **overrides: object) -> AppConfig:
    # port 0: the OS picks a free port, so no race between tests.
    values: dict[str, object] = {
        "stage": "Staging",
        "build": 1,
        "port": 0,
        "latency_ms": 1.0,
        "log_file": tmp_path / "serviceoutput.log",
    }
    values.update(overrides)
    return AppConfig(**values)  # type: ignore[arg-type]


def invoke_statuses(client: httpx.Client, n: int = 20) -> list[int]:
    return [client.get("/api/invoke").status_code for _ in range(n)]


def log_records(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = LOG_LINE.match(line)
        assert match, f"malformed log line: {line!r}"
        records.append((match["level"], match["msg"]))
    return records


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- pure policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "production", "factor", "every"),
    [
        (1, False, 1.0, None),
        (1, True, 1.0, None),
        (2, False, 1.0, 2),
        (2, True, 1.0, 2),
        (3, False, 1.0, None),
        (3, True, 1.0, None),
        (4, False, 1.0, None),
        (4, True, 2.0, 10),
        (99, True, 1.0, None),
        (0, False, 1.0, None),
    ],
)
def test_build_policy_table(build: int, production: bool, factor: float, every: int | None) -> None:
    policy = BuildPolicy.for_build(build, production)
    assert policy.latency_factor == factor
    assert policy.invoke_failure_every == every


def test_build_policy_failure_pattern_is_deterministic() -> None:
    assert [BuildPolicy.for_build(2, False).invoke_fails(i) for i in range(1, 7)] == [
        False,
        True,
        False,
        True,
        False,
        True,
    ]
    prod4 = BuildPolicy.for_build(4, True)
    assert [i for i in range(1, 31) if prod4.invoke_fails(i)] == [10, 20, 30]
    assert not any(BuildPolicy.for_build(1, True).invoke_fails(i) for i in range(1, 101))


@pytest.mark.parametrize(
    ("stage", "expected"),
    [("Production", True), ("Production-EU", True), ("Staging", False), ("production", False), ("", False)],
)
def test_is_production_uses_prefix(stage: str, expected: bool) -> None:
    assert is_production(stage) is expected
    assert AppConfig(stage=stage).production is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("127.1", False),
        ("2130706433", False),
    ],
)
def test_is_loopback_host(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "http://127.0.0.1@example.com/",
        "http://127.0.0.1\\@example.com/",
        "https://10.1.2.3:8443/x",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "not a url",
        "",
    ],
)
def test_parse_loopback_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match=LOOPBACK_ONLY_MESSAGE):
        parse_loopback_url(url)


def test_parse_loopback_url_accepts() -> None:
    assert parse_loopback_url("http://[::1]:9/a").host == "::1"
    assert parse_loopback_url("https://localhost/x?y=1").path == "/x"


def test_create_app_rejects_non_loopback_downstream(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=LOOPBACK_ONLY_MESSAGE):
        create_app(make_config(tmp_path, downstream_url="http://example.com/"))


def test_default_downstream_is_the_app_itself() -> None:
    assert AppConfig(port=8081).default_downstream_url() == "http://127.0.0.1:8081/api/echo?text=downstream"
    assert (
        AppConfig(host="0.0.0.0").default_downstream_url(9) == "http://127.0.0.1:9/api/echo?text=downstream"
    )
    assert AppConfig(host="::1", port=5).default_downstream_url() == "http://[::1]:5/api/echo?text=downstream"


def test_startup_line_format() -> None:
    line = startup_line(AppConfig(stage="Staging", build=2), 8081)
    assert line == "sample_app Staging build 2 listening on http://127.0.0.1:8081"


def test_cli_defaults_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILD_NUMBER", "3")
    monkeypatch.setenv("DEPLOYMENT_GROUP_NAME", "Production-West")
    config = parse_config([])
    assert (config.build, config.stage, config.production) == (3, "Production-West", True)
    assert (config.host, config.port, config.latency_ms) == ("127.0.0.1", 8080, 5.0)
    assert config.log_file == Path("serviceoutput.log")
    assert config.downstream_url is None

    monkeypatch.delenv("BUILD_NUMBER")
    monkeypatch.delenv("DEPLOYMENT_GROUP_NAME")
    config = parse_config(["--port", "9000", "--latency-ms", "20", "--build", "4"])
    assert (config.build, config.stage, config.port, config.latency_ms) == (4, "Staging", 9000, 20.0)


@pytest.mark.parametrize(
    "argv",
    [
        ["--downstream-url", "http://example.com/"],
        ["--build", "two"],
        ["--port", "70000"],
        ["--latency-ms", "-1"],
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parse_config(argv)
    assert excinfo.value.code == 2


# --- real HTTP, in-process uvicorn -----------------------------------------------------------


@pytest.mark.parametrize("stage", ["Staging", "Production"])
def test_build2_fails_exactly_half_of_invokes_in_every_stage(tmp_path: Path, stage: str) -> None:
    with running_app(make_config(tmp_path, stage=stage, build=2)) as client:
        statuses = invoke_statuses(client)
    assert statuses == [200, 500] * 10
    assert statuses.count(500) / len(statuses) == 0.5


@pytest.mark.parametrize(("stage", "failures"), [("Staging", 0), ("Production", 2)])
def test_build4_fails_ten_percent_only_in_production(tmp_path: Path, stage: str, failures: int) -> None:
    with running_app(make_config(tmp_path, stage=stage, build=4)) as client:
        statuses = invoke_statuses(client)
    assert statuses.count(500) == failures
    assert set(statuses) <= {200, 500}


def test_build4_is_slower_in_production(tmp_path: Path) -> None:
    def median_ms(client: httpx.Client) -> float:
        client.get("/health")  # warm the connection up
        durations = []
        for _ in range(20):
            start = time.perf_counter()
            client.get("/api/echo", params={"text": "x"}).raise_for_status()
            durations.append((time.perf_counter() - start) * 1000)
        return statistics.median(durations)

    staging = make_config(tmp_path, stage="Staging", build=4, latency_ms=20)
    production = make_config(tmp_path, stage="Production", build=4, latency_ms=20)
    with running_app(staging) as staging_client, running_app(production) as production_client:
        staging_ms = median_ms(staging_client)
        production_ms = median_ms(production_client)
    assert staging_ms >= 15  # the base latency is applied to ordinary traffic too
    assert production_ms > 1.5 * staging_ms


@pytest.mark.parametrize("build", [1, 3, 99])
@pytest.mark.parametrize("stage", ["Staging", "Production"])
def test_healthy_builds_never_fail(tmp_path: Path, build: int, stage: str) -> None:
    with running_app(make_config(tmp_path, stage=stage, build=build)) as client:
        responses = [client.get("/api/invoke") for _ in range(20)]
        assert client.get("/version").json() == {
            "build": build,
            "stage": stage,
            "production": stage == "Production",
        }
    assert [r.status_code for r in responses] == [200] * 20
    # The default downstream is the app's own /api/echo, reached for real.
    body = responses[0].json()
    assert body["status"] == 200
    assert body["url"].endswith("/api/echo?text=downstream")


def test_version_switch_changes_behaviour_and_logs_warning(tmp_path: Path) -> None:
    config = make_config(tmp_path, build=1)
    with running_app(config) as client:
        assert invoke_statuses(client).count(500) == 0
        response = client.get("/api/version", params={"newBuildNumber": "2"})
        assert response.status_code == 200
        assert response.json() == {"build": 2, "previousBuild": 1}
        assert client.get("/version").json()["build"] == 2
        assert invoke_statuses(client).count(500) == 10

        bad = client.get("/api/version", params={"newBuildNumber": "two"})
        assert bad.status_code == 400
        assert "integer" in bad.json()["error"]
        assert client.get("/version").json()["build"] == 2
    assert ("WARNING", "Somebody is changing! buildNumber from 1 to 2") in log_records(config.log_file)


def test_causeerror_returns_500_and_logs_error(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with running_app(config) as client:
        assert client.get("/api/causeerror").status_code == 500
    assert log_records(config.log_file) == [("ERROR", "somebody called /api/causeerror")]


def test_logs_every_hundred_requests(tmp_path: Path) -> None:
    config = make_config(tmp_path, latency_ms=0)
    line = ("INFO", "Just served another 100 requests!")
    with running_app(config) as client:
        for _ in range(99):
            client.get("/api/echo")
        client.get("/health")  # health checks are not "served" business requests
        assert line not in log_records(config.log_file)
        client.get("/api/login", params={"username": "bob"})
        assert log_records(config.log_file) == [line]


@pytest.mark.parametrize(
    "url",
    ["http://example.com/", "http://127.0.0.1@example.com/", "http://10.0.0.1:8080/", "gopher://127.0.0.1/"],
)
def test_invoke_rejects_non_loopback_urls(tmp_path: Path, url: str) -> None:
    with running_app(make_config(tmp_path, build=2)) as client:
        response = client.get("/api/invoke", params={"url": url})
        assert response.status_code == 400
        assert response.json() == {"error": LOOPBACK_ONLY_MESSAGE}
        # Rejected requests do not advance build 2's failure counter.
        assert invoke_statuses(client, 2) == [200, 500]


def test_invoke_reports_downstream_status_and_failures(tmp_path: Path) -> None:
    with running_app(make_config(tmp_path)) as client:
        ok = client.get("/api/invoke", params={"url": str(client.base_url.join("/api/causeerror"))})
        assert ok.status_code == 200
        assert ok.json()["status"] == 500

        closed = client.get("/api/invoke", params={"url": f"http://127.0.0.1:{free_port()}/"})
        assert closed.status_code == 502
        assert closed.json()["error"].startswith("downstream call failed:")

        too_deep = client.get("/api/invoke", headers={HOP_HEADER: str(MAX_HOPS)})
        assert too_deep.status_code == 508


def test_invoke_loop_stops_at_hop_limit(tmp_path: Path) -> None:
    port = free_port()
    # A downstream pointing back at /api/invoke would otherwise recurse forever.
    config = make_config(tmp_path, port=port, downstream_url=f"http://127.0.0.1:{port}/api/invoke")
    with running_app(config) as client:
        response = client.get("/api/invoke")
    assert response.status_code == 200
    assert response.json()["status"] == 200  # hop 1 saw hop 2's 200, which saw hop 3's 508


def test_sleeptime_sets_a_minimum_latency(tmp_path: Path) -> None:
    with running_app(make_config(tmp_path, latency_ms=0)) as client:
        for bad in ["abc", "-5", "nan", "1e9"]:
            response = client.get("/api/sleeptime", params={"min": bad})
            assert response.status_code == 400
            assert "min must be" in response.json()["error"]
        assert client.get("/api/sleeptime").status_code == 400

        assert client.get("/api/sleeptime", params={"min": "60"}).json() == {"minSleepMs": 60.0}
        start = time.perf_counter()
        client.get("/api/echo").raise_for_status()
        assert time.perf_counter() - start >= 0.055


def test_pages_and_simple_endpoints(tmp_path: Path) -> None:
    with running_app(make_config(tmp_path, stage="Staging<script>", build=3)) as client:
        health = client.get("/health")
        assert (health.status_code, health.text) == (200, "ok")
        assert client.get("/api/echo", params={"text": "hi <b>"}).json() == {"text": "hi <b>"}
        assert "Welcome bob!" in client.get("/api/login", params={"username": "bob"}).json()["message"]
        page = client.get("/", headers={"host": "evil<i>"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "build 3" in page.text
        assert "Staging&lt;script&gt;" in page.text
        assert "<script>" not in page.text
        assert "evil&lt;i&gt;" in page.text


def test_apps_do_not_share_state_or_log_handlers(tmp_path: Path) -> None:
    first = make_config(tmp_path, build=2, log_file=tmp_path / "a.log")
    second = make_config(tmp_path, build=1, log_file=tmp_path / "b.log")
    app_a, app_b = create_app(first), create_app(second)
    assert app_a.state.sample_state is not app_b.state.sample_state
    assert app_a.state.logger is not app_b.state.logger
    assert len(app_a.state.logger.handlers) == len(app_b.state.logger.handlers) == 1
    with running_app(first) as client:
        client.get("/api/causeerror")
    assert log_records(tmp_path / "a.log") == [("ERROR", "somebody called /api/causeerror")]
    assert not (tmp_path / "b.log").exists()


# --- real process ----------------------------------------------------------------------------


def test_cli_subprocess_prints_startup_line_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sample_app", "--stage", "Production", "--build", "4", "--port", str(port)],
        cwd=tmp_path,  # the default log file lands in the working directory
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        try:
            line = lines.get(timeout=15)
        except queue.Empty:
            pytest.fail("no startup line within 15 s")
        assert line == f"sample_app Production build 4 listening on http://127.0.0.1:{port}\n"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10) as client:
            health = client.get("/health")
            assert (health.status_code, health.text) == (200, "ok")
            assert client.get("/version").json() == {"build": 4, "stage": "Production", "production": True}
            assert client.get("/api/causeerror").status_code == 500
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    # uvicorn re-raises SIGTERM after its graceful shutdown.
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    assert log_records(tmp_path / "serviceoutput.log") == [("ERROR", "somebody called /api/causeerror")]
