"""Where the compare side comes from: shifted windows and stored runs, judged through a Gate
over a real SQLite store filled with samples at known times (no test waits an hour)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_perfsig.gate import Gate, GateOptions, GateOutcome
from pytest_perfsig.load.runner import LoadResult, LoadSpec
from pytest_perfsig.monspec import parse_monspec
from pytest_perfsig.store import RunRecord, SqliteStore
from pytest_perfsig.windows import Window

SVC = "Svc"
NOW = 1_800_000_000.0
DURATION = 10.0


def monspec(comparison: dict[str, Any], entries: list[dict[str, Any]] | None = None) -> str:
    import json

    entries = entries or [{"timeseries": "service.responsetime", "aggregate": "avg"}]
    return json.dumps(
        {
            SVC: {
                "environments": {"Staging": {}, "Production": {}},
                "comparisons": [
                    {"name": "C", "source": "Staging", "scalefactorperc": {"default": 10}, **comparison}
                ],
                "perfsignature": entries,
            }
        }
    )


def add_run(
    store: SqliteStore,
    run_id: str,
    env: str,
    start: float,
    latencies: list[float] | np.ndarray,
    gate: tuple[str, str] | None = None,
    failures: int = 0,
) -> None:
    """A completed run of len(latencies) samples spread over DURATION seconds from ``start``;
    ``gate``: (gate_id, status) of the gate it belonged to, recorded as that env's gate."""
    gate_id = gate[0] if gate else None
    store.create_run(
        RunRecord(run_id=run_id, service=SVC, env=env, gate_id=gate_id, started_at=start, status="completed")
    )
    n = len(latencies)
    store.add_samples(
        [
            (run_id, start + DURATION * k / n, SVC, env, "/api/x", float(lat), int(k >= failures), 200)
            for k, lat in enumerate(latencies)
        ]
    )
    if gate:
        store.create_gate(gate[0], "m.json", env, None)
        store.finish_gate(gate[0], GateOutcome(gate[1], {}, planned=1, selected=1, judged=1))


def gate_over(
    store: SqliteStore, text: str, *, stage: str = "Staging", run_id: str = "current", **options: Any
) -> Gate:
    """A Gate whose load phase is the stored run ``run_id`` (what run_load would have left)."""
    options.setdefault("warmup_s", 0.0)
    gate = Gate(
        parse_monspec(text, "m.json"), GateOptions(stage=stage, store_path=store.path, **options), store=store
    )
    gate.started = True
    with sqlite3.connect(store.path) as raw:  # the stored run becomes this gate's own
        raw.execute("UPDATE runs SET gate_id = ? WHERE run_id = ?", (gate.gate_id, run_id))
    window = store.run_window(run_id)
    assert window is not None
    spec = LoadSpec(SVC, stage, "http://127.0.0.1:1", "x.py", 1, 1, DURATION)
    gate.load_results = {(SVC, stage): LoadResult(spec, run_id, 0, 0, window, Path("x.log"))}
    return gate


def only_verdict(gate: Gate) -> Any:
    (check,) = gate.checks
    return gate.verdict(check)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "s.db")


def test_compare_window_shifted_an_hour_back(store: SqliteStore) -> None:
    add_run(store, "current", "Staging", NOW, [10.0] * 40)
    add_run(store, "hour-ago", "Staging", NOW - 3600, [5.0] * 40)
    verdict = only_verdict(gate_over(store, monspec({"compare": "Staging", "shiftcomparetimeframe": 3600})))
    assert (verdict.source_value, verdict.compare_value) == (10.0, 5.0)
    assert verdict.limit == pytest.approx(5.0 * 1.1 + 2.0)  # 10 % plus the 2 ms default
    assert verdict.status == "violation"
    assert str(verdict.compare_window) == "2027-01-15 07:00:00–07:00:09 UTC"
    assert verdict.compare_window == Window(NOW - 3600 + 0.0, verdict.compare_window.end)


