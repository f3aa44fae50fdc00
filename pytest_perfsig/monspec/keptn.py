"""Keptn SLO files as an alternative to a monspec: ``slo.yaml`` (objectives, comparison, total
score) and the Prometheus ``sli.yaml`` beside it (one PromQL query per SLI) become a Monspec of
one service, one stage and one comparison with the stage's earlier runs.

Every field either maps (docs/keptn.md) or is refused: an unknown key, a malformed criterion, an
objective without an SLI, an SLI that is not PromQL, an unknown placeholder. Each problem names
its file, its line and its path inside the file. Placeholders are filled here, except
``$DURATION_SECONDS``: the window's length is known only when the query runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MonspecError
from .keptn_models import CriteriaBlocks, Criterion, KeptnBaseline, KeptnJudge, KeptnObjective, TotalScore
from .models import Comparison, Entity, Environment, Monspec, SignatureEntry
from .yamlnodes import Node, Problems, compose, mapping, read_text, required_text, type_name

SLO_SUFFIXES = (".yaml", ".yml")
COMPARISON = "keptn"  # the comparison's name: items are ``keptn::<sli>[value]``
SLI_FILES = ("sli.yaml", "prometheus/sli.yaml")  # beside slo.yaml; Keptn keeps it in prometheus/
SPEC_VERSION = re.compile(r"^(1\.0|0\.1\.\d+)$")  # Keptn's own examples write 0.1.1: same format
DURATION = "DURATION_SECONDS"
BUILT_INS = ("PROJECT", "STAGE", "SERVICE", "DEPLOYMENT")
# Folders Keptn keeps other SLI providers' files in: their queries are not PromQL.
OTHER_PROVIDERS = ("dynatrace", "datadog", "newrelic", "splunk", "wavefront", "sumologic", "elastic")
NOT_PROMQL = re.compile(r"^\s*(builtin:|ext:|calc:|(MV2|USQL|SLO|PV2|SECPV2|METRICS);|(avg|sum|min|max):\w)")
PLACEHOLDER = re.compile(r"\$(?:LABEL\.([A-Za-z0-9_-]+)|([A-Za-z_][A-Za-z0-9_]*))")
CRITERION = re.compile(r"^(<=|>=|<|>|=)([+-]?)(\d+(?:\.\d*)?|\.\d+)(%?)$")
PERCENT = re.compile(r"^(\d+|\d+\.\d+)%?$")
FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_slo_file(path: str | Path) -> bool:
    """Whether a --monspec path names a Keptn SLO file (YAML) rather than a monspec (JSON)."""
    return Path(path).suffix.lower() in SLO_SUFFIXES


# ---------------------------------------------------------------------------- slo.yaml


@dataclass(frozen=True)
class _Objective:
    entry: dict[str, Any]  # KeptnObjective fields but the query
    sli: str
    line: int
    where: str


def _criteria(node: Node | None, where: str, problems: Problems) -> CriteriaBlocks:
    """``pass`` / ``warning``: a list of ``{criteria: [...]}`` blocks (ORed, each ANDed)."""
    if node is None or node.value is None:
        return ()
    if not isinstance(node.value, list):
        problems.add(node.line, where, f"must be a list of {{criteria: [...]}}, got {type_name(node.value)}")
        return ()
    blocks = []
    for i, block in enumerate(node.value):
        at = f"{where}[{i}]"
        criteria = mapping(block, at, ("criteria",), problems).get("criteria")
        if criteria is None or not isinstance(criteria.value, list) or not criteria.value:
            # Keptn passes an empty block whatever the value: refuse rather than pass by accident.
            problems.add((criteria or block).line, f"{at}.criteria", "needs a list of at least one criterion")
            continue
        parsed = [_criterion(c, f"{at}.criteria[{j}]", problems) for j, c in enumerate(criteria.value)]
        blocks.append(tuple(c for c in parsed if c is not None))
    return tuple(blocks)


def _criterion(node: Node, where: str, problems: Problems) -> Criterion | None:
    if not isinstance(node.value, str):
        problems.add(
            node.line, where, f"a criterion is text such as '<600' or '<=+10%', got {type_name(node.value)}"
        )
        return None
    match = CRITERION.match(re.sub(r"\s", "", node.value))  # Keptn ignores spaces
    if match is None:
        problems.add(
            node.line,
            where,
            f"malformed criterion {node.value!r}: an operator (<, <=, =, >=, >) and a number: "
            "'<600' (fixed), '<=+10%' or '>=-5%' (relative, percent), '<=+50' (relative, absolute)",
        )
        return None
    op, sign, number, percent = match.groups()
    relative = "percent" if percent else ("absolute" if sign else None)
    fields = {"text": node.value.strip(), "op": op, "value": float(number), "relative": relative}
    return Criterion.model_validate({**fields, "increase": sign != "-"})


def _percent(node: Node | None, where: str, problems: Problems) -> float | None:
    if node is None:
        return None
    text = str(node.value).strip() if isinstance(node.value, str | int | float) else ""
    if isinstance(node.value, bool) or not PERCENT.match(text) or float(text.rstrip("%")) > 100:
        problems.add(
            node.line, where, f"must be a percentage from 0 to 100 such as '90%', got {node.value!r}"
        )
        return None
    return float(text.rstrip("%"))


def _comparison(node: Node | None, problems: Problems, warnings: list[str]) -> KeptnBaseline:
    """Keptn compares with earlier evaluations: here, the stage's earlier stored runs."""
    if node is None:  # Keptn's default: the previous result, whatever its score
        return KeptnBaseline(runs=1, function="avg")
    fields = mapping(
        node,
        "comparison",
        ("compare_with", "include_result_with_score", "number_of_comparison_results", "aggregate_function"),
        problems,
    )

    def choice(key: str, options: tuple[str, ...], default: str) -> str:
        value = fields.get(key)
        if value is None:
            return default
        if value.value not in options:
            problems.add(
                value.line, f"comparison.{key}", f"must be one of {', '.join(options)}, got {value.value!r}"
            )
            return default
        return str(value.value)

    compare_with = choice("compare_with", ("single_result", "several_results"), "single_result")
    include = choice("include_result_with_score", ("all", "pass", "pass_or_warn"), "all")
    function = choice("aggregate_function", ("avg", "p50", "p90", "p95"), "avg")
    if include == "pass_or_warn":
        problems.add(
            fields["include_result_with_score"].line,
            "comparison.include_result_with_score",
            "pass_or_warn cannot be mapped: a warning gate is stored as a violation, like a failed "
            "one; use pass (passed gates only) or all",
        )
    count_node = fields.get("number_of_comparison_results")
    count = 3  # Keptn's lighthouse default for several_results
    if count_node is not None:
        if (
            isinstance(count_node.value, bool)
            or not isinstance(count_node.value, int)
            or not 1 <= count_node.value <= 100
        ):
            problems.add(
                count_node.line, "comparison.number_of_comparison_results", "must be a whole number, 1 to 100"
            )
        elif compare_with == "single_result":
            warnings.append(
                f"line {count_node.line}: comparison.number_of_comparison_results is ignored with "
                "compare_with: single_result (as in Keptn)"
            )
        else:
            count = count_node.value
    runs = 1 if compare_with == "single_result" else count
    return KeptnBaseline.model_validate(
        {"runs": runs, "passed_only": include == "pass", "function": function}
    )


