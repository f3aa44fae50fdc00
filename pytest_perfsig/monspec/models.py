"""The monspec models: environments, comparisons, perfsignature entries and log rules, each
validated as it is built (pydantic, strict).

The format is the one of the original Unbreakable Pipeline (``_comment*`` keys are ignored,
``_upperlimit`` / ``_lowerlimit`` are static limits). Our extensions are marked below.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..metrics import (
    AGGREGATE_HELP,
    Aggregate,
    MetricId,
    aggregate_allowed,
    canonical_id,
    parse_aggregate,
    parse_metric,
)

if TYPE_CHECKING:
    from .keptn_models import TotalScore

ETYPES = ("SERVICE", "APPLICATION", "HOST", "PROCESS_GROUP_INSTANCE")
MAX_SCALE_FACTOR = 1000.0


class _Model(BaseModel):
    # strict: "30" is not a number; forbid: a misspelt key must not silently change the gate;
    # no NaN/Infinity: a NaN limit would pass everything.
    model_config = ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, frozen=True, allow_inf_nan=False
    )


class Tag(_Model):
    context: str = "CONTEXTLESS"
    key: str
    value: str | None = None


class Environment(_Model):
    tags: list[Tag] = Field(default_factory=list)
    # Extension: where this stage is reachable for load, and which locustfile drives it.
    url: str | None = None
    locustfile: str | None = None
    # Extension: where this environment's metrics are read (default: --perfsig-source, local).
    source: str | None = None
    # Extension: whether the gate sends synthetic load to this environment when it is compared
    # with in the gate's window (default: only when its numbers come from the local source;
    # with a remote source its real users are the baseline).
    load: bool | None = None
    # Extension: the environment's log, a file (relative to the monspec) or an http(s) URL.
    log: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^\s/]+", url):
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url.rstrip("/") if url else url


JUDGES = ("scalefactor", "mannwhitney", "sequential")  # what a monspec may name; "keptn" comes with SLO files


class JudgeConfig(_Model):
    """How an entry is judged. ``scalefactor``: the aggregate against the scaled baseline.
    ``mannwhitney``: a rank test on the raw samples (a proportions test for failure rates),
    violated only when the shift is significant *and* larger than the effect-size floor.
    ``sequential``: the anytime-valid test of docs/judges.md on the whole window, the scale
    factor judging what it leaves undecided. ``keptn``: the pass / warning criteria of a Keptn
    SLO objective (``KeptnJudge``)."""

    type: Literal["scalefactor", "mannwhitney", "sequential", "keptn"] = "scalefactor"
    confidence: float = Field(default=0.98, gt=0.5, lt=1.0)
    # increase / decrease default from `validate` (upper / lower).
    direction: Literal["increase", "decrease", "either"] | None = None
    # Smallest relative shift that counts, in percent; default: the entry's scale factor.
    effectsizeperc: float | None = Field(default=None, ge=0, le=MAX_SCALE_FACTOR)

    @model_validator(mode="after")
    def _known_type(self) -> JudgeConfig:
        self._check_type()
        return self

    def _check_type(self) -> None:
        # Criteria exist only in SLO files: a monspec naming "keptn" would judge nothing.
        if self.type == "keptn":
            raise ValueError("'keptn' judges the objectives of a Keptn slo.yaml (--monspec slo.yaml)")


def _judge_config(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class BaselineRuns(_Model):
    """Several earlier runs: each is measured, then the values are aggregated."""

    runs: int = Field(ge=1, le=100)
    aggregate: Literal["median", "avg", "min", "max"] = "median"
    passed_only: bool = False


class SequentialConfig(_Model):
    """Extension: the sequential gate's false-rejection level for this comparison's checks
    (split with Bonferroni across the gate's sequentially judged checks)."""

    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)


