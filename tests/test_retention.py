"""Retention: ``perfsig gc`` deletes the raw samples of old runs and shrinks the store; gates,
verdicts and per-second aggregates stay, so history and reports go on working. Pinned runs,
the newest passed run of each environment and runs a kept gate judged are never collected."""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_perfsig import cli, cli_store
from pytest_perfsig.gate import Gate, GateOptions
from pytest_perfsig.gate.status import GateOutcome
from pytest_perfsig.load.runner import LoadResult, LoadSpec
from pytest_perfsig.monspec import load_monspec
from pytest_perfsig.report.gate_report import build_gate_report
from pytest_perfsig.report.history import build_history
from pytest_perfsig.report.html import render_html
from pytest_perfsig.report.json_report import build_json_report
from pytest_perfsig.store import RunRecord, SqliteStore
from pytest_perfsig.verdict import Verdict
from pytest_perfsig.windows import Window

T0 = 1_700_000_000.0
SVC = "SampleJSonService"
ENDPOINTS = ["/", "/version", "/api/echo", "/api/invoke"]
SEED = Path(__file__).parent / "data" / "monspecs" / "seed-monspec.json"
V1_STORE = Path(__file__).parent / "data" / "store-v1.db"


def fill(store: SqliteStore, run_id: str, env: str, gate_id: str | None, start: float, n: int) -> None:
    """``n`` samples over 60 s, as a load run leaves them (rows, then compacted)."""
    rng = np.random.default_rng(zlib.crc32(run_id.encode()))
    store.create_run(RunRecord(run_id, SVC, env, gate_id=gate_id, started_at=start, status="completed"))
    ts = start + np.sort(rng.random(n)) * 60.0
    latency = rng.lognormal(2.0, 0.4, n)
    ok = rng.random(n) > 0.01
    names = np.array(ENDPOINTS)[rng.integers(0, 4, n)]
    store.add_samples(
        zip([run_id] * n, ts.tolist(), [SVC] * n, [env] * n, names.tolist(), latency.tolist(),
            ok.astype(int).tolist(), [200] * n, strict=True)
    )  # fmt: skip
    store.compact_run(run_id)


def judged_gate(store: SqliteStore, gate_id: str, start: float, n: int) -> Gate:
    """A Staging gate of the seed monspec over its own two runs, judged and stored."""
    for env in ("Staging", "Production"):
        fill(store, f"{env}-{gate_id}", env, gate_id, start, n)
    options = GateOptions(
        stage="Staging",
        comparisons=("StagingToProduction",),
        store_path=store.path,
        warmup_s=0.0,
        optional=("smartscape",),
    )
    gate = Gate(load_monspec(SEED), options, store=store)
    gate.gate_id = gate_id
    spec = LoadSpec(SVC, "Staging", "http://127.0.0.1:1", "-", 1, 1, 60.0)
    gate.load_results = {
        (SVC, "Staging"): LoadResult(spec, f"Staging-{gate_id}", n, 0, (start, start + 60.0), Path("-"))
    }
    gate.open()
    for check in gate.checks:
        gate.verdict(check)
    gate.finish()
    return gate


def outcome(status: str) -> GateOutcome:
    return GateOutcome(status=status, counts={status: 1}, planned=1, selected=1, judged=1)


def bare_gate(store: SqliteStore, gate_id: str, stage: str, status: str, runs: dict[str, float]) -> None:
    """A gate with small runs (env → start) and no verdicts."""
    store.create_gate(gate_id, "monspec.json", stage, None)
    for env, start in runs.items():
        fill(store, f"{env}-{gate_id}", env, gate_id, start, 200)
    store.finish_gate(gate_id, outcome(status))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "perfsig.db") as opened:
        yield opened


