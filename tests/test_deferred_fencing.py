"""Deferred validation under concurrency: leases renewed while judging, fencing tokens, and the
approval sent only by the worker that holds the request.

Workers are real: several processes over a DynamoDB table served by moto on loopback, or over
one SQLite store; in-process workers for the takeovers that need exact timing. A slow store
(every gate step sleeps, as on a slow disk) makes a validation outlast its lease.

CodePipeline is a botocore Stubber: moto implements neither GetPipelineState nor
PutApprovalResult.

Run as a script (``PYTHONPATH=. python tests/test_deferred_fencing.py REGISTRY STORE WORKER
LEASE STEP``), this file is one of the worker processes of the concurrency test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_perfsig.errors import RegistryError
from pytest_perfsig.gate.deferred import (
    ABANDONED,
    Lease,
    LeaseLost,
    codepipeline_approver,
    work_once,
)
from pytest_perfsig.registry import new_request, open_registry
from pytest_perfsig.registry.base import FINAL_STATUSES, ValidationRegistry, ValidationRequest
from pytest_perfsig.registry.sqlite import SqliteRegistry
from pytest_perfsig.store import SqliteStore
from tests.test_registry import MONSPEC, FakeApprover, fill_samples

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = "perfsig-demo"


class SlowStore(SqliteStore):
    """A store whose every gate step (open, read samples or counts, save a verdict, close) takes
    ``delay_s``; ``stall`` runs once, inside step number ``stall_at`` (a long step)."""

    def __init__(
        self,
        path: Path | str,
        delay_s: float = 0.0,
        stall_at: int = 0,
        stall: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(path)
        self.delay_s, self.stall_at, self.stall = delay_s, stall_at, stall
        self.steps = 0

    def _step(self) -> None:
        self.steps += 1
        time.sleep(self.delay_s)
        if self.steps == self.stall_at:
            self.stall()

    def create_gate(self, *args: Any, **kwargs: Any) -> None:
        self._step()
        super().create_gate(*args, **kwargs)

    def samples(self, *args: Any, **kwargs: Any) -> Any:
        self._step()
        return super().samples(*args, **kwargs)

    def counts(self, *args: Any, **kwargs: Any) -> Any:
        self._step()
        return super().counts(*args, **kwargs)

    def latencies(self, *args: Any, **kwargs: Any) -> Any:
        self._step()
        return super().latencies(*args, **kwargs)

    def save_verdict(self, *args: Any, **kwargs: Any) -> None:
        self._step()
        super().save_verdict(*args, **kwargs)

    def finish_gate(self, *args: Any, **kwargs: Any) -> None:
        self._step()
        super().finish_gate(*args, **kwargs)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)


class World:
    """A store with samples for a window that ended an hour ago, and a registry; ``other()`` is
    a second worker's own connection to the same registry."""

    def __init__(
        self, path: Path, registry: ValidationRegistry, other: Callable[[], ValidationRegistry]
    ) -> None:
        self.path, self.registry, self.other = path, registry, other
        self.start = time.time() - 3600
        with SqliteStore(path) as store:
            fill_samples(store, 0, self.start)

    def register(
        self, approval_action: str | None = "ApproveStaging", comparison: str = "StagingToProduction"
    ) -> ValidationRequest:
        request = new_request(
            PIPELINE, comparison, 5, MONSPEC, now=self.start, approval_action=approval_action
        )
        self.registry.register(request)
        return request

    def final(self, request: ValidationRequest) -> ValidationRequest:
        stored = self.registry.get(request.pipeline, request.timestamp_ms)
        assert stored is not None
        return stored


@pytest.fixture(params=["sqlite", "dynamodb"])
def world(request: pytest.FixtureRequest, tmp_path: Path, aws_env: None) -> Iterator[World]:
    path = tmp_path / "s.db"
    if request.param == "sqlite":
        yield World(path, SqliteRegistry(SqliteStore(path)), lambda: SqliteRegistry(SqliteStore(path)))
        return
    import boto3
    from moto import mock_aws

    from pytest_perfsig.registry.dynamodb import DynamoDbRegistry, create_table

    with mock_aws():
        table = create_table(boto3.resource("dynamodb", region_name="us-east-1"))
        yield World(path, DynamoDbRegistry(table), lambda: DynamoDbRegistry(table))


# ---------------------------------------------------------------------------- takeovers


