"""The Dynatrace source through the command line, against a fake tenant that is a real HTTP
server on 127.0.0.1 speaking the documented APIs the source uses:

- Metrics API v2, ``GET /api/v2/metrics`` (the probe: ``pageSize``) and
  ``GET /api/v2/metrics/query`` (``metricSelector``, ``entitySelector``, ``from``, ``to``,
  ``resolution``), answering ``{"totalCount", "nextPageKey", "resolution", "result": [{"metricId",
  "data": [{"dimensions", "dimensionMap", "timestamps", "values"}]}]}``; response times in µs;
- Entities API v2, ``GET /api/v2/entities`` (``entitySelector``, ``fields`` =
  ``toRelationships.<relation>`` or ``fromRelationships.<relation>``, ``from``, ``to``,
  ``pageSize``; then ``nextPageKey`` alone),
  answering ``{"totalCount", "pageSize", "nextPageKey", "entities": [{"entityId", "type",
  "displayName", "toRelationships": {"calls": [{"id", "type"}]}}]}``. It pages one entity at a
  time, so that paging is exercised;
- ``Authorization: Api-Token <token>``, else 401 with the API's error envelope.

The numbers of Staging and Production come from a table the test sets. The stage under test
takes real Locust load (the sample app); Production, read from Dynatrace, takes none."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sample_app.launcher import RunningApp
from tests.loopback import LoopbackServer, Reply, Request, json_reply, serving

pytestmark = pytest.mark.e2e

TOKEN = "dt0c01.TENANTTOKEN.abcdefghijklmnop"
SVC = "SampleJSonService"
# 10 s: Locust takes a second or two to send its first request on a busy machine, and the gate's
# window (first request + duration) must still end with requests in its last third.
LOAD = ["--perfsig-duration=10", "--perfsig-warmup=1", "--perfsig-users=3", "--perfsig-spawn-rate=3"]
_TAG_RE = re.compile(r'tag\("DeploymentGroup:([^"]+)"\)')
_FIELDS_RE = re.compile(r"^(toRelationships|fromRelationships)\.[A-Za-z]+$")


def error(status: int, message: str) -> Reply:
    return json_reply({"error": {"code": status, "message": message}}, status)


@dataclass
class Env:
    """One environment's numbers: metric key -> value (response times in µs), and its services'
    relationships: ``"toRelationships.calls"`` -> service -> the services calling it."""

    metrics: dict[str, float]
    relations: dict[str, dict[str, list[str]]] = field(default_factory=dict)


@dataclass
class FakeTenant:
    table: dict[str, Env]
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __call__(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Api-Token {TOKEN}":
            return error(401, "Missing authorization parameter.")
        routes: dict[str, Callable[[Request], Reply]] = {
            "/api/v2/metrics": self.metrics,
            "/api/v2/metrics/query": self.query,
            "/api/v2/entities": self.entities,
        }
        route = routes.get(request.path)
        return route(request) if route else error(404, f"{request.path} not found")

    def env(self, selector: str | None) -> Env | None:
        match = _TAG_RE.search(selector or "")
        return self.table.get(match.group(1)) if match else None

    def timeframe(self, request: Request) -> tuple[int, int] | None:
        """``from`` and ``to`` as epoch milliseconds within this test's lifetime, else None."""
        try:
            start, end = int(request.param("from") or ""), int(request.param("to") or "")
        except ValueError:
            return None
        now = int(time.time() * 1000)
        return (start, end) if self.started_ms - 60_000 <= start < end <= now + 60_000 else None

    def metrics(self, request: Request) -> Reply:
        size = int(request.param("pageSize") or 100)
        keys = sorted({key for env in self.table.values() for key in env.metrics})
        return json_reply(
            {
                "totalCount": len(keys),
                "nextPageKey": "next" if size < len(keys) else None,
                "metrics": [{"metricId": key} for key in keys[:size]],
            }
        )

    def query(self, request: Request) -> Reply:
        env = self.env(request.param("entitySelector"))
        timeframe = self.timeframe(request)
        resolution = request.param("resolution")
        if env is None or timeframe is None or resolution != "Inf":
            return error(400, f"Constraints violated: {request.query}")
        result = []
        for selector in (request.param("metricSelector") or "").split(","):
            key, _, transforms = selector.partition(":splitBy()")
            if transforms not in {"", ":avg", ":median", ":max", ":min"}:
                return error(400, f"Unsupported transformation {transforms}")
            # type(SERVICE_METHOD) selects a key request: the table's keyRequest metrics
            value = env.metrics.get(key)
            data = (
                []
                if value is None
                else [{"dimensions": [], "dimensionMap": {}, "timestamps": [timeframe[1]], "values": [value]}]
            )
            result.append(
                {"metricId": selector, "dataPointCountRatio": 1e-6, "dimensionCountRatio": 1e-5, "data": data}
            )
        return json_reply(
            {"totalCount": len(result), "nextPageKey": None, "resolution": "Inf", "result": result}
        )

    def entities(self, request: Request) -> Reply:
        key = request.param("nextPageKey")
        if key is not None:
            if set(request.query) != {"nextPageKey"}:
                return error(400, "nextPageKey must be the only parameter")
            if key not in self.pages:
                return error(400, "unknown nextPageKey")
            return self.page(key)
        env = self.env(request.param("entitySelector"))
        fields = request.param("fields") or ""
        if env is None or self.timeframe(request) is None or not _FIELDS_RE.match(fields):
            return error(400, f"Constraints violated: {request.query}")
        direction, _, relation = fields.partition(".")
        services = sorted({service for related in env.relations.values() for service in related})
        entities = []
        for service in services:
            related = env.relations.get(fields, {}).get(service, [])
            entity: dict[str, Any] = {"entityId": service, "type": "SERVICE", "displayName": service.lower()}
            if related:  # the tenant leaves out relationships an entity does not have
                entity[direction] = {relation: [{"id": other, "type": "SERVICE"} for other in related]}
            entities.append(entity)
        key = f"page-{len(self.pages)}"
        self.pages[key] = entities
        return self.page(key)

    def page(self, key: str) -> Reply:
        rest = self.pages.pop(key)
        following = None
        if len(rest) > 1:
            following = f"{key}+"
            self.pages[following] = rest[1:]
        return json_reply(
            {"totalCount": len(rest), "pageSize": 1, "nextPageKey": following, "entities": rest[:1]}
        )


