"""The models of a Keptn SLO file as the gate runs it: objectives (an SLI's PromQL and its
criteria), the comparison with earlier results and the total score. ``monspec/keptn.py`` builds
them from ``slo.yaml`` and ``sli.yaml``; a monspec cannot name them (JSON builds only the base
classes). docs/keptn.md maps every Keptn field to them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator

from ..metrics import Aggregate
from .models import BaselineRuns, JudgeConfig, SignatureEntry, _Model

CriterionOp = Literal["<", "<=", "=", ">=", ">"]


class Criterion(_Model):
    """One Keptn criterion: ``<600`` (fixed), ``<=+10%`` / ``>=-5%`` (relative, in percent of
    the comparison value), ``<=+50`` / ``>=-5`` (relative, in the SLI's own unit)."""

    text: str
    op: CriterionOp
    value: float = Field(ge=0)
    relative: Literal["percent", "absolute"] | None = None  # None: a fixed threshold
    increase: bool = True  # "+" (or no sign) adds to the comparison value, "-" subtracts

    def target(self, baseline: float | None) -> float | None:
        """The number the SLI value is compared with; None when it needs a baseline and has none."""
        if self.relative is None:
            return self.value
        if baseline is None:
            return None
        sign = 1.0 if self.increase else -1.0
        if self.relative == "percent":
            # As Keptn computes it: baseline × (100 ± v) / 100.
            return baseline * (100.0 + sign * self.value) / 100.0
        return baseline + sign * self.value

    def met(self, value: float, target: float) -> bool:
        return {
            "<": value < target,
            "<=": value <= target,
            "=": value == target,
            ">=": value >= target,
            ">": value > target,
        }[self.op]


CriteriaBlocks = tuple[tuple[Criterion, ...], ...]
"""Keptn's ``pass`` or ``warning``: criteria blocks, ORed; the criteria of one block, ANDed."""


class KeptnJudge(JudgeConfig):
    """An objective's criteria, weight and key-SLI flag."""

    type: Literal["scalefactor", "mannwhitney", "keptn"] = "keptn"
    pass_: CriteriaBlocks = Field(default=(), alias="pass")  # empty: an informational objective
    warning: CriteriaBlocks = ()
    weight: int = Field(default=1, ge=1)
    key_sli: bool = False

    def _check_type(self) -> None:
        if self.type != "keptn":
            raise ValueError("a Keptn objective is judged by its criteria")


class KeptnObjective(SignatureEntry):
    """A Keptn SLO objective: its SLI's name and PromQL, placeholders filled except
    ``$DURATION_SECONDS`` (the window's length, known when measured)."""

    sli: str = Field(min_length=1)
    promql: str = Field(min_length=1)
    display_name: str | None = None
    aggregate: str = "value"  # the SLI's value, as its query returns it

    @field_validator("aggregate")
    @classmethod
    def _known_aggregate(cls, aggregate: str) -> str:
        if aggregate != "value":
            raise ValueError("a Keptn objective has the value of its SLI")
        return aggregate

    def _check_kind(self) -> None:
        if self.timeseries is not None or self.smartscape is not None:
            raise ValueError("a Keptn objective is measured by its SLI's query only")
        if not isinstance(self.judge, KeptnJudge):
            raise ValueError("a Keptn objective is judged by its criteria (KeptnJudge)")

    @property
    def metric_key(self) -> str:
        return self.sli

    @property
    def aggregate_spec(self) -> Aggregate:
        return Aggregate("value")

    @property
    def expression(self) -> str | None:
        return self.promql

    @property
    def needs_baseline(self) -> bool:
        # The criteria decide: relative ones cannot be met without a baseline, fixed ones can.
        return False


class KeptnBaseline(BaselineRuns):
    """Keptn's comparison: the last ``runs`` results (of passed gates only with
    ``include_result_with_score: pass``), combined by ``function`` as Keptn's lighthouse does."""

    function: Literal["avg", "p50", "p90", "p95"] = "avg"

    @property
    def label(self) -> str:
        return self.function

    def combine(self, values: Sequence[float]) -> float:
        """The mean, or pXX by the (n + 1) rank rule Keptn uses (p90 of 3 results: the largest)."""
        ordered = sorted(values)
        if self.function == "avg":
            return sum(ordered) / len(ordered)
        position = int(self.function[1:]) / 100.0 * (len(ordered) + 1)
        if position < 1:
            return ordered[0]
        if position >= len(ordered):
            return ordered[-1]
        lower, upper = ordered[int(position) - 1], ordered[int(position)]
        return lower + (position - math.floor(position)) * (upper - lower)


class TotalScore(_Model):
    """Keptn's ``total_score``: the percentages of the achievable score a pass and a warning need."""

    pass_: float = Field(alias="pass", ge=0, le=100)
    warning: float | None = Field(default=None, ge=0, le=100)
