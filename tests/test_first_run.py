"""The first deployment: a comparison whose baseline is stored runs finds none. Fail closed by
default (the check is an error); ``"first_run": "approve"`` passes it, visibly (message, rule,
``details["first_run"]``, the stored record and the reports)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_perfsig.errors import MonspecError
from pytest_perfsig.gate import GateOutcome
from pytest_perfsig.gate.policies import FIRST_RUN_APPROVED
from pytest_perfsig.monspec import parse_monspec
from pytest_perfsig.report.json_report import write_json_report
from pytest_perfsig.report.terminal import render_table, verdict_rows
from pytest_perfsig.store import RunRecord, SqliteStore
from tests.test_baselines import NOW, add_run, gate_over, monspec, only_verdict

NOTE = "first run: no baseline yet, approved by policy (first_run: approve)"


def production(baseline: str = "latest_passed", **policy: str) -> str:
    """Production against its own stored runs."""
    return monspec({"source": "Production", "compare": "Production", "baseline": baseline, **policy})


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "s.db")


def test_the_note_is_the_documented_text() -> None:
    assert FIRST_RUN_APPROVED == NOTE


def test_default_is_fail_closed(store: SqliteStore) -> None:
    add_run(store, "current", "Production", NOW, [8.0] * 40)
    text = production()
    assert parse_monspec(text, "m.json").entities["Svc"].comparisons[0].first_run == "error"
    verdict = only_verdict(gate_over(store, text, stage="Production"))
    assert verdict.status == "error"
    assert "no passed stored run of Production to compare with" in verdict.message
    assert verdict.details is None


def test_approve_passes_the_first_run_and_says_so(store: SqliteStore) -> None:
    add_run(store, "current", "Production", NOW, [8.0] * 40)
    text = production(first_run="approve")
    gate = gate_over(store, text, stage="Production")
    verdict = only_verdict(gate)
    assert verdict.status == "pass"
    assert verdict.message == f"service.responsetime avg: {NOTE}"
    assert verdict.rule == NOTE
    assert verdict.details is not None and verdict.details["first_run"] is True
    assert "no passed stored run of Production" in verdict.details["reason"]
    # What was measured is kept; there is no compare side.
    assert (verdict.source_value, verdict.source_samples) == (8.0, 40)
    assert verdict.compare_value is None and verdict.limit is None
    assert gate.outcome().status == "pass"
    # The terminal table shows it in the rule column, the stored record keeps it.
    (row,) = verdict_rows([("C::service.responsetime[avg]", verdict)])
    assert row.status == "pass" and row.rule == NOTE
    assert any(NOTE in line for line, _ in render_table([row], width=200))
    (stored,) = store.verdicts(gate.gate_id)
    assert stored.verdict.details == verdict.details and stored.verdict.message == verdict.message


def test_the_report_says_it(store: SqliteStore, tmp_path: Path) -> None:
    add_run(store, "current", "Production", NOW, [8.0] * 40)
    text = production(first_run="approve")
    gate = gate_over(store, text, stage="Production")
    store.create_gate(gate.gate_id, "m.json", "Production", None)
    only_verdict(gate)
    gate.finish()
    written = write_json_report(store, tmp_path / "r.json", gate_id=gate.gate_id)
    report = json.loads(Path(written).read_text())
    text_of_report = json.dumps(report)
    assert NOTE in text_of_report and '"first_run": true' in text_of_report


def test_an_existing_baseline_is_judged_as_usual(store: SqliteStore) -> None:
    """The policy only covers a missing baseline: once a passed run exists, it is compared."""
    add_run(store, "earlier", "Production", NOW - 100, [5.0] * 40, gate=("g1", "pass"))
    add_run(store, "current", "Production", NOW, [20.0] * 40)
    text = production(first_run="approve")
    verdict = only_verdict(gate_over(store, text, stage="Production"))
    assert verdict.status == "violation" and verdict.baseline == "run earlier"
    assert verdict.details is None


def test_baseline_runs_without_samples_are_not_a_first_run(store: SqliteStore) -> None:
    """Runs that exist but hold nothing are a broken history, not a first deployment."""
    store.create_gate("g1", "m.json", "Production", None)
    store.finish_gate("g1", GateOutcome("pass", {}, planned=1, selected=1, judged=1))
    run = RunRecord("empty", "Svc", "Production", gate_id="g1", started_at=NOW - 100, status="completed")
    store.create_run(run)
    add_run(store, "current", "Production", NOW, [8.0] * 40)
    text = production(first_run="approve")
    verdict = only_verdict(gate_over(store, text, stage="Production"))
    assert verdict.status == "error" and "hold no samples" in verdict.message


def test_a_broken_stage_is_not_approved_by_the_policy(store: SqliteStore) -> None:
    """No samples on the source side: an error, first run or not."""
    add_run(store, "current", "Production", NOW, [8.0] * 5)
    text = production("latest", first_run="approve")
    verdict = only_verdict(gate_over(store, text, stage="Production"))
    assert verdict.status == "error" and "too few samples" in verdict.message


def test_a_pinned_run_that_is_missing_stays_an_error(store: SqliteStore) -> None:
    add_run(store, "current", "Production", NOW, [8.0] * 40)
    text = production(first_run="approve")
    verdict = only_verdict(gate_over(store, text, stage="Production", baseline_run="nope"))
    assert verdict.status == "error" and "baseline run 'nope' is not in the store" in verdict.message


@pytest.mark.parametrize(
    ("comparison", "problem"),
    [
        ({"compare": "Production", "first_run": "approve"}, "'first_run' applies to stored-run baselines"),
        ({"compare": "Production", "baseline": "latest", "first_run": "pass"}, "first_run"),
        ({"compare": "Production", "baseline": "latest", "first_run": True}, "first_run"),
    ],
)
def test_first_run_is_validated(comparison: dict[str, object], problem: str) -> None:
    with pytest.raises(MonspecError, match=problem):
        parse_monspec(monspec(comparison), "m.json")
