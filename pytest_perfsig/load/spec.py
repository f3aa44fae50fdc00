"""What a load is (``LoadSpec``) and what it left (``LoadResult``): plain data, no process."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .profiles import DEFAULT_DRAIN_S, ENV_DRAIN

OPEN_START_SLACK_S = 30.0
# Locust needs a moment to start and to stop its users after --run-time.
STARTUP_GRACE_S = 30.0
WORKER_WAIT_S = 60.0


@dataclass(frozen=True)
class LoadSpec:
    """One environment to drive: where, with what, how hard, for how long."""

    service: str
    env: str
    url: str
    locustfile: str
    users: int
    spawn_rate: float
    duration_s: float
    extra_env: dict[str, str] = field(default_factory=dict)
    build: str | None = None  # label of what is deployed there, when known
    processes: int = 1  # Locust worker processes on this machine (--processes)
    workers: int = 0  # remote workers to wait for (master mode; `perfsig load-worker`)
    master_bind: str = "127.0.0.1"
    master_port: int = 5557
    load_model: str = "closed"
    # What drives the load, for people: the locustfile's path, or the built-in profile and
    # its endpoints. Stored as the run's locustfile; empty means the locustfile's path.
    profile: str = ""
    # Open model: tasks started per second in total (see load/arrivals.py); None: closed.
    arrival_rate: float | None = None
    # Closed model: run on past duration_s, up to this, until the gate has the samples it
    # needs (run_load's ``enough``); None: exactly duration_s.
    max_duration_s: float | None = None

    @property
    def run_time_s(self) -> float:
        """What Locust is told to run; the runner may stop it earlier."""
        if self.arrival_rate is not None:
            # The schedules end the run themselves once they are done and drained; Locust's own
            # clock starts before they do (much before, on a busy machine), so it only bounds.
            return self.duration_s + self.drain_s + 1 + OPEN_START_SLACK_S
        return max(self.duration_s, self.max_duration_s or 0.0)

    def __post_init__(self) -> None:
        if self.arrival_rate is None:
            if self.load_model.startswith("open"):
                raise ValueError(f"load model {self.load_model!r} needs an arrival rate")
            return
        if not (math.isfinite(self.arrival_rate) and self.arrival_rate > 0):
            raise ValueError(f"arrival rate must be a positive number, got {self.arrival_rate!r}")
        if self.load_model == "closed":
            object.__setattr__(self, "load_model", f"open {self.arrival_rate:g} tasks/s")

    @property
    def grace_s(self) -> float:
        # Remote workers may take a while to connect; the master waits for them.
        return STARTUP_GRACE_S + (WORKER_WAIT_S if self.workers else 0.0)

    @property
    def described(self) -> str:
        return self.profile or self.locustfile

    @property
    def schedulers(self) -> int:
        """Locust processes generating load: each runs one open-model scheduler."""
        return self.workers or (self.processes if self.processes > 1 else 1)

    @property
    def drain_s(self) -> float:
        raw = self.extra_env.get(ENV_DRAIN) or os.environ.get(ENV_DRAIN)
        try:
            value = float(raw) if raw else DEFAULT_DRAIN_S
        except ValueError:
            return DEFAULT_DRAIN_S
        return value if math.isfinite(value) and value >= 0 else DEFAULT_DRAIN_S


@dataclass(frozen=True)
class LoadResult:
    spec: LoadSpec
    run_id: str
    requests: int
    failures: int
    window: tuple[float, float]
    log_path: Path
    detail: str = ""  # what the store keeps as the run's outcome (with the open model's counts)
    # When the Locust process exited: the load's real end, also when answers stopped coming.
    ended: float | None = None
