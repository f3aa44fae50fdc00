"""YAML read with its line numbers, for files whose every problem must name its line (Keptn's
slo.yaml and sli.yaml): nodes that keep their lines, mappings that refuse unknown keys, and the
problems of one file raised together as one MonspecError."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import MonspecError
from .loader import MAX_MONSPEC_BYTES

# Aliases make a small file a huge document ("billion laughs"): a bound on the values read.
MAX_VALUES = 100_000


@dataclass(frozen=True)
class Node:
    """A YAML value and the line it starts on (1-based); a mapping keeps its keys' lines."""

    value: Any  # dict[str, Node], list[Node] or a scalar
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)


class Problems:
    """Problems of one file, each with its line and path: raised together."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.found: list[tuple[int, str]] = []

    def add(self, line: int | None, where: str, message: str) -> None:
        at = f"line {line}: " if line else ""
        self.found.append((line or 0, f"{at}{where + ': ' if where else ''}{message}"))

    def raise_any(self) -> None:
        if self.found:  # in the order of the file
            raise MonspecError(self.name, [text for _, text in sorted(self.found, key=lambda f: f[0])])


def read_text(path: Path) -> str:
    name = str(path)
    try:
        # A FIFO or a device would block or never end: regular files only, read with a bound.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise MonspecError(name, ["not a regular file (a FIFO, device or directory)"])
        with open(path, "rb") as handle:
            data = handle.read(MAX_MONSPEC_BYTES + 1)
        if len(data) > MAX_MONSPEC_BYTES:
            raise MonspecError(name, [f"larger than {MAX_MONSPEC_BYTES} bytes"])
        return data.decode("utf-8")
    except FileNotFoundError:
        raise MonspecError(name, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MonspecError(name, [f"cannot read: {exc}"]) from None


def compose(text: str, name: str) -> Node:
    """The document as nodes with lines; a syntax error names its line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise MonspecError(name, ["empty file"])
        return _convert(loader, node, name, [MAX_VALUES])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise MonspecError(name, [f"{where}YAML syntax error: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise MonspecError(name, [f"YAML error: {exc}"]) from None
    except RecursionError:
        raise MonspecError(name, ["nested too deeply"]) from None
    finally:
        loader.dispose()


def _convert(loader: yaml.SafeLoader, node: yaml.Node, name: str, budget: list[int]) -> Node:
    line = node.start_mark.line + 1
    budget[0] -= 1
    if budget[0] < 0:
        raise MonspecError(name, [f"more than {MAX_VALUES} values (aliases expanding?): too large"])
    if isinstance(node, yaml.MappingNode):
        values: dict[str, Node] = {}
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            key_line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise MonspecError(name, [f"line {key_line}: key {key!r} is not text"])
            if key in values:
                raise MonspecError(name, [f"line {key_line}: duplicate key {key!r}"])
            values[key], keys[key] = _convert(loader, value_node, name, budget), key_line
        return Node(values, line, keys)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(loader, item, name, budget) for item in node.value], line)
    return Node(loader.construct_object(node), line)


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", type(None): "empty"}.get(
        type(value), "a number"
    )


def mapping(node: Node, where: str, allowed: tuple[str, ...], problems: Problems) -> dict[str, Node]:
    """A mapping's entries; keys outside ``allowed`` are problems (a misspelt key must not
    silently change the gate)."""
    if not isinstance(node.value, dict):
        problems.add(node.line, where, f"must be a mapping, got {type_name(node.value)}")
        return {}
    for key in node.value:
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            problems.add(node.key_lines[key], path, f"unknown key (known: {', '.join(allowed)})")
    return {k: v for k, v in node.value.items() if k in allowed}


def required_text(node: Node, where: str, problems: Problems) -> str | None:
    if isinstance(node.value, str) and node.value.strip():
        return node.value
    problems.add(node.line, where, f"must be text, got {type_name(node.value)}")
    return None
