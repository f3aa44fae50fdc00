"""The sequential gate: while the load runs, judge the selected checks every half second on the
samples stored so far, and stop the load as soon as one check is conclusively outside its limit
or every check is conclusively within it.

The statistics are the sequential judge's (``judges.sequential``): anytime-valid, so looking
this often costs nothing in false rejections. The gate's level α (``--perfsig-alpha``, else the
comparison's ``"sequential": {"alpha"}``, else 0.05) is split with Bonferroni across the checks
that have a sequential test: each gets α / K, and a union bound keeps the chance that any of
them is falsely called a violation within α (docs/judges.md).

Each look reads only what was stored since the last one (``store.samples`` over the new part of
the window), lagging ``LAG_S`` behind the clock so that requests still in flight or in the
capture's buffer are not missed, and measures with the local source over what it has read.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import SourceError, StoreError
from ..judges import judge as configured_judge
from ..judges import scalefactor, sequential
from ..sources.local import LocalSource
from ..store.samples import SampleColumns, concat_columns
from ..verdict import Subject, Verdict, not_judged
from ..windows import Measurement, Window
from .measure import Measurer
from .plan import AnyCheck, Check, GateOptions, compares_same_window

LOOK_EVERY_S = 0.5
LAG_S = 0.75  # the capture flushes every 0.5 s; requests take milliseconds
MAX_POINTS = 120  # evidence points kept per check (thinned evenly beyond)


@dataclass
class _Feed:
    """The samples of one environment over one (possibly shifted) growing window, read bit by
    bit: ``[start, end]`` has been read."""

    service: str
    env: str
    shift: float
    start: float
    end: float | None = None
    parts: list[SampleColumns] = field(default_factory=list)
    _columns: SampleColumns | None = None

    def read(self, store: Any, until: float) -> None:
        low, high = self.start - self.shift, until - self.shift
        if self.end is not None:
            low = self.end - self.shift
        if high <= low:
            return
        new = store.samples(self.service, self.env, low, high)
        if self.end is not None and len(new):
            new = new.where(new.ts > low)  # the boundary sample was read last time
        self.parts.append(new)
        self.end, self._columns = until, None

    def covers(self, service: str, env: str, start: float, end: float) -> bool:
        return (
            self.end is not None
            and (service, env) == (self.service, self.env)
            and math.isclose(start, self.start - self.shift, abs_tol=1e-6)
            and end <= self.end - self.shift + 1e-6
        )

    @property
    def columns(self) -> SampleColumns:
        if self._columns is None:
            self._columns = concat_columns(self.parts)
            self.parts = [self._columns]
        return self._columns


class _FeedReader:
    """The local source's sample reads, answered from the feeds read so far."""

    def __init__(self, feeds: list[_Feed]) -> None:
        self.feeds = feeds

    def samples(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        endpoint: str | None = None,
        run_ids: Any = None,
    ) -> SampleColumns:
        feed = next((f for f in self.feeds if f.covers(service, env, start, end)), None)
        if feed is None:  # a bug, not missing data: say which read had no feed
            raise RuntimeError(f"sequential monitor: no feed read {service}/{env} over [{start}, {end}]")
        columns = feed.columns
        found = columns.where((columns.ts >= start) & (columns.ts <= end))
        return found.only(endpoint) if endpoint is not None else found

    def counts(
        self, service: str, env: str, edges: Any, endpoint: str | None = None, run_ids: Any = None
    ) -> tuple[Any, Any]:
        """(requests, failures) per time bin, binned as ``numpy.histogram`` does."""
        import numpy as np

        edges = np.asarray(edges, dtype=np.float64)
        # A window shorter than a bucket has one bucket that ends after it: the store would
        # count the samples up to now in it, and so do the feeds, up to what they have read.
        start, end = float(edges[0]), float(edges[-1])
        read_to = max(
            (
                f.end - f.shift
                for f in self.feeds
                if f.end is not None and f.covers(service, env, start, start)
            ),
            default=end,
        )
        found = self.samples(service, env, start, min(end, read_to), endpoint)
        failed = np.logical_not(found.success.astype(bool))
        requests, _ = np.histogram(found.ts, bins=edges)
        failures, _ = np.histogram(found.ts[failed], bins=edges)
        return requests, failures

    def latencies(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        endpoint: str | None = None,
        run_ids: Any = None,
    ) -> Any:
        """The latencies (ms) of the samples in [start, end]."""
        return self.samples(service, env, start, end, endpoint).latency_ms


@dataclass
class Track:
    """One check under watch: its level, its evidence over time and its decision."""

    check: Check
    subject: Subject
    alpha: float
    points: list[tuple[float, float, float]] = field(default_factory=list)
    decided: str | None = None  # "violation" / "pass"
    at_s: float | None = None  # seconds since the load's first request
    window: Window | None = None  # the source window the decision was taken on
    samples: tuple[int, int | None] = (0, None)


