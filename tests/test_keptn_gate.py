"""A Keptn SLO file as the gate: usage errors before any load (pytest exits 4), SLI queries sent
to Prometheus (respx), and the whole gate from the command line against a real Prometheus
server scraping the sample app: Staging build 1 passes, then build 2 fails its key SLI (the
failure rate), compared with the first run. The real-server test skips without
/usr/bin/prometheus, except in CI (env CI set), where it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore  # noqa: F401  (imported before pytester's in-process runs snapshot sys.modules)
import httpx
import pytest
import respx

from pytest_perfsig.errors import NoDataError, SourceError
from pytest_perfsig.gate import Gate, GateOptions, GateOutcome
from pytest_perfsig.gate.measure import Measurer
from pytest_perfsig.load.runner import LoadResult, LoadSpec
from pytest_perfsig.monspec import load_slo
from pytest_perfsig.sources.prometheus import PrometheusSource
from pytest_perfsig.store import RunRecord, SqliteStore
from pytest_perfsig.windows import EXPRESSION_METRIC, EXPRESSION_VALUE, MetricQuery, Window
from sample_app.launcher import RunningApp, start_app
from tests.test_source_prometheus import _prometheus_binary, _query, _wait, free_port

ROOT = Path(__file__).resolve().parents[1]
FAKE = "http://prom.test"
W = Window(1_700_000_000.0, 1_700_000_029.4)

SLO = """\
spec_version: '1.0'
comparison:
  compare_with: single_result
  include_result_with_score: pass
  aggregate_function: avg
objectives:
  - sli: error_rate
    displayName: Failed requests (%)
    pass:
      - criteria:
          - "<=2"
    weight: 2
    key_sli: true
  - sli: response_time_p95
    pass:
      - criteria:
          - "<=+50%"
      - criteria:
          - "<2000"
    warning:
      - criteria:
          - "<=5000"
  - sli: throughput
total_score:
  pass: "90%"
  warning: "75%"
"""

# The sample app's metrics (sample_app/metrics.py). "or vector(0)": no failed series at all
# means no failure, and an SLI that returns nothing is an error, never 0.
SLI = """\
spec_version: '1.0'
indicators:
  error_rate: >-
    100 * (sum(increase(http_requests_total{stage="$STAGE",status=~"5.."}[$DURATION_SECONDS])) or vector(0))
    / sum(increase(http_requests_total{stage="$STAGE"}[$DURATION_SECONDS]))
  response_time_p95: >-
    1000 * histogram_quantile(0.95, sum by (le) (increase(http_request_duration_seconds_bucket{stage="$STAGE"}[$DURATION_SECONDS])))
  throughput: sum(increase(http_requests_total{stage="$STAGE",build="$LABEL.build"}[$DURATION_SECONDS]))
