"""Deferred validation: both registries (SQLite, DynamoDB through moto), the worker, and its
guarantees — each request processed once, nothing left waiting, nothing approved on error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_perfsig.errors import UsageError
from pytest_perfsig.gate.deferred import MAX_ATTEMPTS, work_once
from pytest_perfsig.gate.status import GateOutcome
from pytest_perfsig.registry import new_request, open_registry, parse_user_parameters
from pytest_perfsig.registry.base import ValidationRegistry, ValidationRequest
from pytest_perfsig.registry.sqlite import SqliteRegistry
from pytest_perfsig.store import RunRecord, SqliteStore

NOW = 1_800_000_000.0
MONSPEC = json.dumps(
    {
        "Svc": {
            "environments": {"Staging": {}, "Production": {}},
            "comparisons": [
                {
                    "name": "StagingToProduction",
                    "source": "Staging",
                    "compare": "Production",
                    "scalefactorperc": {"default": 30},
                }
            ],
            "perfsignature": [
                {"timeseries": "service.failurerate", "aggregate": "avg"},
                {"timeseries": "service.responsetime", "aggregate": "avg"},
            ],
        }
    }
)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(params=["sqlite", "dynamodb"])
def registry(request: pytest.FixtureRequest, tmp_path: Path, aws_env: None) -> Iterator[ValidationRegistry]:
    if request.param == "sqlite":
        yield SqliteRegistry(SqliteStore(tmp_path / "r.db"))
        return
    import boto3
    from moto import mock_aws

    from pytest_perfsig.registry.dynamodb import DynamoDbRegistry, create_table

    with mock_aws():
        yield DynamoDbRegistry(create_table(boto3.resource("dynamodb", region_name="us-east-1")))


def request_at(ts: float, **kwargs: Any) -> ValidationRequest:
    return new_request("pipe", "StagingToProduction", 5, MONSPEC, now=ts, **kwargs)


def test_user_parameters_of_the_original() -> None:
    assert parse_user_parameters("StagingToProduction,5,ApproveStaging") == (
        "StagingToProduction",
        5.0,
        "ApproveStaging",
    )
    assert parse_user_parameters("StagingToProduction, 2.5") == ("StagingToProduction", 2.5, None)
    for bad in ("", "StagingToProduction", "X,five,Y", "a,1,b,c"):
        with pytest.raises(UsageError):
            parse_user_parameters(bad)
    with pytest.raises(UsageError, match="longer than 0 minutes"):
        new_request("p", "c", 0, "{}")


def test_register_due_claim_finish(registry: ValidationRegistry) -> None:
    request = request_at(NOW, approval_action="ApproveStaging", stage="Staging", action="Register")
    registry.register(request)
    stored = registry.get("pipe", request.timestamp_ms)
    assert stored is not None and stored.status == "waiting" and stored.approval_action == "ApproveStaging"
    assert stored.window == (NOW, NOW + 300) and stored.ready_at == NOW + 300
    assert registry.due(NOW + 299) == []
    (due,) = registry.due(NOW + 301)
    assert registry.claim(due, "w1", NOW + 301, 60)
    assert not registry.claim(registry.get("pipe", request.timestamp_ms) or due, "w2", NOW + 301, 60)
    assert registry.due(NOW + 302) == []
    assert not registry.finish(due, "w2", "pass", results=[], reason=None, gate_id=None)  # not its claim
    assert registry.finish(
        due,
        "w1",
        "violation",
        results=[{"check_id": "x", "status": "violation"}],
        reason="1 configuration entries showed violations!",
        gate_id="g",
    )
    final = registry.get("pipe", request.timestamp_ms)
    assert final is not None and final.status == "violation" and final.attempts == 1
    assert final.results == [{"check_id": "x", "status": "violation"}]
    assert [r.timestamp_ms for r in registry.recent("pipe")] == [request.timestamp_ms]


def test_expired_lease_goes_back_to_waiting_then_error(registry: ValidationRegistry) -> None:
    request = request_at(NOW)
    registry.register(request)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        (due,) = registry.due(NOW + 400 * attempt)
        assert registry.claim(due, f"dead-{attempt}", NOW + 400 * attempt, 10)
        released = registry.release_expired(NOW + 400 * attempt + 11, MAX_ATTEMPTS)
        assert [r.status for r in released] == ["waiting" if attempt < MAX_ATTEMPTS else "error"]
    final = registry.get("pipe", request.timestamp_ms)
    assert final is not None and final.status == "error" and final.attempts == MAX_ATTEMPTS
    assert "stopped during validation" in (final.reason or "")
    assert registry.due(NOW + 10_000) == []  # never waiting forever


def test_every_claim_increments_the_fence_and_only_its_holder_writes(registry: ValidationRegistry) -> None:
    request = request_at(NOW)
    registry.register(request)
    (first,) = registry.due(NOW + 301)
    assert first.fence == 0
    assert registry.claim(first, "w", NOW + 301, 10) and first.fence == 1
    assert registry.renew(first, "w", 1, NOW + 305, 10) and first.lease_until == NOW + 315
    assert not registry.renew(first, "other", 1, NOW + 305, 10)  # not its worker
    assert not registry.renew(first, "w", 0, NOW + 305, 10)  # not its token
    # The lease ends; a worker with the same id (a restarted container) takes the request over.
    assert [r.status for r in registry.release_expired(NOW + 316, MAX_ATTEMPTS)] == ["waiting"]
    (second,) = registry.due(NOW + 316)
    assert registry.claim(second, "w", NOW + 316, 10) and second.fence == 2
    # The first claim, same worker id but an old token, can neither renew nor record.
    assert not registry.renew(first, "w", 1, NOW + 317, 10)
    assert not registry.finish(first, "w", "pass", results=[], reason=None, gate_id="stale")
    assert not registry.finish(second, "w", "pass", results=[], reason=None, gate_id="stale", fence=1)
    assert registry.finish(second, "w", "violation", results=[], reason="r", gate_id="g-2")
    final = registry.get("pipe", request.timestamp_ms)
    assert final is not None
    assert (final.status, final.gate_id, final.fence, final.attempts) == ("violation", "g-2", 2, 2)
    assert not registry.renew(second, "w", 2, NOW + 318, 10)  # finished: nothing left to hold


def test_a_renewed_lease_is_not_released(registry: ValidationRegistry) -> None:
    request = request_at(NOW)
    registry.register(request)
    (due,) = registry.due(NOW + 301)
    assert registry.claim(due, "w", NOW + 301, 10)
    assert registry.renew(due, "w", due.fence, NOW + 309, 10)
    assert registry.release_expired(NOW + 312, MAX_ATTEMPTS) == []  # past the first lease only
    held = registry.get("pipe", request.timestamp_ms)
    assert held is not None and held.status == "running" and held.lease_until == NOW + 319
    # Past its end, a lease nobody took over still renews: the token says who holds it.
    assert registry.renew(due, "w", due.fence, NOW + 330, 10)
    assert registry.release_expired(NOW + 335, MAX_ATTEMPTS) == []


def test_requests_of_an_older_store_get_a_fence(tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "store-v1.db"
    shutil.copyfile(Path(__file__).parent / "data" / "store-v1.db", path)
    registry = SqliteRegistry(SqliteStore(path))
    (old,) = registry.recent()
    assert (old.status, old.fence) == ("pass", 0)
    registry.register(request_at(NOW))
    (due,) = registry.due(NOW + 301)
    assert registry.claim(due, "w", NOW + 301, 10) and due.fence == 1


def test_dynamodb_items_of_earlier_releases_are_released_and_fenced(aws_env: None) -> None:
    import boto3
    from moto import mock_aws

    from pytest_perfsig.registry.dynamodb import DynamoDbRegistry, create_table

    with mock_aws():
        registry = DynamoDbRegistry(create_table(boto3.resource("dynamodb", region_name="us-east-1")))
        # Claimed by a worker of an earlier release: no Fence attribute at all.
        registry.table.put_item(
            Item={
                "PipelineName": "old",
                "Timestamp": 1,
                "ComparisonName": "C",
                "Validationtimeframe": 5,
                "Monspec": "{}",
                "Status": "running",
                "ReadyToValidateTimestamp": 0,
                "Worker": "old-worker",
                "LeaseUntil": 10,
                "Attempts": 1,
            }
        )
        (released,) = registry.release_expired(11.0, MAX_ATTEMPTS)
        assert (released.status, released.fence) == ("waiting", 0)
        (due,) = registry.due(12.0)
        assert registry.claim(due, "new-worker", 12.0, 10) and (due.fence, due.attempts) == (1, 2)
        assert not registry.finish(due, "new-worker", "pass", results=[], reason=None, gate_id=None, fence=0)
        assert registry.finish(due, "new-worker", "pass", results=[], reason=None, gate_id=None)


# ---------------------------------------------------------------------------- the worker


def fill_samples(store: SqliteStore, staging_failures: int, start: float = NOW) -> None:
    """Samples for the window [start, start + 300]: Staging and Production, 100 requests each."""
    for env, failures in (("Staging", staging_failures), ("Production", 0)):
        store.create_run(RunRecord(run_id=env, service="Svc", env=env, started_at=start, status="completed"))
        store.add_samples(
            [(env, start + 2.0 * k, "Svc", env, "/", 10.0, int(k >= failures), 200) for k in range(100)]
        )


class FakeApprover:
    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str]] = []

    def __call__(self, request: ValidationRequest, gate: Any, outcome: GateOutcome | None) -> str:
        status = outcome.status if outcome is not None else "error"
        self.calls.append((request.approval_action, status))
        return "approved" if status == "pass" else "rejected"


@pytest.mark.parametrize(("failures", "status"), [(0, "pass"), (30, "violation")])
def test_worker_judges_the_window_and_approves(tmp_path: Path, failures: int, status: str) -> None:
    store = SqliteStore(tmp_path / "s.db")
    fill_samples(store, failures)
    registry = SqliteRegistry(store)
    registry.register(request_at(NOW, approval_action="ApproveStaging"))
    approver = FakeApprover()
    (done,) = work_once(registry, store, worker="w", approve=approver, now=NOW + 301)
    assert done.status == status and done.recorded
    assert approver.calls == [("ApproveStaging", status)]
    stored = registry.recent()[0]
    assert stored.status == status and len(stored.results or []) == 2 and stored.gate_id
    failure = next(r for r in stored.results or [] if r["metric"] == "service.failurerate")
    assert failure["source_value"] == failures and failure["compare_value"] == 0.0
    if status == "violation":
        assert (stored.reason or "").startswith("1 configuration entries showed violations!")
    assert store.gates(1)[0].status == status


def test_worker_without_data_records_error_and_rejects(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    registry = SqliteRegistry(store)
    registry.register(request_at(NOW, approval_action="ApproveStaging"))
    approver = FakeApprover()
    (done,) = work_once(registry, store, worker="w", approve=approver, now=NOW + 301)
    assert done.status == "error" and "no data for Staging" in (done.reason or "")
    assert approver.calls == [("ApproveStaging", "error")]


def test_worker_with_broken_monspec_records_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    registry = SqliteRegistry(store)
    registry.register(new_request("pipe", "Nope", 5, MONSPEC, now=NOW, approval_action="A"))
    registry.register(
        new_request("pipe", "StagingToProduction", 5, str(tmp_path / "missing.json"), now=NOW + 1)
    )
    approver = FakeApprover()
    done = work_once(registry, store, worker="w", approve=approver, now=NOW + 400)
    assert [d.status for d in done] == ["error", "error"]
    assert "'Nope' is not defined" in (done[0].reason or "") and "file not found" in (done[1].reason or "")
    assert approver.calls == [("A", "error")]
    assert {r.status for r in registry.recent()} == {"error"}


def test_approval_failure_is_recorded_not_swallowed(tmp_path: Path) -> None:
    from pytest_perfsig.errors import PerfsigError

    store = SqliteStore(tmp_path / "s.db")
    fill_samples(store, 0)
    registry = SqliteRegistry(store)
    registry.register(request_at(NOW, approval_action="ApproveStaging"))

    def failing(request: ValidationRequest, gate: Any, outcome: GateOutcome | None) -> str:
        raise PerfsigError("ThrottlingException: Rate exceeded")

    (done,) = work_once(registry, store, worker="w", approve=failing, now=NOW + 301)
    assert done.status == "pass" and "approval failed: ThrottlingException" in (done.reason or "")


# ---------------------------------------------------------------------------- processes


def perfsig(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_perfsig.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def register_many(store_path: Path, count: int) -> SqliteRegistry:
    """``count`` requests, due now (registered an hour ago), over stored samples."""
    start = time.time() - 3600
    store = SqliteStore(store_path)
    fill_samples(store, 0, start)
    registry = SqliteRegistry(store)
    for i in range(count):
        registry.register(new_request("pipe", "StagingToProduction", 5, MONSPEC, now=start + i / 1000))
    return registry


def test_two_workers_process_each_request_exactly_once(tmp_path: Path) -> None:
    registry = register_many(tmp_path / "s.db", 50)
    command = [
        sys.executable,
        "-m",
        "pytest_perfsig.cli",
        "worker",
        "--once",
        "--no-approve",
        "--store",
        str(tmp_path / "s.db"),
    ]
    workers = [
        subprocess.Popen([*command, "--worker-id", f"w{i}"], stdout=subprocess.PIPE, text=True)
        for i in (1, 2)
    ]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    seen = [
        {line.split()[1] for line in out.splitlines() if line.startswith("perfsig: pipe@")} for out in outputs
    ]
    assert len(seen[0]) + len(seen[1]) == 50 and not seen[0] & seen[1]
    requests = registry.recent(limit=100)
    assert len(requests) == 50
    assert {r.status for r in requests} == {"pass"} and {r.attempts for r in requests} == {1}
    assert {r.worker for r in requests} <= {"w1", "w2"}


def test_killed_worker_loses_no_request(tmp_path: Path) -> None:
    registry = register_many(tmp_path / "s.db", 300)
    store = str(tmp_path / "s.db")
    victim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_perfsig.cli",
            "worker",
            "--no-approve",
            "--store",
            store,
            "--worker-id",
            "victim",
            "--lease",
            "1",
            "--interval",
            "60",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(r.status == "pass" for r in registry.recent(limit=300)):
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    statuses = {r.status for r in registry.recent(limit=300)}
    assert "pass" in statuses and "waiting" in statuses  # killed half-way
    time.sleep(1.1)  # the victim's lease runs out
    result = perfsig("worker", "--once", "--no-approve", "--store", store, "--worker-id", "rescuer")
    assert result.returncode == 0, result.stderr
    requests = registry.recent(limit=300)
    assert len(requests) == 300 and {r.status for r in requests} == {"pass"}
    # At most the one request in flight at the kill was claimed twice.
    assert sum(r.attempts for r in requests) in (300, 301)


def test_register_command(tmp_path: Path) -> None:
    monspec = tmp_path / "monspec.json"
    monspec.write_text(MONSPEC)
    store = str(tmp_path / "s.db")
    ok = perfsig(
        "register",
        "StagingToProduction,5,ApproveStaging",
        "--pipeline",
        "pipe",
        "--monspec",
        str(monspec),
        "--store",
        store,
    )
    assert ok.returncode == 0, ok.stderr
    assert (
        "registered StagingToProduction for pipe" in ok.stdout
        and "ApproveStaging is approved or rejected" in ok.stdout
    )
    ok2 = perfsig(
        "register",
        "--comparison",
        "StagingToProduction",
        "--minutes",
        "1",
        "--monspec",
        str(monspec),
        "--store",
        store,
        env={**os.environ, "CODEBUILD_INITIATOR": "codepipeline/from-env"},
    )
    assert ok2.returncode == 0, ok2.stderr
    (first, second) = sorted(SqliteRegistry(SqliteStore(store)).recent(), key=lambda r: r.timestamp_ms)
    assert (first.pipeline, first.approval_action, first.minutes) == ("pipe", "ApproveStaging", 5.0)
    assert (second.pipeline, second.approval_action) == ("from-env", None)
    bad = perfsig("register", "Nope,5", "--pipeline", "pipe", "--monspec", str(monspec), "--store", store)
    assert bad.returncode == 4 and "'Nope' is not defined" in bad.stderr and "Traceback" not in bad.stderr
    listed = perfsig("requests", "--store", store)
    assert listed.stdout.count("waiting") == 2


def test_open_registry_urls(tmp_path: Path) -> None:
    assert str(open_registry(None, tmp_path / "a.db")) == f"sqlite:{tmp_path / 'a.db'}"
    assert (
        str(open_registry(f"sqlite:{tmp_path / 'b.db'}", tmp_path / "a.db")) == f"sqlite:{tmp_path / 'b.db'}"
    )
    with pytest.raises(UsageError, match="unknown registry"):
        open_registry("redis://x", tmp_path / "a.db")


def test_worker_command_refuses_a_lease_of_zero_and_lists_who_holds_a_request(tmp_path: Path) -> None:
    store = str(tmp_path / "s.db")
    registry = register_many(tmp_path / "s.db", 1)
    refused = perfsig("worker", "--once", "--no-approve", "--lease", "0", "--store", store)
    assert refused.returncode == 4 and "lease must be longer than 0 seconds" in refused.stderr
    (due,) = registry.due(time.time())
    assert registry.claim(due, "w7", time.time(), 60)
    listed = perfsig("requests", "--store", store)
    assert "running   attempts=1 worker=w7 fence=1" in listed.stdout