def test_source_window_shifted_too(store: SqliteStore) -> None:
    add_run(store, "current", "Staging", NOW, [50.0] * 40)
    add_run(store, "minute-ago", "Staging", NOW - 60, [5.0] * 40)
    add_run(store, "hour-ago", "Staging", NOW - 3600, [5.0] * 40)
    verdict = only_verdict(
        gate_over(
            store, monspec({"compare": "Staging", "shiftsourcetimeframe": 60, "shiftcomparetimeframe": 3600})
        )
    )
    # The source is the minute-earlier window, not the current run.
    assert (verdict.source_value, verdict.compare_value, verdict.status) == (5.0, 5.0, "pass")


def test_empty_shifted_window_fails_closed(store: SqliteStore) -> None:
    add_run(store, "current", "Staging", NOW, [10.0] * 40)
    verdict = only_verdict(
        gate_over(store, monspec({"compare": "Production", "shiftcomparetimeframe": 86400}))
    )
    assert verdict.status == "error"
    assert "no data for Production in 2027-01-14 08:00:00–08:00:09 UTC" in verdict.message


def _history(store: SqliteStore) -> None:
    """Three earlier Staging gates: passed (5 ms), passed (7 ms), violation (20 ms), newest last."""
    add_run(store, "r1", "Staging", NOW - 300, [5.0] * 40, gate=("g1", "pass"))
    add_run(store, "r2", "Staging", NOW - 200, [7.0] * 40, gate=("g2", "pass"))
    add_run(store, "r3", "Staging", NOW - 100, [20.0] * 40, gate=("g3", "violation"))
    add_run(store, "current", "Staging", NOW, [8.0] * 40)


@pytest.mark.parametrize(
    ("baseline", "compare_value", "window"),
    [
        ("latest", 20.0, "run r3"),
        ("latest_passed", 7.0, "run r2"),
        ({"runs": 3, "aggregate": "median"}, 7.0, "median of 3 of 3 runs: r3, r2, r1"),
        ({"runs": 2, "aggregate": "max"}, 20.0, "max of 2 of 2 runs: r3, r2"),
        ({"runs": 3, "aggregate": "avg", "passed_only": True}, 6.0, "avg of 2 of 3 runs: r2, r1"),
    ],
)
def test_stored_run_baselines(store: SqliteStore, baseline: Any, compare_value: float, window: str) -> None:
    _history(store)
    verdict = only_verdict(gate_over(store, monspec({"compare": "Staging", "baseline": baseline})))
    assert verdict.compare_value == compare_value
    assert verdict.baseline == window
    assert verdict.compare_text == window
    assert verdict.source_value == 8.0


def test_pinned_run_replaces_the_comparison(store: SqliteStore) -> None:
    _history(store)
    verdict = only_verdict(
        gate_over(store, monspec({"compare": "Staging", "baseline": "latest"}), baseline_run="r1")
    )
    assert (verdict.compare_value, verdict.baseline) == (5.0, "run r1")
    assert verdict.status == "violation"  # 8 > 5 × 1.1 + 2


def test_baseline_never_includes_the_current_gate(store: SqliteStore) -> None:
    add_run(store, "current", "Staging", NOW, [8.0] * 40)
    # gate_over records the current run under the new gate, as run_load does.
    verdict = only_verdict(gate_over(store, monspec({"compare": "Staging", "baseline": "latest"})))
    assert verdict.status == "error"
    assert "no stored run of Staging to compare with (baseline latest)" in verdict.message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"baseline_run": "nope"}, "baseline run 'nope' is not in the store"),
        (
            {"baseline_run": "prod"},
            "baseline run 'prod' measured Svc in Production, but C compares with Staging",
        ),
    ],
)
def test_bad_pins_are_errors(store: SqliteStore, options: dict[str, Any], message: str) -> None:
    add_run(store, "current", "Staging", NOW, [8.0] * 40)
    add_run(store, "prod", "Production", NOW - 50, [8.0] * 40)
    verdict = only_verdict(gate_over(store, monspec({"compare": "Staging"}), **options))
    assert verdict.status == "error" and message in verdict.message