"""


@pytest.fixture
def slo_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "carts"
    folder.mkdir()
    (folder / "slo.yaml").write_text(SLO)
    (folder / "sli.yaml").write_text(SLI)
    return folder


# ---------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--perfsig-url=Staging=http://127.0.0.1:9", "--perfsig-keptn-label=build=1"],
            "*carts/slo.yaml reads its SLIs with PromQL: pass --perfsig-source prometheus://HOST:PORT "
            "(the metric source is local)",
        ),
        (
            [
                "--perfsig-url=Staging=http://127.0.0.1:9",
                "--perfsig-source=cloudwatch://eu-west-1",
                "--perfsig-keptn-label=build=1",
            ],
            "*reads its SLIs with PromQL*(the metric source is cloudwatch://eu-west-1)",
        ),
        (
            ["--perfsig-source=prometheus://127.0.0.1:9", "--perfsig-keptn-label=build=1"],
            "*carts/slo.yaml names no URL: pass --perfsig-url Staging=http://HOST:PORT",
        ),
        (
            [
                "--perfsig-source=prometheus://127.0.0.1:9",
                "--perfsig-url=Staging=http://127.0.0.1:9",
                "--perfsig-keptn-label=build",
            ],
            "*--perfsig-keptn-label expects NAME=VALUE*got 'build'",
        ),
        (
            ["--perfsig-source=prometheus://127.0.0.1:9", "--perfsig-url=Staging=http://127.0.0.1:9"],
            "*carts/sli.yaml: line 8: indicators.throughput: $LABEL.build has no value: "
            "pass --perfsig-keptn-label build=VALUE",
        ),
    ],
)
def test_a_keptn_gate_that_cannot_run_is_a_usage_error_before_any_load(
    pytester: pytest.Pytester, slo_dir: Path, args: list[str], expected: str
) -> None:
    result = pytester.runpytest_inprocess(f"--monspec={slo_dir / 'slo.yaml'}", "--stage=Staging", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: perfsig: {expected}"])
    assert "perfsig load" not in result.stdout.str()


def test_a_malformed_slo_file_names_its_line(pytester: pytest.Pytester, slo_dir: Path) -> None:
    (slo_dir / "slo.yaml").write_text(SLO.replace('"<=2"', '"<= 2 %%"'))
    result = pytester.runpytest_inprocess(f"--monspec={slo_dir / 'slo.yaml'}", "--stage=Staging")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: perfsig: */carts/slo.yaml: line 11: objectives[[]0].pass[[]0].criteria[[]0]: malformed criterion*"
        ]
    )


def test_keptn_options_are_refused_with_a_monspec(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", monspec=(ROOT / "monspec.json").read_text())
    result = pytester.runpytest_inprocess(
        "--monspec=monspec.json", "--stage=Staging", "--perfsig-sli=sli.yaml"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: perfsig: --perfsig-sli: for a Keptn slo.yaml only, not the monspec*"]
    )


# ---------------------------------------------------------------------------- PromQL (respx)


def sli_query(expression: str, window: Window = W, env: str = "Staging") -> MetricQuery:
    return MetricQuery("carts", env, None, EXPRESSION_METRIC, EXPRESSION_VALUE, window, expression=expression)


def answer(*values: str | None) -> dict[str, Any]:
    result = [{"metric": {"i": str(i)}, "value": [W.end, v]} for i, v in enumerate(values) if v is not None]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@respx.mock
def test_an_sli_is_an_instant_query_at_the_window_end_over_its_whole_seconds() -> None:
    route = respx.get(f"{FAKE}/api/v1/query").mock(return_value=httpx.Response(200, json=answer("12.5")))
    source = PrometheusSource(FAKE, settle_s=0)
    measured = source.measure(sli_query('sum(rate(x{stage="Staging"}[$DURATION_SECONDS]))'))
    assert (measured.value, measured.samples, measured.unit, measured.observations) == (12.5, 1, "", None)
    (call,) = route.calls  # an old window: nothing to wait for
    assert call.request.url.params["query"] == 'sum(rate(x{stage="Staging"}[30s]))'  # 29.4 s, rounded up
    assert call.request.url.params["time"] == "1700000029.4"


@respx.mock
def test_an_sli_without_an_answer_is_no_data_never_zero() -> None:
    respx.get(f"{FAKE}/api/v1/query").mock(
        side_effect=[
            httpx.Response(200, json=answer(None)),
            httpx.Response(200, json=answer("NaN")),
            httpx.Response(200, json=answer("1", "2")),
        ]
    )
    source = PrometheusSource(FAKE, settle_s=0)
    with pytest.raises(NoDataError) as info:
        source.measure(sli_query("sum(x)"))
    assert (
        str(info.value)
        == "no data for Staging in 2023-11-14 22:13:20–22:13:49 UTC (prometheus: sum(x) returned nothing)"
    )
    with pytest.raises(NoDataError, match="returned nothing"):
        source.measure(sli_query("0/0"))
    with pytest.raises(SourceError, match=r"x returned 2 series .*expected one"):
        source.measure(sli_query("x"))


@respx.mock
def test_a_recent_window_waits_until_every_target_was_scraped_past_its_end() -> None:
    now = time.time()
    newest = iter([now - 3, now - 0.2])
    sent: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.params["query"])
        if request.url.params["query"] == "min(timestamp(up))":
            return httpx.Response(200, json=answer(str(next(newest))))
        return httpx.Response(200, json=answer("3"))

    respx.get(f"{FAKE}/api/v1/query").mock(side_effect=reply)
    source = PrometheusSource(FAKE, settle_s=5)
    assert source.measure(sli_query("sum(x)", Window(now - 10, now - 1))).value == 3
    assert sent == ["min(timestamp(up))", "min(timestamp(up))", "sum(x)"]


def test_only_a_source_that_evaluates_expressions_is_asked(tmp_path: Path, slo_dir: Path) -> None:
    monspec = load_slo(slo_dir / "slo.yaml", stage="Staging", labels={"build": "1"})
    with SqliteStore(tmp_path / "perfsig.db") as store:
        measurer = Measurer(monspec, GateOptions(stage="Staging"), store, "gate")
        with pytest.raises(SourceError, match=r"^the local source cannot evaluate the query of Staging$"):
            measurer.measure(sli_query("sum(x)"))


# ---------------------------------------------------------------------------- earlier runs (respx)


def several(function: str) -> str:
    return (
        SLO.replace("single_result", "several_results\n  number_of_comparison_results: 3")
        .replace("aggregate_function: avg", f"aggregate_function: {function}")
        .replace('"<=2"', '"<=+10%"')
    )


def keptn_gate(store: SqliteStore, slo: Path, runs: dict[str, tuple[float, str | None]]) -> Gate:
    """A Gate over a Keptn SLO file whose own load was the run ``current``; ``runs``: run id →
    (start, status of the gate it belonged to), each 10 s long."""
    for run_id, (start, status) in runs.items():
        gate_id = f"gate-{run_id}" if status else None
        store.create_run(
            RunRecord(
                run_id=run_id,
                service="carts",
                env="Staging",
                gate_id=gate_id,
                started_at=start,
                status="completed",
            )
        )
        store.add_samples([(run_id, start + t, "carts", "Staging", "/", 0.01, 1, 200) for t in (0.0, 10.0)])
        if status:
            store.create_gate(gate_id, "slo.yaml", "Staging", None)
            store.finish_gate(gate_id, GateOutcome(status, {}, planned=1, selected=1, judged=1))
    monspec = load_slo(slo, stage="Staging", labels={"build": "1"})
    options = GateOptions(
        stage="Staging",
        urls={"Staging": "http://127.0.0.1:1"},
        warmup_s=0.0,
        source_url=f"prometheus://{FAKE.removeprefix('http://')}?settle=0",
    )
    gate = Gate(monspec, options, store=store)
    window = store.run_window("current")
    assert window is not None
    spec = LoadSpec("carts", "Staging", "http://127.0.0.1:1", "x.py", 1, 1, 10.0)
    gate.load_results = {("carts", "Staging"): LoadResult(spec, "current", 0, 0, window, Path("x.log"))}
    return gate


@respx.mock
def test_earlier_passed_runs_are_measured_with_the_same_promql_and_combined_keptns_way(
    tmp_path: Path, slo_dir: Path
) -> None:
    (slo_dir / "slo.yaml").write_text(several("p90"))
    t0 = 1_700_000_000.0
    # The error rate Prometheus answers, by the end of the window asked about.
    by_end = {t0 + 10: 1.0, t0 + 610: 2.0, t0 + 1210: 9.0, t0 + 1810: 3.0, t0 + 3610: 2.5}
    asked: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        query, at = request.url.params["query"], float(request.url.params["time"])
        if query.startswith("100 * (sum(increase(http_requests_total"):
            asked.append(query)
            return httpx.Response(200, json=answer(str(by_end[at])))
        return httpx.Response(200, json=answer("1"))

    respx.get(f"{FAKE}/api/v1/query").mock(side_effect=reply)
    runs = {
        "r1": (t0, "pass"),
        "r2": (t0 + 600, "pass"),
        "failed": (t0 + 1200, "violation"),
        "r3": (t0 + 1800, "pass"),
        "current": (t0 + 3600, None),
    }
    with SqliteStore(tmp_path / "perfsig.db") as store:
        gate = keptn_gate(store, slo_dir / "slo.yaml", runs)
        errors = gate.verdict(gate.checks[0])
    # Passed runs only (not the 9 % one); p90 of 3 results is their largest (Keptn's rank rule).
    assert (errors.source_value, errors.compare_value) == (2.5, 3.0), errors
    assert errors.baseline == "p90 of 3 of 3 runs: r3, r2, r1" and errors.compare_samples == 3
    assert errors.status == "pass" and errors.details is not None  # 2.5 <= 3.0 × 1.1
    assert errors.details["criteria"] == "pass: <=+10% (3.3) met"
    assert len(asked) == 4 and all("[10s]" in q and 'stage="Staging"' in q for q in asked)


@respx.mock
def test_a_relative_criterion_without_an_earlier_run_says_why(tmp_path: Path, slo_dir: Path) -> None:
    (slo_dir / "slo.yaml").write_text(several("avg"))
    respx.get(f"{FAKE}/api/v1/query").mock(return_value=httpx.Response(200, json=answer("1.5")))
    with SqliteStore(tmp_path / "perfsig.db") as store:
        gate = keptn_gate(store, slo_dir / "slo.yaml", {"current": (1_700_000_000.0, None)})
        errors = gate.verdict(gate.checks[0])
        latency = gate.verdict(gate.checks[1])
    assert errors.status == "error"
    assert errors.message == (
        "Failed requests (%): Staging 1.5: cannot tell its band without a comparison value (pass: <=+10% "
        "unknown (no comparison value)): no passed stored run of Staging to compare with (baseline 3 runs) "
        f"in {tmp_path / 'perfsig.db'}"
    )
    assert latency.status == "pass"  # its second criteria block needs no comparison
    assert gate.outcome().status == "error"


# ---------------------------------------------------------------------------- a real Prometheus


@dataclass
class Stage:
    app: RunningApp
    port: int


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    """The sample app as Staging (build 1), scraped every second by a real Prometheus."""
    binary = _prometheus_binary()
    tmp = tmp_path_factory.mktemp("keptn-prometheus")
    app = start_app("Staging", 1, tmp / "app")
    process = None
    try:
        port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: carts\n"
            f"    static_configs:\n      - targets: [{json.dumps(app.url.removeprefix('http://'))}]\n"
        )
        log = tmp / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        # Two scrapes of the target: it is up, and its series exist before the load starts.
        _wait(
            "the target scraped twice", lambda: _query(port, "count_over_time(up[1m]) >= 2"), 30, process, log
        )
        yield Stage(app, port)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        app.stop()


def run_gate(
    stage: Stage, slo: Path, workdir: Path, build: int
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = workdir / f"build{build}.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-rA",
        f"--monspec={slo}",
        "--stage=Staging",
        "--perfsig-keptn-service=carts",
        f"--perfsig-keptn-label=build={build}",
        f"--perfsig-build={build}",
        f"--perfsig-source=prometheus://127.0.0.1:{stage.port}?settle=20",
        f"--perfsig-url=Staging={stage.app.url}",
        f"--perfsig-locustfile={ROOT / 'loadtests' / 'staging.py'}",
        "--perfsig-duration=5",
        "--perfsig-users=5",
        "--perfsig-spawn-rate=5",
        f"--perfsig-store={workdir / 'perfsig.db'}",
        f"--perfsig-json={report}",
    ]
    env = {**os.environ, "PERFSIG_THINK_S": "0.2"}
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=240)
    return done, json.loads(report.read_text()) if report.is_file() else {}


def verdicts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["check_id"]: v for v in report["gate"]["verdicts"]}


@pytest.mark.e2e
def test_keptn_gate_passes_build_1_and_rejects_build_2_against_a_real_prometheus(
    staging: Stage, slo_dir: Path
) -> None:
    first, report = run_gate(staging, slo_dir / "slo.yaml", slo_dir, build=1)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output
    assert "perfsig: gate " in output and "for Staging: PASS" in output, output
    assert "perfsig: Keptn total score 100.0 % (3 of 3): pass (pass needs 90 %, warning 75 %)" in output
    found = verdicts(report)
    assert set(found) == {
        "keptn::error_rate[value]",
        "keptn::response_time_p95[value]",
        "keptn::throughput[value]",
    }
    errors, latency, throughput = (
        found[f"keptn::{s}[value]"] for s in ("error_rate", "response_time_p95", "throughput")
    )
    assert errors["status"] == "pass" and errors["source_value"] == 0.0, errors
    # No earlier run: "<=+50%" is unknown, the second block ("<2000", loose for a busy
    # machine) decides.
    assert latency["status"] == "pass" and latency["compare_value"] is None, latency
    assert "<=+50% unknown (no comparison value) or <2000 met" in latency["details"]["criteria"], latency
    assert throughput["status"] == "skipped" and throughput["source_value"] > 20, throughput
    assert (
        report["gate"]["problems"][0]
        == "Keptn total score 100.0 % (3 of 3): pass (pass needs 90 %, warning 75 %)"
    )

    httpx.get(f"{staging.app.url}/api/version", params={"newBuildNumber": "2"}, timeout=5).raise_for_status()
    second, report = run_gate(staging, slo_dir / "slo.yaml", slo_dir, build=2)
    output = second.stdout + second.stderr
    assert second.returncode == 1, output
    assert "for Staging: VIOLATION" in output, output
    found = verdicts(report)
    errors = found["keptn::error_rate[value]"]
    # Build 2 fails every second /api/invoke: about a tenth of all requests the app serves.
    assert errors["status"] == "violation" and 4 <= errors["source_value"] <= 20, errors
    assert errors["details"]["band"] == "fail" and errors["details"]["key_sli"] is True, errors
    assert errors["message"].endswith("key SLI: the gate fails"), errors
    # The comparison is the first run, which passed: measured with the same PromQL over its window.
    assert errors["compare_value"] == 0.0 and errors["baseline"].startswith("run "), errors
    latency = found["keptn::response_time_p95[value]"]
    assert latency["compare_value"] is not None and latency["compare_value"] > 0, latency
    problems = report["gate"]["problems"]
    assert problems[0].startswith("Keptn total score ") and problems[0].endswith(
        "; key SLI failed: error_rate"
    )
    assert "FAILED" in output and "error_rate" in output
