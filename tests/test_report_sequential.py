"""The HTML report draws a sequential check's evidence over time, small and inline, and leaves
the raw trajectory out of the text."""

from __future__ import annotations

import re
from pathlib import Path

from pytest_perfsig.report.html import write_html_report
from pytest_perfsig.store import SqliteStore
from tests.test_report import add_gate, assert_self_contained, verdict_record

TRAJECTORY = [[2.5, -0.4, 0.3], [3.0, 0.9, -1.2], [3.5, 2.6, -1.9]]


def test_the_evidence_is_drawn_for_each_sequential_check(tmp_path: Path) -> None:
    details = {
        "sequential_test": "two-rate e-process",
        "alpha": 0.05 / 7,
        "threshold": 140.0,
        "evidence": 398.0,
        "evidence_pass": 0.0126,
        "decision": "violation",
        "decided_by": "sequential",
        "decided_at_s": 3.5,
        "decided_samples": 116,
        "decided_compare_samples": 155,
        "trajectory": TRAJECTORY,
    }
    records = [
        verdict_record(
            "C::service.failurerate[avg]",
            status="violation",
            metric="service.failurerate",
            aggregate="avg",
            unit="%",
            judge="sequential",
            details=details,
        ),
        verdict_record("C::service.responsetime[p90]"),
    ]
    with SqliteStore(tmp_path / "s.db") as store:
        add_gate(store, "G1", records, status="violation")
        html = write_html_report(store, tmp_path / "r.html", "G1").read_text(encoding="utf-8")
    charts = re.findall(r'<svg class="evidence"[^>]*data-chart="evidence"', html)
    assert len(charts) == 1  # the scale-factor verdict has no evidence to draw
    assert "a side decides at 140 (dashed)" in html
    assert re.search(r'<path class="outside" d="M[\d.]+,[\d.]+L[\d.]+,[\d.]+L', html)
    assert "decided_at_s: <b>3.5</b>" in html and "decided_samples: <b>116</b>" in html
    assert "trajectory" not in html.split('id="history"')[0]
    assert len(html.encode()) < 200_000
    assert_self_contained(html)
