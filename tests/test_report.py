"""The report layer: the model, the JSON report and the HTML report, on stores built by hand.

The stores are filled through the store's public API (create_run, add_samples, create_gate,
save_verdict, finish_gate) with verdicts as the gate makes them, so the reports are tested on
real rows; keys a later version may add to a record are written into the file directly.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from pytest_perfsig.gate.status import GateOutcome, count_statuses, decide
from pytest_perfsig.report import gate_report, history, series
from pytest_perfsig.report.charts import nice_ticks
from pytest_perfsig.report.html import render_html, script_json, write_html_report
from pytest_perfsig.report.json_report import SCHEMA_VERSION, build_json_report, write_json_report
from pytest_perfsig.store import RunRecord, SqliteStore
from pytest_perfsig.verdict import Verdict, fmt
from pytest_perfsig.windows import Window

T0 = 1_800_000_000.0
SVC = "SampleJSonService"
CMP = "StagingToProduction"

# ---------------------------------------------------------------------------- building stores


@dataclass
class BuiltGate:
    gate_id: str
    status: str
    records: list[dict[str, Any]]
    runs: dict[str, RunRecord] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)  # run_id -> samples
    failures: dict[str, int] = field(default_factory=dict)  # run_id -> failed samples
    window: Window | None = None


def add_run(
    store: SqliteStore,
    gate_id: str,
    env: str,
    start: float,
    *,
    seconds: int = 10,
    per_second: int = 20,
    latency: float = 10.0,
    fail_from: float | None = None,
    service: str = SVC,
    endpoint: str = "/api/invoke",
    url: str = "http://127.0.0.1:8081",
    locustfile: str = "loadtests/staging.py",
) -> tuple[RunRecord, int, int]:
    """A completed run with ``per_second`` requests each second; every 2nd request fails from
    ``fail_from`` seconds on; latency grows a little with time. Returns (run, samples, failures)."""
    run = RunRecord(
        run_id=f"{env}-{gate_id}",
        service=service,
        env=env,
        url=url,
        gate_id=gate_id,
        build="2",
        locustfile=locustfile,
        users=10,
        spawn_rate=10.0,
        duration_s=float(seconds),
        started_at=start - 0.5,
        ended_at=start + seconds + 0.5,
        status="completed",
        detail=f"{env} run",
    )
    store.create_run(run)
    rows = []
    failures = 0
    for second in range(seconds):
        for i in range(per_second):
            ts = start + second + i / per_second
            failed = fail_from is not None and second >= fail_from and i % 2 == 0
            failures += failed
            rows.append(
                (
                    run.run_id,
                    ts,
                    service,
                    env,
                    endpoint,
                    latency + second + i % 5,
                    int(not failed),
                    500 if failed else 200,
                )
            )
    store.add_samples(rows)
    return run, len(rows), failures


VERDICT_KEYS = frozenset(Verdict.__dataclass_fields__)


def verdict_record(check_id: str, service: str = SVC, **fields: Any) -> dict[str, Any]:
    """A verdict as the report writes it: ``check_id``, ``service`` and ``Verdict.to_record()``."""
    values: dict[str, Any] = dict(
        status="pass",
        metric="service.responsetime",
        aggregate="p90",
        method=None,
        unit="ms",
        source_env="Staging",
        compare_env="Production",
        message="",
        rule="upper: Production × 1.30 + 2 ms abs",
        comparison=CMP,
    )
    values.update(fields)
    return {"check_id": check_id, "service": service, **Verdict(**values).to_record()}


def add_later_keys(store: SqliteStore, gate_id: str, check_id: str, keys: dict[str, Any]) -> None:
    """Keys a later version adds to a stored record (no schema change needed for those)."""
    with sqlite3.connect(store.path) as raw:
        ((text,),) = raw.execute(
            "SELECT record FROM verdicts WHERE gate_id = ? AND check_id = ?", (gate_id, check_id)
        ).fetchall()
        raw.execute(
            "UPDATE verdicts SET record = ? WHERE gate_id = ? AND check_id = ?",
            (json.dumps({**json.loads(text), **keys}), gate_id, check_id),
        )


def add_gate(
    store: SqliteStore,
    gate_id: str,
    records: list[dict[str, Any]],
    *,
    status: str,
    stage: str = "Staging",
    build: str | None = "2",
    monspec: str = "monspec.json",
    problems: list[str] | None = None,
) -> None:
    """A gate with these verdicts, finished with ``status``; ``problems`` default to what
    ``gate.status`` finds in the verdicts."""
    store.create_gate(gate_id, monspec, stage, build)
    verdicts = []
    for record in records:
        verdict = Verdict.from_record(record)
        verdicts.append(verdict)
        store.save_verdict(gate_id, record["check_id"], record["service"], verdict)
        later = {k: v for k, v in record.items() if k not in VERDICT_KEYS | {"check_id", "service"}}
        if later:
            add_later_keys(store, gate_id, record["check_id"], later)
    decided = decide(verdicts, planned=len(verdicts), selected=len(verdicts))
    outcome = GateOutcome(
        status=status,
        counts=count_statuses(v.status for v in verdicts),
        planned=len(verdicts),
        selected=len(verdicts),
        judged=len(verdicts),
        problems=decided.problems if problems is None else problems,
    )
    store.finish_gate(gate_id, outcome)


def build_violation_gate(
    store: SqliteStore, gate_id: str = "G2-violation", start: float = T0 + 100
) -> BuiltGate:
    """Build 2 on Staging: failures from second 5 on; one violation, one skip, a judge with details."""
    staging, s_n, s_f = add_run(store, gate_id, "Staging", start, fail_from=5, latency=14.0)
    production, p_n, p_f = add_run(
        store, gate_id, "Production", start, url="http://127.0.0.1:8082", locustfile="loadtests/production.py"
    )
    window = Window(start, start + 9 + 19 / 20)  # first to last request of the stage
    windows = {"source_window": window, "compare_window": window}
    records = [
        verdict_record(
            f"{CMP}::service.responsetime[p90]",
            status="pass",
            message="service.responsetime p90: Staging 27.3 ms <= limit 33.1 ms (Production 23.9 ms × 1.30 + 2 abs)",
            source_value=27.25,
            compare_value=23.9,
            limit=33.07,
            source_samples=s_n,
            compare_samples=p_n,
            **windows,
        ),
        verdict_record(
            f"{CMP}::service.failurerate[avg]",
            status="violation",
            metric="service.failurerate",
            aggregate="avg",
            unit="%",
            rule="upper: Production × 1.30 + 0.5 % abs",
            message="service.failurerate avg: Staging 25.0 % > limit 0.5 % (Production 0.0 % × 1.30 + 0.5 abs)",
            source_value=100.0 * s_f / s_n,
            compare_value=0.0,
            limit=0.5,
            source_samples=s_n,
            compare_samples=p_n,
            **windows,
        ),
        verdict_record(
            f"{CMP}::/api/invoke::servicemethod.responsetime[avg]",
            status="pass",
            metric="servicemethod.responsetime",
            aggregate="avg",
            method="/api/invoke",
            rule="mannwhitney (exact, increase): p < 0.05 and shift beyond max(2 ms abs, 30% of Production)",
            message="/api/invoke servicemethod.responsetime avg: shift +1.5 ms, not significant",
            source_value=17.0,
            compare_value=12.0,
            limit=3.6,
            source_samples=s_n,
            compare_samples=p_n,
            details={"judge": "mannwhitney", "p_value": 0.0123, "shift": 1.5},
            **windows,
        ),
        verdict_record(
            f"{CMP}::smartscape.toRelationships:calls[count]",
            status="skipped",
            metric="smartscape.toRelationships:calls",
            aggregate="count",
            unit="",
            rule="",
            message="smartscape.toRelationships:calls count: the local source has no topology",
        ),
    ]
    records[0]["future_key"] = {"nested": [1, 2], "note": "added by a later version"}
    add_gate(store, gate_id, records, status="violation")
    built = BuiltGate(gate_id, "violation", records, window=window)
    built.runs = {"Staging": staging, "Production": production}
    built.samples = {staging.run_id: s_n, production.run_id: p_n}
    built.failures = {staging.run_id: s_f, production.run_id: p_f}
    return built


def build_pass_gate(
    store: SqliteStore, gate_id: str = "G1-pass", start: float = T0, build: str = "1"
) -> BuiltGate:
    staging, s_n, s_f = add_run(store, gate_id, "Staging", start)
    production, p_n, p_f = add_run(store, gate_id, "Production", start, url="http://127.0.0.1:8082")
    window = Window(start, start + 9 + 19 / 20)
    windows = {"source_window": window, "compare_window": window}
    records = [
        verdict_record(
            f"{CMP}::service.responsetime[p90]",
            message="service.responsetime p90: Staging 21.0 ms <= limit 31.0 ms",
            source_value=21.0,
            compare_value=22.3,
            limit=30.99,
            source_samples=s_n,
            compare_samples=p_n,
            **windows,
        ),
        verdict_record(
            f"{CMP}::service.failurerate[avg]",
            metric="service.failurerate",
            aggregate="avg",
            unit="%",
            rule="upper: Production × 1.30 + 0.5 % abs",
            message="service.failurerate avg: Staging 0.0 % <= limit 0.5 %",
            source_value=0.0,
            compare_value=0.0,
            limit=0.5,
            source_samples=s_n,
            compare_samples=p_n,
            **windows,
        ),
    ]
    add_gate(store, gate_id, records, status="pass", build=build)
    built = BuiltGate(gate_id, "pass", records, window=window)
    built.runs = {"Staging": staging, "Production": production}
    built.samples = {staging.run_id: s_n, production.run_id: p_n}
    built.failures = {staging.run_id: s_f, production.run_id: p_f}
    return built


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "perfsig.db") as db:
        yield db


@pytest.fixture
def two_gates(store: SqliteStore) -> tuple[SqliteStore, BuiltGate, BuiltGate]:
    passing = build_pass_gate(store)
    violation = build_violation_gate(store)
    return store, passing, violation


XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</script><script>alert(1)</script>",
    '\'"quotes\' & "double" `back`',
    "<img id=pwn src=x onerror=alert(1)>",
    "<!--<script>alert(1)//-->",
    "<svg onload=alert(1)>",
    "javascript:alert(1)",
    "\u2028</ScRiPt >\u2029",
]


def build_xss_gate(store: SqliteStore, gate_id: str = "G3-" + XSS[1]) -> BuiltGate:
    """Every text a store can hold carries a payload: ids, names, endpoints, tags, messages."""
    payload = " ".join(XSS)
    stage = "Staging" + XSS[0]
    compare = "Production" + XSS[1]
    service = SVC + XSS[2]
    endpoint = "/api/" + XSS[4]
    comparison = "Cmp" + XSS[2]
    start = T0 + 500
    _, s_n, _ = add_run(
        store,
        gate_id,
        stage,
        start,
        service=service,
        endpoint=endpoint,
        url="http://127.0.0.1:1/" + XSS[1],
        locustfile="loadtests/" + XSS[0] + ".py",
        fail_from=3,
    )
    _, p_n, _ = add_run(store, gate_id, compare, start, service=service, endpoint=endpoint)
    window = Window(start, start + 9.95)
    records = [
        verdict_record(
            f"{service}::{comparison}::{endpoint}::servicemethod.failurerate[avg]",
            service=service,
            comparison=comparison,
            status="violation",
            metric="servicemethod.failurerate",
            aggregate="avg",
            method=endpoint,
            unit="%" + XSS[6],
            source_env=stage,
            compare_env=compare,
            message="message " + payload,
            rule="upper: " + payload,
            source_value=25.0,
            compare_value=0.0,
            limit=0.5,
            source_samples=s_n,
            compare_samples=p_n,
            source_window=window,
            compare_window=window,
            details={XSS[0]: XSS[1], "p_value": 0.01, "list": [XSS[2], XSS[4]]},
        ),
        verdict_record(
            f"{service}::{comparison}::service.responsetime[{XSS[3]}]",
            service=service,
            comparison=comparison,
            status="pass",
            aggregate=XSS[3],
            source_env=stage,
            compare_env=compare,
            message=XSS[5],
            source_value=10.0,
            compare_value=11.0,
            limit=16.3,
        ),
        verdict_record(
            f"{comparison}::odd-status",
            service=service,
            comparison=comparison,
            status=XSS[0],
            source_env=stage,
            compare_env=compare,
            message=XSS[8],
        ),
    ]
    records[0][XSS[1]] = {XSS[6]: XSS[7]}
    add_gate(
        store,
        gate_id,
        records,
        status="violation",
        stage=stage,
        build=XSS[3],
        monspec="specs/" + XSS[0] + ".json",
        problems=["load " + payload, XSS[4] + XSS[5]],
    )
    return BuiltGate(gate_id, "violation", records, window=None)


# ---------------------------------------------------------------------------- HTML inspection


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parse(html: str) -> TagCollector:
    collector = TagCollector()
    collector.feed(html)
    collector.close()
    return collector


def data_block(html: str) -> Any:
    match = re.search(r'<script type="application/json" id="perfsig-data">(.*?)</script>', html, re.S)
    assert match, "no data block"
    return json.loads(match.group(1))


ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "div", "span", "small", "nav", "a", "main",
    "section", "dl", "dt", "dd", "b", "br", "h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td",
    "figure", "svg", "line", "text", "rect", "path", "circle", "label", "select", "option", "input", "details",
    "summary", "noscript", "footer", "script", "i", "h1", "ul", "li",
}  # fmt: skip


def assert_self_contained(html: str) -> None:
    tags = parse(html).tags
    for tag, attrs in tags:
        assert tag in ALLOWED_TAGS, f"unexpected element <{tag}>"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"event handler attribute {name} on <{tag}>"
            if name in {
                "src",
                "srcset",
                "action",
                "formaction",
                "poster",
                "background",
                "xlink:href",
                "ping",
            }:
                pytest.fail(f"<{tag} {name}={value!r}> loads something")
            if name == "href":
                assert value and value.startswith("#"), f"link to {value!r}"
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", html, re.I)
    style = "".join(re.findall(r"<style>(.*?)</style>", html, re.S))
    assert "url(" not in style and "@import" not in style
    assert len([t for t, _ in tags if t == "script"]) == 2


# ---------------------------------------------------------------------------- JSON report


def test_json_report_has_every_gate_verdict_value_and_run(
    two_gates: tuple[SqliteStore, BuiltGate, BuiltGate], tmp_path: Path
) -> None:
    store, passing, violation = two_gates
    doc = build_json_report(store)
    assert doc["schema_version"] == SCHEMA_VERSION == 2
    assert list(doc) == [
        "schema_version", "generator", "generated_at", "store", "gate_id", "history_limit", "gate", "gates", "checks",
        "store_size",
    ]  # fmt: skip
    # The newest gate is the default; the history is newest first.
    assert doc["gate_id"] == violation.gate_id == doc["gate"]["gate_id"]
    assert [g["gate_id"] for g in doc["gates"]] == [violation.gate_id, passing.gate_id]
    for built, gate in zip((violation, passing), doc["gates"], strict=True):
        assert gate["status"] == built.status
        assert gate["stage"] == "Staging" and gate["monspec"] == "monspec.json"
        assert gate["pipeline"] is None
        assert isinstance(gate["started_at"], float) and gate["started_at_iso"].endswith("Z")
        assert [v["check_id"] for v in gate["verdicts"]] == [r["check_id"] for r in built.records]
        for record, verdict in zip(built.records, gate["verdicts"], strict=True):
            for key, value in record.items():
                assert verdict[key] == value, key  # every stored value, unknown keys included
            assert verdict["comparison"] == CMP and verdict["service"] == SVC
            assert set(Verdict.__dataclass_fields__) <= set(verdict)
        assert built.window is not None
        window = {"start": built.window.start, "end": built.window.end}
        assert gate["verdicts"][0]["source_window"] == window == gate["verdicts"][0]["compare_window"]
        runs = {r["env"]: r for r in gate["runs"]}
        for env, run in built.runs.items():
            assert runs[env]["run_id"] == run.run_id
            assert runs[env]["url"] == run.url and runs[env]["locustfile"] == run.locustfile
            assert runs[env]["users"] == 10 and runs[env]["load_model"] == "closed"
            assert runs[env]["requests"] == built.samples[run.run_id]
            assert runs[env]["failures"] == built.failures[run.run_id]
    counts = doc["gates"][0]["counts"]
    assert counts == {"pass": 2, "violation": 1, "error": 0, "skipped": 1}
    assert doc["gates"][0]["summary"]["counts"] == counts  # as gate.status counted them
    assert doc["gates"][0]["problems"] == [violation.records[1]["message"]]
    assert doc["gates"][1]["problems"] == []
    # Unknown record keys survive unchanged.
    first = doc["gate"]["verdicts"][0]
    assert first["future_key"] == {"nested": [1, 2], "note": "added by a later version"}
    assert doc["gate"]["verdicts"][2]["details"] == {"judge": "mannwhitney", "p_value": 0.0123, "shift": 1.5}
    # Per check id across the gates, oldest first.
    by_id = {c["check_id"]: c for c in doc["checks"]}
    p90 = by_id[f"{CMP}::service.responsetime[p90]"]
    assert [p["gate_id"] for p in p90["points"]] == [passing.gate_id, violation.gate_id]
    assert [p["source_value"] for p in p90["points"]] == [21.0, 27.25]
    assert [p["limit"] for p in p90["points"]] == [30.99, 33.07]
    fr = by_id[f"{CMP}::service.failurerate[avg]"]
    assert [p["status"] for p in fr["points"]] == ["pass", "violation"]
    # The time series the gate was judged on: every sample, and the failures where they were.
    (comparison,) = doc["gate"]["comparisons"]
    assert comparison["comparison"] == CMP and comparison["status"] == "violation"
    src, cmp = comparison["source_series"], comparison["compare_series"]
    staging, production = violation.runs["Staging"], violation.runs["Production"]
    assert src["samples"] == sum(src["requests"]) == violation.samples[staging.run_id]
    assert cmp["samples"] == violation.samples[production.run_id]
    assert src["bucket_s"] == 1.0 and len(src["t"]) == 10
    assert src["failures"] == [0] * 5 + [10] * 5
    assert sum(cmp["failures"]) == 0
    assert src["mean_ms"][0] == pytest.approx(14.0 + 2.0) and src["mean_ms"][9] == pytest.approx(23.0 + 2.0)
    assert src["p90_ms"][0] == pytest.approx(18.0)
    # Written as strict JSON.
    path = write_json_report(store, tmp_path / "out" / "report.json", passing.gate_id, history_limit=1)
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["gate_id"] == passing.gate_id and written["history_limit"] == 1
    assert [g["gate_id"] for g in written["gates"]] == [violation.gate_id]


def test_json_report_of_empty_store_and_unknown_gate(store: SqliteStore) -> None:
    doc = build_json_report(store)
    assert doc["gate"] is None and doc["gate_id"] is None and doc["gates"] == [] and doc["checks"] == []
    with pytest.raises(KeyError):
        build_json_report(store, "no-such-gate")


def insert_raw_verdict(store: SqliteStore, gate_id: str, check_id: str, status: str, record: str) -> None:
    """A row the current code would not write: a record of another version, or damaged."""
    with sqlite3.connect(store.path) as raw:
        raw.execute(
            "INSERT INTO verdicts (gate_id, check_id, comparison, metric, aggregate, judge, status, record) "
            "VALUES (?, ?, '', '', '', '', ?, ?)",
            (gate_id, check_id, status, record),
        )


def test_odd_records_never_crash(store: SqliteStore, tmp_path: Path) -> None:
    """Records from other versions: missing keys, NaN, text where numbers were, nested extras."""
    store.create_gate("odd", "m.json", "Staging", None)
    insert_raw_verdict(store, "odd", "only-status", "pass", '{"status": "pass"}')
    insert_raw_verdict(
        store,
        "odd",
        "weird",
        "violation",
        '{"status": "violation", "source_value": NaN, "compare_value": "12", "limit": Infinity, "unit": null,'
        ' "details": {"p_value": NaN, "ci": [1.0, Infinity], "deep": {"a": {"b": 1}}}, "rule": "lower: x"}',
    )
    insert_raw_verdict(store, "odd", "broken", "pass", "{not json")
    doc = build_json_report(store)
    weird = doc["gate"]["verdicts"][1]
    assert weird["source_value"] is None and weird["limit"] is None and weird["compare_value"] == "12"
    assert weird["details"] == {"p_value": None, "ci": [1.0, None], "deep": {"a": {"b": 1}}}
    broken = doc["gate"]["verdicts"][2]
    assert broken["status"] == "error" and "unreadable verdict record" in broken["message"]
    json.dumps(doc, allow_nan=False)
    html = write_html_report(store, tmp_path / "odd.html").read_text(encoding="utf-8")
    assert "only-status" in html and "weird" in html and "p_value" in html
    assert "not finished" in html  # the gate was never finished
    assert_self_contained(html)


# ---------------------------------------------------------------------------- HTML report


def test_html_report_shows_banner_checks_values_runs_and_charts(
    two_gates: tuple[SqliteStore, BuiltGate, BuiltGate], tmp_path: Path
) -> None:
    store, passing, violation = two_gates
    path = write_html_report(store, tmp_path / "report" / "gate.html")
    assert path == tmp_path / "report" / "gate.html"
    html = path.read_text(encoding="utf-8")
    assert re.search(r'id="verdict-banner" data-status="violation"', html)
    assert '<div class="verdict">VIOLATION</div>' in html
    # Counts: 2 pass, 1 violation, 0 error, 1 skipped.
    for n, word in ((2, "pass"), (1, "violation"), (0, "error"), (1, "skipped")):
        assert f"<b>{n}</b>{word}" in html
    for record in violation.records:
        assert str(escape(record["check_id"])) in html
        assert str(escape(record["message"])) in html
        if record["rule"]:
            assert str(escape(record["rule"])) in html
        for key in ("source_value", "compare_value", "limit"):
            if record[key] is not None:
                assert f">{fmt(record[key])}</td>" in html, (key, record[key])
        if record["source_samples"] is not None:
            assert f"{record['source_samples']} / " in html
    assert 'data-status="violation" data-check="StagingToProduction::service.failurerate[avg]"' in html
    # Unknown keys are rendered generically.
    assert "p_value: <b>0.0123</b>" in html and "judge: <b>mannwhitney</b>" in html
    assert "nested: <b>1, 2</b>" in html
    # Gate facts and runs.
    for text in (
        violation.gate_id,
        "Staging",
        "monspec.json",
        "http://127.0.0.1:8082",
        "loadtests/production.py",
    ):
        assert str(escape(text)) in html
    staging = violation.runs["Staging"]
    assert f'>{violation.samples[staging.run_id]}<div class="muted small">over ' in html
    assert f">{violation.failures[staging.run_id]} ({fmt(25.0, '%')})</td>" in html
    # Charts: latency and failures over time, drawn inline.
    assert html.count('<figure class="chart"') == 2
    assert html.count('class="series src') == 2 and html.count('class="series cmp') == 2
    assert html.count('<rect class="bar src"') == 5  # the five seconds with failures
    assert 'class="bar cmp"' not in html
    assert "Staging: 20 req, 10 failed (50 %)" in html
    # History table and data.
    assert f'data-gate="{passing.gate_id}"' in html and f'data-gate="{violation.gate_id}"' in html
    data = data_block(html)
    assert data["reported"] == violation.gate_id
    assert [g["id"] for g in data["gates"]] == [passing.gate_id, violation.gate_id]
    fr = next(c for c in data["checks"] if c["id"] == f"{CMP}::service.failurerate[avg]")
    assert [(p["s"], p["v"], p["l"]) for p in fr["points"]] == [("pass", 0.0, 0.5), ("violation", 25.0, 0.5)]
    assert fr["bound"] is True
    assert 'id="filter-comparison"' in html and 'id="filter-env"' in html
    assert 'id="filter-pipeline"' not in html
    assert_self_contained(html)


def test_html_report_of_a_passing_gate_and_of_an_empty_store(
    two_gates: tuple[SqliteStore, BuiltGate, BuiltGate], tmp_path: Path
) -> None:
    store, passing, _ = two_gates
    html = write_html_report(store, tmp_path / "pass.html", passing.gate_id).read_text(encoding="utf-8")
    assert 'data-status="pass"' in html and '<div class="verdict">PASS</div>' in html
    assert "approved — all 2 judged checks within their limits" in html
    assert 'data-status="violation" data-check' not in html
    with SqliteStore(tmp_path / "empty.db") as empty:
        html = write_html_report(empty, tmp_path / "empty.html").read_text(encoding="utf-8")
    assert "NO GATE" in html and "No gate stored." in html
    assert_self_contained(html)
    with pytest.raises(KeyError):
        write_html_report(store, tmp_path / "x.html", "missing")


def test_error_gate_shows_error_banner_and_problems(store: SqliteStore, tmp_path: Path) -> None:
    build_pass_gate(store)
    records = [
        verdict_record(
            f"{CMP}::service.requestspermin[p99]",
            status="error",
            metric="service.requestspermin",
            aggregate="p99",
            unit="req/min",
            rule="",
            message="service.requestspermin p99: too few samples for Production: 10 < 100 needed for p99",
            source_value=1200.0,
            source_samples=300,
        ),
        verdict_record(
            f"{CMP}::service.responsetime[p90]", source_value=20.0, compare_value=19.0, limit=26.7
        ),
    ]
    add_gate(
        store,
        "G-error",
        records,
        status="error",
        problems=["Production at http://127.0.0.1:9 is unreachable", records[0]["message"]],
    )
    html = write_html_report(store, tmp_path / "error.html").read_text(encoding="utf-8")
    assert 'id="verdict-banner" data-status="error"' in html and '<div class="verdict">ERROR</div>' in html
    assert "not approved — 1 check could not be judged" in html
    assert "<b>1</b>error" in html and "<b>1</b>pass" in html and "<b>0</b>violation" in html
    assert "Production at http://127.0.0.1:9 is unreachable" in html
    assert str(escape(records[0]["message"])) in html
    assert 'data-status="error" data-check="StagingToProduction::service.requestspermin[p99]"' in html
    assert "No load run is stored for this gate." in html
    assert (
        build_json_report(store)["gate"]["problems"][0] == "Production at http://127.0.0.1:9 is unreachable"
    )
    assert_self_contained(html)


def test_pipeline_filter_only_when_gates_have_a_pipeline(store: SqliteStore, tmp_path: Path) -> None:
    build_pass_gate(store)
    html = write_html_report(store, tmp_path / "a.html").read_text(encoding="utf-8")
    assert 'id="filter-pipeline"' not in html
    # A later schema: gates get a pipeline column.
    with sqlite3.connect(store.path) as raw:
        raw.execute("ALTER TABLE gates ADD COLUMN pipeline TEXT")
        raw.execute("UPDATE gates SET pipeline = 'payments-main'")
    html = write_html_report(store, tmp_path / "b.html").read_text(encoding="utf-8")
    assert 'id="filter-pipeline"' in html and "payments-main" in html
    assert data_block(html)["gates"][0]["pipeline"] == "payments-main"
    assert build_json_report(store)["gates"][0]["pipeline"] == "payments-main"


def test_xss_corpus_is_escaped_everywhere(store: SqliteStore, tmp_path: Path) -> None:
    build_pass_gate(store)
    xss = build_xss_gate(store)
    html = write_html_report(store, tmp_path / "xss.html").read_text(encoding="utf-8")
    for payload in XSS:
        if re.search(r"[<>&\"']", payload):
            assert payload not in html, f"unescaped payload {payload!r}"
    assert "alert(1)" in html  # the payloads are there, as text
    assert str(escape(XSS[1])) in html and str(escape(xss.records[0]["check_id"])) in html
    assert "<img" not in html.lower() and "<svg onload" not in html.lower()
    assert "</script><script>" not in html.lower()
    parsed = parse(html)
    assert_self_contained(html)
    # The data block reads back exactly and cannot end early.
    block = re.search(r'<script type="application/json" id="perfsig-data">(.*?)</script>', html, re.S)
    assert block and "<" not in block.group(1) and ">" not in block.group(1) and "&" not in block.group(1)
    data = json.loads(block.group(1))
    assert data["gates"][-1]["id"] == xss.gate_id and data["gates"][-1]["stage"] == "Staging" + XSS[0]
    assert {c["id"] for c in data["checks"]} >= {r["check_id"] for r in xss.records}
    # The odd status became a neutral class, not a class made of the payload.
    classes = " ".join(str(attrs.get("class") or "") for _, attrs in parsed.tags)
    assert "alert(" not in classes and "script" not in classes and "status-unknown" in classes
    # The same holds for the JSON report: plain values.
    doc = build_json_report(store)
    assert doc["gate"]["stage"] == "Staging" + XSS[0]
    assert doc["gate"]["verdicts"][0][XSS[1]] == {XSS[6]: XSS[7]}


def test_script_json_escapes_what_could_end_the_block() -> None:
    text = str(script_json({"a": "</script><!-- & \u2028", "n": math.nan}))
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028", "n": None}


def test_render_html_does_not_need_a_store_for_history(
    two_gates: tuple[SqliteStore, BuiltGate, BuiltGate],
) -> None:
    store, _, violation = two_gates
    report = gate_report.build_gate_report(store, violation.gate_id, with_series=False)
    html = render_html(report, history.build_history(store, 1), "x.db")
    assert html.count('<figure class="chart"') == 2 and "no samples stored for these windows" in html


# ---------------------------------------------------------------------------- model pieces


def test_series_are_read_from_the_stored_windows(store: SqliteStore) -> None:
    """The windows a verdict recorded (shifted, after a warm-up: fractions of seconds) are
    the samples the charts show, exactly."""
    add_run(store, "g", "Staging", T0, seconds=12, per_second=4)
    add_run(store, "g", "Production", T0 - 3600, seconds=12, per_second=4)
    source = Window(T0 + 2.1, T0 + 11.8)
    compare = source.shifted(3600)
    inside = sum(1 for s in range(12) for i in range(4) if source.start <= T0 + s + i / 4 <= source.end)
    record = verdict_record(
        f"{CMP}::service.responsetime[p90]",
        source_window=source,
        compare_window=compare,
        source_samples=inside,
        compare_samples=inside,
    )
    add_gate(store, "g", [record], status="pass")
    report = gate_report.build_gate_report(store, "g")
    assert report is not None
    (comparison,) = report.comparisons
    assert comparison.source is not None and comparison.compare is not None
    assert (comparison.source.start, comparison.source.end) == (source.start, source.end)
    assert (comparison.compare.start, comparison.compare.end) == (compare.start, compare.end)
    assert comparison.source.samples == comparison.compare.samples == inside
    assert comparison.source.label == str(source)


def test_comparison_status_is_what_the_gate_rules_decide(store: SqliteStore) -> None:
    """A comparison's badge is ``gate.status.decide`` over its checks: only skipped checks is
    an error (nothing was judged), as it would be for a gate."""
    records = [
        verdict_record("A::service.responsetime[p90]", comparison="A", status="skipped"),
        verdict_record("B::service.responsetime[p90]", comparison="B", status="pass"),
        verdict_record("B::service.failurerate[avg]", comparison="B", status="skipped"),
        verdict_record("C::service.responsetime[p90]", comparison="C", status="violation"),
        verdict_record("C::service.failurerate[avg]", comparison="C", status="error"),
    ]
    add_gate(store, "g", records, status="error")
    report = gate_report.build_gate_report(store, "g", with_series=False)
    assert report is not None
    assert {c.name: c.status for c in report.comparisons} == {"A": "error", "B": "pass", "C": "error"}
    assert report.gate.status == "error"  # the stored one


def test_stored_baseline_runs_become_the_compare_series(store: SqliteStore) -> None:
    """A baseline of stored runs (``compare_window`` names them): their samples, laid over each
    other from their own starts; both sides named by role when they are one environment."""
    first, n1, _ = add_run(store, "old1", "Production", T0, seconds=5)
    second, n2, _ = add_run(store, "old2", "Production", T0 + 100, seconds=8)
    _, n3, _ = add_run(store, "new", "Production", T0 + 200, seconds=6)
    window = Window(T0 + 200, T0 + 205.95)
    span = Window(T0 + 0.0, T0 + 107.95)  # what gate.measure records: the runs' whole span
    records = [
        verdict_record(
            "ProductionToPreviousRun::service.responsetime[p90]",
            source_env="Production",
            source_value=20.0,
            compare_value=19.0,
            limit=26.7,
            source_samples=n3,
            compare_samples=n1 + n2,
            source_window=window,
            compare_window=span,
            baseline=f"median of 2 of 2 runs: {first.run_id}, {second.run_id}",
        ),
        verdict_record(
            "ProductionToPreviousRun::service.failurerate[avg]",
            metric="service.failurerate",
            source_env="Production",
            source_window=window,
            compare_window=Window(T0, T0 + 4.95),
            baseline=f"run {first.run_id}",
        ),
    ]
    add_gate(store, "new", records, status="pass", stage="Production")
    report = gate_report.build_gate_report(store, "new")
    assert report is not None
    (comparison,) = report.comparisons
    assert comparison.source is not None and comparison.source.samples == n3
    assert comparison.compare is not None and comparison.compare.samples == n1 + n2
    assert comparison.compare.label.endswith(f"{first.run_id}, {second.run_id}")
    assert len(comparison.compare.t) == 8 and comparison.compare.requests[0] == 40
    html = render_html(report, history.build_history(store), "x.db")
    assert "Production (this gate) mean" in html and "Production (baseline) p90" in html


def test_bucket_samples_per_second_and_wider() -> None:
    width, t, requests, failures, mean, p90 = series.bucket_samples(
        [0.1, 0.2, 2.5], [10.0, 20.0, 30.0], [True, False, True], 0.0, 3.0
    )
    assert (width, t, requests, failures) == (1.0, [0.0, 1.0, 2.0], [2, 0, 1], [1, 0, 0])
    assert mean == [15.0, None, 30.0] and p90[1] is None and p90[0] == pytest.approx(19.0)
    width, t, *_ = series.bucket_samples([0.0, 3599.0], [1.0, 1.0], [True, True], 0.0, 3600.0)
    assert width == 12.0 and len(t) == 300


def test_nice_ticks() -> None:
    assert nice_ticks(0, 23.4) == [0, 10, 20, 30]
    assert nice_ticks(0, 0) == [0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(0, 0.8)[-1] >= 0.8


def test_store_of_the_first_release_renders(tmp_path: Path) -> None:
    """A store written by the first release (tests/data/make_store_v1.py), migrated on open:
    the windows it printed as text are numbers now, and the charts show the judged samples."""
    path = tmp_path / "store-v1.db"
    shutil.copyfile(Path(__file__).parent / "data" / "store-v1.db", path)
    with SqliteStore(path) as store:
        doc = build_json_report(store)
        html = write_html_report(store, tmp_path / "v1.html").read_text(encoding="utf-8")
    gate = doc["gate"]
    assert (gate["gate_id"], gate["status"], gate["build"]) == ("20261128T040927-v1gate", "violation", "41")
    assert gate["counts"] == {"pass": 1, "violation": 1, "error": 0, "skipped": 0}
    assert [r["run_id"] for r in gate["runs"]] == ["Staging-v1run", "Production-v1run"]
    p90, failures = gate["verdicts"]
    window = {"start": 1_795_838_968.0, "end": 1_795_838_977.0}
    for verdict in (p90, failures):
        assert verdict["service"] == SVC and verdict["comparison"] == CMP
        assert verdict["source_window"] == window == verdict["compare_window"]
    assert (p90["judge"], failures["judge"]) == ("mannwhitney", "scalefactor")
    (comparison,) = gate["comparisons"]
    assert comparison["status"] == "violation"
    assert comparison["source_series"]["samples"] == failures["source_samples"] == 90
    assert sum(comparison["source_series"]["failures"]) == 22
    assert comparison["compare_series"]["samples"] == 90
    assert '<div class="verdict">VIOLATION</div>' in html and "Staging 24.4 % &gt; limit 0.5 %" in html
    assert html.count('<figure class="chart"') == 2
    assert_self_contained(html)


def test_schema_doc_names_every_top_level_key(two_gates: tuple[SqliteStore, BuiltGate, BuiltGate]) -> None:
    doc_text = (Path(__file__).resolve().parent.parent / "docs" / "report-json.md").read_text(
        encoding="utf-8"
    )
    doc = build_json_report(two_gates[0])
    keys = set(doc) | set(doc["gate"]) | set(doc["gate"]["runs"][0]) | set(doc["checks"][0])
    keys |= set(doc["gate"]["comparisons"][0]) | set(doc["gate"]["comparisons"][0]["source_series"])
    keys |= set(doc["checks"][0]["points"][0]) | set(doc["gate"]["verdicts"][1])
    missing = sorted(k for k in keys if f"`{k}`" not in doc_text)
    assert not missing, f"docs/report-json.md does not document {missing}"
