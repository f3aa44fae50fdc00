"""The built-in load profile: the locustfile a gate uses when it is given none.

Each user requests the configured endpoints (``/`` and the monspec's service methods) in turn,
then thinks for PERFSIG_THINK_S seconds (±50 %, default 0.5). The "real users" pace, for
Production stages, calls the service methods once more per visit. Endpoint names carry no
query string, so samples group by endpoint.

Configured by environment variables the runner sets (PERFSIG_ENDPOINTS, a JSON list of paths;
PERFSIG_PACE, ``test-loop`` or ``real-users``; PERFSIG_THINK_S), or by the matching
``--perfsig-endpoints`` / ``--perfsig-pace`` / ``--perfsig-think`` Locust options, which a
master hands on to remote workers (``perfsig load-worker`` runs this file by default).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from locust import FastHttpUser, events, task

from pytest_perfsig.load.profiles import (
    ENV_ENDPOINTS,
    ENV_PACE,
    ENV_THINK,
    endpoint_name,
    parse_endpoints,
    parse_pace,
    parse_think,
    visit,
)


def _options(parser: Any) -> None:
    group = parser.add_argument_group("perfsig built-in profile")
    group.add_argument("--perfsig-endpoints", env_var=ENV_ENDPOINTS, default=None, help="JSON list of paths")
    group.add_argument("--perfsig-pace", env_var=ENV_PACE, default=None, help="test-loop or real-users")
    group.add_argument("--perfsig-think", env_var=ENV_THINK, default=None, help="think time, seconds")


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]


def _setting(environment: Any, name: str, env: str) -> str | None:
    # A worker gets its master's values in parsed_options; plain library use has only the env.
    options = getattr(environment, "parsed_options", None)
    value = getattr(options, name, None) if options is not None else None
    return value if value is not None else os.environ.get(env)


def settings(environment: Any) -> tuple[list[str], str, float]:
    """(endpoints, pace, think time) for this Locust process."""
    return (
        parse_endpoints(_setting(environment, "perfsig_endpoints", ENV_ENDPOINTS)),
        parse_pace(_setting(environment, "perfsig_pace", ENV_PACE)),
        parse_think(_setting(environment, "perfsig_think", ENV_THINK)),
    )


def _get(path: str) -> Callable[[Any], None]:
    def request(user: Any) -> None:
        user.client.get(path, name=endpoint_name(path))

    request.__name__ = endpoint_name(path)
    return request


class BuiltinUser(FastHttpUser):
    """One simulated user of the built-in profile."""

    think_s = 0.5
    paths: list[str] = []  # noqa: RUF012  (set per user in on_start)

    def on_start(self) -> None:
        endpoints, pace, self.think_s = settings(self.environment)
        self.paths = visit(endpoints, pace)

    def wait_time(self) -> float:
        return random.uniform(self.think_s * 0.5, self.think_s * 1.5)

    @task
    def main_loop(self) -> None:
        for path in self.paths:
            self.client.get(path, name=endpoint_name(path))

    @classmethod
    def perfsig_open_tasks(cls, environment: Any) -> list[tuple[str, float, Callable[[Any], None]]]:
        """For the open model: one task per request, weighted as often as a visit makes it."""
        endpoints, pace, _ = settings(environment)
        weights: dict[str, int] = {}
        for path in visit(endpoints, pace):
            weights[path] = weights.get(path, 0) + 1
        return [(endpoint_name(path), float(weight), _get(path)) for path, weight in weights.items()]