def test_gc_shrinks_the_store_and_the_kept_gates_report_is_unchanged(store: SqliteStore) -> None:
    old = judged_gate(store, "g1-old", T0, 100_000)  # 200,000 samples
    new = judged_gate(store, "g2-new", T0 + 3600, 2_000)
    assert (old.status(), new.status()) == ("pass", "pass")
    store.checkpoint()
    before, bytes_before = build_json_report(store, new.gate_id), store.store_bytes()
    old_runs = {
        r.run_id: (store.run_counts(r.run_id), store.run_window(r.run_id)) for r in store.gate_runs("g1-old")
    }
    old_report = build_gate_report(store, old.gate_id)
    assert old_report is not None

    done = store.collect_samples(keep_gates=1)

    assert sorted(done.collected) == ["Production-g1-old", "Staging-g1-old"]
    assert done.samples == 200_000 and done.kept == {}
    after = build_json_report(store, new.gate_id)
    for key in ("gate", "checks"):  # byte for byte: the kept gate reads what it read before
        assert json.dumps(after[key], sort_keys=True) == json.dumps(before[key], sort_keys=True), key
    assert store.store_bytes() < 0.1 * bytes_before and done.bytes_after == store.store_bytes()
    # The old gate: verdicts and counts as they were, charts from the per-second aggregates.
    assert [g["verdicts"] for g in after["gates"]] == [g["verdicts"] for g in before["gates"]]
    for run_id, (counts, window) in old_runs.items():
        assert (store.run_counts(run_id), store.run_window(run_id)) == (counts, window)
        run = store.run(run_id)
        assert run is not None and run.samples_collected_at is not None
    report = build_gate_report(store, old.gate_id)
    assert report is not None and [v.to_dict() for v in report.verdicts] == [
        v.to_dict() for v in old_report.verdicts
    ]
    (comparison,) = report.comparisons
    assert comparison.source is not None and comparison.source.from_aggregates
    assert comparison.source.samples == store.run_counts("Staging-g1-old")[0]
    assert all(p is None for p in comparison.source.p90_ms)
    assert len(store.samples(SVC, "Staging", T0, T0 + 60)) == 0
    usage = store.store_usage()
    assert (usage.samples, usage.runs_with_samples, usage.runs_collected) == (4_000, 2, 2)
    assert after["store_size"]["samples"] == 4_000 and after["store_size"]["bytes_per_sample"] > 0
    html = render_html(report, build_history(store), str(store.path), usage)
    assert "raw samples collected" in html and 'id="store-size"' in html and "4,000 raw samples" in html
    assert store.collect_samples(keep_gates=1).collected == []  # nothing left to collect


def test_pinned_latest_passed_and_running_runs_are_never_collected(store: SqliteStore) -> None:
    bare_gate(store, "p1", "Production", "pass", {"Production": T0})  # newest passed Production run
    bare_gate(store, "p2", "Production", "violation", {"Production": T0 + 100})
    bare_gate(store, "s1", "Staging", "pass", {"Staging": T0 + 200})  # pinned below
    bare_gate(store, "s2", "Staging", "pass", {"Staging": T0 + 300})
    store.create_run(RunRecord("live", SVC, "Staging", started_at=T0 + 350))  # still running
    store.add_samples([("live", T0 + 350, SVC, "Staging", "/", 1.0, 1, 200)])
    bare_gate(store, "s3", "Staging", "pass", {"Staging": T0 + 400})
    store.pin_run("Staging-s1", "s2")
    assert set(store.latest_passed_runs()) == {"Staging-s3", "Production-p1"}

    done = store.collect_samples(keep_gates=1)

    assert sorted(done.collected) == ["Production-p2", "Staging-s2"]
    assert done.kept == {"pinned": ["Staging-s1"], "latest passed": ["Production-p1"]}
    for run_id in ("Production-p1", "Staging-s1", "Staging-s3"):
        kept = store.run(run_id)
        assert kept is not None and len(store.run_samples(kept)) == 200, run_id
    assert store.run_counts("live") == (1, 0)
    # A collected run can no longer be a baseline: the newest one with raw samples is.
    assert [r.run_id for r in store.baseline_runs(SVC, "Production", 5, passed_only=False)] == [
        "Production-p1"
    ]
    assert store.unpin_run("Staging-s1") and not store.unpin_run("Staging-s1")
    assert store.collect_samples(keep_gates=1).collected == ["Staging-s1"]


