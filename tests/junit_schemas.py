"""The JUnit XML schemas the gate's reports are validated against.

``xunit2`` (pytest's default family): the schema pytest validates its own xunit2 output
against (``junit-10.xsd`` from pytest's source distribution; ``make test`` fetches it and
passes its path in ``PERFSIG_JUNIT_XSD``). ``xunit1`` (``legacy``): that schema plus what
xunit1 adds to a testcase, a ``<properties>`` element and ``file`` / ``line`` attributes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _xunit2_text() -> str:
    path = Path(os.environ.get("PERFSIG_JUNIT_XSD", ROOT / ".venv" / "junit-10.xsd"))
    if not path.is_file():
        pytest.skip(f"no JUnit schema at {path}: `make test` fetches it from pytest's source distribution")
    return path.read_text()


def schema(family: str) -> Any:
    import xmlschema

    text = _xunit2_text()
    if family == "xunit1":
        testcase = text.index('<xs:element name="testcase">')
        choice = text.index('<xs:choice minOccurs="0" maxOccurs="unbounded">', testcase)
        text = text[:choice] + text[choice:].replace(
            '<xs:element ref="skipped"/>', '<xs:element ref="properties"/>\n<xs:element ref="skipped"/>', 1
        )
        attr = text.index('<xs:attribute name="group" type="xs:string"/>', testcase)
        text = (
            text[:attr] + '<xs:attribute name="file" type="xs:string"/>'
            '<xs:attribute name="line" type="xs:string"/>' + text[attr:]
        )
    return xmlschema.XMLSchema(text)


def validate(path: Path, family: str) -> None:
    """Raise with the schema's complaint when the file is not valid for the family."""
    schema(family).validate(str(path))