def test_worker_whose_lease_ends_mid_judging_neither_approves_nor_records(world: World) -> None:
    request = world.register()
    mine, theirs = FakeApprover(), FakeApprover()
    taken: list[Any] = []

    def stall_then_lose_it() -> None:
        # A step longer than the lease (a stalled disk, a paused VM): the lease ends, and
        # another worker takes the request over and judges it.
        time.sleep(0.7)
        with SqliteStore(world.path) as store:
            taken.extend(work_once(world.other(), store, worker="B", approve=theirs, lease_s=60))

    slow = SlowStore(world.path, stall_at=2, stall=stall_then_lose_it)
    (done,) = work_once(world.registry, slow, worker="A", approve=mine, lease_s=0.5)

    assert [(p.status, p.recorded) for p in taken] == [("pass", True)]
    assert (done.status, done.recorded, done.approval) == (ABANDONED, False, None)
    assert (done.reason or "").startswith("A no longer holds perfsig-demo@") and "took it over" in (
        done.reason or ""
    )
    assert mine.calls == [] and theirs.calls == [("ApproveStaging", "pass")]
    final = world.final(request)
    assert (final.status, final.worker, final.fence, final.attempts) == ("pass", "B", 2, 2)
    # A's gate is closed as abandoned, without a verdict; B's is the request's.
    gates = {g.gate_id: g for g in SqliteStore(world.path).gates(10)}
    assert len(gates) == 2 and gates[final.gate_id or ""].status == "pass"
    (abandoned,) = (g for g in gates.values() if g.gate_id != final.gate_id)
    assert abandoned.status == "error" and abandoned.problems[0].startswith("abandoned: A no longer holds")
    assert SqliteStore(world.path).verdicts(abandoned.gate_id) == []


def test_lease_renewed_while_judging_is_not_taken_over(world: World) -> None:
    request = world.register()
    approver = FakeApprover()
    others: list[Any] = []

    def another_worker_passes_by() -> None:
        # Past the end of the lease A was granted at its claim: A renewed it meanwhile.
        with SqliteStore(world.path) as store:
            others.extend(work_once(world.other(), store, worker="B", approve=FakeApprover(), lease_s=60))

    # Six steps of 0.2 s: 1.2 s of judging under a lease of 0.6 s, renewed at every step.
    slow = SlowStore(world.path, delay_s=0.2, stall_at=5, stall=another_worker_passes_by)
    started = time.time()
    (done,) = work_once(world.registry, slow, worker="A", approve=approver, lease_s=0.6)

    assert time.time() - started > 1.2 and others == []
    assert (done.status, done.recorded) == ("pass", True) and approver.calls == [("ApproveStaging", "pass")]
    final = world.final(request)
    assert (final.status, final.worker, final.fence, final.attempts) == ("pass", "A", 1, 1)


class Unreachable:
    """A registry whose renewals fail (the network to DynamoDB is down); the rest works."""

    def __init__(self, registry: ValidationRegistry) -> None:
        self.registry = registry

    def __getattr__(self, name: str) -> Any:
        return getattr(self.registry, name)

    def renew(self, *args: Any) -> bool:
        raise RegistryError("DynamoDB UpdateItem failed: EndpointConnectionError")


def test_worker_cut_off_from_the_registry_stops_before_its_lease_ends(world: World) -> None:
    request = world.register()
    approver = FakeApprover()
    slow = SlowStore(world.path, delay_s=0.2)
    (done,) = work_once(Unreachable(world.registry), slow, worker="A", approve=approver, lease_s=0.6)
    assert (done.status, done.recorded) == (ABANDONED, False) and approver.calls == []
    assert "within its margin" in (done.reason or "") and "EndpointConnectionError" in (done.reason or "")
    held = world.final(request)
    assert held.status == "running"  # until its lease ends; then the next worker takes it
    time.sleep(max(0.0, (held.lease_until or 0) - time.time()) + 0.05)
    (again,) = work_once(world.registry, SqliteStore(world.path), worker="B", approve=approver)
    assert (again.status, again.recorded) == ("pass", True) and approver.calls == [("ApproveStaging", "pass")]