def _objectives(node: Node | None, problems: Problems, warnings: list[str]) -> list[_Objective]:
    if node is None or not isinstance(node.value, list) or not node.value:
        problems.add(node.line if node else None, "objectives", "needs a list of at least one objective")
        return []
    found = []
    keys = ("sli", "displayName", "pass", "warning", "weight", "key_sli")
    for i, item in enumerate(node.value):
        where = f"objectives[{i}]"
        fields = mapping(item, where, keys, problems)
        sli = required_text(fields["sli"], f"{where}.sli", problems) if "sli" in fields else None
        if "sli" not in fields and isinstance(item.value, dict):
            problems.add(item.line, f"{where}.sli", "required: the name of the SLI in sli.yaml")
        passes = _criteria(fields.get("pass"), f"{where}.pass", problems)
        warning = _criteria(fields.get("warning"), f"{where}.warning", problems)
        weight, key_sli = 1, False
        if (node_w := fields.get("weight")) is not None:
            if isinstance(node_w.value, bool) or not isinstance(node_w.value, int) or node_w.value < 1:
                problems.add(
                    node_w.line, f"{where}.weight", f"must be a whole number >= 1, got {node_w.value!r}"
                )
            else:
                weight = node_w.value
        if (node_k := fields.get("key_sli")) is not None:
            if not isinstance(node_k.value, bool):
                problems.add(node_k.line, f"{where}.key_sli", f"must be true or false, got {node_k.value!r}")
            else:
                key_sli = node_k.value
        if not passes:
            # An informational objective (measured, not scored): criteria of any other kind would
            # be silently ignored, as Keptn ignores them.
            for key in ("warning", "key_sli"):
                if key in fields:
                    problems.add(fields[key].line, f"{where}.{key}", "has no effect without pass criteria")
            if "weight" in fields:
                warnings.append(
                    f"line {fields['weight'].line}: {where}.weight: ignored without pass criteria"
                )
        display = fields.get("displayName")
        display_name = required_text(display, f"{where}.displayName", problems) if display else None
        if sli is None:
            continue
        judge = KeptnJudge.model_validate(
            {"pass": passes, "warning": warning, "weight": weight, "key_sli": key_sli}
        )
        entry = {"sli": sli, "judge": judge, "display_name": display_name}
        found.append(_Objective(entry, sli, fields["sli"].line, f"{where}.sli"))
    return found


