"""Summarise a ``mutmut run``: the score, every mutant the tests let live, and whether the
mutation gate holds.

Prints ``mutation killed=K/T score=P%``, then each surviving mutant with the function and line
it changes and its diff (``mutmut show``). Exits 1 when the score is below the threshold, or
when any surviving mutant changes a line marked ``# decision`` (where a judge decides
significance, direction, floor, limit or violation): those must always be killed.

Run from the repository root after ``mutmut run`` (``make mutate`` does both).
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# A decision line carries this comment, possibly followed by another one.
_DECISION_RE = re.compile(r"#\s*decision\b")
# Detected: the tests failed (or hung) with the mutant in place.
DETECTED = {"killed", "timeout"}
_RESULT_RE = re.compile(r"^\s*(\S+__mutmut_\d+): (.+?)\s*$")
_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


@dataclass
class Survivor:
    name: str
    status: str
    path: str = "?"
    function: str = "?"
    lines: list[int] = field(default_factory=list)
    diff: str = ""
    decision: bool = False

    @property
    def where(self) -> str:
        at = ",".join(str(n) for n in self.lines) or "?"
        return f"{self.path}:{at} in {self.function}"


def is_decision(line: str) -> bool:
    return _DECISION_RE.search(line) is not None


def mutmut_command() -> list[str]:
    beside = Path(sys.executable).with_name("mutmut")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mutmut")
    if found is None:
        sys.exit("mutation_report: mutmut not found (pip install -e '.[dev]')")
    return [found]


def run_mutmut(*args: str) -> str:
    done = subprocess.run([*mutmut_command(), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"mutation_report: mutmut {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def mutant_diff(name: str) -> str:
    """What ``mutmut show NAME`` prints. In-process when mutmut's API allows (one process
    instead of one per survivor), else through the command."""
    try:
        from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
    except ImportError:
        return run_mutmut("show", name)
    return str(get_diff_for_mutant(name, path=find_mutant(name).path))


def parse_results(text: str) -> dict[str, str]:
    """``mutmut results --all true`` lines (``    name: status``) as {name: status}."""
    results: dict[str, str] = {}
    for line in text.splitlines():
        match = _RESULT_RE.match(line)
        if match:
            results[match.group(1)] = match.group(2)
    return results


def function_of(name: str) -> str:
    """``pkg.mod.xǁClassǁmethod__mutmut_3`` → ``Class.method``; ``pkg.mod.x_func__mutmut_1`` → ``func``."""
    mangled = name.partition("__mutmut_")[0].rpartition(".")[2]
    if mangled.startswith("xǁ"):
        return ".".join(mangled[2:].split("ǁ"))
    return mangled.removeprefix("x_")


def _function_start(source: str, function: str) -> int | None:
    """First line (decorators included) of a top-level function or a method ``Class.name``."""
    scope: list[ast.stmt] = ast.parse(source).body
    *classes, name = function.split(".")
    for class_name in classes:
        found = next((n for n in scope if isinstance(n, ast.ClassDef) and n.name == class_name), None)
        if found is None:
            return None
        scope = found.body
    for node in scope:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return None


def locate(survivor: Survivor, diff: str, root: Path) -> None:
    """Fill in the file, the lines the mutant changes (as numbered in the file) and whether one
    of them is a decision line. The diff numbers lines from the function's first line."""
    survivor.diff = diff
    survivor.function = function_of(survivor.name)
    removed: list[tuple[int, str]] = []
    relative = 0
    for line in diff.splitlines():
        if line.startswith("--- ") and not removed and relative == 0:
            survivor.path = line[4:].strip()
        elif line.startswith("+++"):
            continue
        elif hunk := _HUNK_RE.match(line):
            relative = int(hunk.group(1))
        elif line.startswith("-"):
            removed.append((relative, line[1:]))
            relative += 1
        elif line.startswith(" "):
            relative += 1
    source_file = root / survivor.path
    if not source_file.is_file():
        survivor.decision = any(is_decision(text) for _, text in removed)
        return
    file_lines = source_file.read_text(encoding="utf-8").splitlines()
    start = _function_start("\n".join(file_lines), survivor.function)
    for rel, text in removed:
        number = _find_line(file_lines, text, None if start is None else start + rel - 1)
        if number is not None:
            survivor.lines.append(number)
            text = file_lines[number - 1]
        if is_decision(text):
            survivor.decision = True


def _find_line(file_lines: list[str], text: str, guess: int | None) -> int | None:
    """The 1-based file line holding ``text``: the guess if it matches, else the nearest match."""
    if guess is not None and 0 < guess <= len(file_lines) and file_lines[guess - 1] == text:
        return guess
    matches = [i + 1 for i, line in enumerate(file_lines) if line == text]
    if not matches:
        return None
    return min(matches, key=lambda n: abs(n - (guess or 0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=90.0, help="lowest score that passes, in percent")
    parser.add_argument("--no-diff", action="store_true", help="list survivors without their diffs")
    args = parser.parse_args(argv)

    results = parse_results(run_mutmut("results", "--all", "true"))
    if not results:
        print("mutation: no results (run `mutmut run` first)")
        return 1
    killed = sum(1 for status in results.values() if status in DETECTED)
    total = len(results)
    score = 100.0 * killed / total
    print(f"mutation killed={killed}/{total} score={score:.1f}%")

    survivors = [Survivor(name, status) for name, status in sorted(results.items()) if status not in DETECTED]
    for survivor in survivors:
        locate(survivor, mutant_diff(survivor.name), Path.cwd())
    if survivors:
        print(f"\n{len(survivors)} mutant(s) not killed:")
    for survivor in survivors:
        flag = "  [DECISION LINE]" if survivor.decision else ""
        print(f"  {survivor.name}: {survivor.status}, {survivor.where}{flag}")
        if not args.no_diff:
            body = [line for line in survivor.diff.splitlines() if not line.startswith("# ")]
            print("\n".join(f"      {line}" for line in body))

    failures: list[str] = []
    if score < args.threshold:
        failures.append(f"score {score:.1f}% is below {args.threshold:g}%")
    decisions = [s for s in survivors if s.decision]
    if decisions:
        failures.append(
            f"{len(decisions)} mutant(s) survive on decision lines: " + ", ".join(s.name for s in decisions)
        )
    if failures:
        print("\nmutation gate FAILED: " + "; ".join(failures))
        return 1
    print("\nmutation gate passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
