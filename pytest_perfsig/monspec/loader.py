"""The monspec loader: JSON or JSON5 (``//`` comments, trailing commas) in, validated models
out, and every problem reported with the file, the path inside it and, for syntax errors, the
line."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import json5
from pydantic import ValidationError

from ..errors import MonspecError
from ..metrics import canonical_id, parse_metric
from .models import Entity, Monspec

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


def load_monspec(path: str | Path) -> Monspec:
    """Read and validate a monspec file; raise MonspecError naming every problem."""
    name = str(path)
    too_large = f"larger than {MAX_MONSPEC_BYTES} bytes, too large to be a monspec"
    try:
        # A FIFO would block forever and /dev/zero never ends: only regular files, read with
        # a bound (their size can change between stat and read).
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise MonspecError(
                name, ["not a regular file (a FIFO, device or directory): name a monspec file"]
            )
        with open(path, "rb") as handle:
            data = handle.read(MAX_MONSPEC_BYTES + 1)
        if len(data) > MAX_MONSPEC_BYTES:
            raise MonspecError(name, [too_large])
        text = data.decode("utf-8")
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
    warnings: list[str] = []
    for entity_name, entity in entities.items():
        problems.extend(_check_references(entity_name, entity, warnings))
    if problems:
        raise MonspecError(name, problems)
    return Monspec(name, entities, tuple(f"{name}: {w}" for w in warnings))


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


def _check_references(entity_name: str, entity: Entity, warnings: list[str]) -> list[str]:
    """Cross-field rules pydantic cannot see: names that must refer to something. An override
    for a known metric that no entry uses is only a warning: it is left behind whenever an
    entry is removed, and it changes nothing; an unknown metric name is an error (a typo)."""
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
                if key == "default" or canonical_id(key) in metric_keys:
                    continue
                if parse_metric(key) is None:
                    problems.append(f"{where}.{table}.{key}: names no metric of the perfsignature")
                else:
                    unused = f"{where}.{table}.{key}: no perfsignature entry uses this metric; ignored"
                    warnings.append(unused)
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
