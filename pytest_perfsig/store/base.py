"""What other packages need of a store, as Protocols: each depends on the reads and writes it
uses, not on ``SqliteStore`` as a whole (a test can hand in something smaller)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..verdict import Verdict
from .events import DeploymentEvent
from .gates import GateOutcomeLike, GateRecord, StoredVerdict
from .requests import RequestRow
from .retention import StoreUsage
from .runs import RunRecord
from .samples import SampleColumns, SecondRow


class RunReader(Protocol):
    """Runs and their samples, as a gate reads its baselines and local metrics (``gate.measure``)."""

    @property
    def path(self) -> Path: ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def run_window(self, run_id: str) -> tuple[float, float] | None: ...

    def baseline_runs(
        self, service: str, env: str, count: int, *, passed_only: bool, exclude_gate: str | None = None
    ) -> list[RunRecord]: ...

    def samples(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        endpoint: str | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> SampleColumns: ...

    def counts(
        self, service: str, env: str, edges: Any, endpoint: str | None = None, run_ids: Any = None
    ) -> tuple[Any, Any]: ...

    def latencies(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        endpoint: str | None = None,
        run_ids: Any = None,
    ) -> Any: ...


class GateRecorder(Protocol):
    """What a gate writes as it runs (``gate.run``)."""

    def create_gate(self, gate_id: str, monspec: str, stage: str, build: str | None) -> None: ...

    def save_verdict(self, gate_id: str, check_id: str, service: str | None, verdict: Verdict) -> None: ...

    def finish_gate(self, gate_id: str, outcome: GateOutcomeLike) -> None: ...


class ReportSource(Protocol):
    """What the reports read: gates, their runs and verdicts, and the samples behind them."""

    @property
    def path(self) -> Path: ...

    def gates(self, limit: int = 20) -> list[GateRecord]: ...

    def gate(self, gate_id: str) -> GateRecord | None: ...

    def gate_runs(self, gate_id: str) -> list[RunRecord]: ...

    def verdicts(self, gate_id: str) -> list[StoredVerdict]: ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def run_counts(self, run_id: str) -> tuple[int, int]: ...

    def run_window(self, run_id: str) -> tuple[float, float] | None: ...

    def run_samples(self, run: RunRecord) -> SampleColumns: ...

    def run_seconds(self, run_id: str) -> list[SecondRow]: ...

    def window_seconds(self, service: str, env: str, start: float, end: float) -> list[SecondRow]: ...

    def store_usage(self) -> StoreUsage: ...

    def samples(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        endpoint: str | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> SampleColumns: ...


class RequestStore(Protocol):
    """The validation requests table, as the SQLite registry uses it."""

    @property
    def path(self) -> Path: ...

    def add_request(self, request: Mapping[str, Any]) -> None: ...

    def request(self, pipeline: str, timestamp_ms: int) -> RequestRow | None: ...

    def recent_requests(self, pipeline: str | None = None, limit: int = 50) -> list[RequestRow]: ...

    def due_requests(self, now: float, *, waiting: str) -> list[RequestRow]: ...

    def claim_request(
        self, pipeline: str, timestamp_ms: int, *, worker: str, lease_until: float, waiting: str, running: str
    ) -> int | None: ...

    def renew_request(
        self, pipeline: str, timestamp_ms: int, *, worker: str, fence: int, lease_until: float, running: str
    ) -> bool: ...

    def finish_request(
        self,
        pipeline: str,
        timestamp_ms: int,
        *,
        worker: str,
        fence: int,
        running: str,
        status: str,
        results: list[dict[str, Any]],
        reason: str | None,
        gate_id: str | None,
    ) -> bool: ...

    def release_expired_requests(
        self, now: float, *, running: str, release: Callable[[RequestRow], tuple[str, str]]
    ) -> list[RequestRow]: ...


class EventLog(Protocol):
    """Deployments and remediations (``remediation``, ``perfsig deployment-event``)."""

    def add_deployment_event(self, event: DeploymentEvent) -> None: ...

    def deployment_events(self, env: str | None = None, limit: int = 20) -> list[DeploymentEvent]: ...

    def claim_remediation(
        self,
        problem_id: str,
        env: str | None,
        *,
        lease_s: float = ...,
        owner: str = "",
        now: float | None = None,
        max_attempts: int = ...,
    ) -> bool: ...

    def renew_remediation(
        self, problem_id: str, owner: str, *, lease_s: float = ..., now: float | None = None
    ) -> bool: ...

    def finish_remediation(
        self,
        problem_id: str,
        status: str,
        *,
        action: str | None = None,
        deployment_event_id: str | None = None,
        new_deployment_id: str | None = None,
        detail: str | None = None,
        owner: str | None = None,
    ) -> bool: ...

    def remediations(self, limit: int = 20) -> list[dict[str, Any]]: ...
