"""What a judge hands back: the ``Verdict`` (status plus every number that led to it) and the
``Subject`` it was about. Pure; shared by every judge, the gate and the reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from .windows import Measurement, Window

if TYPE_CHECKING:  # the Locust process stores verdict-free samples and loads no monspec models
    from .metrics import MetricKind
    from .monspec import Comparison, JudgeConfig, SignatureEntry

Status = Literal["pass", "violation", "error", "skipped"]
STATUSES: tuple[Status, ...] = ("pass", "violation", "error", "skipped")
"""The one vocabulary of verdict and gate statuses, in the order reports list their counts."""


@dataclass(frozen=True)
class Subject:
    """One perfsignature entry of one comparison, as a judge sees it."""

    entry: SignatureEntry
    comparison: Comparison
    method: str | None
    unit: str
    # None for a topology count (smartscape), which has no metric family.
    kind: MetricKind | None
    default_abs_tolerance: float

    @property
    def label(self) -> str:
        """How messages name the entry: ``/api/invoke servicemethod.responsetime p90``."""
        return entry_label(self.entry, self.method)

    @property
    def config(self) -> JudgeConfig:
        """The entry's own judge, else the comparison's."""
        return self.entry.judge or self.comparison.judge


@dataclass(frozen=True)
class Verdict:
    """One signature entry judged: every number that led to the status, and why."""

    status: Status
    metric: str
    aggregate: str
    method: str | None
    unit: str
    source_env: str
    compare_env: str
    message: str
    rule: str = ""
    source_value: float | None = None
    compare_value: float | None = None
    limit: float | None = None
    source_samples: int | None = None
    compare_samples: int | None = None
    source_window: Window | None = None
    compare_window: Window | None = None
    # A baseline of stored runs, described ("run R", "median of 3 of 3 runs: ..."); None when
    # the baseline is simply the compare window.
    baseline: str | None = None
    comparison: str = ""
    judge: str = "scalefactor"
    # Judge-specific numbers (test, p-value, shift and its interval...), None for the scale rule.
    details: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        where = f"{self.method} " if self.method else ""
        return f"{where}{self.metric} {self.aggregate}"

    @property
    def compare_text(self) -> str | None:
        """Where the baseline came from, as people read it."""
        if self.baseline is not None:
            return self.baseline
        return str(self.compare_window) if self.compare_window is not None else None

    def to_record(self) -> dict[str, Any]:
        """Plain data (windows as ``{"start", "end"}`` epoch seconds)."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Verdict:
        """A verdict from ``to_record`` data; keys it does not know are left out."""
        known = {k: v for k, v in record.items() if k in _FIELDS}
        for key in ("source_window", "compare_window"):
            known[key] = _window(known.get(key))
        return cls(**known)


def _window(value: Any) -> Window | None:
    if isinstance(value, dict) and isinstance(value.get("start"), int | float):
        return Window(float(value["start"]), float(value["end"]))
    return None


def entry_label(entry: SignatureEntry, method: str | None) -> str:
    """How a verdict message names its entry: ``/api/invoke servicemethod.responsetime p90``."""
    return f"{method + ' ' if method else ''}{entry.metric_key} {entry.aggregate}"


def subject_fields(subject: Subject) -> dict[str, Any]:
    """The Verdict fields that name what was judged, shared by every judge."""
    comparison = subject.comparison
    return dict(
        metric=subject.entry.metric_key,
        aggregate=subject.entry.aggregate,
        method=subject.method,
        unit=subject.unit,
        source_env=comparison.source,
        compare_env=comparison.compare,
        comparison=comparison.name,
    )


def measured_fields(source: Measurement | None, compare: Measurement | None) -> dict[str, Any]:
    """The Verdict fields that carry what was measured on each side."""
    values: dict[str, Any] = {}
    if source is not None:
        values.update(
            source_value=source.value, source_samples=source.samples, source_window=source.query.window
        )
    if compare is not None:
        values.update(
            compare_value=compare.value,
            compare_samples=compare.samples,
            compare_window=compare.query.window,
            baseline=compare.baseline,
        )
    return values


def not_judged(
    subject: Subject,
    status: Status,
    reason: str,
    *,
    source: Measurement | None = None,
    compare: Measurement | None = None,
    **values: Any,
) -> Verdict:
    """A verdict for an entry that could not be judged (error) or does not apply (skipped)."""
    return Verdict(
        status=status,
        **subject_fields(subject),
        message=f"{subject.label}: {reason}",
        judge=subject.config.type,
        **{**measured_fields(source, compare), **values},
    )


def fmt(value: float | None, unit: str = "") -> str:
    """Numbers as people read them: 3 significant digits, no exponent for everyday sizes."""
    if value is None:
        return "n/a"
    if value == 0:
        return f"0.0 {unit}".rstrip()
    magnitude = abs(value)
    if magnitude >= 999.5:  # .3g would switch to an exponent here
        return f"{value:.0f} {unit}".rstrip()
    text = f"{value:.3g}" if magnitude >= 0.01 else f"{value:.2e}"
    return f"{text} {unit}".rstrip() if unit else text


_FIELDS = frozenset(Verdict.__dataclass_fields__)
