"""One gate: plan the checks, drive load, measure, judge, persist.

The pytest plugin and the CLI are thin faces over this module.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LoadError, NoDataError, PerfsigError, SourceError, StoreError, UsageError
from .evaluate import Status, Verdict, judge, not_judged
from .load.runner import LoadResult, LoadSpec, Progress, run_load
from .logrules import LogCheck, judge_log, not_judged_log, plan_log_checks
from .metrics import Aggregate
from .monspec import BaselineRuns, Comparison, Entity, Monspec, SignatureEntry
from .sources import MetricSource, check_source_url, open_source
from .sources.base import Measurement, MetricQuery, Window
from .sources.local import DEFAULT_MIN_SAMPLES
from .statjudge import judge_shift
from .stats import aggregate
from .store import DEFAULT_STORE_PATH, RunRecord, SqliteStore

PRODUCTION_PREFIX = "Production"


@dataclass(frozen=True)
class GateOptions:
    stage: str
    comparisons: tuple[str, ...] = ()
    urls: dict[str, str] = field(default_factory=dict)
    users: int = 10
    spawn_rate: float = 10.0
    duration_s: float = 10.0
    locustfile: str | None = None
    store_path: Path = Path(DEFAULT_STORE_PATH)
    min_samples: int = DEFAULT_MIN_SAMPLES
    build: str | None = None
    loadtests_dir: Path = Path("loadtests")
    # Pin the compare side of every comparison to one stored run.
    baseline_run: str | None = None
    # Seconds at the start of the load phase left out of every window.
    warmup_s: float = 2.0
    # Where metrics are read for environments whose monspec names no source.
    source_url: str | None = None
    # Load topology and model.
    processes: int = 1
    workers: int = 0
    master_bind: str = "127.0.0.1"
    arrival_rate: float | None = None  # open model: requests per second per endpoint


@dataclass(frozen=True)
class Check:
    """One signature entry of one comparison: what becomes one test item."""

    check_id: str
    service: str
    comparison: Comparison
    method: str | None
    entry: SignatureEntry


AnyCheck = Check | LogCheck


def parse_url_overrides(values: Iterable[str]) -> dict[str, str]:
    """``ENV=URL`` pairs from the command line."""
    urls: dict[str, str] = {}
    for value in values:
        env, sep, url = value.partition("=")
        if not sep or not env or not url.startswith(("http://", "https://")):
            raise UsageError(f"--perfsig-url expects ENV=http://host:port, got {value!r}")
        urls[env] = url.rstrip("/")
    return urls


def plan_checks(monspec: Monspec, options: GateOptions, *, allow_empty: bool = False) -> list[Check]:
    """Every check the stage's gate consists of, in monspec order."""
    if options.stage not in monspec.environments():
        raise UsageError(
            f"--stage {options.stage!r} is not an environment of {monspec.path} "
            f"(defined: {', '.join(sorted(monspec.environments()))})"
        )
    for name in options.comparisons:
        matches = [e.comparison(name) for e in monspec.entities.values() if e.comparison(name)]
        if not matches:
            raise UsageError(f"--perfsig-comparison {name!r} is not defined in {monspec.path}")
        if all(c is not None and c.source != options.stage for c in matches):
            raise UsageError(
                f"comparison {name!r} has source {matches[0].source!r}, "  # type: ignore[union-attr]
                f"not the stage under test {options.stage!r}"
            )
    unknown_urls = set(options.urls) - monspec.environments()
    if unknown_urls:
        raise UsageError(f"--perfsig-url names unknown environment(s): {', '.join(sorted(unknown_urls))}")
    prefix_entity = len(monspec.entities) > 1
    checks: list[Check] = []
    for service, entity in monspec.entities.items():
        for comparison in entity.comparisons:
            if comparison.source != options.stage:
                continue
            if options.comparisons and comparison.name not in options.comparisons:
                continue
            seen: dict[str, int] = {}
            for method, entry in entity.entries():
                scope = f"{method}::" if method else ""
                base = f"{comparison.name}::{scope}{entry.metric_key}[{entry.aggregate}]"
                if prefix_entity:
                    base = f"{service}::{base}"
                seen[base] = seen.get(base, 0) + 1
                check_id = base if seen[base] == 1 else f"{base}#{seen[base]}"
                checks.append(Check(check_id, service, comparison, method, entry))
    if not checks and not allow_empty:
        raise UsageError(
            f"no comparison in {monspec.path} has {options.stage!r} as its source"
            + (f" among {', '.join(options.comparisons)}" if options.comparisons else "")
        )
    return checks