def test_no_passed_run_is_an_error_not_a_pass(store: SqliteStore) -> None:
    add_run(store, "r3", "Staging", NOW - 100, [8.0] * 40, gate=("g3", "violation"))
    add_run(store, "current", "Staging", NOW, [8.0] * 40)
    verdict = only_verdict(gate_over(store, monspec({"compare": "Staging", "baseline": "latest_passed"})))
    assert verdict.status == "error"
    assert "no passed stored run of Staging" in verdict.message


def test_too_few_samples_is_an_error_with_the_counts(store: SqliteStore) -> None:
    add_run(store, "current", "Staging", NOW, [8.0] * 40)
    add_run(store, "few", "Production", NOW, [8.0] * 7)
    verdict = only_verdict(gate_over(store, monspec({"compare": "Production"})))
    assert verdict.status == "error"
    assert (
        "too few samples for Production in" in verdict.message and "7 < 20 needed for avg" in verdict.message
    )
    assert verdict.source_value == 8.0 and verdict.source_samples == 40  # what was measured is kept


def test_statistical_judge_through_the_gate(store: SqliteStore) -> None:
    rng = np.random.default_rng(7)
    add_run(store, "current", "Staging", NOW, rng.normal(20, 1, 200))
    add_run(store, "prod", "Production", NOW, rng.normal(10, 1, 200))
    verdict = only_verdict(gate_over(store, monspec({"compare": "Production", "judge": "mannwhitney"})))
    assert verdict.status == "violation"
    assert verdict.details["test"] == "Mann-Whitney U" and verdict.details["p_value"] < 1e-20
    assert verdict.details["shift"] == pytest.approx(10, abs=0.5)
    assert verdict.limit == pytest.approx(max(2.0, 10 * 0.1), abs=0.2)  # effect floor, ms
    assert "shift +9.9" in verdict.message and "Mann-Whitney U p=" in verdict.message


def test_entry_judge_overrides_comparison_and_static_limits_keep_the_rule(store: SqliteStore) -> None:
    rng = np.random.default_rng(8)
    add_run(store, "current", "Staging", NOW, rng.normal(20, 1, 200))
    add_run(store, "prod", "Production", NOW, rng.normal(10, 1, 200))
    text = monspec(
        {"compare": "Production", "judge": "mannwhitney"},
        [
            {"timeseries": "service.responsetime", "aggregate": "p90", "judge": "scalefactor"},
            {"timeseries": "service.responsetime", "aggregate": "avg", "_upperlimit": 100},
        ],
    )
    gate = gate_over(store, text)
    first, second = (gate.verdict(check) for check in gate.checks)
    assert first.details is None and first.rule.startswith("upper: Production × 1.10")
    assert (
        second.details is None
        and second.rule == "static upper limit (_upperlimit)"
        and second.status == "pass"
    )


def test_base_window_is_the_overlap_of_all_loads_less_the_warmup(store: SqliteStore) -> None:
    add_run(store, "current", "Staging", NOW, [10.0] * 40)
    gate = gate_over(store, monspec({"compare": "Production"}), warmup_s=2.0)
    spec = LoadSpec(SVC, "Production", "http://127.0.0.1:2", "x.py", 1, 1, DURATION)
    gate.load_results[(SVC, "Production")] = LoadResult(
        spec, "p", 0, 0, (NOW + 1.0, NOW + 8.0), Path("p.log")
    )
    window = gate.base_window(SVC)
    assert (window.start, window.end) == (NOW + 1.0 + 1.75, NOW + 8.0)  # warm-up capped at a quarter
    assert (
        gate_over(store, monspec({"compare": "Production"}), warmup_s=1.0).base_window(SVC).start == NOW + 1.0
    )
