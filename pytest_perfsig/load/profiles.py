"""What the runner and the Locust processes agree on: the built-in load profile's settings,
the open model's arguments and its end-of-run counts.

Nothing here imports Locust: the pytest process reads this module too, and Locust's gevent
patching must stay out of it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BUILTIN_LOCUSTFILE = str(Path(__file__).with_name("builtin.py"))

# The built-in profile is configured through these environment variables. Locust also takes
# them as ``--perfsig-*`` options, which a master passes on to its remote workers.
ENV_ENDPOINTS = "PERFSIG_ENDPOINTS"  # JSON list of paths
ENV_PACE = "PERFSIG_PACE"  # TEST_LOOP or REAL_USERS
ENV_THINK = "PERFSIG_THINK_S"  # seconds between visits, ±50 %
DEFAULT_THINK_S = 0.5

TEST_LOOP = "test-loop"
REAL_USERS = "real-users"
PACE_LABELS = {TEST_LOOP: "test loop", REAL_USERS: "real users"}
PRODUCTION_PREFIX = "Production"

# The open model: Locust options the runner passes; a master hands them to its workers.
ARG_RATE = "--perfsig-arrival-rate"
ARG_DURATION = "--perfsig-open-duration"
ARG_SCHEDULERS = "--perfsig-open-schedulers"
ARG_DRAIN = "--perfsig-open-drain"
ENV_SUMMARY = "PERFSIG_SUMMARY"  # where the Locust process writes the open model's counts
ENV_DRAIN = "PERFSIG_DRAIN_S"  # how long unfinished tasks may still answer after the schedule
DEFAULT_DRAIN_S = 3.0


def pace_for(env: str) -> str:
    """Production stages get the "real users" pace, every other stage the test loop."""
    return REAL_USERS if env.startswith(PRODUCTION_PREFIX) else TEST_LOOP


def is_requestable(name: str) -> bool:
    """A service method name the built-in profile can request: a path on the stage's host."""
    return name.startswith("/") and not name.startswith("//") and not any(c.isspace() for c in name)


def builtin_endpoints(method_names: Iterable[str]) -> list[str]:
    """``/`` and every service method that is a path, in monspec order, once each."""
    endpoints = ["/"]
    for name in method_names:
        if is_requestable(name) and name not in endpoints:
            endpoints.append(name)
    return endpoints


def endpoint_name(path: str) -> str:
    """Samples group by endpoint: the path without its query string."""
    return path.split("?", 1)[0] or "/"


def visit(endpoints: Sequence[str], pace: str) -> list[str]:
    """The paths one simulated user requests per visit. The test loop requests every endpoint
    once; real users, as in the original system's production traffic, call the service
    methods (everything but ``/``) once more."""
    methods = [path for path in endpoints if endpoint_name(path) != "/"]
    return [*endpoints, *methods] if pace == REAL_USERS else list(endpoints)


def describe_builtin(endpoints: Sequence[str], pace: str) -> str:
    """The profile's name for people (progress line, reports)."""
    return f"built-in {PACE_LABELS[pace]}: {', '.join(endpoints)}"


def builtin_env(endpoints: Sequence[str], pace: str) -> dict[str, str]:
    return {ENV_ENDPOINTS: json.dumps(list(endpoints)), ENV_PACE: pace}


def parse_endpoints(raw: str | None) -> list[str]:
    """The endpoint list from its JSON form; ``/`` alone when unset or unusable."""
    try:
        values = json.loads(raw) if raw else []
    except ValueError:
        values = []
    if not isinstance(values, list):
        values = []
    return [v for v in values if isinstance(v, str) and is_requestable(v)] or ["/"]


def parse_pace(raw: str | None) -> str:
    return raw if raw in PACE_LABELS else TEST_LOOP


def parse_think(raw: str | float | None) -> float:
    try:
        value = DEFAULT_THINK_S if raw is None or raw == "" else float(raw)
    except ValueError:
        return DEFAULT_THINK_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_THINK_S


@dataclass
class OpenCounts:
    """What the open model's schedulers did with their schedule: every task that came due is
    started or dropped; every started task finishes (maybe with an error) or is still
    unfinished when the drain time is over."""

    scheduled: int = 0
    started: int = 0
    dropped: int = 0  # not started: too many tasks in flight
    finished: int = 0
    errors: int = 0  # finished by raising an exception
    unfinished: int = 0
    schedulers: int = 0  # schedulers that reported

    def add(self, other: OpenCounts) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenCounts:
        return cls(**{key: int(data.get(key, 0)) for key in asdict(cls())})

    @classmethod
    def from_json(cls, text: str) -> OpenCounts:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return cls.from_dict(data)

    def describe(self, expected_schedulers: int, drain_s: float) -> str:
        text = (
            f"open model: {self.scheduled} tasks scheduled, {self.finished} finished"
            f" ({self.errors} with an error), {self.unfinished} unfinished {drain_s:g} s after the schedule"
        )
        if self.dropped:
            text += f", {self.dropped} dropped (too many in flight)"
        if self.schedulers != expected_schedulers:
            text += f"; counts from {self.schedulers} of {expected_schedulers} schedulers"
        return text