class Comparison(_Model):
    name: str = Field(min_length=1)
    source: str
    compare: str
    # Percent the source may be worse than the compare value: "default" plus per-metric ids.
    scalefactorperc: dict[str, float] = Field(default_factory=lambda: {"default": 0.0})
    # Extension: absolute tolerance in the metric's unit, "default" plus per-metric ids.
    abstolerance: dict[str, float] = Field(default_factory=dict)
    shiftsourcetimeframe: int = Field(default=0, ge=0)
    shiftcomparetimeframe: int = Field(default=0, ge=0)
    # Extension: the compare side from stored runs instead of a time window.
    baseline: Literal["latest", "latest_passed"] | BaselineRuns | None = None
    # Extension: what a stored-run baseline does when there is no run yet (the first
    # deployment): "error" fails closed; "approve" passes the check and says so.
    first_run: Literal["error", "approve"] = "error"
    # Extension: the judge of every entry of this comparison (an entry may override it).
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    # Extension: the level of --perfsig-sequential (and of the sequential judge); None: the
    # option's, else 0.05.
    sequential: SequentialConfig | None = None

    @field_validator("judge", mode="before")
    @classmethod
    def _judge_shorthand(cls, value: Any) -> Any:
        return _judge_config(value)

    @model_validator(mode="after")
    def _baseline_or_shift(self) -> Comparison:
        if self.baseline is not None and self.shiftcomparetimeframe:
            raise ValueError(
                "'baseline' and 'shiftcomparetimeframe' exclude each other: "
                "the baseline runs define the compare window"
            )
        if self.first_run != "error" and self.baseline is None:
            raise ValueError(
                "'first_run' applies to stored-run baselines only: set 'baseline' "
                "(a time window always has a compare side)"
            )
        return self

    @field_validator("scalefactorperc", "abstolerance")
    @classmethod
    def _one_key_per_metric(cls, table: dict[str, float]) -> dict[str, float]:
        seen: dict[str, str] = {}
        for key in table:
            canonical = canonical_id(key)
            if canonical in seen:
                raise ValueError(f"{key!r} and {seen[canonical]!r} name the same metric")
            seen[canonical] = key
        return table

    @field_validator("scalefactorperc")
    @classmethod
    def _scale_range(cls, factors: dict[str, float]) -> dict[str, float]:
        for key, value in factors.items():
            if not 0 <= value <= MAX_SCALE_FACTOR:
                raise ValueError(f"{key!r} must be between 0 and {MAX_SCALE_FACTOR:g} percent, got {value:g}")
        return factors

    @field_validator("abstolerance")
    @classmethod
    def _tolerance_range(cls, tolerances: dict[str, float]) -> dict[str, float]:
        for key, value in tolerances.items():
            if value < 0:
                raise ValueError(f"{key!r} must not be negative, got {value:g}")
        return tolerances

    def scale_factor(self, metric_key: str) -> float:
        """Per-metric override, else ``default``, else 0 (as the original)."""
        return _lookup(self.scalefactorperc, metric_key) or 0.0

    def abs_tolerance(self, metric_key: str) -> float | None:
        return _lookup(self.abstolerance, metric_key)


def _lookup(table: dict[str, float], metric_key: str) -> float | None:
    for key, value in table.items():
        if key != "default" and canonical_id(key) == metric_key:
            return value
    return table.get("default")