# ---------------------------------------------------------------------------- sli.yaml


def _find_sli(slo_path: Path, sli_path: str | Path | None) -> Path:
    if sli_path is not None:
        return Path(sli_path)
    for candidate in SLI_FILES:
        if (slo_path.parent / candidate).is_file():
            return slo_path.parent / candidate
    raise MonspecError(
        str(slo_path),
        [f"no SLI file: looked for {' and '.join(SLI_FILES)} beside it; name one with --perfsig-sli PATH"],
    )


def _indicators(path: Path) -> dict[str, Node]:
    """The SLI file's queries by name; not PromQL (another provider's file) is refused."""
    name = str(path)
    problems = Problems(name)
    provider = path.parent.name.lower()
    if provider in OTHER_PROVIDERS:
        problems.add(None, "", f"an SLI file of the {provider} provider: perfsig reads Prometheus SLIs only")
        problems.raise_any()
    root = compose(read_text(path), name)
    fields = mapping(root, "", ("spec_version", "indicators"), problems)
    _spec_version(fields.get("spec_version"), root, problems)
    indicators = fields.get("indicators")
    if indicators is None or not isinstance(indicators.value, dict) or not indicators.value:
        problems.add(
            (indicators or root).line, "indicators", "needs a mapping of SLI names to PromQL queries"
        )
        problems.raise_any()
        return {}
    for sli, query in indicators.value.items():
        where = f"indicators.{sli}"
        if required_text(query, where, problems) is not None and NOT_PROMQL.match(query.value):
            problems.add(
                query.line,
                where,
                "not PromQL (a Dynatrace or Datadog query?): perfsig reads Prometheus SLIs only",
            )
    problems.raise_any()
    return dict(indicators.value)


def _spec_version(node: Node | None, root: Node, problems: Problems) -> None:
    if node is None:
        problems.add(root.line, "spec_version", "required ('1.0')")
    elif isinstance(node.value, bool) or not SPEC_VERSION.match(str(node.value)):
        problems.add(
            node.line, "spec_version", f"{node.value!r} is not a Keptn spec version perfsig reads ('1.0')"
        )


# ---------------------------------------------------------------------------- placeholders


def _fill(
    query: Node, sli: str, values: Mapping[str, str | None], labels: Mapping[str, str], problems: Problems
) -> str:
    """The query with every placeholder but ``$DURATION_SECONDS`` replaced; unknown or empty
    ones are problems naming the SLI's line."""
    where = f"indicators.{sli}"

    def replace(match: re.Match[str]) -> str:
        label, name = match.groups()
        if label is not None:
            if label not in labels:
                problems.add(
                    query.line,
                    where,
                    f"$LABEL.{label} has no value: pass --perfsig-keptn-label {label}=VALUE",
                )
            return labels.get(label, match.group(0))
        if name == DURATION:
            return match.group(0)
        if name not in values:
            known = ", ".join(f"${k}" for k in (*BUILT_INS, DURATION)) + ", $LABEL.<name>, $<filter key>"
            problems.add(query.line, where, f"unknown placeholder ${name} (known: {known})")
            return match.group(0)
        value = values[name]
        if value is None:
            problems.add(query.line, where, f"${name} has no value: set filter.{name.lower()} in slo.yaml")
            return match.group(0)
        return value

    return PLACEHOLDER.sub(replace, str(query.value))


