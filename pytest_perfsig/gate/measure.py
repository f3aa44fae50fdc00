"""Measuring a check: the source side in the gate's window, the compare side in its shifted
window or from stored runs, and topology counts. Reads sources and the store; judges nothing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..aggregates import aggregate
from ..errors import NoBaselineError, NoDataError, SourceError
from ..metrics import Aggregate
from ..monspec import BaselineRuns, KeptnBaseline, Monspec
from ..sources import ExpressionSource, MetricSource, TopologySource, open_source
from ..store import RunRecord
from ..store.base import RunReader
from ..windows import EXPRESSION_METRIC, EXPRESSION_VALUE, Measurement, MetricQuery, Tags, Window
from .plan import Check, GateOptions


class Measurer:
    """Opens each environment's metric source once and answers the gate's measurements."""

    def __init__(self, monspec: Monspec, options: GateOptions, store: RunReader, gate_id: str) -> None:
        self.monspec = monspec
        self.options = options
        self.store = store
        self.gate_id = gate_id
        self._sources: dict[str, MetricSource] = {}

    def source_for(self, service: str, env: str) -> MetricSource:
        """The environment's own source (monspec), else --perfsig-source, else local."""
        url = self.monspec.entities[service].environments[env].source or self.options.source_url or "local"
        if url not in self._sources:
            self._sources[url] = open_source(url, self.store, self.options.min_samples)
        return self._sources[url]

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources.clear()

    def tags(self, service: str, env: str) -> Tags:
        return tuple(
            (t.context, t.key, t.value) for t in self.monspec.entities[service].environments[env].tags
        )

    def source_query(self, check: Check, base: Window) -> MetricQuery:
        comparison, entry = check.comparison, check.entry
        # A timeseries entry, or a query of its own (a Keptn SLI).
        expression = entry.expression
        if expression is None:
            metric, spec = entry.metric, entry.aggregate_spec
        else:
            metric, spec = EXPRESSION_METRIC, EXPRESSION_VALUE
        assert metric is not None
        return MetricQuery(
            check.service,
            comparison.source,
            check.method,
            metric,
            spec,
            base.shifted(comparison.shiftsourcetimeframe),
            tags=self.tags(check.service, comparison.source),
            expression=expression,
        )

    def measure(self, query: MetricQuery) -> Measurement:
        source = self.source_for(query.service, query.env)
        if query.expression is None:
            return source.measure(query)
        if not isinstance(source, ExpressionSource):
            raise SourceError(f"the {source.name} source cannot evaluate the query of {query.env}")
        return source.measure_expression(query)

    def measure_compare(self, check: Check, source_query: MetricQuery, base: Window) -> Measurement:
        """The baseline: a shifted window of the compare environment, or stored runs."""
        comparison = check.comparison
        if self.options.baseline_run is None and comparison.baseline is None:
            query = replace(
                source_query,
                env=comparison.compare,
                window=base.shifted(comparison.shiftcomparetimeframe),
                tags=self.tags(check.service, comparison.compare),
            )
            return self.measure(query)
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
                tags=self.tags(check.service, run.env),
            )
            measurements.append(self.measure(query))
        if not measurements:
            raise NoDataError(f"the baseline runs of {comparison.compare} hold no samples")
        label = ", ".join(run.run_id for run in runs)
        if len(measurements) == 1:
            return replace(measurements[0], baseline=f"run {label}")
        mode, values = comparison.baseline, [m.value for m in measurements]
        if isinstance(mode, KeptnBaseline):  # Keptn's own aggregate of earlier results
            how, value = mode.label, mode.combine(values)
        else:
            how = mode.aggregate if isinstance(mode, BaselineRuns) else "median"
            value = aggregate(values, Aggregate(how))
        observations = None
        if all(m.observations is not None for m in measurements):
            observations = np.concatenate([m.observations for m in measurements])
        windows = [m.query.window for m in measurements]
        span_query = replace(
            measurements[0].query,
            window=Window(min(w.start for w in windows), max(w.end for w in windows)),
            run_ids=tuple(run.run_id for run in runs),
        )
        return Measurement(
            span_query,
            value,
            sum(m.samples for m in measurements),
            observations,
            baseline=f"{how} of {len(measurements)} of {wanted} runs: {label}",
        )

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
            raise NoBaselineError(
                f"no {which}stored run of {comparison.compare} to compare with "
                f"(baseline {mode if isinstance(mode, str) else f'{count} runs'}) in {self.store.path}"
            )
        return runs, count

    def topology(self, service: str, env: str) -> TopologySource | None:
        source = self.source_for(service, env)
        return source if isinstance(source, TopologySource) else None