class SignatureEntry(_Model):
    timeseries: str | None = None
    smartscape: str | None = None
    aggregate: str = "avg"
    validate_: Literal["upper", "lower"] = Field(default="upper", alias="validate")
    upperlimit: float | None = Field(default=None, alias="_upperlimit")
    lowerlimit: float | None = Field(default=None, alias="_lowerlimit")
    # Extension: absolute tolerance for this entry, overriding the comparison's.
    abstolerance: float | None = Field(default=None, ge=0)
    # Extension: the judge of this entry, overriding the comparison's.
    judge: JudgeConfig | None = None
    # Extension: a source that cannot answer this entry (no topology, say) skips it instead of
    # making the gate an error.
    optional: bool = False

    @field_validator("judge", mode="before")
    @classmethod
    def _judge_shorthand(cls, value: Any) -> Any:
        return _judge_config(value)

    @field_validator("aggregate")
    @classmethod
    def _known_aggregate(cls, aggregate: str) -> str:
        if parse_aggregate(aggregate) is None:
            raise ValueError(f"unknown aggregate {aggregate!r}; use {AGGREGATE_HELP}")
        return aggregate

    @model_validator(mode="after")
    def _one_kind(self) -> SignatureEntry:
        # Through a method: pydantic runs this validator on subclass instances too.
        self._check_kind()
        return self

    def _check_kind(self) -> None:
        if (self.timeseries is None) == (self.smartscape is None):
            raise ValueError("needs exactly one of 'timeseries' or 'smartscape'")
        metric = self.metric
        if metric is not None and not aggregate_allowed(metric.family.kind, self.aggregate_spec):
            raise ValueError(
                f"aggregate {self.aggregate!r} means nothing for {metric.short} "
                f"(see the metric table in docs/monspec.md)"
            )

    @property
    def metric_key(self) -> str:
        """The id used in reports and for scale-factor overrides."""
        return canonical_id(self.timeseries) if self.timeseries else f"smartscape.{self.smartscape}"

    @property
    def metric(self) -> MetricId | None:
        return parse_metric(self.timeseries) if self.timeseries else None

    @property
    def aggregate_spec(self) -> Aggregate:
        parsed = parse_aggregate(self.aggregate)
        assert parsed is not None  # checked by the validator
        return parsed

    @property
    def direction(self) -> str:
        return self.validate_

    @property
    def static_limit(self) -> float | None:
        """The static limit that ``validate`` names; the other one is ignored."""
        return self.upperlimit if self.validate_ == "upper" else self.lowerlimit

    @property
    def expression(self) -> str | None:
        """A query in the source's own language (a Keptn SLI's PromQL), None for monspec entries."""
        return None

    @property
    def needs_baseline(self) -> bool:
        """Whether missing baseline data makes the entry unjudgeable (no static limit)."""
        return self.static_limit is None


class ServiceMethod(_Model):
    name: str = Field(min_length=1)
    perfsignature: list[SignatureEntry] = Field(min_length=1)


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class LogRule(_Model):
    """Extension: lines of the stage's log that must not appear more often than allowed
    during the load window (the original's log-monitoring rules)."""

    name: str | None = None
    pattern: str = Field(min_length=1)  # a regular expression, searched in each line's message
    level: Literal["debug", "info", "warning", "error", "critical"] = "error"  # the lowest level counted
    allowedperminute: float = Field(default=0.0, ge=0)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    @property
    def label(self) -> str:
        return self.name or self.pattern


class Entity(_Model):
    etype: Literal["SERVICE", "APPLICATION", "HOST", "PROCESS_GROUP_INSTANCE"] = "SERVICE"
    name: str | None = None
    owner: str | None = None
    environments: dict[str, Environment] = Field(min_length=1)
    comparisons: list[Comparison] = Field(default_factory=list)
    perfsignature: list[SignatureEntry] = Field(default_factory=list)
    servicemethods: list[ServiceMethod] = Field(default_factory=list)
    logrules: list[LogRule] = Field(default_factory=list)

    def comparison(self, name: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.name == name), None)

    def entries(self) -> Iterator[tuple[str | None, SignatureEntry]]:
        """Every signature entry with the service method it belongs to (None: whole service)."""
        for entry in self.perfsignature:
            yield None, entry
        for method in self.servicemethods:
            for entry in method.perfsignature:
                yield method.name, entry


@dataclass(frozen=True)
class Monspec:
    path: str
    entities: dict[str, Entity]
    # Things that do not change the gate but probably are not what was meant.
    warnings: tuple[str, ...] = ()
    # Planned from a Keptn SLO file: the gate's outcome is Keptn's total score (gate.status).
    total_score: TotalScore | None = None

    def environments(self) -> set[str]:
        return {env for entity in self.entities.values() for env in entity.environments}
