"""Keptn SLO files (spec 1.0) read into the monspec models: what maps to what, placeholders
filled from the stage, the service, the filter and the labels, and every refusal a usage error
naming the file, the line and the path inside it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_perfsig.errors import MonspecError
from pytest_perfsig.monspec import KeptnBaseline, KeptnJudge, KeptnObjective, Monspec, is_slo_file, load_slo

# Keptn's own example objective (keptn/spec, service_level_objective.md), plus an error rate as a
# key SLI and an informational throughput.
SLO = """\
spec_version: '1.0'
filter:
  project: "sockshop"
  deployment: "direct"
comparison:
  compare_with: "several_results"
  number_of_comparison_results: 3
  include_result_with_score: "pass"
  aggregate_function: avg
objectives:
  - sli: response_time_p95
    displayName: "Response time P95"
    pass:
      - criteria:
          - "<=+10%"
          - "<600"
    warning:
      - criteria:
          - "<=800"
    weight: 2
  - sli: error_rate
    pass:
      - criteria:
          - "<=1"
      - criteria:
          - "<=+0.5"
          - ">= -5%"
    key_sli: true
  - sli: throughput
total_score:
  pass: "90%"
  warning: "75%"
"""

SLI = """\
spec_version: "1.0"
indicators:
  response_time_p95: histogram_quantile(0.95, sum by(le) (rate(http_request_duration_seconds_bucket{job="$SERVICE-$PROJECT-$STAGE",deployment="$DEPLOYMENT"}[$DURATION_SECONDS])))
  error_rate: sum(rate(http_requests_total{stage="$STAGE",status=~"5..",build="$LABEL.build"}[$DURATION_SECONDS])) / sum(rate(http_requests_total{stage="$stage"}[$DURATION_SECONDS]))
  throughput: sum(rate(http_requests_total{stage="$STAGE"}[$DURATION_SECONDS]))
  unused: up{$NOT_CHECKED}