def test_runs_a_kept_gate_judged_in_a_shifted_window_are_kept(store: SqliteStore) -> None:
    bare_gate(store, "old", "Staging", "violation", {"Staging": T0})
    bare_gate(store, "new", "Staging", "violation", {"Staging": T0 + 3600})
    verdict = Verdict(
        status="pass", metric="service.responsetime", aggregate="avg", method=None, unit="ms",
        source_env="Staging", compare_env="Staging", message="", comparison="StagingToStagingLastHour",
        source_window=Window(T0 + 3600, T0 + 3660), compare_window=Window(T0 + 10, T0 + 70),
    )  # fmt: skip
    store.save_verdict("new", "StagingToStagingLastHour::service.responsetime[avg]", SVC, verdict)
    done = store.collect_samples(keep_gates=1)
    assert done.collected == [] and done.kept == {"judged by a kept gate": ["Staging-old"]}


def test_older_than_and_dry_run(store: SqliteStore) -> None:
    bare_gate(store, "a", "Staging", "violation", {"Staging": T0})
    bare_gate(store, "b", "Staging", "violation", {"Staging": T0 + 86400 * 40})
    now = T0 + 86400 * 41
    dry = store.collect_samples(older_than_s=30 * 86400, now=now, dry_run=True)
    assert (dry.collected, dry.samples, dry.dry_run) == (["Staging-a"], 200, True)
    run = store.run("Staging-a")
    assert run is not None and run.samples_collected_at is None and len(store.run_samples(run)) == 200
    # Both rules given: a run must be outside the newest gates and older than the age.
    assert store.collect_samples(keep_gates=2, older_than_s=30 * 86400, now=now).collected == []
    assert store.collect_samples(keep_gates=1, older_than_s=30 * 86400, now=now).collected == ["Staging-a"]
    with pytest.raises(ValueError, match="say which runs are old"):
        store.collect_samples()


def test_a_store_of_the_first_release_keeps_its_samples_as_chunks_with_aggregates(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    shutil.copyfile(V1_STORE, path)
    with SqliteStore(path) as store:
        assert store.run_counts("Staging-v1run") == (100, 25)
        assert sum(second[1] for second in store.run_seconds("Staging-v1run")) == 100
        assert len(store.samples(SVC, "Staging", 0, 2e9)) == 100
        assert store.latest_passed_runs() == []


# ---------------------------------------------------------------------------- perfsig gc, runs, pin


def test_perfsig_gc_and_runs(store: SqliteStore, capsys: pytest.CaptureFixture[str]) -> None:
    bare_gate(store, "a", "Staging", "violation", {"Staging": T0})
    bare_gate(store, "b", "Staging", "violation", {"Staging": T0 + 60})
    path = str(store.path)
    assert cli.main(["gc", "--store", path]) == cli.EXIT_USAGE
    assert "say which runs are old" in capsys.readouterr().err
    assert cli.main(["gc", "--older-than", "3 fortnights", "--store", path]) == cli.EXIT_USAGE
    assert cli.main(["pin", "no-such-run", "--store", path]) == cli.EXIT_USAGE
    capsys.readouterr()
    assert cli.main(["runs", "--store", path]) == 0
    out = capsys.readouterr().out
    assert "400 raw samples in 2 runs (" in out and "bytes per sample)" in out
    assert cli.main(["gc", "--keep-gates", "1", "--dry-run", "--store", path]) == 0
    assert "gc would delete the raw samples of 1 run (200 samples)" in capsys.readouterr().out
    assert cli.main(["gc", "--keep-gates", "1", "--store", path]) == 0
    out = capsys.readouterr().out
    assert "gc deleted the raw samples of 1 run (200 samples)" in out and "store " in out
    assert cli.main(["runs", "--store", path]) == 0
    out = capsys.readouterr().out
    assert "[samples collected]" in out and "raw samples of 1 older runs collected" in out
    assert cli.main(["pin", "Staging-b", "--store", path]) == 0
    assert cli.main(["pin", "--store", path]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "Staging-b"


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400.0), ("12h", 43200.0), ("90m", 5400.0),
                                               ("45s", 45.0), ("2w", 1209600.0), ("1.5", 129600.0)])  # fmt: skip
