"""The pytest face's items: the monspec as a collector, one item per check, and the JUnit
properties every verdict carries."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from .gate import AnyCheck, Gate
from .verdict import Verdict

GATE_KEY = pytest.StashKey[Gate]()


def gate_of(config: pytest.Config) -> Gate | None:
    return config.stash.get(GATE_KEY, None)


class MonspecFile(pytest.File):
    """The monspec as a collector: one child item per check."""

    def collect(self) -> Iterable[pytest.Item]:
        gate = gate_of(self.config)
        assert gate is not None
        every: list[AnyCheck] = [*gate.checks, *gate.log_checks]
        for check in every:
            yield PerfsigItem.from_parent(self, name=check.check_id, check=check)


class ViolationError(Exception):
    """A judged entry outside its limit."""


class PerfsigItem(pytest.Item):
    def __init__(self, *, check: AnyCheck, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.add_marker("perfsig")

    def setup(self) -> None:
        gate = gate_of(self.config)
        assert gate is not None
        verdict = gate.verdict(self.check)
        _record(self, _properties(self.check, verdict))
        if verdict.status == "skipped":
            # Report the skip at the monspec item, not at this line of the plugin.
            raise pytest.skip.Exception(verdict.message, _use_item_location=True)
        if verdict.status == "error":
            # An error in setup: pytest reports E (could not judge), not F (judged and failed).
            pytest.fail(verdict.message, pytrace=False)

    def runtest(self) -> None:
        gate = gate_of(self.config)
        assert gate is not None
        verdict = gate.verdict(self.check)
        if verdict.status != "pass":
            raise ViolationError(verdict.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, ViolationError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"perfsig {self.check.check_id}"


def _record(item: PerfsigItem, properties: list[tuple[str, object]]) -> None:
    """The verdict's numbers as JUnit properties, where the JUnit family in use allows them:
    ``xunit1`` / ``legacy`` on the testcase; ``xunit2`` (pytest's default), whose schema has no
    testcase properties, on the test suite, named ``CHECK::key``."""
    from _pytest.junitxml import xml_key  # what pytest's own record_testsuite_property uses

    xml = item.config.stash.get(xml_key, None)
    if xml is not None and item.config.getini("junit_family") == "xunit2":
        for name, value in properties:
            xml.add_global_property(f"{item.check.check_id}::{name}", value)
        return
    item.user_properties.extend(properties)


def _properties(check: AnyCheck, verdict: Verdict) -> list[tuple[str, object]]:
    props: list[tuple[str, object]] = [
        ("status", verdict.status),
        ("judge", verdict.judge),
        ("comparison", check.comparison_name),
        ("metric", verdict.metric),
        ("aggregate", verdict.aggregate),
        ("unit", verdict.unit),
        ("rule", verdict.rule),
        ("source_env", verdict.source_env),
        ("compare_env", verdict.compare_env),
    ]
    optional = [
        ("method", verdict.method),
        ("source_value", verdict.source_value),
        ("compare_value", verdict.compare_value),
        ("limit", verdict.limit),
        ("source_samples", verdict.source_samples),
        ("compare_samples", verdict.compare_samples),
        ("source_window", verdict.source_window),
        ("compare_window", verdict.compare_text),
    ]
    props += [(k, v if isinstance(v, int | float | str) else str(v)) for k, v in optional if v is not None]
    props += list((verdict.details or {}).items())
    props.append(("message", verdict.message))
    return props
