"""The sequential gate's monitor on a real store fed second by second with synthetic samples
(a fake clock, no Locust): when it stops the load, what it reads, the level each check gets and
the verdicts it leads to."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_perfsig.gate import Gate, GateOptions
from pytest_perfsig.gate.run import subject_of
from pytest_perfsig.gate.sequential import LAG_S, SequentialMonitor
from pytest_perfsig.load.runner import LoadResult, LoadSpec
from pytest_perfsig.monspec import load_monspec
from pytest_perfsig.monspec.models import SequentialConfig
from pytest_perfsig.store import RunRecord, SqliteStore

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "SampleJSonService"
T0 = 1_800_000_000.0
LOOP = ("/", "/version", "/api/echo", "/api/invoke")


class Recording:
    """The store, with the windows the monitor asked for."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.reads: list[tuple[str, float, float]] = []

    def samples(self, service: str, env: str, start: float, end: float, *args: Any, **kwargs: Any) -> Any:
        self.reads.append((env, start, end))
        return self.store.samples(service, env, start, end, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Load:
    """Two environments' samples, stored one second at a time, and the monitor looking."""

    def __init__(self, tmp_path: Path, *, invoke_failures: float = 0.0, **options: Any) -> None:
        self.store = SqliteStore(tmp_path / "perfsig.db")
        settings = {"duration_s": 10.0, "sequential": True, **options}
        self.options = GateOptions(
            stage="Staging", comparisons=("StagingToProduction",), store_path=self.store.path, **settings
        )
        self.gate = Gate(load_monspec(ROOT / "monspec.json"), self.options, store=self.store)
        self.gate.open()
        self.checks = list(self.gate.checks)
        self.rng = np.random.default_rng(42)
        self.invoke_failures = invoke_failures
        self.now = T0
        self.runs = {}
        for env in ("Staging", "Production"):
            run_id = f"{env}-run"
            self.store.create_run(RunRecord(run_id, SERVICE, env, gate_id=self.gate.gate_id))
            self.runs[(SERVICE, env)] = run_id
        self.reader = Recording(self.store)
        self.monitor = SequentialMonitor(
            self.checks,
            self.options,
            self.gate.measurer,
            self.reader,
            subject_of,
            fallback_enough=lambda run_ids: True,
            clock=lambda: self.now,
        )

    def second(self) -> None:
        """One second of requests: ~70/s to Staging, ~90/s to Production (four endpoints)."""
        for env, rate in (("Staging", 70), ("Production", 90)):
            ts = np.sort(self.now + self.rng.random(rate))
            rows = []
            for i, t in enumerate(ts):
                endpoint = LOOP[i % 4]
                latency = 20 * self.rng.uniform(0.8, 1.2) + self.rng.gamma(2, 1.5)
                failed = (
                    env == "Staging"
                    and endpoint == "/api/invoke"
                    and self.rng.random() < self.invoke_failures
                )
                rows.append(
                    (
                        self.runs[(SERVICE, env)],
                        float(t),
                        SERVICE,
                        env,
                        endpoint,
                        latency,
                        int(not failed),
                        200,
                    )
                )
            self.store.add_samples(rows)
        self.now += 1.0

    def run(self, seconds: int) -> int | None:
        """Seconds until the monitor stops the load (one look a second), or None."""
        for second in range(1, seconds + 1):
            self.second()
            if self.monitor(self.runs):
                return second
        return None

    def finish(self) -> list[Any]:
        """The verdicts, as the gate makes them after its load."""
        for (service, env), run_id in self.runs.items():
            window = self.store.run_window(run_id)
            assert window is not None
            spec = LoadSpec(service, env, "http://127.0.0.1:1", "builtin", 10, 10.0, 10.0)
            self.gate.load_results[(service, env)] = LoadResult(
                spec, run_id, 0, 0, window, Path("log"), ended=window[1] + 0.1
            )
        self.gate.monitor = self.monitor
        return [self.gate.verdict(check) for check in self.checks]


@pytest.fixture
def load(tmp_path: Path) -> Iterator[Load]:
    made = Load(tmp_path, invoke_failures=0.5)
    yield made
    made.store.close()


def test_half_the_invokes_failing_stops_the_load_in_seconds(load: Load) -> None:
    stopped_after = load.run(10)
    assert stopped_after is not None and stopped_after <= 5
    assert load.monitor.stopped and "failurerate" in load.monitor.stopped
    verdicts = {v.label: v for v in load.finish()}
    failed = verdicts["/api/invoke servicemethod.failurerate avg"]
    assert failed.status == "violation" and failed.judge == "sequential"
    details = failed.details or {}
    assert details["decided_by"] == "sequential"
    assert 2.0 < details["decided_at_s"] <= stopped_after
    assert details["decided_samples"] >= 20 and details["decided_compare_samples"] >= 20
    assert details["evidence"] >= details["threshold"]
    assert details["trajectory"] and details["trajectory"][-1][1] >= np.log10(details["threshold"])
    # The verdict is judged on the window of the decision, not on what came after it.
    assert failed.source_window is not None and failed.source_window.end <= T0 + stopped_after - LAG_S
    # Checks still undecided when the load stopped are not judged on a cut-short window.
    skipped = [v for v in verdicts.values() if v.status == "skipped" and "stopped early" in v.message]
    assert skipped and all((v.details or {})["decided_by"] == "not decided" for v in skipped)
    assert load.gate.outcome().status == "violation"


def test_each_look_reads_only_what_is_new(tmp_path: Path) -> None:
    load = Load(tmp_path)
    load.run(6)
    for env in ("Staging", "Production"):
        reads = [(start, end) for e, start, end in load.reader.reads if e == env]
        assert len(reads) >= 3
        assert all(after[0] == before[1] for before, after in itertools.pairwise(reads))
    load.store.close()


def test_a_good_build_is_watched_to_the_longest_load(tmp_path: Path) -> None:
    load = Load(tmp_path)
    load.monitor.fallback_enough = lambda run_ids: False  # the fixed rule's samples: not yet
    assert load.run(14) is None
    assert load.monitor.stopped is None
    decided = {t.check.check_id: t.decided for t in load.monitor.tracks.values()}
    # Latencies and the request rate conclusively within; failure rates need ~1,000 requests
    # without a failure to be shown within 0.5 points.
    assert decided["StagingToProduction::service.responsetime[p90]"] == "pass"
    assert decided["StagingToProduction::service.requestspermin[count]"] == "pass"
    assert decided["StagingToProduction::service.failurerate[avg]"] is None
    verdicts = {v.label: v for v in load.finish()}
    failure = verdicts["service.failurerate avg"]
    assert failure.status == "pass" and failure.judge == "scalefactor"
    assert (failure.details or {})["decided_by"] == "fixed rule: undecided at the end of the load"
    # Judged over the window watched, which ends LAG_S before the load stopped.
    assert failure.source_window is not None and failure.source_window.end == pytest.approx(load.now - LAG_S)
    assert load.gate.outcome().status == "pass"
    load.store.close()


def test_the_level_is_split_across_the_checks(tmp_path: Path) -> None:
    load = Load(tmp_path)
    tracks = load.monitor.tracks
    # 7 checks with a sequential test (the smartscape entry has none): 0.05 / 7 each.
    assert len(tracks) == 7
    assert all(t.alpha == pytest.approx(0.05 / 7) for t in tracks.values())
    assert not load.monitor.blocking
    load.store.close()
    (tmp_path / "option").mkdir()
    option = Load(tmp_path / "option", alpha=0.01)
    assert all(t.alpha == pytest.approx(0.01 / 7) for t in option.monitor.tracks.values())
    option.store.close()


def test_the_comparison_sets_the_level(tmp_path: Path) -> None:
    load = Load(tmp_path)
    comparison = load.checks[0].comparison
    configured = comparison.model_copy(update={"sequential": SequentialConfig(alpha=0.1)})
    checks = [replace(check, comparison=configured) for check in load.checks]
    monitor = SequentialMonitor(
        checks, load.options, load.gate.measurer, load.store, subject_of, lambda run_ids: True
    )
    assert all(t.alpha == pytest.approx(0.1 / 7) for t in monitor.tracks.values())
    load.store.close()


def test_a_look_at_a_window_shorter_than_a_bucket_counts_what_was_read(tmp_path: Path) -> None:
    # The first looks after the warm-up see a fraction of a second; request rates bin it into
    # one whole-second bucket that ends after it, beyond what the monitor has read.
    load = Load(tmp_path, min_samples=5, warmup_s=2.0)
    for _ in range(3):
        load.second()
    # until = now - LAG_S: a fraction of a second past the warm-up (first sample + 2 s)
    assert not load.monitor(load.runs)
    (window,) = load.monitor.watched.values()
    assert 0 < window.duration_s < 1
    looked = [t for t in load.monitor.tracks.values() if t.points]
    assert any("requestspermin" in t.subject.label for t in looked), [t.subject.label for t in looked]
    load.store.close()


@pytest.mark.parametrize(("warmup_s", "left_out"), [(None, 0.5), (2.0, 2.0), (0.0, 0.0)])
def test_the_watched_window_starts_after_the_warm_up(
    tmp_path: Path, warmup_s: float | None, left_out: float
) -> None:
    # A sequential gate's own default is half a second (docs/judges.md, "Warm-up").
    load = Load(tmp_path, warmup_s=warmup_s)
    load.monitor.fallback_enough = lambda run_ids: False
    load.run(3)
    firsts = [load.store.run_window(run_id) for run_id in load.runs.values()]
    later_first = max(w[0] for w in firsts if w is not None)
    (window,) = load.monitor.watched.values()
    assert window.start == pytest.approx(later_first + left_out)
    load.store.close()