class SequentialMonitor:
    """The runner's ``enough`` callback of a sequential gate, and the verdicts it leads to."""

    def __init__(
        self,
        checks: Sequence[AnyCheck],
        options: GateOptions,
        measurer: Measurer,
        store: Any,
        subject_of: Callable[[Check], Subject],
        fallback_enough: Callable[[Mapping[tuple[str, str], str]], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options, self.measurer, self.store = options, measurer, store
        self.fallback_enough, self.clock = fallback_enough, clock
        eligible = [c for c in checks if isinstance(c, Check) and self._eligible(c, subject_of(c))]
        self.tracks = {c.check_id: Track(c, subject_of(c), 0.0) for c in eligible}
        for track in self.tracks.values():
            track.alpha = self.level(track.check) / len(self.tracks)
        # Metric checks without a sequential test keep the gate from passing early.
        self.blocking = [
            c
            for c in checks
            if isinstance(c, Check) and c.entry.metric is not None and c.check_id not in self.tracks
        ]
        self.feeds: list[_Feed] = []
        self.starts: dict[str, tuple[float, float]] = {}  # service -> (load start, window start)
        self.watched: dict[str, Window] = {}  # service -> the window looked at last
        self.stopped: str | None = None  # why the load was stopped early
        self.began: float | None = None  # the first look: the load processes' start

    def level(self, check: Check) -> float:
        if self.options.alpha is not None:
            return self.options.alpha
        config = check.comparison.sequential
        return config.alpha if config is not None else sequential.DEFAULT_ALPHA

    def _eligible(self, check: Check, subject: Subject) -> bool:
        test = sequential.which_test(subject)
        if check.entry.metric is None or test is None:
            return False
        stored = check.comparison.baseline is not None or self.options.baseline_run is not None
        if test == sequential.SPLIT and stored:
            return False  # a stored run's window is not the source's: no share of one stream
        if not (self.options.sequential or subject.config.type == sequential.NAME):
            return False
        envs = {check.comparison.source, check.comparison.compare}
        return all(isinstance(self.measurer.source_for(check.service, env), LocalSource) for env in envs)

    def handles(self, check: AnyCheck) -> bool:
        return check.check_id in self.tracks

    # ------------------------------------------------------------------ looks

    def __call__(self, run_ids: Mapping[tuple[str, str], str]) -> bool:
        """One look at everything stored so far; True to stop the load."""
        now = self.clock()
        if self.began is None:
            self.began = now
        with contextlib.suppress(StoreError):  # busy: the next look finds the starts
            self._start(run_ids)
        for service, (_, start) in self.starts.items():
            if now - LAG_S > start:
                self.watched[service] = Window(start, now - LAG_S)
        for track in self.tracks.values():
            if track.decided is None and track.check.service in self.starts:
                try:
                    self._look(track, now)
                except StoreError:
                    continue  # the store was busy: the next look reads what this one missed
        if any(t.decided == "violation" for t in self.tracks.values()):
            first = min(
                (t for t in self.tracks.values() if t.decided == "violation"), key=lambda t: t.at_s or 0
            )
            self.stopped = (
                f"{first.check.check_id} was conclusively outside its limit after {first.at_s:.1f} s"
            )
            return True
        if not self.blocking and self.tracks and all(t.decided for t in self.tracks.values()):
            self.stopped = "every check was conclusively within its limit"
            return True
        # The longest watch is --perfsig-duration, counted as Locust counts its run time: from
        # the start of the load processes (the first look). Past it, undecided checks go to the
        # fixed rule once their windows hold the samples it needs.
        return now - (self.began or now) >= self.options.duration_s and self.fallback_enough(run_ids)

    def _start(self, run_ids: Mapping[tuple[str, str], str]) -> None:
        """Once every run of a service has a sample: its load start and judged window start."""
        for service in {s for s, _ in run_ids} - set(self.starts):
            firsts = [self.store.run_window(r) for (s, _), r in run_ids.items() if s == service]
            if all(firsts):
                first = [w[0] for w in firsts if w is not None]
                self.starts[service] = (min(first), max(first) + self.options.warmup)

    def _feed(self, service: str, env: str, shift: float, start: float, until: float) -> None:
        feed = next((f for f in self.feeds if (f.service, f.env, f.shift) == (service, env, shift)), None)
        if feed is None:
            feed = _Feed(service, env, shift, start)
            self.feeds.append(feed)
        feed.read(self.store, until)

    def _look(self, track: Track, now: float) -> None:
        check = track.check
        load_start, start = self.starts[check.service]
        until = now - LAG_S
        if until <= start:
            return
        comparison = check.comparison
        self._feed(check.service, comparison.source, comparison.shiftsourcetimeframe, start, until)
        stored = not compares_same_window(comparison, self.options) and (
            comparison.baseline is not None or self.options.baseline_run is not None
        )
        if not stored:
            self._feed(check.service, comparison.compare, comparison.shiftcomparetimeframe, start, until)
        window = Window(start, until)
        try:
            source, compare = self._measure(check, window, stored)
        except SourceError:
            return  # too few samples yet
        verdict = sequential.judge_at(
            track.subject, source, compare, track.alpha, self._fallback(track.subject)
        )
        details = verdict.details or {}
        if "evidence" not in details:
            return
        at = now - load_start
        track.points.append((round(at, 2), _log10(details["evidence"]), _log10(details["evidence_pass"])))
        if details.get("decision") in ("violation", "pass"):
            track.decided, track.at_s, track.window = details["decision"], at, window
            track.samples = (source.samples, None if compare is None else compare.samples)

    def _measure(self, check: Check, window: Window, stored: bool) -> tuple[Measurement, Measurement | None]:
        local = LocalSource(_FeedReader(self.feeds), self.options.min_samples)
        source_query = self.measurer.source_query(check, window)
        source = local.measure(source_query)
        comparison = check.comparison
        if stored:
            return source, self.measurer.measure_compare(check, source_query, window)
        compare_query = replace(
            source_query,
            env=comparison.compare,
            window=window.shifted(comparison.shiftcomparetimeframe),
            tags=self.measurer.tags(check.service, comparison.compare),
        )
        try:
            return source, local.measure(compare_query)
        except SourceError:
            if check.entry.static_limit is None:
                raise
            return source, None

    @staticmethod
    def _fallback(subject: Subject) -> sequential.Fallback:
        """Today's rule of the entry: its configured judge, the scale factor for ``sequential``."""
        return scalefactor.judge if subject.config.type == sequential.NAME else configured_judge

    # ------------------------------------------------------------------ verdicts

    def window_for(self, check: AnyCheck, base: Window) -> Window:
        """The window a check is finally judged on: the one its decision was taken on; for
        the others of a watched load, the window watched. It ends ``LAG_S`` before the load
        was stopped, so the requests the stop itself cut off (stored as failed, unanswered)
        are not held against the stage; a request outstanding for longer still counts."""
        track = self.tracks.get(check.check_id)
        if track is not None and track.window is not None:
            return track.window
        watched = self.watched.get(check.service)
        if self.options.sequential and watched is not None and watched.duration_s > 0:
            return watched
        return base

    def unjudged(self, check: AnyCheck, subject: Subject) -> Verdict | None:
        """A skipped verdict for a check left undecided when another stopped the load early."""
        track = self.tracks.get(check.check_id)
        if track is None or track.decided is not None or self.stopped is None:
            return None
        return not_judged(
            subject,
            "skipped",
            f"not judged: the load stopped early ({self.stopped}) before this check was decided",
            details=self._details(track, None),
        )

    def verdict(
        self, check: Check, subject: Subject, source: Measurement, compare: Measurement | None, end: float
    ) -> Verdict:
        """The final verdict on the complete samples of the decision window (or the whole
        window at the maximum), with when and on how many samples it was decided."""
        track = self.tracks[check.check_id]
        verdict = sequential.judge_at(subject, source, compare, track.alpha, self._fallback(subject))
        details = dict(verdict.details or {})
        decision = details.get("decision")
        if track.decided is None and decision in ("violation", "pass"):
            # Decided only on the complete samples at the end of the load.
            load_start = self.starts.get(check.service, (source.query.window.start, 0.0))[0]
            track.at_s = end - load_start
            track.samples = (source.samples, None if compare is None else compare.samples)
        return replace(verdict, details={**details, **self._details(track, decision)})

    def _details(self, track: Track, decision: str | None) -> dict[str, Any]:
        if decision in ("violation", "pass"):
            how = "sequential" if track.decided is not None else "sequential, at the end of the load"
        elif decision is None:
            how = "not decided"
        else:
            how = "fixed rule: undecided at the end of the load"
        values: dict[str, Any] = {
            "decided_by": how,
            "alpha_gate": self.level(track.check),
            "sequential_checks": len(self.tracks),
        }
        if track.at_s is not None and decision in ("violation", "pass"):
            values.update(
                decided_at_s=round(track.at_s, 2),
                decided_samples=track.samples[0],
                decided_compare_samples=track.samples[1],
            )
        values["trajectory"] = [list(p) for p in _thin(track.points)]
        return values


def _log10(value: Any) -> float:
    number = float(value)
    return round(math.log10(number), 2) if number > 0 else -99.0


def _thin(points: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, MAX_POINTS).round().astype(int))
    return [points[i] for i in keep]
