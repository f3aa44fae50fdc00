"""End to end with --perfsig-sequential: the real sample app, Locust in its own processes, the
plugin in a pytest subprocess. A broken build is rejected seconds into a load allowed to run
far longer, and the verdict records when, on how many samples and with what evidence."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from sample_app.launcher import RunningApp
from tests.test_e2e import junit_properties

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
LONGEST_S = 30


def test_a_broken_build_is_rejected_in_seconds(
    gate_dir: pytest.Pytester, sample_app: Callable[..., RunningApp]
) -> None:
    (gate_dir.path / "monspec.json").write_text((ROOT / "monspec.json").read_text())
    staging, production = sample_app("Staging", build=2), sample_app("Production", build=1)
    result = gate_dir.runpytest_subprocess(
        "--monspec=monspec.json",
        "--stage=Staging",
        "--perfsig-sequential",
        f"--perfsig-duration={LONGEST_S}",
        "--perfsig-users=5",
        "--perfsig-spawn-rate=5",
        f"--perfsig-url=Staging={staging.url}",
        f"--perfsig-url=Production={production.url}",
        "--perfsig-html=report.html",
        "--junitxml=junit.xml",
        "-rA",
    )
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    result.stdout.fnmatch_lines(
        [
            "*at most 30 s of load, judged as it runs*",
            "*load stopped early: *failurerate[[]avg] was conclusively outside its limit after * s",
            "*failurerate avg: Staging * > limit 0.5 % *; sequential: conclusively outside after *",
            "*gate * for Staging: VIOLATION*",
        ]
    )
    stopped = re.search(r"conclusively outside its limit after ([\d.]+) s", text)
    assert stopped and float(stopped.group(1)) < LONGEST_S / 2, text

    props = junit_properties(gate_dir.path / "junit.xml")
    violated = [p for p in props.values() if p.get("status") == "violation"]
    assert violated, props
    for check in violated:
        assert check["judge"] == "sequential" and check["decided_by"] == "sequential"
        assert float(check["decided_at_s"]) < LONGEST_S / 2
        assert int(check["decided_samples"]) >= 20 and int(check["decided_compare_samples"]) >= 20
        assert float(check["evidence"]) >= float(check["threshold"])
        assert float(check["alpha"]) == pytest.approx(0.05 / 7)
    # The undecided ones are not judged on a load cut short for them.
    skipped = [p for p in props.values() if p.get("status") == "skipped" and "stopped early" in p["message"]]
    assert all(p["decided_by"] == "not decided" for p in skipped)

    html = (gate_dir.path / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r'data-chart="evidence"', html)) >= len(violated)
