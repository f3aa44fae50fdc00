"""The HTML report: one self-contained file with one gate's verdicts and timelines, and the
history of recent gates.

Everything is inline (CSS, SVG, one script) and nothing refers to another URL; the page's
Content-Security-Policy allows no fetches at all and only the report's own script (by hash).
Every text from monspecs, endpoints and stores goes through Jinja's autoescaping; the history
data reaches the script as a ``<script type="application/json">`` block in which ``<``, ``>``
and ``&`` are ``\\u`` escapes, and the script builds the DOM with ``textContent`` only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..store.base import ReportSource
from ..store.sqlite import StoreUsage
from ..verdict import STATUSES
from .charts import bullet, evidence_chart, failure_chart, latency_chart, side_names
from .gate_report import GateReport, build_gate_report
from .history import History, build_history
from .json_report import generator
from .model import RunInfo, finite, format_time, format_value, jsonable
from .storage import describe_usage

TEMPLATES = Path(__file__).with_name("templates")


# ---------------------------------------------------------------------------- helpers for templates


def status_class(status: Any) -> str:
    """A CSS class from a fixed set: store values never become class names."""
    return str(status) if status in STATUSES else "unknown"


def status_label(status: Any) -> str:
    """PASS, VIOLATION, ERROR, SKIPPED: the words the terminal prints, for any status."""
    return str(status).upper() or "UNKNOWN"


def format_duration(seconds: Any) -> str:
    value = finite(seconds)
    if value is None:
        return "n/a"
    if value < 120:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def format_extra(value: Any) -> str:
    """Any stored value as one line of text (numbers with 4 significant digits)."""
    number = finite(value)
    if number is not None and not isinstance(value, int):
        return f"{number:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_extra(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(format_extra(v) for v in value)
    return "n/a" if value is None else str(value)


CHARTED = frozenset({"trajectory"})
"""Detail keys drawn as a chart (``evidence_chart``), not written out as text."""


def extra_items(value: Any) -> list[tuple[str, str]]:
    """(key, text) pairs of an unknown record key: a dict is spread one level deep."""
    if not isinstance(value, dict):
        return []
    return [(str(k), format_extra(v)) for k, v in value.items() if k not in CHARTED]


def script_json(data: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block: no ``<``, ``>``, ``&`` (so no
    ``</script>`` or ``<!--``) and no line separators that could end it early."""
    text = json.dumps(jsonable(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for raw, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return Markup(text)


# ---------------------------------------------------------------------------- history data for the script


def history_data(history: History, report: GateReport | None) -> dict[str, Any]:
    """What the history view draws: gates oldest first, and per check id its points."""
    entries = list(reversed(history.entries))
    index = {entry.gate.gate_id: i for i, entry in enumerate(entries)}
    gates = [
        {
            "id": e.gate.gate_id,
            "time": format_time(e.gate.started_at),
            "stage": e.gate.stage,
            "build": e.gate.build,
            "pipeline": e.gate.pipeline,
            "status": e.gate.status,
            "counts": e.counts,
        }
        for e in entries
    ]
    checks = []
    first = [v.check_id for v in report.verdicts] if report else []
    for check in history.checks(first):
        points = []
        bound = True
        for entry, verdict in check.points:
            bound = bound and verdict.direction is not None
            unit = verdict.unit
            points.append(
                {
                    "g": index[entry.gate.gate_id],
                    "s": verdict.status,
                    "v": finite(verdict.get("source_value")),
                    "c": finite(verdict.get("compare_value")),
                    "l": finite(verdict.get("limit")),
                    "vt": format_value(verdict.get("source_value"), unit),
                    "ct": format_value(verdict.get("compare_value"), unit),
                    "lt": format_value(verdict.get("limit"), unit),
                    "se": verdict.text("source_env"),
                    "ce": verdict.text("compare_env"),
                }
            )
        checks.append(
            {
                "id": check.check_id,
                "comparison": check.comparison,
                "label": check.label,
                "unit": check.unit,
                "bound": bound,
                "points": points,
            }
        )
    return {
        "statuses": list(STATUSES),
        "reported": report.gate.gate_id if report else None,
        "limit": history.limit,
        "has_pipeline": history.has_pipeline,
        "gates": gates,
        "checks": checks,
    }


# ---------------------------------------------------------------------------- rendering


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        status_class=status_class,
        status_label=status_label,
        format_value=format_value,
        format_time=format_time,
        format_duration=format_duration,
        format_extra=format_extra,
        extra_items=extra_items,
        latency_chart=latency_chart,
        failure_chart=failure_chart,
        side_names=side_names,
        bullet=bullet,
        evidence_chart=evidence_chart,
        statuses=STATUSES,
    )
    return env


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def render_html(
    report: GateReport | None, history: History, store_path: str, usage: StoreUsage | None = None
) -> str:
    """The report page of an already built gate report and history."""
    env = _environment()
    script = env.get_template("_script.html.j2").render()
    style = env.get_template("_style.html.j2").render()
    runs_by_gate: list[RunInfo] = report.runs if report else []
    return env.get_template("report.html.j2").render(
        report=report,
        gate=report.gate if report else None,
        runs=runs_by_gate,
        history=history,
        store_path=store_path,
        store_size=describe_usage(usage) if usage is not None else None,
        generator=generator(),
        generated_at=format_time(time.time()),
        data_json=script_json(history_data(history, report)),
        script=Markup(script),
        style=Markup(style),
        script_hash=_script_hash(script),
    )


def write_html_report(
    store: ReportSource, path: Path, gate_id: str | None = None, history_limit: int = 50
) -> Path:
    """Write the report of gate ``gate_id`` (default: the newest) with the history of the
    newest ``history_limit`` gates to ``path`` (parents created); returns the path.

    Raises KeyError for a gate id the store does not hold.
    """
    report = build_gate_report(store, gate_id)
    history = build_history(store, history_limit)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(render_html(report, history, str(store.path), store.store_usage()), encoding="utf-8")
    tmp.replace(target)
    return target