"""


def write(folder: Path, slo: str = SLO, sli: str | None = SLI, sli_name: str = "sli.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slo.yaml").write_text(textwrap.dedent(slo))
    if sli is not None:
        (folder / sli_name).parent.mkdir(parents=True, exist_ok=True)
        (folder / sli_name).write_text(textwrap.dedent(sli))
    return folder / "slo.yaml"


def load(path: Path, **kwargs: object) -> Monspec:
    options: dict[str, object] = {"stage": "Staging", "labels": {"build": "42"}, **kwargs}
    return load_slo(path, **options)  # type: ignore[arg-type]


def problems(path: Path, **kwargs: object) -> str:
    with pytest.raises(MonspecError) as info:
        load(path, **kwargs)
    return str(info.value)


def objectives(monspec: Monspec) -> list[KeptnObjective]:
    (entity,) = monspec.entities.values()
    found = [entry for _, entry in entity.entries()]
    assert all(isinstance(entry, KeptnObjective) for entry in found)
    return found  # type: ignore[return-value]


def test_objectives_criteria_comparison_and_score_map_to_the_models(tmp_path: Path) -> None:
    monspec = load(write(tmp_path / "carts"))
    assert monspec.total_score is not None
    assert (monspec.total_score.pass_, monspec.total_score.warning) == (90.0, 75.0)
    ((service, entity),) = monspec.entities.items()
    assert service == "carts"  # the SLO file's folder, as Keptn keeps a service's files
    assert list(entity.environments) == ["Staging"]
    (comparison,) = entity.comparisons
    assert (comparison.name, comparison.source, comparison.compare) == ("keptn", "Staging", "Staging")
    assert comparison.baseline == KeptnBaseline(runs=3, passed_only=True, function="avg")

    rt, errors, throughput = objectives(monspec)
    assert (rt.sli, rt.display_name, rt.metric_key, rt.aggregate) == (
        "response_time_p95",
        "Response time P95",
        "response_time_p95",
        "value",
    )
    judge = rt.judge
    assert isinstance(judge, KeptnJudge) and (judge.weight, judge.key_sli) == (2, False)
    assert [[c.text for c in block] for block in judge.pass_] == [["<=+10%", "<600"]]
    relative, fixed = judge.pass_[0]
    assert (relative.op, relative.value, relative.relative, relative.increase) == (
        "<=",
        10.0,
        "percent",
        True,
    )
    assert (fixed.op, fixed.value, fixed.relative) == ("<", 600.0, None)
    assert [[c.text for c in block] for block in judge.warning] == [["<=800"]]

    judge = errors.judge
    assert isinstance(judge, KeptnJudge) and judge.key_sli and judge.weight == 1
    assert len(judge.pass_) == 2  # two blocks: ORed
    plus, minus = judge.pass_[1]
    assert (plus.relative, plus.increase, plus.value) == ("absolute", True, 0.5)
    assert (minus.text, minus.op, minus.relative, minus.increase) == (">= -5%", ">=", "percent", False)

    assert isinstance(throughput.judge, KeptnJudge) and throughput.judge.pass_ == ()  # informational
    assert monspec.warnings == ()


def test_placeholders_are_filled_but_the_duration(tmp_path: Path) -> None:
    rt, errors, throughput = objectives(load(write(tmp_path / "carts")))
    assert rt.expression == (
        "histogram_quantile(0.95, sum by(le) (rate(http_request_duration_seconds_bucket"
        '{job="carts-sockshop-Staging",deployment="direct"}[$DURATION_SECONDS])))'
    )
    assert errors.expression == (
        'sum(rate(http_requests_total{stage="Staging",status=~"5..",build="42"}[$DURATION_SECONDS])) '
        '/ sum(rate(http_requests_total{stage="Staging"}[$DURATION_SECONDS]))'
    )
    assert throughput.expression == 'sum(rate(http_requests_total{stage="Staging"}[$DURATION_SECONDS]))'


def test_service_from_the_option_or_the_filter_and_filter_keys_as_placeholders(tmp_path: Path) -> None:
    slo = SLO.replace(
        '  project: "sockshop"\n', '  project: "sockshop"\n  service: "cart-svc"\n  svc_id: "a14b"\n'
    )
    sli = SLI.replace('job="$SERVICE-$PROJECT-$STAGE"', 'job="$SERVICE",svc="$svc_id",id="$SVC_ID"')
    path = write(tmp_path / "carts", slo, sli)
    rt = objectives(load(path))[0]
    assert rt.expression is not None and 'job="cart-svc",svc="a14b",id="a14b"' in rt.expression
    assert list(load(path, service="cart-svc").entities) == ["cart-svc"]
    assert "line 4: filter.service: 'cart-svc' contradicts --perfsig-keptn-service 'orders'" in problems(
        path, service="orders"
    )
    stage = write(tmp_path / "x", SLO.replace("filter:\n", "filter:\n  stage: Production\n"))
    assert "line 3: filter.stage: 'Production' contradicts --stage 'Staging'" in problems(stage)


def test_defaults_are_keptns(tmp_path: Path) -> None:
    minimal = """\
    spec_version: "0.1.1"
    objectives:
      - sli: error_rate
        pass:
          - criteria: ["<=1"]
    total_score:
      pass: 90
    """
    monspec = load(write(tmp_path / "svc", minimal), service="svc")
    (entity,) = monspec.entities.values()
    # No comparison block: the previous result, whatever its score, averaged.
    assert entity.comparisons[0].baseline == KeptnBaseline(runs=1, passed_only=False, function="avg")
    assert monspec.total_score is not None and monspec.total_score.warning is None
    several = write(tmp_path / "b", SLO.replace("  number_of_comparison_results: 3\n", ""))
    baseline = next(iter(load(several).entities.values())).comparisons[0].baseline
    assert isinstance(baseline, KeptnBaseline) and baseline.runs == 3  # lighthouse's default
    single = write(tmp_path / "c", SLO.replace('"several_results"', '"single_result"'))
    monspec = load(single)
    baseline = next(iter(monspec.entities.values())).comparisons[0].baseline
    assert isinstance(baseline, KeptnBaseline) and baseline.runs == 1
    assert monspec.warnings == (
        f"{single}: line 7: comparison.number_of_comparison_results is ignored with compare_with: "
        "single_result (as in Keptn)",
    )


def test_the_sli_file_is_found_beside_or_in_prometheus_or_named(tmp_path: Path) -> None:
    keptn_layout = write(tmp_path / "a", sli_name="prometheus/sli.yaml")
    assert len(objectives(load(keptn_layout))) == 3
    elsewhere = write(tmp_path / "b", sli=None)
    (tmp_path / "queries.yaml").write_text(SLI)
    assert len(objectives(load(elsewhere, sli_path=tmp_path / "queries.yaml"))) == 3
    assert problems(elsewhere) == (
        f"{elsewhere}: no SLI file: looked for sli.yaml and prometheus/sli.yaml beside it; "
        "name one with --perfsig-sli PATH"
    )
    assert problems(elsewhere, sli_path=tmp_path / "none.yaml") == f"{tmp_path / 'none.yaml'}: file not found"


def test_is_slo_file() -> None:
    assert is_slo_file("slo.yaml") and is_slo_file("a/SLO.YML")
    assert not is_slo_file("monspec.json") and not is_slo_file("monspec.json5")


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("  aggregate_function: avg\n", "  aggregate_function: avg\n  compare_to: Production\n"),
            "line 10: comparison.compare_to: unknown key (known: compare_with, include_result_with_score, "
            "number_of_comparison_results, aggregate_function)",
        ),
        (
            ("    weight: 2\n", "    weight: 2\n    wieght: 3\n"),
            "line 21: objectives[0].wieght: unknown key (known: sli, displayName, pass, warning, weight, key_sli)",
        ),
        (
            ("total_score:\n", "sli_provider: dynatrace\ntotal_score:\n"),
            "line 30: sli_provider: unknown key (known: spec_version, filter, comparison, objectives, total_score)",
        ),
        (
            ('          - "<600"\n', '          - "< 600ms"\n'),
            "line 16: objectives[0].pass[0].criteria[1]: malformed criterion '< 600ms': an operator",
        ),
        (
            ('          - "<=800"\n', "          - 800\n"),
            "line 19: objectives[0].warning[0].criteria[0]: a criterion is text such as '<600' or '<=+10%', "
            "got a number",
        ),
        (
            ('          - "<=1"\n', ""),
            "line 23: objectives[1].pass[0].criteria: needs a list of at least one criterion",
        ),
        (
            ('"pass"\n  aggregate_function', '"pass_or_warn"\n  aggregate_function'),
            "line 8: comparison.include_result_with_score: pass_or_warn cannot be mapped",
        ),
        (
            ("aggregate_function: avg", "aggregate_function: p99"),
            "line 9: comparison.aggregate_function: must be one of avg, p50, p90, p95, got 'p99'",
        ),
        (
            ("number_of_comparison_results: 3", "number_of_comparison_results: 500"),
            "line 7: comparison.number_of_comparison_results: must be a whole number, 1 to 100",
        ),
        (
            ("    weight: 2\n", "    weight: 0\n"),
            "line 20: objectives[0].weight: must be a whole number >= 1, got 0",
        ),
        (
            ("    key_sli: true\n", '    key_sli: "yes"\n'),
            "line 28: objectives[1].key_sli: must be true or false, got 'yes'",
        ),
        (
            ("  - sli: throughput\n", "  - sli: throughput\n    key_sli: true\n"),
            "line 30: objectives[2].key_sli: has no effect without pass criteria",
        ),
        (
            ('  pass: "90%"\n', '  pass: "ninety"\n'),
            "line 31: total_score.pass: must be a percentage from 0 to 100 such as '90%', got 'ninety'",
        ),
        (
            ("spec_version: '1.0'", "spec_version: '2.0'"),
            "line 1: spec_version: '2.0' is not a Keptn spec version perfsig reads ('1.0')",
        ),
        (
            ("  - sli: throughput\n", "  - sli: throughput\n  - sli: response_time_p95\n"),
            None,
        ),  # the same SLI twice is fine (two checks)
        (
            ("  - sli: throughput\n", "  - sli: latency_p99\n"),
            "line 29: objectives[2].sli: SLI 'latency_p99' has no query in",
        ),
        (("    displayName", "    sli: again\n    displayName"), "line 12: duplicate key 'sli'"),
        (("objectives:\n", "objectives: [\n"), "YAML syntax error"),
    ],
)
def test_what_cannot_be_mapped_is_refused_with_its_line(
    tmp_path: Path, change: tuple[str, str], expected: str | None
) -> None:
    old, new = change
    assert SLO.count(old) == 1, old
    path = write(tmp_path / "carts", SLO.replace(old, new))
    if expected is None:
        assert len(objectives(load(path))) == 4
        return
    text = problems(path)
    assert text.startswith(f"{path}: ") and expected in text, text


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    slo = SLO.replace('          - "<600"\n', '          - "600"\n').replace(
        "    weight: 2\n", "    weight: -1\n"
    )
    text = problems(write(tmp_path / "carts", slo))
    assert "line 16: objectives[0].pass[0].criteria[1]: malformed criterion '600'" in text
    assert "line 20: objectives[0].weight: must be a whole number >= 1, got -1" in text


def test_a_missing_total_score_or_objectives_is_refused(tmp_path: Path) -> None:
    text = problems(write(tmp_path / "a", SLO[: SLO.index("total_score:")]))
    assert "total_score.pass: required: the score a pass needs, such as '90%'" in text
    text = problems(write(tmp_path / "b", "spec_version: '1.0'\nobjectives: []\ntotal_score: {pass: 90%}\n"))
    assert "line 2: objectives: needs a list of at least one objective" in text


@pytest.mark.parametrize(
    ("sli", "expected"),
    [
        (
            '  error_rate: sum(rate(x{stage="$STAGE",pod="$POD"}[$DURATION_SECONDS]))\n',
            "line 4: indicators.error_rate: unknown placeholder $POD (known: $PROJECT, $STAGE, $SERVICE, "
            "$DEPLOYMENT, $DURATION_SECONDS, $LABEL.<name>, $<filter key>)",
        ),
        (
            '  error_rate: sum(rate(x{build="$LABEL.commit"}[5m]))\n',
            "line 4: indicators.error_rate: $LABEL.commit has no value: pass --perfsig-keptn-label commit=VALUE",
        ),
        (
            '  error_rate: "builtin:service.errors.total.count:merge(0):avg?scope=tag(keptn_stage:$STAGE)"\n',
            "line 4: indicators.error_rate: not PromQL (a Dynatrace or Datadog query?)",
        ),
        (
            "  error_rate: MV2;Percent;builtin:service.errors.total.rate\n",
            "line 4: indicators.error_rate: not PromQL",
        ),
        ("  error_rate: 42\n", "line 4: indicators.error_rate: must be text, got a number"),
    ],
)
def test_sli_problems_name_the_sli_file_and_line(tmp_path: Path, sli: str, expected: str) -> None:
    lines = SLI.splitlines(keepends=True)
    path = write(tmp_path / "carts", sli="".join([*lines[:3], sli, lines[4]]))
    text = problems(path)
    assert text.startswith(f"{tmp_path / 'carts' / 'sli.yaml'}: ") and expected in text, text


def test_an_unknown_key_of_the_sli_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "carts", sli=SLI + "provider: prometheus\n")
    assert problems(path) == (
        f"{tmp_path / 'carts' / 'sli.yaml'}: line 7: provider: unknown key (known: spec_version, indicators)"
    )


def test_project_and_deployment_need_a_value_when_used(tmp_path: Path) -> None:
    slo = SLO.replace('  project: "sockshop"\n  deployment: "direct"\n', "  mz_id: '4711'\n")
    text = problems(write(tmp_path / "carts", slo))
    assert (
        "line 3: indicators.response_time_p95: $PROJECT has no value: set filter.project in slo.yaml" in text
    )
    assert "$DEPLOYMENT has no value: set filter.deployment in slo.yaml" in text


def test_another_providers_sli_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "carts", sli_name="dynatrace/sli.yaml")
    sli = tmp_path / "carts" / "dynatrace" / "sli.yaml"
    assert problems(path, sli_path=sli) == (
        f"{sli}: an SLI file of the dynatrace provider: perfsig reads Prometheus SLIs only"
    )


def test_values_that_would_break_promql_are_refused(tmp_path: Path) -> None:
    slo = SLO.replace('  deployment: "direct"\n', "  deployment: 'a\"b'\n")
    assert (
        "line 4: filter.deployment: quotes, backslashes and line breaks would break the PromQL"
        in problems(write(tmp_path / "carts", slo))
    )


def test_aliases_cannot_blow_a_small_file_up(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
    path = write(tmp_path / "carts", bomb)
    assert problems(path) == f"{path}: more than 100000 values (aliases expanding?): too large"