def test_ages(text: str, seconds: float) -> None:
    assert cli_store.parse_age(text) == seconds


# ---------------------------------------------------------------------------- the plugin

KEEP_MONSPEC = json.dumps({SVC: {
    "environments": {"Staging": {}, "Production": {}},
    "comparisons": [{"name": "StagingToProduction", "source": "Staging", "compare": "Production"}],
    "perfsignature": [{"timeseries": "service.responsetime", "aggregate": "avg"}]}})  # fmt: skip


@pytest.mark.e2e
def test_the_plugin_collects_after_a_gate_with_perfsig_keep_gates_and_keeps_its_pinned_baseline(
    gate_dir: pytest.Pytester, sample_app: Any
) -> None:
    gate_dir.makefile(".json", monspec=KEEP_MONSPEC)
    staging, production = sample_app("Staging"), sample_app("Production")
    load = ["--monspec=monspec.json", "--stage=Staging", "--perfsig-duration=4", "--perfsig-users=5",
            f"--perfsig-url=Staging={staging.url}", f"--perfsig-url=Production={production.url}"]  # fmt: skip
    first = gate_dir.runpytest_subprocess(*load)
    db = gate_dir.path / ".perfsig" / "perfsig.db"
    with SqliteStore(db) as opened:
        (gate,) = opened.gates()
        runs = {run.env: run.run_id for run in opened.gate_runs(gate.gate_id)}
    assert set(runs) == {"Staging", "Production"}, first.stdout.str()
    gate_dir.makeini("[pytest]\nperfsig_keep_gates = 1\n")
    second = gate_dir.runpytest_subprocess(*load, f"--perfsig-baseline={runs['Production']}")
    text = second.stdout.str()
    assert "perfsig: gc deleted the raw samples of" in text, text
    assert f"gc kept 1 older run (pinned): {runs['Production']}" in text, text
    with SqliteStore(db) as opened:
        assert opened.pinned_runs() == [runs["Production"]]
        pinned = opened.run(runs["Production"])
        assert pinned is not None and pinned.samples_collected_at is None
        old_staging = opened.run(runs["Staging"])
        assert old_staging is not None
        if old_staging.run_id not in opened.latest_passed_runs():  # the second gate passed
            assert old_staging.samples_collected_at is not None, text
            assert opened.run_counts(old_staging.run_id)[0] > 0  # its counts stay


def test_a_run_never_compacted_keeps_its_counts_when_collected(store: SqliteStore) -> None:
    """A run whose Locust process crashed: rows only, no chunks, no aggregates yet."""
    store.create_run(RunRecord("crashed", SVC, "Staging", started_at=T0, status="error"))
    store.add_samples(
        [("crashed", T0 + k / 10, SVC, "Staging", "/", 2.0, int(k % 4 > 0), 200) for k in range(40)]
    )
    bare_gate(store, "later", "Staging", "violation", {"Staging": T0 + 600})
    window = store.run_window("crashed")
    assert store.collect_samples(keep_gates=1).collected == ["crashed"]
    assert (store.run_counts("crashed"), store.run_window("crashed")) == ((40, 10), window)
    assert sum(second[3] for second in store.run_seconds("crashed")) == pytest.approx(80.0)
