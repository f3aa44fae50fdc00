"""The monspec rules: exactly what a user is told for each kind of broken file, and the
shorthands and limits of the format."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_perfsig.errors import MonspecError
from pytest_perfsig.monspec import MAX_MONSPEC_BYTES, JudgeConfig, load_monspec, parse_monspec

BASE: dict[str, Any] = {
    "Svc": {
        "environments": {"Staging": {}, "Production": {}},
        "comparisons": [{"name": "C", "source": "Staging", "compare": "Production"}],
        "perfsignature": [{"timeseries": "service.responsetime"}],
    }
}


def problems(text: str, name: str = "m.json") -> list[str]:
    with pytest.raises(MonspecError) as info:
        parse_monspec(text, name)
    assert info.value.path == name
    return info.value.problems


def broken(path: str, value: Any) -> str:
    """BASE with the value at a dotted path (``Svc.comparisons.0.judge``) replaced."""
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return json.dumps(doc)


# ---------------------------------------------------------------------------- reading


def test_a_file_of_exactly_the_size_limit_loads(tmp_path: Path) -> None:
    text = json.dumps(BASE)
    path = tmp_path / "big.json"
    path.write_text(text + " " * (MAX_MONSPEC_BYTES - len(text)), encoding="utf-8")
    assert path.stat().st_size == MAX_MONSPEC_BYTES
    assert list(load_monspec(path).entities) == ["Svc"]


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(" " * (MAX_MONSPEC_BYTES + 1), encoding="utf-8")
    with pytest.raises(MonspecError) as info:
        load_monspec(path)
    assert info.value.path == str(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].endswith(
        f"larger than {MAX_MONSPEC_BYTES} bytes, too large to be a monspec"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MonspecError) as info:
        load_monspec(tmp_path / "nope.json")
    assert (info.value.path, info.value.problems) == (str(tmp_path / "nope.json"), ["file not found"])


def test_utf8_text_loads(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    doc["Svc"]["owner"] = "Zoë Ærø — ops"
    path = tmp_path / "m.json"
    path.write_bytes(json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    assert load_monspec(path).entities["Svc"].owner == "Zoë Ærø — ops"


# ---------------------------------------------------------------------------- syntax


@pytest.mark.parametrize("text", ["{}", '{"_comment": "only a comment"}'])
def test_no_entity(text: str) -> None:
    assert problems(text) == ['no entity defined (expected e.g. {"MyService": {...}})']


@pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '{"a": 1, "a": 2,}'])
def test_duplicate_keys_in_json_and_json5(text: str) -> None:
    assert problems(text) == ["duplicate key 'a'"]


def test_nesting_too_deep_in_plain_json() -> None:
    assert problems("[" * 5000) == ["nested too deeply to be a monspec"]


def test_unexpected_newline_is_named() -> None:
    assert problems('{"a": "x\n"}') == ["line 1, column 9: syntax error: unexpected '\\n'"]


def test_unexpected_character_and_end_of_input() -> None:
    assert problems('{"a": [1,\n2,,]}') == ["line 2, column 3: syntax error: unexpected ','"]
    assert problems('{"a": ') == ["line 1, column 7: syntax error: unexpected end of input"]


def test_empty_text() -> None:
    assert problems("") == ["syntax error: Empty strings are not legal JSON5"]


@pytest.mark.parametrize(
    ("text", "kind"),
    [("[1]", "a list"), ("true", "a boolean"), ("null", "null"), ('"s"', "a string"), ("3", "a number")],
)
def test_top_level_must_be_an_object(text: str, kind: str) -> None:
    assert problems(text) == [f"top level must be an object of entities, got {kind}"]


# ---------------------------------------------------------------------------- fields


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("Svc.environments", [], ["Svc.environments: Input should be a valid dictionary, got a list"]),
        ("Svc.environments", True, ["Svc.environments: Input should be a valid dictionary, got a boolean"]),
        ("Svc.environments", None, ["Svc.environments: Input should be a valid dictionary, got null"]),
        ("Svc.name", True, ["Svc.name: Input should be a valid string, got a boolean"]),
        (
            "Svc.comparisons.0.judge",
            {"type": "bogus"},
            [
                "Svc.comparisons[0].judge.type: Input should be 'scalefactor', 'mannwhitney', 'sequential' or 'keptn'"
            ],
        ),
        (
            "Svc.comparisons.0.judge",
            True,
            [
                "Svc.comparisons[0].judge: Input should be a valid dictionary or instance of JudgeConfig, got a boolean"
            ],
        ),
        (
            "Svc.comparisons.0.baseline",
            {"runs": 3, "passed_only": "yes"},
            [
                "Svc.comparisons[0].baseline: Input should be 'latest' or 'latest_passed'",
                "Svc.comparisons[0].baseline.passed_only: Input should be a valid boolean, got a string",
            ],
        ),
        (
            "Svc.perfsignature.0.judge",
            "bogus",
            [
                "Svc.perfsignature[0].judge.type: Input should be 'scalefactor', 'mannwhitney', 'sequential' or 'keptn'"
            ],
        ),
    ],
)
def test_field_problems_name_the_path_and_the_input(path: str, value: Any, expected: list[str]) -> None:
    assert problems(broken(path, value)) == expected


def test_entity_gating_only_on_service_methods_or_log_rules_is_valid() -> None:
    methods = copy.deepcopy(BASE)
    methods["Svc"]["perfsignature"] = []
    methods["Svc"]["servicemethods"] = [
        {"name": "/api", "perfsignature": [{"timeseries": "servicemethod.responsetime"}]}
    ]
    assert parse_monspec(json.dumps(methods)).entities["Svc"].servicemethods[0].name == "/api"
    logs = copy.deepcopy(BASE)
    logs["Svc"]["perfsignature"] = []
    logs["Svc"]["logrules"] = [{"pattern": "boom"}]
    assert parse_monspec(json.dumps(logs)).entities["Svc"].logrules[0].pattern == "boom"


def test_entity_with_nothing_to_gate_on() -> None:
    assert problems(broken("Svc.perfsignature", [])) == [
        "Svc.perfsignature: empty (no metric or log rule to gate on)"
    ]


def test_judge_shorthand_names_the_type() -> None:
    doc = copy.deepcopy(BASE)
    doc["Svc"]["comparisons"][0]["judge"] = "mannwhitney"
    doc["Svc"]["perfsignature"][0]["judge"] = "scalefactor"
    entity = parse_monspec(json.dumps(doc)).entities["Svc"]
    assert entity.comparisons[0].judge == JudgeConfig(type="mannwhitney")
    assert entity.perfsignature[0].judge == JudgeConfig(type="scalefactor")
