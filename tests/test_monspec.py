"""The monspec loader: the original seed loads unchanged, JSON5 is accepted, and every bad
file raises MonspecError naming the file, the path inside it and (for syntax) the line."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_perfsig.errors import MonspecError
from pytest_perfsig.monspec import Monspec, load_monspec, parse_monspec

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "monspecs"
SEED = DATA / "seed-monspec.json"
SEED_JSON5 = DATA / "seed-commented.json5"
SHARED_SEED = Path(__file__).resolve().parents[2] / "shared/fixtures/seed-monspec.json"
DT = "com.dynatrace.builtin:"


# ---------------------------------------------------------------------------- the seed


@pytest.fixture(scope="module")
def seed() -> Monspec:
    return load_monspec(SEED)


def test_seed_copy_is_byte_identical_to_shared_fixture() -> None:
    if not SHARED_SEED.is_file():
        pytest.skip(f"{SHARED_SEED} absent: only the copy in tests/data is checked")
    assert SEED.read_bytes() == SHARED_SEED.read_bytes()


def test_shared_seed_loads_like_the_copy(seed: Monspec) -> None:
    if not SHARED_SEED.is_file():
        pytest.skip(f"{SHARED_SEED} absent")
    assert load_monspec(SHARED_SEED).entities == seed.entities


def test_seed_entity(seed: Monspec) -> None:
    assert seed.path == str(SEED)
    assert list(seed.entities) == ["SampleJSonService"]
    entity = seed.entities["SampleJSonService"]
    assert entity.etype == "SERVICE"
    assert entity.name == "SampleNodeJsService"
    assert entity.owner == "Dev Team A"
    assert seed.environments() == {"Staging", "Production"}
    staging_tag = entity.environments["Staging"].tags[0]
    assert (staging_tag.context, staging_tag.key, staging_tag.value) == (
        "CONTEXTLESS",
        "DeploymentGroup",
        "Staging",
    )
    assert entity.environments["Production"].tags[0].value == "Production"
    assert entity.environments["Staging"].url is None


def test_seed_comparisons(seed: Monspec) -> None:
    entity = seed.entities["SampleJSonService"]
    got = [
        (c.name, c.source, c.compare, c.scalefactorperc, c.shiftsourcetimeframe, c.shiftcomparetimeframe)
        for c in entity.comparisons
    ]
    assert got == [
        (
            "StagingToProduction",
            "Staging",
            "Production",
            {"default": 30.0, f"{DT}service.requestspermin": 90.0},
            0,
            0,
        ),
        (
            "StagingToProductionYesterday",
            "Staging",
            "Production",
            {"default": 15.0, f"{DT}service.requestspermin": 90.0},
            60,
            86400,
        ),
        ("StagingToStagingLastHour", "Staging", "Staging", {"default": 10.0}, 60, 3600),
        (
            "ProductionToProductionLastHour",
            "Production",
            "Production",
            {"default": 10.0, f"{DT}service.requestspermin": 30.0},
            60,
            3600,
        ),
    ]
    assert all(c.abstolerance == {} for c in entity.comparisons)
    assert entity.comparison("StagingToStagingLastHour") is entity.comparisons[2]
    assert entity.comparison("NoSuchComparison") is None


def test_seed_scale_factors_alias_dynatrace_ids(seed: Monspec) -> None:
    entity = seed.entities["SampleJSonService"]
    s2p = entity.comparison("StagingToProduction")
    assert s2p is not None
    # the file says com.dynatrace.builtin:service.requestspermin; lookups use the short id
    assert s2p.scale_factor("service.requestspermin") == 90
    assert s2p.scale_factor("service.responsetime") == 30
    assert s2p.scale_factor("servicemethod.failurerate") == 30
    p2p = entity.comparison("ProductionToProductionLastHour")
    assert p2p is not None
    assert p2p.scale_factor("service.requestspermin") == 30
    s2s = entity.comparison("StagingToStagingLastHour")
    assert s2s is not None
    assert s2s.scale_factor("service.requestspermin") == 10
    assert s2p.abs_tolerance("service.failurerate") is None


def test_seed_signature_entries(seed: Monspec) -> None:
    entity = seed.entities["SampleJSonService"]
    entries = list(entity.entries())
    assert len(entries) == 9
    assert len(entity.perfsignature) == 6
    assert [e.smartscape for e in entity.perfsignature if e.smartscape] == [
        "toRelationships:calls",
        "fromRelationships:runsOn",
    ]
    assert [m for m, _ in entries] == [None] * 6 + ["/api/invoke"] * 3
    assert [(e.metric_key, e.aggregate, e.direction) for _, e in entries] == [
        ("service.responsetime", "avg", "upper"),
        ("service.responsetime", "p90", "upper"),
        ("service.failurerate", "avg", "upper"),
        ("service.requestspermin", "count", "lower"),
        ("smartscape.toRelationships:calls", "count", "lower"),
        ("smartscape.fromRelationships:runsOn", "count", "lower"),
        ("servicemethod.responsetime", "avg", "upper"),
        ("servicemethod.responsetime", "p90", "upper"),
        ("servicemethod.failurerate", "avg", "upper"),
    ]
    # the Dynatrace id is kept as written; metric_key is the short alias
    assert entries[0][1].timeseries == f"{DT}service.responsetime"
    assert entries[0][1].metric is not None and entries[0][1].metric.short == "service.responsetime"
    assert entries[4][1].metric is None
    assert entries[1][1].aggregate_spec.percentile == 90.0


def test_seed_static_limits(seed: Monspec) -> None:
    entries = [e for _, e in seed.entities["SampleJSonService"].entries()]
    first = entries[0]
    assert (first.upperlimit, first.lowerlimit) == (100.0, 50.0)
    assert first.static_limit == 100.0  # validate: upper → _upperlimit; _lowerlimit ignored
    assert [e.static_limit for e in entries[1:]] == [None] * 8


def test_comment_keys_are_ignored_at_every_level() -> None:
    doc = {
        "_comment": "top level",
        "Svc": {
            "_comment_etype": "x",
            "_comment": 5,
            "environments": {"A": {"_comment": "x", "tags": [{"key": "k", "_comment": []}]}},
            "comparisons": [
                {
                    "name": "c",
                    "source": "A",
                    "compare": "A",
                    "_comment_name": {"nested": 1},
                    "scalefactorperc": {"default": 5},
                }
            ],
            "perfsignature": [{"timeseries": "service.responsetime", "_comment_aggregate": "x"}],
            "servicemethods": [
                {
                    "name": "/x",
                    "_comment": "x",
                    "perfsignature": [{"timeseries": "servicemethod.responsetime"}],
                }
            ],
        },
    }
    monspec = parse_monspec(json.dumps(doc), "c.json")
    assert list(monspec.entities) == ["Svc"]
    assert monspec.environments() == {"A"}
    assert monspec.entities["Svc"].comparisons[0].scalefactorperc == {"default": 5.0}


@pytest.mark.parametrize("where", ["environments", "scalefactorperc", "abstolerance"])
def test_comment_keys_are_ignored_in_maps_too(where: str) -> None:
    doc = _base()
    entity = doc[S]
    if where == "environments":
        entity["environments"]["_comment_envs"] = "Staging and Production are identified by tags"
    else:
        entity["comparisons"][0].setdefault(where, {})["_comment"] = "percent the source may be worse"
    monspec = parse_monspec(json.dumps(doc), "c.json")
    assert monspec.environments() == {"Staging", "Production"}


def test_seed_written_as_json5_loads_equal(seed: Monspec) -> None:
    text = SEED_JSON5.read_text(encoding="utf-8")
    assert "//" in text and ",\n            }" in text  # really commented, really trailing commas
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    commented = load_monspec(SEED_JSON5)
    assert commented.path == str(SEED_JSON5)
    assert commented.entities == seed.entities


def test_repo_monspec_loads() -> None:
    monspec = load_monspec(REPO / "monspec.json")
    entity = monspec.entities["SampleJSonService"]
    assert entity.environments["Staging"].url == "http://127.0.0.1:8081"
    assert entity.environments["Production"].url == "http://127.0.0.1:8082"
    assert [c.name for c in entity.comparisons] == ["StagingToProduction", "ProductionToPreviousRun"]
    assert entity.comparisons[1].baseline == "latest_passed"
    s2p = entity.comparisons[0]
    assert s2p.abstolerance == {"service.failurerate": 0.5, "servicemethod.failurerate": 0.5}
    assert s2p.abs_tolerance("servicemethod.failurerate") == 0.5
    assert s2p.abs_tolerance("service.responsetime") is None
    assert len(list(entity.entries())) == 8
    assert entity.perfsignature[0].static_limit == 100.0


def test_url_trailing_slash_is_dropped() -> None:
    doc = _base()
    doc["SampleJSonService"]["environments"]["Staging"]["url"] = "https://staging.example:8443/"
    monspec = parse_monspec(json.dumps(doc))
    assert monspec.entities["SampleJSonService"].environments["Staging"].url == "https://staging.example:8443"


def test_parse_monspec_default_name() -> None:
    with pytest.raises(MonspecError) as info:
        parse_monspec("[]")
    assert str(info.value) == "<monspec>: top level must be an object of entities, got a list"
    assert info.value.path == "<monspec>"
    assert info.value.problems == ["top level must be an object of entities, got a list"]


def test_every_problem_is_listed_one_per_line(tmp_path: Path) -> None:
    doc = _base()
    doc["SampleJSonService"]["comparisons"][0]["source"] = "Stage"
    doc["SampleJSonService"]["comparisons"][1]["compare"] = "Prod"
    path = tmp_path / "two.json"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    with pytest.raises(MonspecError) as info:
        load_monspec(path)
    assert info.value.problems == [
        "SampleJSonService.comparisons[0].source: unknown environment 'Stage' (defined: Production, Staging)",
        "SampleJSonService.comparisons[1].compare: unknown environment 'Prod' (defined: Production, Staging)",
    ]
    assert str(info.value) == f"{path}: \n  " + "\n  ".join(info.value.problems)


# ---------------------------------------------------------------------------- bad files


def _base() -> dict[str, Any]:
    """A small valid monspec; each bad case breaks one thing in a copy."""
    return {
        "SampleJSonService": {
            "etype": "SERVICE",
            "environments": {
                "Staging": {
                    "tags": [{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": "Staging"}]
                },
                "Production": {
                    "tags": [{"context": "CONTEXTLESS", "key": "DeploymentGroup", "value": "Production"}]
                },
            },
            "comparisons": [
                {
                    "name": "StagingToProduction",
                    "source": "Staging",
                    "compare": "Production",
                    "scalefactorperc": {"default": 30, f"{DT}service.requestspermin": 90},
                },
                {
                    "name": "StagingToProductionYesterday",
                    "source": "Staging",
                    "compare": "Production",
                    "scalefactorperc": {"default": 15},
                    "shiftcomparetimeframe": 86400,
                },
            ],
            "perfsignature": [
                {"timeseries": f"{DT}service.responsetime", "aggregate": "avg", "validate": "upper"},
                {"timeseries": f"{DT}service.failurerate", "aggregate": "avg"},
                {"timeseries": f"{DT}service.requestspermin", "aggregate": "count", "validate": "lower"},
            ],
            "servicemethods": [
                {
                    "name": "/api/invoke",
                    "perfsignature": [{"timeseries": f"{DT}servicemethod.responsetime", "aggregate": "p90"}],
                },
            ],
        }
    }


def _broken(change: Callable[[dict[str, Any]], object]) -> str:
    doc = copy.deepcopy(_base())
    change(doc["SampleJSonService"])
    return json.dumps(doc, indent=2)


def test_base_of_the_bad_cases_is_valid() -> None:
    monspec = parse_monspec(json.dumps(_base(), indent=2), "base.json")
    assert len(list(monspec.entities["SampleJSonService"].entries())) == 4


S = "SampleJSonService"

# (file name, content: str / bytes / None for "no such file", expected message fragments)
BAD: list[Any] = [
    # ---- syntax: the line is named
    pytest.param(
        "trailing_garbage.json",
        '{\n  "Svc": {}\n}\nxyz\n',
        ["line 4", "syntax error", "unexpected 'x'"],
        id="trailing-garbage",
    ),
    pytest.param(
        "unclosed.json",
        '{\n  "Svc": {\n    "etype": "SERVICE"\n',
        ["line 4", "syntax error", "unexpected end of input"],
        id="unclosed-brace",
    ),
    pytest.param(
        "missing_comma.json",
        '{\n  "Svc": {\n    "etype": "SERVICE"\n    "name": "x"\n  }\n}\n',
        ["line 4, column 5", "syntax error"],
        id="missing-comma",
    ),
    pytest.param(
        "double_comma.json5",
        '// json5\n{\n  "Svc": {\n    "etype": "SERVICE",,\n  }\n}\n',
        ["line 4", "syntax error"],
        id="double-comma",
    ),
    pytest.param("empty_file.json", "", ["syntax error"], id="empty-file"),
    # ---- duplicate keys, in JSON and in JSON5
    pytest.param(
        "dup.json",
        '{"Svc": {"name": "a", "name": "b", "environments": {}}}',
        ["duplicate key 'name'"],
        id="duplicate-key-json",
    ),
    pytest.param(
        "dup.json5",
        '// c\n{"Svc": {"environments": {"A": {}, "A": {}},}}',
        ["duplicate key 'A'"],
        id="duplicate-key-json5",
    ),
    # ---- top level
    pytest.param("list.json", "[]", ["top level must be an object of entities, got a list"], id="top-list"),
    pytest.param("empty.json", "{}", ["no entity defined"], id="empty-object"),
    pytest.param(
        "only_comments.json", '{"_comment": "nothing else"}', ["no entity defined"], id="only-comment-keys"
    ),
    pytest.param("entity_number.json", '{"Svc": 5}', ["Svc: ", "got a number"], id="entity-not-object"),
    # ---- wrong types
    pytest.param(
        "sf_string.json",
        _broken(lambda s: s["comparisons"][0]["scalefactorperc"].update(default="30")),
        [f"{S}.comparisons[0].scalefactorperc.default", "valid number", "got a string"],
        id="scale-factor-string",
    ),
    pytest.param(
        "shift_string.json",
        _broken(lambda s: s["comparisons"][1].update(shiftsourcetimeframe="60")),
        [f"{S}.comparisons[1].shiftsourcetimeframe", "valid integer", "got a string"],
        id="shift-string",
    ),
    pytest.param(
        "tag_key_number.json",
        _broken(lambda s: s["environments"]["Staging"]["tags"][0].update(key=5)),
        [f"{S}.environments.Staging.tags[0].key", "valid string", "got a number"],
        id="tag-key-number",
    ),
    pytest.param(
        "upperlimit_string.json",
        _broken(lambda s: s["perfsignature"][0].update(_upperlimit="100")),
        [f"{S}.perfsignature[0]._upperlimit", "valid number", "got a string"],
        id="upperlimit-string",
    ),
    pytest.param(
        "comparisons_object.json",
        _broken(lambda s: s.update(comparisons={})),
        [f"{S}.comparisons", "valid list", "got an object"],
        id="comparisons-not-list",
    ),
    pytest.param(
        "etype.json",
        _broken(lambda s: s.update(etype="MICROSERVICE")),
        [f"{S}.etype", "'SERVICE'", "'PROCESS_GROUP_INSTANCE'"],
        id="unknown-etype",
    ),
    # ---- aggregates and validate
    pytest.param(
        "aggregate.json",
        _broken(lambda s: s["perfsignature"][0].update(aggregate="p100")),
        [f"{S}.perfsignature[0].aggregate", "unknown aggregate 'p100'", "pXX"],
        id="unknown-aggregate",
    ),
    pytest.param(
        "aggregate_mean.json",
        _broken(lambda s: s["servicemethods"][0]["perfsignature"][0].update(aggregate="mean")),
        [f"{S}.servicemethods[0].perfsignature[0].aggregate", "unknown aggregate 'mean'"],
        id="unknown-aggregate-in-method",
    ),
    pytest.param(
        "failurerate_sum.json",
        _broken(lambda s: s["perfsignature"][1].update(aggregate="sum")),
        [f"{S}.perfsignature[1]", "aggregate 'sum' means nothing for service.failurerate"],
        id="aggregate-meaningless-failurerate-sum",
    ),
    pytest.param(
        "requests_avg.json",
        _broken(lambda s: s["perfsignature"].append({"timeseries": "service.requests", "aggregate": "avg"})),
        [f"{S}.perfsignature[3]", "aggregate 'avg' means nothing for service.requests"],
        id="aggregate-meaningless-requests-avg",
    ),
    pytest.param(
        "validate.json",
        _broken(lambda s: s["perfsignature"][0].update(validate="both")),
        [f"{S}.perfsignature[0].validate", "'upper' or 'lower'"],
        id="unknown-validate",
    ),
    # ---- references
    pytest.param(
        "source_env.json",
        _broken(lambda s: s["comparisons"][1].update(source="Stageing")),
        [f"{S}.comparisons[1].source", "unknown environment 'Stageing'", "defined: Production, Staging"],
        id="unknown-source-env",
    ),
    pytest.param(
        "compare_env.json",
        _broken(lambda s: s["comparisons"][0].update(compare="Prod")),
        [f"{S}.comparisons[0].compare", "unknown environment 'Prod'"],
        id="unknown-compare-env",
    ),
    pytest.param(
        "dup_comparison.json",
        _broken(lambda s: s["comparisons"][1].update(name="StagingToProduction")),
        [f"{S}.comparisons[1].name", "duplicate comparison name 'StagingToProduction'"],
        id="duplicate-comparison",
    ),
    pytest.param(
        "dup_method.json",
        _broken(lambda s: s["servicemethods"].append(copy.deepcopy(s["servicemethods"][0]))),
        [f"{S}.servicemethods[1].name", "duplicate service method '/api/invoke'"],
        id="duplicate-method",
    ),
    pytest.param(
        "sf_key.json",
        _broken(lambda s: s["comparisons"][1]["scalefactorperc"].update({"service.responsetim": 5})),
        [f"{S}.comparisons[1].scalefactorperc.service.responsetim", "names no metric of the perfsignature"],
        id="scale-factor-key-no-metric",
    ),
    pytest.param(
        "abs_key.json",
        _broken(lambda s: s["comparisons"][0].update(abstolerance={"servicemethod.failurerat": 1})),
        [f"{S}.comparisons[0].abstolerance.servicemethod.failurerat", "names no metric"],
        id="abstolerance-key-no-metric",
    ),
    # ---- ranges
    pytest.param(
        "shift_negative.json",
        _broken(lambda s: s["comparisons"][1].update(shiftcomparetimeframe=-60)),
        [f"{S}.comparisons[1].shiftcomparetimeframe", "greater than or equal to 0"],
        id="negative-shift",
    ),
    pytest.param(
        "sf_negative.json",
        _broken(lambda s: s["comparisons"][1].update(scalefactorperc={"default": -1})),
        [f"{S}.comparisons[1].scalefactorperc", "between 0 and 1000 percent, got -1"],
        id="scale-factor-negative",
    ),
    pytest.param(
        "sf_huge.json",
        _broken(lambda s: s["comparisons"][1]["scalefactorperc"].update(default=5000)),
        [f"{S}.comparisons[1].scalefactorperc", "'default' must be between 0 and 1000 percent, got 5000"],
        id="scale-factor-5000",
    ),
    pytest.param(
        "abs_negative.json",
        _broken(lambda s: s["comparisons"][0].update(abstolerance={"default": -0.5})),
        [f"{S}.comparisons[0].abstolerance", "'default' must not be negative, got -0.5"],
        id="comparison-abstolerance-negative",
    ),
    pytest.param(
        "entry_abs_negative.json",
        _broken(lambda s: s["perfsignature"][1].update(abstolerance=-1)),
        [f"{S}.perfsignature[1].abstolerance", "greater than or equal to 0"],
        id="entry-abstolerance-negative",
    ),
    # ---- shape of entries and sections
    pytest.param(
        "both.json",
        _broken(lambda s: s["perfsignature"][0].update(smartscape="toRelationships:calls")),
        [f"{S}.perfsignature[0]", "needs exactly one of 'timeseries' or 'smartscape'"],
        id="timeseries-and-smartscape",
    ),
    pytest.param(
        "neither.json",
        _broken(lambda s: s["perfsignature"][2].pop("timeseries")),
        [f"{S}.perfsignature[2]", "needs exactly one of 'timeseries' or 'smartscape'"],
        id="neither-timeseries-nor-smartscape",
    ),
    pytest.param(
        "misspelt.json",
        _broken(
            lambda s: s["comparisons"][0].update(scalefactorpct=s["comparisons"][0].pop("scalefactorperc"))
        ),
        [f"{S}.comparisons[0].scalefactorpct", "unknown field"],
        id="misspelt-field",
    ),
    pytest.param(
        "missing_source.json",
        _broken(lambda s: s["comparisons"][0].pop("source")),
        [f"{S}.comparisons[0].source", "required field missing"],
        id="missing-source",
    ),
    pytest.param(
        "no_envs.json",
        _broken(lambda s: s.update(environments={})),
        [f"{S}.environments", "at least 1 item"],
        id="empty-environments",
    ),
    pytest.param(
        "no_signature.json",
        _broken(lambda s: (s.update(perfsignature=[]), s.pop("servicemethods"))),
        [f"{S}.perfsignature", "empty (no metric or log rule to gate on)"],
        id="empty-perfsignature",
    ),
    pytest.param(
        "method_no_signature.json",
        _broken(lambda s: s["servicemethods"][0].update(perfsignature=[])),
        [f"{S}.servicemethods[0].perfsignature", "at least 1 item"],
        id="servicemethod-empty-perfsignature",
    ),
    pytest.param(
        "ftp.json",
        _broken(lambda s: s["environments"]["Production"].update(url="ftp://x")),
        [f"{S}.environments.Production.url", "must be an http:// or https:// URL, got 'ftp://x'"],
        id="bad-env-url",
    ),
    # ---- reading
    pytest.param("does_not_exist.json", None, ["file not found"], id="file-not-found"),
    pytest.param(
        "latin1.json",
        '{"Svc": {"name": "Dienst für Zahlungen"}}'.encode("latin-1"),
        ["cannot read", "utf-8", "0xfc"],
        id="not-utf8",
    ),
]


@pytest.mark.parametrize(("filename", "content", "fragments"), BAD)
def test_bad_monspec(
    tmp_path: Path, filename: str, content: str | bytes | None, fragments: list[str]
) -> None:
    path = tmp_path / filename
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(MonspecError) as info:
        load_monspec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert filename in message
    assert info.value.path == str(path)
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_enough_bad_cases() -> None:
    assert len(BAD) >= 20


def test_directory_is_not_a_monspec(tmp_path: Path) -> None:
    with pytest.raises(MonspecError) as info:
        load_monspec(tmp_path)
    assert (
        str(info.value)
        == f"{tmp_path}: not a regular file (a FIFO, device or directory): name a monspec file"
    )


# ---------------------------------------------------------------------------- known bugs


def test_deeply_nested_plain_json_raises_monspec_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(MonspecError) as info:
        load_monspec(path)
    assert "nested too deeply" in str(info.value)


def test_deeply_nested_json5_raises_monspec_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json5"
    path.write_text("// json5\n" + "[" * 100_000, encoding="utf-8")
    with pytest.raises(MonspecError) as info:
        load_monspec(path)
    assert str(info.value) == f"{path}: nested too deeply to be a monspec"


def test_nan_comparison_abstolerance_is_rejected() -> None:
    text = _broken(lambda s: s["comparisons"][0].update(abstolerance={"default": float("nan")}))
    assert "NaN" in text  # Python's json module (and JSON5) accept NaN
    with pytest.raises(MonspecError) as info:
        parse_monspec(text, "nan.json")
    assert f"{S}.comparisons[0].abstolerance" in str(info.value)


def test_nan_static_limit_is_rejected() -> None:
    text = _broken(lambda s: s["perfsignature"][0].update(_upperlimit=float("nan")))
    assert "NaN" in text
    with pytest.raises(MonspecError) as info:
        parse_monspec(text, "nan.json")
    assert f"{S}.perfsignature[0]._upperlimit" in str(info.value)


def test_aliased_scale_factor_keys_are_a_duplicate() -> None:
    text = _broken(
        lambda s: s["comparisons"][0]["scalefactorperc"].update({"service.requestspermin": 10})
    )  # the base already has com.dynatrace.builtin:...requestspermin: 90
    with pytest.raises(MonspecError) as info:
        parse_monspec(text, "alias.json")
    assert "service.requestspermin" in str(info.value)


def test_override_for_a_known_unused_metric_is_a_warning_not_an_error() -> None:
    doc = copy.deepcopy(_base())
    doc[S]["comparisons"][0]["scalefactorperc"]["service.requests"] = 90
    doc[S]["comparisons"][0]["abstolerance"] = {"servicemethod.requestspermin": 3}
    spec = parse_monspec(json.dumps(doc), "m.json")
    assert spec.warnings == (
        f"m.json: {S}.comparisons[0].scalefactorperc.service.requests: no perfsignature entry uses this metric; ignored",
        f"m.json: {S}.comparisons[0].abstolerance.servicemethod.requestspermin: no perfsignature entry uses this "
        "metric; ignored",
    )
    assert parse_monspec(json.dumps(_base()), "m.json").warnings == ()


def test_monspec_warning_reaches_the_pytest_run(pytester: pytest.Pytester) -> None:
    doc = copy.deepcopy(_base())
    doc[S]["comparisons"][0]["scalefactorperc"]["service.requests"] = 90
    pytester.makefile(".json", monspec=json.dumps(doc))
    result = pytester.runpytest_subprocess(
        "--monspec=monspec.json", "--stage=Staging", "--collect-only", "-q"
    )
    result.stdout.fnmatch_lines(
        ["*scalefactorperc.service.requests: no perfsignature entry uses this metric*"]
    )
    assert result.ret == pytest.ExitCode.OK