# ---------------------------------------------------------------------------- the gate


def load_slo(
    slo_path: str | Path,
    *,
    stage: str,
    service: str | None = None,
    sli_path: str | Path | None = None,
    labels: Mapping[str, str] | None = None,
) -> Monspec:
    """A Keptn ``slo.yaml`` (and its Prometheus ``sli.yaml``) as the monspec of ``stage``'s gate.

    The service is ``service`` (--perfsig-keptn-service), else ``filter.service``, else the SLO
    file's folder (Keptn keeps a service's files in a folder of its name). Raises MonspecError
    naming the file, line and path of every problem."""
    path = Path(slo_path)
    name = str(slo_path)
    problems = Problems(name)
    warnings: list[str] = []
    root = compose(read_text(path), name)
    fields = mapping(
        root, "", ("spec_version", "filter", "comparison", "objectives", "total_score"), problems
    )
    _spec_version(fields.get("spec_version"), root, problems)
    filters: dict[str, str] = {}
    filter_lines: dict[str, int] = {}
    if (filter_node := fields.get("filter")) is not None:
        for key, value in mapping(filter_node, "filter", tuple(filter_node.key_lines), problems).items():
            text = str(value.value) if isinstance(value.value, str | int | float) else None
            if not FILTER_KEY.match(key) or text is None or isinstance(value.value, bool):
                problems.add(
                    value.line, f"filter.{key}", "a filter is a name (letters, digits, _) and a text value"
                )
            elif re.search(r"[\"'\\\n]", text):
                problems.add(
                    value.line, f"filter.{key}", "quotes, backslashes and line breaks would break the PromQL"
                )
            else:
                filters[key], filter_lines[key] = text, value.line
    baseline = _comparison(fields.get("comparison"), problems, warnings)
    objectives = _objectives(fields.get("objectives"), problems, warnings)
    total = fields.get("total_score")
    score_fields = mapping(total, "total_score", ("pass", "warning"), problems) if total else {}
    if total is None or "pass" not in score_fields:
        problems.add(
            (total or root).line, "total_score.pass", "required: the score a pass needs, such as '90%'"
        )
    score = TotalScore.model_validate(
        {
            "pass": _percent(score_fields.get("pass"), "total_score.pass", problems) or 0.0,
            "warning": _percent(score_fields.get("warning"), "total_score.warning", problems),
        }
    )
    # The Keptn context: the filter overrides nothing the command line says.
    for key, given in (("stage", stage), ("service", service)):
        if given is not None and key in filters and filters[key] != given:
            flag = "--stage" if key == "stage" else "--perfsig-keptn-service"
            problems.add(filter_lines[key], f"filter.{key}", f"{filters[key]!r} contradicts {flag} {given!r}")
    service = service or filters.get("service") or path.resolve().parent.name
    if re.search(r"[\"'\\\n]", stage + service):
        problems.add(None, "", "stage and service names must not contain quotes, backslashes or line breaks")
    problems.raise_any()

    sli_file = _find_sli(path, sli_path)
    indicators = _indicators(sli_file)
    values: dict[str, str | None] = {
        "PROJECT": filters.get("project"),
        "STAGE": stage,
        "SERVICE": service,
        "DEPLOYMENT": filters.get("deployment"),
    }
    values.update({k.lower(): v for k, v in values.items()})
    for key, given in filters.items():
        values[key] = values[key.upper()] = given
    sli_problems = Problems(str(sli_file))
    entries: list[SignatureEntry] = []
    for objective in objectives:
        query = indicators.get(objective.sli)
        if query is None:
            problems.add(
                objective.line,
                objective.where,
                f"SLI {objective.sli!r} has no query in {sli_file} (indicators: {', '.join(indicators)})",
            )
            continue
        promql = _fill(query, objective.sli, values, labels or {}, sli_problems)
        entries.append(KeptnObjective.model_validate({**objective.entry, "promql": promql}))
    problems.raise_any()
    sli_problems.raise_any()
    entity = Entity(
        name=service,
        environments={stage: Environment()},
        comparisons=[Comparison(name=COMPARISON, source=stage, compare=stage, baseline=baseline)],
        perfsignature=entries,
    )
    return Monspec(name, {service: entity}, tuple(f"{name}: {w}" for w in warnings), total_score=score)