def numbers(failed: float, response_us: float, callers: dict[str, list[str]]) -> Env:
    return Env(
        {
            "builtin:service.requestCount.total": 1000.0,
            "builtin:service.errors.total.count": failed,
            "builtin:service.response.time": response_us,
        },
        # Every service calls the same database, in both environments.
        {"toRelationships.calls": callers, "fromRelationships.calls": {s: ["SERVICE-DB"] for s in callers}},
    )


PRODUCTION = numbers(0.0, 20_000.0, {"SERVICE-P1": ["SERVICE-A", "SERVICE-B"], "SERVICE-P2": ["SERVICE-C"]})


@pytest.fixture
def tenant() -> Iterator[tuple[FakeTenant, LoopbackServer]]:
    fake = FakeTenant({"Production": PRODUCTION})
    with serving(fake) as server:
        yield fake, server


def write_monspec(directory: Path, smartscape: dict[str, Any], signature: bool = True) -> Path:
    entries: list[dict[str, Any]] = [
        {"smartscape": "toRelationships:calls", "aggregate": "count", "validate": "lower", **smartscape}
    ]
    if signature:
        entries[:0] = [
            {"timeseries": "service.failurerate", "aggregate": "avg"},
            {"timeseries": "service.responsetime", "aggregate": "avg"},
        ]
        # The services the environment's services call: the same in both.
        entries.append({"smartscape": "fromRelationships:calls", "aggregate": "count", "validate": "lower"})
    path = directory / "monspec.json"
    path.write_text(
        json.dumps(
            {
                SVC: {
                    "environments": {
                        env: {"tags": [{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": env}]}
                        for env in ("Staging", "Production")
                    },
                    "comparisons": [
                        {
                            "name": "StagingToProduction",
                            "source": "Staging",
                            "compare": "Production",
                            # 0 %: one calling service fewer is a violation; 20 % on latency.
                            "scalefactorperc": {"default": 0, "service.responsetime": 20},
                        }
                    ],
                    "perfsignature": entries,
                }
            }
        )
    )
    return path


def run_gate(gate_dir: pytest.Pytester, monspec: Path, staging: RunningApp, *extra: str) -> pytest.RunResult:
    return gate_dir.runpytest_subprocess(
        f"--monspec={monspec}",
        "--stage=Staging",
        f"--perfsig-url=Staging={staging.url}",
        "-rA",
        *LOAD,
        *extra,
    )


def test_gate_judges_failure_rate_response_time_and_callers_from_the_tenant(
    gate_dir: pytest.Pytester,
    sample_app: Callable[..., RunningApp],
    tenant: tuple[FakeTenant, LoopbackServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, server = tenant
    monkeypatch.setenv("DT_API_TOKEN", TOKEN)
    staging = sample_app("Staging", build=1)
    source = f"dynatrace+http://127.0.0.1:{server.port}"
    monspec = write_monspec(gate_dir.path, {})

    # Staging: 5 % failed requests, 22 ms, and called by one service fewer than Production.
    fake.table["Staging"] = numbers(
        50.0, 22_000.0, {"SERVICE-S1": ["SERVICE-A"], "SERVICE-S2": ["SERVICE-B"]}
    )
    rejected = run_gate(gate_dir, monspec, staging, f"--perfsig-source={source}")
    out = rejected.stdout.str()
    assert rejected.ret == pytest.ExitCode.TESTS_FAILED, out
    rejected.stdout.fnmatch_lines_random(
        [
            "FAILED *::StagingToProduction::service.failurerate[[]avg[]]*",
            "FAILED *::StagingToProduction::smartscape.toRelationships:calls[[]count[]]*",
            "PASSED *::StagingToProduction::service.responsetime[[]avg[]]*",
            "PASSED *::StagingToProduction::smartscape.fromRelationships:calls[[]count[]]*",
            "*service.failurerate avg: Staging 5 % > limit 0.5 % (Production 0.0 %*",
            "*smartscape.toRelationships:calls count: Staging 2 < limit 3 (Production 3 *",
            f"perfsig: Production: not loaded (its numbers come from {source})",
        ]
    )
    assert "error" not in rejected.parseoutcomes(), out
    assert TOKEN not in out
    paths = server.paths()
    assert paths[0] == "/api/v2/metrics"  # the probe, before anything else
    # Both relations of Staging's 2 services and Production's 2, a page each.
    assert paths.count("/api/v2/entities") == 8

    # Called by the same services as Production, healthy: approved.
    fake.table["Staging"] = numbers(
        0.0, 22_000.0, {"SERVICE-S1": ["SERVICE-A", "SERVICE-C"], "SERVICE-S2": ["SERVICE-B"]}
    )
    approved = run_gate(gate_dir, monspec, staging, f"--perfsig-source={source}")
    assert approved.ret == pytest.ExitCode.OK, approved.stdout.str()
    approved.assert_outcomes(passed=4)


def test_smartscape_on_the_local_source_is_an_error_saying_how_to_skip_it(
    gate_dir: pytest.Pytester, sample_app: Callable[..., RunningApp]
) -> None:
    staging = sample_app("Staging", build=1)
    # Decided before the load is looked at: a short load will do.
    result = run_gate(
        gate_dir, write_monspec(gate_dir.path, {}, signature=False), staging, "--perfsig-duration=2"
    )
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    result.assert_outcomes(errors=1)
    assert (
        "the local source has no topology (smartscape 'toRelationships:calls'): judge it with a source that "
        'can, or skip it: mark the entry "optional": true in the monspec, or run with '
        "--perfsig-optional smartscape"
    ) in out
    assert "for Staging: ERROR" in out