def test_lease_keeps_renewing_and_stops_at_the_margin() -> None:
    class Registry:
        def __init__(self) -> None:
            self.answers = [True, True, False]
            self.calls: list[float] = []

        def renew(
            self, request: ValidationRequest, worker: str, fence: int, now: float, lease_s: float
        ) -> bool:
            self.calls.append(now)
            return self.answers.pop(0)

    now = [1000.0]
    request = new_request("p", "c", 5, "{}", now=0)
    request.lease_until, request.fence = 1000.0 + 100, 7
    registry = Registry()
    lease = Lease(registry, request, "w", 100, clock=lambda: now[0])  # type: ignore[arg-type]
    lease.keep()
    assert registry.calls == []  # not due: less than a quarter of the lease has passed
    now[0] = 1030.0
    lease.keep()
    assert registry.calls == [1030.0] and lease.until == 1130.0
    now[0] = 1031.0
    lease.confirm()  # immediately before an approval: renewed whatever the interval
    assert registry.calls == [1030.0, 1031.0] and lease.until == 1131.0
    now[0] = 1040.0
    with pytest.raises(LeaseLost, match="under fencing token 7: another worker released it or took it over"):
        lease.confirm()


# ---------------------------------------------------------------------------- the approval


@pytest.fixture
def codepipeline() -> Iterator[tuple[Any, Any, list[dict[str, Any]]]]:
    """A stubbed CodePipeline client, and every PutApprovalResult it was asked to send."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "codepipeline", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "before-parameter-build.codepipeline.PutApprovalResult", lambda params, **_: sent.append(params)
    )
    with Stubber(client) as stubber:
        yield client, stubber, sent


def expect_reads(stubber: Any) -> None:
    from tests.test_gate_status import DEFINITION, STATE

    stubber.add_response("get_pipeline", DEFINITION, {"name": PIPELINE})
    stubber.add_response("get_pipeline_state", STATE, {"name": PIPELINE})


def test_takeover_seen_at_the_fence_check_sends_no_approval(
    world: World, codepipeline: tuple[Any, Any, list[dict[str, Any]]]
) -> None:
    client, stubber, sent = codepipeline
    request = world.register()
    expect_reads(stubber)
    taken: list[Any] = []

    def taken_over(**_: Any) -> None:
        # While A reads the pipeline's state, a worker whose clock runs an hour ahead finds
        # A's lease over and takes the request: only the check before sending can see it.
        with SqliteStore(world.path) as store:
            taken.extend(work_once(world.other(), store, worker="B", now=time.time() + 3600))

    client.meta.events.register("after-call.codepipeline.GetPipelineState", taken_over)
    (done,) = work_once(
        world.registry, SqliteStore(world.path), worker="A", approve=codepipeline_approver(client)
    )

    stubber.assert_no_pending_responses()
    assert sent == []  # PutApprovalResult was never called
    assert (done.status, done.recorded, done.approval) == (ABANDONED, False, None)
    assert [(p.status, p.recorded) for p in taken] == [("pass", True)]
    final = world.final(request)
    assert (final.worker, final.fence) == ("B", 2)


@pytest.mark.parametrize(
    ("comparison", "fill", "why"),
    [
        ("StagingToProduction", False, "no data for Staging"),  # judged: the outcome is error
        ("NoSuchComparison", True, "'NoSuchComparison' is not defined"),  # could not be judged
    ],
)
def test_request_whose_outcome_is_error_is_rejected_never_approved(
    tmp_path: Path, codepipeline: tuple[Any, Any, list[dict[str, Any]]], comparison: str, fill: bool, why: str
) -> None:
    from tests.test_gate_status import expect

    client, stubber, sent = codepipeline
    store = SqliteStore(tmp_path / "s.db")
    start = time.time() - 3600
    if fill:
        fill_samples(store, 0, start)
    registry = SqliteRegistry(store)
    registry.register(
        new_request(PIPELINE, comparison, 5, MONSPEC, now=start, approval_action="ApproveStaging")
    )
    expect(stubber, "Rejected")
    (done,) = work_once(registry, store, worker="w", approve=codepipeline_approver(client))
    stubber.assert_no_pending_responses()
    assert [p["result"]["status"] for p in sent] == ["Rejected"]
    assert done.status == "error" and why in (done.reason or "") and done.recorded
    (stored,) = registry.recent()
    assert stored.status == "error"


# ---------------------------------------------------------------------------- many workers

MOTO_SERVER = """
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=False,
                     request_handler=MotoRequestHandler)
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.fixture
def moto_server(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's server app on a free loopback port, in its own process, answering one request at a
    time. ``python -m moto.server`` answers on threads, and moto checks an update's condition
    and then writes the item with no lock in between; DynamoDB applies a conditional write
    atomically. Served one at a time, moto is as atomic, so a request processed twice here is
    the workers' doing."""
    server = subprocess.Popen(
        [sys.executable, "-c", MOTO_SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


REQUESTS, WORKERS, LEASE_S, STEP_S = 48, 4, 0.6, 0.15


@pytest.mark.parametrize("backend", ["dynamodb", "sqlite"])
def test_many_workers_process_each_request_exactly_once(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    # Each validation takes six steps of 0.15 s, longer than its lease of 0.6 s: without
    # renewal, workers would take in-flight requests from one another.
    path = tmp_path / "s.db"
    if backend == "dynamodb":
        request.getfixturevalue("moto_server")
        import boto3

        from pytest_perfsig.registry.dynamodb import create_table

        create_table(boto3.resource("dynamodb"), "Requests")
        url = "dynamodb:Requests"
    else:
        url = f"sqlite:{path}"
    registry = open_registry(url, path)
    start = time.time() - 3600
    with SqliteStore(path) as store:
        fill_samples(store, 0, start)
    for i in range(REQUESTS):
        registry.register(new_request(PIPELINE, "StagingToProduction", 5, MONSPEC, now=start + i / 1000))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, url, str(path)]
    workers = [
        subprocess.Popen(
            [*command, f"w{i}", str(LEASE_S), str(STEP_S)], stdout=subprocess.PIPE, text=True, env=env
        )
        for i in range(WORKERS)
    ]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * WORKERS
    processed = [json.loads(line) for out in outputs for line in out.splitlines()]
    by_worker = Counter(p["worker"] for p in processed)
    assert len(by_worker) > 1, by_worker  # the work was shared

    # Judged once: one gate per request, and each request's gate is a different one.
    requests = registry.recent(limit=REQUESTS + 10)
    assert len(requests) == REQUESTS
    gates = SqliteStore(path).gates(REQUESTS * 3)
    assert len(gates) == REQUESTS and {g.status for g in gates} == {"pass"}
    assert {r.gate_id for r in requests} == {g.gate_id for g in gates}
    # Finished once: every request claimed once, recorded once, and nothing abandoned.
    assert {(r.status, r.attempts, r.fence) for r in requests} == {("pass", 1, 1)}
    assert [p for p in processed if p["status"] == ABANDONED or not p["recorded"]] == []
    assert sorted(Counter(p["key"] for p in processed).values()) == [1] * REQUESTS
    assert {r.worker for r in requests} <= {f"w{i}" for i in range(WORKERS)}


def _worker_process(url: str, store_path: str, worker: str, lease_s: float, step_s: float) -> int:
    """Work until no request is waiting or running; one JSON line per request processed."""
    registry = open_registry(url, store_path)
    store = SlowStore(store_path, delay_s=step_s)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for p in work_once(registry, store, worker=worker, lease_s=lease_s):
            key = f"{p.request.pipeline}@{p.request.timestamp_ms}"
            print(
                json.dumps({"key": key, "worker": worker, "status": p.status, "recorded": p.recorded}),
                flush=True,
            )
        if all(r.status in FINAL_STATUSES for r in registry.recent(limit=1000)):
            return 0
        time.sleep(0.05)
    return 1


if __name__ == "__main__":
    url, store_path, worker, lease, step = sys.argv[1:6]
    sys.exit(_worker_process(url, store_path, worker, float(lease), float(step)))


def test_lambda_worker_takes_its_lease_from_the_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_perfsig.errors import PerfsigError
    from pytest_perfsig.lambdas import worker_handler

    world.register(approval_action=None)
    leases: list[float] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(world.registry, name)

        def claim(self, request: ValidationRequest, worker: str, now: float, lease_s: float) -> bool:
            leases.append(lease_s)
            return world.registry.claim(request, worker, now, lease_s)

    monkeypatch.setenv("PERFSIG_STORE", str(world.path))
    monkeypatch.setenv("PERFSIG_LEASE", "soon")
    with pytest.raises(PerfsigError, match="PERFSIG_LEASE must be a number of seconds, got 'soon'"):
        worker_handler({}, None, registry=Recording())
    monkeypatch.setenv("PERFSIG_LEASE", "90")
    answer = worker_handler({}, None, registry=Recording())
    assert leases == [90.0] and len(answer["processed"]) == 1 and ": pass" in answer["processed"][0]
