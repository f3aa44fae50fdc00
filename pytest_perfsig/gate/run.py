"""One gate run: record it, drive the load, then measure, judge and persist one check at a
time. Faults are kept, not raised: a check that cannot be judged gets an error verdict naming
the cause, and the outcome (``gate.status``) can never be a pass because of a fault."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .. import health
from ..errors import (
    LoadError,
    NoBaselineError,
    NoDataError,
    PerfsigError,
    SourceError,
    StoreError,
    UsageError,
)
from ..judges import judge
from ..judges.logrule import judge_log, not_judged_log
from ..load.runner import Progress, run_load
from ..load.spec import LoadResult
from ..monspec import Monspec
from ..sources import MetricSource, check_source_url, display_url
from ..sources.logs import read_log
from ..store import RunRecord, SqliteStore
from ..verdict import Status, Subject, Verdict, not_judged
from ..windows import Measurement, Window
from .measure import Measurer
from .plan import (
    NOT_LOADED,
    AnyCheck,
    Check,
    GateOptions,
    LogCheck,
    compares_same_window,
    not_loaded,
    plan_checks,
    plan_load,
    plan_log_checks,
    source_url,
)
from .policies import check_slo_gate, enough_samples, first_run_verdict
from .sequential import LOOK_EVERY_S, SequentialMonitor
from .status import GateOutcome, decide


def new_gate_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def subject_of(check: Check) -> Subject:
    metric = check.entry.metric
    return Subject(
        entry=check.entry,
        comparison=check.comparison,
        method=check.method,
        unit=metric.family.unit if metric else "",
        kind=metric.family.kind if metric else None,
        default_abs_tolerance=metric.family.abs_tolerance if metric else 0.0,
    )


class Gate:
    """The state of one gate run: checks, load results, verdicts and the faults met."""

    def __init__(self, monspec: Monspec, options: GateOptions, store: SqliteStore | None = None) -> None:
        self.monspec = monspec
        self.options = options
        for url in {options.source_url} | {
            e.source for x in monspec.entities.values() for e in x.environments.values()
        }:
            check_source_url(url)
        if monspec.total_score is not None:
            check_slo_gate(monspec, options)
        unknown = set(options.load_envs) - monspec.environments()
        if unknown:
            raise UsageError(f"--perfsig-load-env names unknown environment(s): {', '.join(sorted(unknown))}")
        self.log_checks = plan_log_checks(monspec, options.stage)
        self.checks = plan_checks(monspec, options, allow_empty=bool(self.log_checks))
        self._store = store
        self._measurer: Measurer | None = None
        self.gate_id = new_gate_id()
        self.load_results: dict[tuple[str, str], LoadResult] = {}
        # (service, environment, source URL) judged without synthetic load: real users' traffic
        self.not_loaded: list[tuple[str, str, str]] = []
        self.load_error: PerfsigError | None = None
        self.verdicts: dict[str, Verdict] = {}
        self.started = False
        self.fixed_window: Window | None = None
        self.selected: list[AnyCheck] = []
        self.store_errors: list[str] = []
        self._health_problems: dict[tuple[str, str, bool], str | None] = {}
        self.monitor: SequentialMonitor | None = None

    @property
    def planned(self) -> list[AnyCheck]:
        """Every check of this stage's gate, selected or not."""
        return [*self.checks, *self.log_checks]

    @property
    def store(self) -> SqliteStore:
        if self._store is None:
            self._store = SqliteStore(self.options.store_path)
        return self._store

    @property
    def measurer(self) -> Measurer:
        if self._measurer is None:
            self._measurer = Measurer(self.monspec, self.options, self.store, self.gate_id)
        return self._measurer

    def probe_sources(self) -> None:
        """Ask every metric source the planned checks read, once per URL, whether it can answer
        at all (``MetricSource.probe``), before any load: one that is unreachable or refuses the
        credentials is a usage error naming its environments, the URL and the cause."""
        envs: dict[str, list[str]] = {}
        opened: dict[str, MetricSource] = {}
        for check in self.checks:
            for env in (check.comparison.source, check.comparison.compare):
                url = source_url(self.monspec, self.options, check.service, env)
                opened.setdefault(url, self.measurer.source_for(check.service, env))
                if env not in envs.setdefault(url, []):
                    envs[url].append(env)
        for url, source in opened.items():
            try:
                source.probe()
            except SourceError as exc:
                self.measurer.close()  # a worker goes on with other requests: no client left open
                raise UsageError(
                    f"{' and '.join(envs[url])} read{'s' if len(envs[url]) == 1 else ''} metrics from "
                    f"{display_url(url)}, which cannot be used: {exc}"
                ) from None

    # ------------------------------------------------------------------ load

    def unloaded(self, checks: Sequence[AnyCheck]) -> list[tuple[str, str, str]]:
        """(service, environment, source URL) the selected checks compare with, judged from
        their monitoring without synthetic load."""
        return not_loaded(self.monspec, self.options, checks)

    def run(self, checks: Sequence[AnyCheck], progress: Progress | None = None) -> None:
        """Drive the load for the selected checks; a failure is kept, not raised: every
        check then reports it as its error."""
        self.selected = list(checks)
        try:
            self.open()
            specs = plan_load(self.monspec, self.options, checks)
            self._record_not_loaded(checks)
            enough = enough_samples(self.store, self.options, checks)
            self.monitor = SequentialMonitor(
                checks, self.options, self.measurer, self.store, subject_of, enough
            )
            watch = self.options.sequential
            results = run_load(
                specs,
                self.store,
                gate_id=self.gate_id,
                progress=progress,
                enough=self.monitor if watch else enough,
                enough_from_s=0.0 if watch else None,
                enough_every_s=LOOK_EVERY_S if watch else 1.0,
            )
            self.load_results = {(r.spec.service, r.spec.env): r for r in results}
        except PerfsigError as exc:
            self.load_error = exc

    def check_load_plan(self) -> None:
        """Raise UsageError now for a locustfile named but missing or a bad load option, before
        any load. A missing URL is left to the checks that need it (they report it)."""
        with contextlib.suppress(LoadError):
            plan_load(self.monspec, self.options, self.planned)

    def _record_not_loaded(self, checks: Sequence[AnyCheck]) -> None:
        """A run without samples for each environment judged without synthetic load, kept with
        the gate's runs so that reports say why it has none and where its numbers came from."""
        self.not_loaded = self.unloaded(checks)
        for service, env, url in self.not_loaded:
            now = time.time()
            self.store.create_run(
                RunRecord(
                    run_id=f"{env}-{uuid.uuid4().hex[:12]}",
                    service=service,
                    env=env,
                    url=self.options.urls.get(env) or self.monspec.entities[service].environments[env].url,
                    gate_id=self.gate_id,
                    load_model="none",
                    started_at=now,
                    ended_at=now,
                    status=NOT_LOADED,
                    detail=f"measured by {display_url(url)}",
                )
            )

    def open(self) -> None:
        """Record the gate in the store; from now on every verdict is stored as it is made."""
        self.store.create_gate(self.gate_id, self.monspec.path, self.options.stage, self.options.build)
        self.started = True

    def judge_window(self, window: Window) -> list[Verdict]:
        """Judge every check over a given window instead of a load phase of this gate
        (a deferred validation: the traffic came from elsewhere)."""
        self.fixed_window = window
        self.selected = self.planned
        self.open()
        return [self.verdict(check) for check in self.selected]

    def base_window(self, service: str) -> Window:
        """The window every comparison starts from: where all environments loaded together
        were under load, less the warm-up (Locust processes starting, connections opening)."""
        if self.fixed_window is not None:
            return self.fixed_window
        spans = [r.window for (svc, _), r in self.load_results.items() if svc == service]
        start, end = max(s for s, _ in spans), min(e for _, e in spans)
        warmup = min(self.options.warmup, max(0.0, (end - start) / 4))
        return Window(start + warmup, end)

    # ------------------------------------------------------------------ verdicts

    def verdict(self, check: AnyCheck) -> Verdict:
        """The check's verdict, judged once and stored as soon as it is made."""
        if check.check_id not in self.verdicts:
            verdict = self._judge_log(check) if isinstance(check, LogCheck) else self._judge(check)
            self.verdicts[check.check_id] = verdict
            if self.started:
                try:
                    self.store.save_verdict(self.gate_id, check.check_id, check.service, verdict)
                except StoreError as exc:
                    # The verdict stands (and reaches JUnit and the terminal), but a gate whose
                    # results could not be kept is not a pass.
                    self.store_errors.append(f"verdict of {check.check_id} not stored: {exc}")
        return self.verdicts[check.check_id]

    def _judge(self, check: Check) -> Verdict:
        subject = subject_of(check)
        comparison, entry = check.comparison, check.entry

        def not_ok(status: Status, reason: str, **values: Any) -> Verdict:
            return not_judged(subject, status, reason, **values)

        reasons = {
            self.measurer.source_for(check.service, env).unsupported_reason(
                entry.timeseries, entry.smartscape
            )
            for env in (comparison.source, comparison.compare)
        } - {None}
        if reasons:
            return self._unanswerable(check, subject, "; ".join(sorted(r for r in reasons if r)))
        if entry.metric is None and entry.smartscape is None and entry.expression is None:
            return not_ok("error", f"no source knows the metric {entry.timeseries!r}")
        if self.load_error is not None:
            return not_ok("error", str(self.load_error))
        if self.fixed_window is None and (check.service, self.options.stage) not in self.load_results:
            return not_ok("error", "no load ran for this gate")
        if problem := self._capture_problem(check):
            return not_ok("error", problem)
        if problem := self._unhealthy(check):
            return not_ok("error", problem)
        if entry.smartscape is not None:
            return self._judge_smartscape(check, subject)
        if self.monitor is not None and (skipped := self.monitor.unjudged(check, subject)) is not None:
            return skipped
        base = self.base_window(check.service)
        if self.monitor is not None:
            base = self.monitor.window_for(check, base)
        source_query = self.measurer.source_query(check, base)
        problems: list[str] = []
        source = compare = None
        no_baseline = ""
        try:
            source = self.measurer.measure(source_query)
        except SourceError as exc:
            problems.append(str(exc))
        try:
            compare = self.measurer.measure_compare(check, source_query, base)
        except SourceError as exc:
            # A static limit needs no baseline; without one, missing compare data is an error.
            if entry.needs_baseline or not isinstance(exc, NoDataError):
                if source is not None and not problems and isinstance(exc, NoBaselineError):
                    first = first_run_verdict(subject, source, exc)
                    if first is not None:
                        return first
                problems.append(str(exc))
            else:
                no_baseline = str(exc)
        if problems or source is None:
            return not_ok(
                "error",
                "; ".join(problems),
                source=source,
                compare=compare,
                source_window=source_query.window,
            )
        if self.monitor is not None and self.monitor.handles(check):
            verdict = self.monitor.verdict(check, subject, source, compare, base.end)
        else:
            verdict = judge(subject, source, compare)
        if no_baseline and verdict.status == "error":  # say why the baseline was missing
            verdict = replace(verdict, message=f"{verdict.message}: {no_baseline}")
        return verdict

    def _judge_log(self, check: LogCheck) -> Verdict:
        rule, env = check.rule, check.env
        if self.load_error is not None:
            return not_judged_log(rule, env, str(self.load_error))
        if self.fixed_window is not None:
            window = self.fixed_window
        else:
            result = self.load_results.get((check.service, env))
            if result is None:
                return not_judged_log(rule, env, "no load ran for this gate")
            # The whole load phase, warm-up included, and a second for lines written after the last request.
            window = Window(result.window[0], result.window[1] + 1.0)
        return judge_log(rule, env, check.location, window, read_log(check.location))

    def _judge_smartscape(self, check: Check, subject: Subject) -> Verdict:
        """A topology count (``toRelationships:calls``) of both environments, in their windows."""
        entry, comparison = check.entry, check.comparison
        assert entry.smartscape is not None
        if comparison.baseline is not None or self.options.baseline_run is not None:
            return not_judged(subject, "error", "smartscape entries compare time windows, not stored runs")
        base = self.base_window(check.service)
        sides = (
            (comparison.source, base.shifted(comparison.shiftsourcetimeframe)),
            (comparison.compare, base.shifted(comparison.shiftcomparetimeframe)),
        )
        counts: list[Measurement] = []
        problems: list[str] = []
        for env, window in sides:
            topology = self.measurer.topology(check.service, env)
            if topology is None:
                return self._unanswerable(check, subject, f"the source of {env} has no topology")
            try:
                counts.append(
                    topology.count_relationships(
                        env, entry.smartscape, window, self.measurer.tags(check.service, env)
                    )
                )
            except SourceError as exc:
                problems.append(str(exc))
        if problems:
            return not_judged(
                subject, "error", "; ".join(problems), source_window=sides[0][1], compare_window=sides[1][1]
            )
        source, compare = counts
        return judge(subject, source, compare)

    def _capture_problem(self, check: Check) -> str | None:
        """Samples the capture had to drop (it fell behind the load) in a run this check reads:
        its numbers would be of an incomplete window, so the check is an error."""
        envs = {check.comparison.source, check.comparison.compare}
        run_ids = [
            r.run_id for (svc, env), r in self.load_results.items() if svc == check.service and env in envs
        ]
        if self.options.baseline_run is not None:
            run_ids.append(self.options.baseline_run)
        lost = [(run.dropped, run) for run_id in run_ids if (run := self.store.run(run_id)) and run.dropped]
        if not lost:
            return None
        runs = ", ".join(f"{run.env} run {run.run_id}: {dropped}" for dropped, run in lost)
        return f"capture fell behind: {sum(d for d, _ in lost)} samples dropped ({runs})"

    def _unhealthy(self, check: Check) -> str | None:
        """Why a side this gate loaded cannot be trusted over the window (``health``): the
        stage stopped answering, or the baseline broke or stopped during its own window."""
        if self.fixed_window is not None:
            return None  # a deferred validation judges traffic the gate did not drive
        comparison = check.comparison
        sides = [(comparison.source, False)]
        if compares_same_window(comparison, self.options) and comparison.compare != comparison.source:
            sides.append((comparison.compare, True))
        problems = [
            problem
            for env, baseline in sides
            if (check.service, env) in self.load_results
            and (problem := self._health(check.service, env, baseline)) is not None
        ]
        return "; ".join(problems) or None

    def _health(self, service: str, env: str, baseline: bool) -> str | None:
        key = (service, env, baseline)
        if key not in self._health_problems:
            base = self.base_window(service)
            requests, failures = self.store.counts(service, env, health.thirds(base))
            load = self.load_results[(service, env)]
            silence = None if load.ended is None else load.ended - load.window[1]
            found = health.assess_counts(requests, failures, base, silence_s=silence)
            self._health_problems[key] = (
                health.describe(env, found, baseline=baseline) if found is not None else None
            )
        return self._health_problems[key]

    def _unanswerable(self, check: Check, subject: Subject, reason: str) -> Verdict:
        """An entry its source cannot answer: skipped when optional, else an error that says how
        to make it optional (a gate must not pass on what it never measured)."""
        if self.options.is_optional(check.entry):
            return not_judged(subject, "skipped", f"{reason} (optional)")
        kind = "smartscape" if check.entry.smartscape else check.entry.metric_key
        return not_judged(
            subject,
            "error",
            f"{reason}: judge it with a source that can, or skip it: mark the entry "
            f'"optional": true in the monspec, or run with --perfsig-optional {kind}',
        )

    # ------------------------------------------------------------------ outcome

    def missing(self) -> list[AnyCheck]:
        """Selected checks without a verdict (the session stopped early)."""
        return [check for check in self.selected if check.check_id not in self.verdicts]

    def gate_problems(self) -> list[str]:
        """Why the gate cannot pass at gate level (load error, unjudged checks, not stored)."""
        reasons = [str(self.load_error)] if self.load_error else []
        if missing := self.missing():
            reasons.append(
                f"incomplete: {len(missing)} of {len(self.selected)} selected checks were not judged "
                "(the session stopped early: -x, --maxfail or an interrupt)"
            )
        return reasons + self.store_errors

    def outcome(self) -> GateOutcome:
        """The gate's outcome, decided by ``gate.status.decide`` (the one place that does)."""
        return decide(
            list(self.verdicts.values()),
            planned=len(self.planned),
            selected=len(self.selected),
            gate_problems=self.gate_problems(),
            total_score=self.monspec.total_score,
        )

    def status(self) -> str:
        return self.outcome().status

    def finish(self) -> GateOutcome:
        """Close the gate in the store; its outcome is what an approval is based on."""
        if self._measurer is not None:
            self._measurer.close()
        if self.started:
            outcome = self.outcome()
            try:
                self.store.finish_gate(self.gate_id, outcome)
            except StoreError as exc:
                self.store_errors.append(f"gate not closed in the store: {exc}")
        return self.outcome()