def default_locustfile(env: str, loadtests_dir: Path, open_model: bool = False) -> Path:
    if open_model:
        return loadtests_dir / "open.py"
    profile = "production.py" if env.startswith(PRODUCTION_PREFIX) else "staging.py"
    return loadtests_dir / profile


class Gate:
    """The state of one gate run: checks, load results, measurements and verdicts."""

    def __init__(self, monspec: Monspec, options: GateOptions, store: SqliteStore | None = None) -> None:
        self.monspec = monspec
        self.options = options
        for url in {options.source_url} | {
            e.source for x in monspec.entities.values() for e in x.environments.values()
        }:
            check_source_url(url)
        self.log_checks = plan_log_checks(monspec, options.stage)
        self.checks = plan_checks(monspec, options, allow_empty=bool(self.log_checks))
        self._store = store
        self.gate_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.load_results: dict[tuple[str, str], LoadResult] = {}
        self.load_error: PerfsigError | None = None
        self.verdicts: dict[str, Verdict] = {}
        self.started = False
        self._sources: dict[str, MetricSource] = {}
        self.fixed_window: Window | None = None
        self.selected: list[AnyCheck] = []
        self.store_errors: list[str] = []

    def source_for(self, service: str, env: str) -> MetricSource:
        """The environment's own source (monspec), else --perfsig-source, else local."""
        url = self._entity(service).environments[env].source or self.options.source_url or "local"
        if url not in self._sources:
            self._sources[url] = open_source(url, self.store, self.options.min_samples)
        return self._sources[url]

    def _tags(self, service: str, env: str) -> tuple[tuple[str, str, str | None], ...]:
        return tuple((t.context, t.key, t.value) for t in self._entity(service).environments[env].tags)

    @property
    def store(self) -> SqliteStore:
        if self._store is None:
            self._store = SqliteStore(self.options.store_path)
        return self._store

    # ------------------------------------------------------------------ load

    def load_specs(self, checks: Iterable[AnyCheck]) -> list[LoadSpec]:
        """The stage under test, plus every compare environment judged in the same window
        that has a URL (the original had real-user traffic on Production all the time)."""
        wanted: dict[tuple[str, str], None] = {}
        for check in checks:
            wanted[(check.service, self.options.stage)] = None
            if isinstance(check, LogCheck):
                continue
            comparison = check.comparison
            same_window = (
                comparison.shiftsourcetimeframe == comparison.shiftcomparetimeframe == 0
                and comparison.baseline is None
                and self.options.baseline_run is None
            )
            if (
                same_window
                and comparison.compare != comparison.source
                and self._url(check.service, comparison.compare) is not None
            ):
                wanted[(check.service, comparison.compare)] = None
        specs = []
        for service, env in wanted:
            url = self._url(service, env)
            if url is None:
                raise LoadError(
                    f"no URL for {env}: set environments.{env}.url in {self.monspec.path} "
                    f"or pass --perfsig-url {env}=http://host:port"
                )
            specs.append(
                LoadSpec(
                    **{
                        "service": service,
                        "env": env,
                        "url": url,
                        "locustfile": self._locustfile(service, env),
                        "users": self.options.users,
                        "spawn_rate": self.options.spawn_rate,
                        "duration_s": self.options.duration_s,
                        "build": self.options.build if env == self.options.stage else None,
                        **self._load_model(),
                    }
                )
            )
        return specs

    def _load_model(self) -> dict[str, Any]:
        options = self.options
        model: dict[str, Any] = {
            "processes": options.processes,
            "workers": options.workers,
            "master_bind": options.master_bind,
        }
        if options.arrival_rate is not None:
            # One scheduling user sends at the intended times (loadtests/open.py).
            model.update(
                users=1,
                spawn_rate=1.0,
                load_model=f"open {options.arrival_rate:g}/s per endpoint",
                extra_env={"PERFSIG_ARRIVAL_RATE": f"{options.arrival_rate:g}"},
            )
        return model

    def _url(self, service: str, env: str) -> str | None:
        return self.options.urls.get(env) or self._entity(service).environments[env].url

    def _entity(self, service: str) -> Entity:
        return self.monspec.entities[service]

    def _locustfile(self, service: str, env: str) -> str:
        if env == self.options.stage and self.options.locustfile:
            path = Path(self.options.locustfile)
        elif (configured := self._entity(service).environments[env].locustfile) is not None:
            path = Path(self.monspec.path).parent / configured
        else:
            path = default_locustfile(env, self.options.loadtests_dir, self.options.arrival_rate is not None)
        if not path.is_file():
            raise LoadError(
                f"locustfile {path} for {env} not found: pass --perfsig-locustfile or set "
                f"environments.{env}.locustfile in {self.monspec.path}"
            )
        return str(path)

    def run(self, checks: list[AnyCheck], progress: Progress | None = None) -> None:
        """Drive the load for the selected checks; a failure is kept, not raised: every
        check then reports it as its error."""
        self.selected = list(checks)
        try:
            self.open()
            specs = self.load_specs(checks)
            results = run_load(specs, self.store, gate_id=self.gate_id, progress=progress)
            self.load_results = {(r.spec.service, r.spec.env): r for r in results}
        except PerfsigError as exc:
            self.load_error = exc

    def open(self) -> None:
        """Record the gate in the store; from now on every verdict is stored as it is made."""
        self.store.create_gate(self.gate_id, self.monspec.path, self.options.stage, self.options.build)
        self.started = True

    def judge_window(self, window: Window) -> list[Verdict]:
        """Judge every check over a given window instead of a load phase of this gate
        (a deferred validation: the traffic came from elsewhere)."""
        self.fixed_window = window
        self.selected = [*self.checks, *self.log_checks]
        self.open()
        return [self.verdict(check) for check in self.selected]

    # ------------------------------------------------------------------ verdicts

    def verdict(self, check: AnyCheck) -> Verdict:
        if check.check_id not in self.verdicts:
            verdict = self._judge_log(check) if isinstance(check, LogCheck) else self._judge(check)
            self.verdicts[check.check_id] = verdict
            if self.started:
                try:
                    self.store.save_verdict(
                        self.gate_id, check.check_id, {"check_id": check.check_id, **verdict.to_record()}
                    )
                except StoreError as exc:
                    # The verdict stands (and reaches JUnit and the terminal), but a gate whose
                    # results could not be kept is not a pass.
                    self.store_errors.append(f"verdict of {check.check_id} not stored: {exc}")
        return self.verdicts[check.check_id]

    def _judge(self, check: Check) -> Verdict:
        entry, comparison = check.entry, check.comparison
        metric = entry.metric
        unit = metric.family.unit if metric else ""

        def not_ok(status: Status, reason: str, **values: Any) -> Verdict:
            return not_judged(
                entry, comparison, method=check.method, unit=unit, status=status, reason=reason, **values
            )

        reasons = {
            self.source_for(check.service, env).unsupported_reason(entry.timeseries, entry.smartscape)
            for env in (comparison.source, comparison.compare)
        } - {None}
        reason = "; ".join(sorted(r for r in reasons if r))
        if reason:
            return not_ok("skipped", reason)
        if metric is None and entry.smartscape is None:
            return not_ok("error", f"no source knows the metric {entry.timeseries!r}")
        if self.load_error is not None:
            return not_ok("error", str(self.load_error))
        if self.fixed_window is None and (check.service, self.options.stage) not in self.load_results:
            return not_ok("error", "no load ran for this gate")
        if entry.smartscape is not None:
            return self._judge_smartscape(check, not_ok)
        assert metric is not None  # a timeseries entry
        base = self.base_window(check.service)
        source_window = base.shifted(comparison.shiftsourcetimeframe)
        source_query = MetricQuery(
            check.service,
            comparison.source,
            check.method,
            metric,
            entry.aggregate_spec,
            source_window,
            tags=self._tags(check.service, comparison.source),
        )
        values: dict[str, Any] = {"source_window": str(source_window)}
        problems: list[str] = []
        source = compare = None
        try:
            source = self.source_for(check.service, comparison.source).measure(source_query)
            values.update(source_value=source.value, source_samples=source.samples)
        except SourceError as exc:
            problems.append(str(exc))
        try:
            compare, values["compare_window"] = self._measure_compare(check, source_query, base)
            values.update(compare_value=compare.value, compare_samples=compare.samples)
        except SourceError as exc:
            # A static limit needs no baseline; without one, missing compare data is an error.
            if entry.static_limit is None or not isinstance(exc, NoDataError):
                problems.append(str(exc))
        if problems or source is None:
            return not_ok("error", "; ".join(problems), **values)
        config = entry.judge or comparison.judge
        if (
            config.type == "mannwhitney"
            and entry.static_limit is None
            and compare is not None
            and source.observations is not None
            and compare.observations is not None
        ):
            return judge_shift(
                entry,
                comparison,
                config,
                kind=metric.family.kind,
                method=check.method,
                unit=unit,
                source=source,
                compare=compare,
                default_abs_tolerance=metric.family.abs_tolerance,
                source_window=values["source_window"],
                compare_window=values.get("compare_window"),
            )
        return judge(
            entry,
            comparison,
            method=check.method,
            unit=unit,
            source_value=source.value,
            compare_value=compare.value if compare else None,
            default_abs_tolerance=metric.family.abs_tolerance,
            source_samples=source.samples,
            compare_samples=compare.samples if compare else None,
            source_window=values["source_window"],
            compare_window=values.get("compare_window"),
        )

    def _judge_log(self, check: LogCheck) -> Verdict:
        if self.load_error is not None:
            return not_judged_log(check, str(self.load_error))
        if self.fixed_window is not None:
            return judge_log(check, self.fixed_window)
        result = self.load_results.get((check.service, check.env))
        if result is None:
            return not_judged_log(check, "no load ran for this gate")
        # The whole load phase, warm-up included, and a second for lines written after the last request.
        return judge_log(check, Window(result.window[0], result.window[1] + 1.0))

    def _judge_smartscape(self, check: Check, not_ok: Callable[..., Verdict]) -> Verdict:
        """A topology count (``toRelationships:calls``) of both environments, in their windows."""
        entry, comparison = check.entry, check.comparison
        assert entry.smartscape is not None
        if comparison.baseline is not None or self.options.baseline_run is not None:
            return not_ok("error", "smartscape entries compare time windows, not stored runs")
        base = self.base_window(check.service)
        sides = (
            (comparison.source, base.shifted(comparison.shiftsourcetimeframe)),
            (comparison.compare, base.shifted(comparison.shiftcomparetimeframe)),
        )
        counts: list[Any] = []
        problems: list[str] = []
        for env, window in sides:
            count = getattr(self.source_for(check.service, env), "count_relationships", None)
            if count is None:
                return not_ok("skipped", f"the source of {env} has no topology")
            try:
                counts.append(count(env, entry.smartscape, window, self._tags(check.service, env)))
            except SourceError as exc:
                problems.append(str(exc))
        values: dict[str, Any] = {"source_window": str(sides[0][1]), "compare_window": str(sides[1][1])}
        if problems:
            return not_ok("error", "; ".join(problems), **values)
        source, compare = counts
        return judge(
            entry,
            comparison,
            method=None,
            unit="",
            source_value=source.value,
            compare_value=compare.value,
            default_abs_tolerance=0.0,
            source_samples=source.entities,
            compare_samples=compare.entities,
            **values,
        )

    def base_window(self, service: str) -> Window:
        """The window every comparison starts from: where all environments loaded together
        were under load, less the warm-up (Locust processes starting, connections opening)."""
        if self.fixed_window is not None:
            return self.fixed_window
        spans = [r.window for (svc, _), r in self.load_results.items() if svc == service]
        start, end = max(s for s, _ in spans), min(e for _, e in spans)
        warmup = min(self.options.warmup_s, max(0.0, (end - start) / 4))
        return Window(start + warmup, end)

    def _measure_compare(
        self, check: Check, source_query: MetricQuery, base: Window
    ) -> tuple[Measurement, str]:
        """The baseline: a shifted window of the compare environment, or stored runs."""
        comparison = check.comparison
        if self.options.baseline_run is None and comparison.baseline is None:
            window = base.shifted(comparison.shiftcomparetimeframe)
            query = replace(
                source_query,
                env=comparison.compare,
                window=window,
                tags=self._tags(check.service, comparison.compare),
            )
            return self.source_for(check.service, comparison.compare).measure(query), str(window)
        runs, wanted = self._baseline_runs(check)
        measurements = []
        for run in runs:
            span = self.store.run_window(run.run_id)
            if span is None:
                continue
            query = replace(
                source_query,
                env=run.env,
                window=Window(*span),
                run_ids=(run.run_id,),
                tags=self._tags(check.service, run.env),
            )
            measurements.append(self.source_for(check.service, run.env).measure(query))
        if not measurements:
            raise NoDataError(f"the baseline runs of {comparison.compare} hold no samples")
        label = ", ".join(run.run_id for run in runs)
        if len(measurements) == 1:
            return measurements[0], f"run {label}"
        how = comparison.baseline.aggregate if isinstance(comparison.baseline, BaselineRuns) else "median"
        value = aggregate([m.value for m in measurements], Aggregate(how))
        observations = None
        if all(m.observations is not None for m in measurements):
            observations = np.concatenate([m.observations for m in measurements])
        combined = Measurement(
            measurements[0].query, value, sum(m.samples for m in measurements), observations
        )
        return combined, f"{how} of {len(measurements)} of {wanted} runs: {label}"

    def _baseline_runs(self, check: Check) -> tuple[list[RunRecord], int]:
        comparison = check.comparison
        pinned = self.options.baseline_run
        if pinned is not None:
            run = self.store.run(pinned)
            if run is None:
                raise NoDataError(f"baseline run {pinned!r} is not in the store {self.store.path}")
            if (run.service, run.env) != (check.service, comparison.compare):
                raise SourceError(
                    f"baseline run {pinned!r} measured {run.service} in {run.env}, "
                    f"but {comparison.name} compares with {comparison.compare}"
                )
            return [run], 1
        mode = comparison.baseline
        count = mode.runs if isinstance(mode, BaselineRuns) else 1
        passed_only = mode == "latest_passed" or (isinstance(mode, BaselineRuns) and mode.passed_only)
        runs = self.store.baseline_runs(
            check.service, comparison.compare, count, passed_only=passed_only, exclude_gate=self.gate_id
        )
        if not runs:
            which = "passed " if passed_only else ""
            raise NoDataError(
                f"no {which}stored run of {comparison.compare} to compare with "
                f"(baseline {mode if isinstance(mode, str) else f'{count} runs'}) in {self.store.path}"
            )
        return runs, count

    def missing(self) -> list[AnyCheck]:
        """Selected checks without a verdict (the session stopped early)."""
        return [check for check in self.selected if check.check_id not in self.verdicts]

    def status(self) -> str:
        """What an approval is based on: ``error`` also when the gate is incomplete."""
        if self.missing() or self.store_errors:
            return "error"
        return gate_status(self.verdicts.values(), self.load_error)

    def problems(self) -> list[str]:
        """Why the gate did not pass, gate-level first (load error, unjudged checks)."""
        reasons = [str(self.load_error)] if self.load_error else []
        if missing := self.missing():
            reasons.append(f"incomplete: {len(missing)} of {len(self.selected)} checks were not judged")
        return reasons + self.store_errors

    def finish(self) -> str:
        """Close the gate in the store; its status is what an approval would be based on."""
        status = self.status()
        for source in self._sources.values():
            close = getattr(source, "close", None)
            if close is not None:
                close()
        self._sources.clear()
        if self.started:
            counts: dict[str, int] = {}
            for verdict in self.verdicts.values():
                counts[verdict.status] = counts.get(verdict.status, 0) + 1
            try:
                self.store.finish_gate(
                    self.gate_id, status, {"counts": counts, "problems": self.problems() or None}
                )
            except StoreError as exc:
                self.store_errors.append(f"gate not closed in the store: {exc}")
                return "error"
        return status


def gate_status(verdicts: Iterable[Verdict], load_error: PerfsigError | None = None) -> str:
    """``error`` if anything could not be judged, else ``violation`` if any entry violated,
    else ``pass`` — and never ``pass`` without at least one judged entry."""
    statuses = [v.status for v in verdicts]
    if load_error is not None or "error" in statuses:
        return "error"
    if "violation" in statuses:
        return "violation"
    if "pass" not in statuses:
        return "error"
    return "pass"
