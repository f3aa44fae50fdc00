"""The monspec: monitoring as code. Pydantic models and a loader that accepts JSON and
JSON5 (``//`` comments, trailing commas) and reports every problem with the file, the path
inside it and, for syntax errors, the line.

The format is the one of the original Unbreakable Pipeline (``_comment*`` keys are ignored,
``_upperlimit`` / ``_lowerlimit`` are static limits). Our extensions are marked below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import json5
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import MonspecError
from .metrics import (
    AGGREGATE_HELP,
    Aggregate,
    MetricId,
    aggregate_allowed,
    canonical_id,
    parse_aggregate,
    parse_metric,
)

ETYPES = ("SERVICE", "APPLICATION", "HOST", "PROCESS_GROUP_INSTANCE")
MAX_SCALE_FACTOR = 1000.0
MAX_MONSPEC_BYTES = 5 * 1024 * 1024


def _drop_comments(data: Any) -> Any:
    """Remove ``_comment*`` keys from every object of a document, maps included."""
    if isinstance(data, dict):
        return {
            k: _drop_comments(v)
            for k, v in data.items()
            if not (isinstance(k, str) and k.startswith("_comment"))
        }
    if isinstance(data, list):
        return [_drop_comments(v) for v in data]
    return data


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
    # Extension: the environment's log, a file (relative to the monspec) or an http(s) URL.
    log: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^\s/]+", url):
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url.rstrip("/") if url else url


JUDGES = ("scalefactor", "mannwhitney")


class JudgeConfig(_Model):
    """How an entry is judged. ``scalefactor``: the aggregate against the scaled baseline.
    ``mannwhitney``: a rank test on the raw samples (a proportions test for failure rates),
    violated only when the shift is significant *and* larger than the effect-size floor."""

    type: Literal["scalefactor", "mannwhitney"] = "scalefactor"
    confidence: float = Field(default=0.98, gt=0.5, lt=1.0)
    # increase / decrease default from `validate` (upper / lower).
    direction: Literal["increase", "decrease", "either"] | None = None
    # Smallest relative shift that counts, in percent; default: the entry's scale factor.
    effectsizeperc: float | None = Field(default=None, ge=0, le=MAX_SCALE_FACTOR)


def _judge_config(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class BaselineRuns(_Model):
    """Several earlier runs: each is measured, then the values are aggregated."""

    runs: int = Field(ge=1, le=100)
    aggregate: Literal["median", "avg", "min", "max"] = "median"
    passed_only: bool = False


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
    # Extension: the judge of every entry of this comparison (an entry may override it).
    judge: JudgeConfig = Field(default_factory=JudgeConfig)

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
        if (self.timeseries is None) == (self.smartscape is None):
            raise ValueError("needs exactly one of 'timeseries' or 'smartscape'")
        metric = self.metric
        if metric is not None and not aggregate_allowed(metric.family.kind, self.aggregate_spec):
            raise ValueError(
                f"aggregate {self.aggregate!r} means nothing for {metric.short} "
                f"(see the metric table in docs/monspec.md)"
            )
        return self

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

    def environments(self) -> set[str]:
        return {env for entity in self.entities.values() for env in entity.environments}


# ---------------------------------------------------------------------------- loading


def load_monspec(path: str | Path) -> Monspec:
    """Read and validate a monspec file; raise MonspecError naming every problem."""
    name = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_MONSPEC_BYTES:
            raise MonspecError(
                name, [f"{size} bytes: larger than {MAX_MONSPEC_BYTES} bytes, too large to be a monspec"]
            )
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MonspecError(name, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MonspecError(name, [f"cannot read: {exc}"]) from None
    return parse_monspec(text, name)


def parse_monspec(text: str, name: str = "<monspec>") -> Monspec:
    document = _parse_document(text, name)
    if not isinstance(document, dict):
        raise MonspecError(name, [f"top level must be an object of entities, got {_type_name(document)}"])
    document = _drop_comments(document)
    if not document:
        raise MonspecError(name, ['no entity defined (expected e.g. {"MyService": {...}})'])
    problems: list[str] = []
    entities: dict[str, Entity] = {}
    for entity_name, body in document.items():
        try:
            entities[entity_name] = Entity.model_validate(body)
        except ValidationError as exc:
            problems.extend(_describe(entity_name, err) for err in exc.errors())
    for entity_name, entity in entities.items():
        problems.extend(_check_references(entity_name, entity))
    if problems:
        raise MonspecError(name, problems)
    return Monspec(name, entities)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {key!r}")
        result[key] = value
    return result


def _parse_document(text: str, name: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise MonspecError(name, [str(exc)]) from None
    except RecursionError:
        raise MonspecError(name, ["nested too deeply to be a monspec"]) from None
    except json.JSONDecodeError:
        pass  # maybe JSON5 (comments, trailing commas): the JSON5 parser decides
    try:
        return json5.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise MonspecError(name, [str(exc)]) from None
    except ValueError as exc:
        duplicate = re.search(r"duplicate key '.*'", str(exc))
        raise MonspecError(name, [duplicate.group(0) if duplicate else _syntax_message(str(exc))]) from None
    except RecursionError:
        raise MonspecError(name, ["nested too deeply to be a monspec"]) from None


def _syntax_message(message: str) -> str:
    # json5 says '<string>:3 Unexpected "," at column 12' (the character may be a newline)
    match = re.match(r"^<string>:(\d+) (.*?)(?: at column (\d+))?$", message, re.S)
    if not match:
        return f"syntax error: {message}"
    line, what, column = match.groups()
    unexpected = re.fullmatch(r'Unexpected "(.*)"', what, re.S)
    if unexpected:
        what = f"unexpected {unexpected.group(1)!r}" if unexpected.group(1) else "unexpected end of file"
    where = f"line {line}" + (f", column {column}" if column else "")
    return f"{where}: syntax error: {what[0].lower() + what[1:]}"


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _format_path(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(entity_name: str, error: Any) -> str:
    # pydantic puts the failing union/literal branch names into loc; keep the document path.
    loc = [
        p
        for p in error["loc"]
        if not (isinstance(p, str) and (p.startswith(("function-", "literal[")) or p in _MODEL_NAMES))
    ]
    path = _format_path([entity_name, *loc])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown field (misspelt? '_comment...' keys are ignored)"
    if kind == "missing":
        return f"{path}: required field missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in {"float_type", "int_type", "string_type", "list_type", "dict_type", "bool_type", "model_type"}:
        message = f"{message}, got {_type_name(error.get('input'))}"
    return f"{path}: {message}"


_MODEL_NAMES = {"BaselineRuns", "JudgeConfig"}


def _check_references(entity_name: str, entity: Entity) -> list[str]:
    """Cross-field rules pydantic cannot see: names that must refer to something."""
    problems: list[str] = []
    envs = sorted(entity.environments)
    seen: set[str] = set()
    metric_keys = {entry.metric_key for _, entry in entity.entries()}
    for i, comparison in enumerate(entity.comparisons):
        where = f"{entity_name}.comparisons[{i}]"
        if comparison.name in seen:
            problems.append(f"{where}.name: duplicate comparison name {comparison.name!r}")
        seen.add(comparison.name)
        for field in ("source", "compare"):
            env = getattr(comparison, field)
            if env not in entity.environments:
                problems.append(f"{where}.{field}: unknown environment {env!r} (defined: {', '.join(envs)})")
        for table in ("scalefactorperc", "abstolerance"):
            for key in getattr(comparison, table):
                if key != "default" and canonical_id(key) not in metric_keys:
                    problems.append(f"{where}.{table}.{key}: names no metric of the perfsignature")
    methods: set[str] = set()
    for i, method in enumerate(entity.servicemethods):
        if method.name in methods:
            problems.append(
                f"{entity_name}.servicemethods[{i}].name: duplicate service method {method.name!r}"
            )
        methods.add(method.name)
    if not entity.perfsignature and not entity.servicemethods and not entity.logrules:
        problems.append(f"{entity_name}.perfsignature: empty (no metric or log rule to gate on)")
    return problems
