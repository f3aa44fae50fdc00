"""Log rules: parsing, counting in a window, reading files and URLs, and the real sample app."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from pytest_perfsig.errors import MonspecError
from pytest_perfsig.gate.plan import LogCheck, plan_log_checks
from pytest_perfsig.judges import logrule
from pytest_perfsig.judges.logrule import count_matches, parse_line
from pytest_perfsig.monspec import LogRule, parse_monspec
from pytest_perfsig.sources.logs import read_log
from pytest_perfsig.verdict import Verdict
from pytest_perfsig.windows import Window
from sample_app.launcher import RunningApp
from tests.waiting import when_stored

T0 = 1_800_000_000.0


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


LINES = [
    f"{stamp(T0 + 1)} ERROR somebody called /api/causeerror",
    f"{stamp(T0 + 2)} WARNING Somebody is changing! buildNumber from 1 to 2",
    f"{stamp(T0 + 3)} INFO Just served another 100 requests!",
    f"{stamp(T0 + 4)} CRITICAL somebody called /api/causeerror",
    f"{stamp(T0 + 99)} ERROR somebody called /api/causeerror",  # outside the window
    "not a log line",
    f"{stamp(T0 + 5)} ERROR Traceback (most recent call last):",
]
WINDOW = Window(T0, T0 + 60)


def rule(**kwargs: object) -> LogRule:
    return LogRule.model_validate({"pattern": "somebody called /api/causeerror", **kwargs})


def test_parse_line() -> None:
    line = parse_line("2026-11-28T03:54:44.016+00:00 WARNING Somebody is changing! buildNumber from 2 to 4")
    assert line is not None and line.level == "warning" and line.message.startswith("Somebody is changing")
    assert line.ts == datetime(2026, 11, 28, 3, 54, 44, 16000, UTC).timestamp()
    assert parse_line("2026-11-28T03:54:44Z SEVERE boom").level == "error"  # type: ignore[union-attr]
    assert parse_line("garbage ERROR x") is None and parse_line("") is None


def test_counts_by_level_pattern_and_window() -> None:
    assert count_matches(LINES, rule(), WINDOW) == (2, 6)
    assert count_matches(LINES, rule(level="critical"), WINDOW) == (1, 6)
    assert count_matches(LINES, rule(pattern="buildNumber", level="warning"), WINDOW) == (1, 6)
    assert count_matches(LINES, rule(pattern="buildNumber", level="error"), WINDOW) == (0, 6)


def judge_log(check: LogCheck, window: Window) -> Verdict:
    """As the gate judges a log check: the rule over the lines read from its location."""
    return logrule.judge_log(check.rule, check.env, check.location, window, read_log(check.location))


def check_for(location: str, **kwargs: object) -> LogCheck:
    return LogCheck("logrules::x", "Svc", "Staging", rule(**kwargs), location)


def test_judge_counts_against_the_allowance(tmp_path: Path) -> None:
    log = tmp_path / "serviceoutput.log"
    log.write_text("\n".join(LINES) + "\n")
    failed = judge_log(check_for(str(log)), WINDOW)
    assert failed.status == "violation" and failed.source_value == 2 and failed.limit == 0
    assert failed.message.startswith("error log 'somebody called /api/causeerror' seen 2 times in ")
    assert failed.message.endswith("allowed 0")
    assert judge_log(check_for(str(log), allowedperminute=2), WINDOW).status == "pass"  # 2/min over 1 min


def test_unreadable_or_empty_logs_are_errors(tmp_path: Path) -> None:
    missing = judge_log(check_for(str(tmp_path / "nope.log")), WINDOW)
    assert missing.status == "error" and "cannot read the log" in missing.message
    junk = tmp_path / "junk.log"
    junk.write_text("no timestamps here\n")
    assert "no timestamped line" in judge_log(check_for(str(junk)), WINDOW).message
    assert "no log for Staging: set environments.Staging.log" in judge_log(check_for(""), WINDOW).message


@pytest.fixture
def served_log(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "app.log").write_text("\n".join(LINES) + "\n")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_log_over_http(served_log: str) -> None:
    assert judge_log(check_for(f"{served_log}/app.log"), WINDOW).source_value == 2
    missing = judge_log(check_for(f"{served_log}/missing.log"), WINDOW)
    assert missing.status == "error" and "404" in missing.message


def test_monspec_log_rules() -> None:
    spec = parse_monspec(
        json.dumps(
            {
                "Svc": {
                    "environments": {
                        "Staging": {"log": "logs/app.log"},
                        "Production": {"log": "http://127.0.0.1:1/log"},
                    },
                    "perfsignature": [{"timeseries": "service.responsetime"}],
                    "logrules": [
                        {"name": "causeerror", "pattern": "causeerror"},
                        {"pattern": "x", "level": "warning"},
                    ],
                }
            }
        ),
        "/etc/perfsig/monspec.json",
    )
    checks = plan_log_checks(spec, "Staging")
    assert [c.check_id for c in checks] == ["logrules::causeerror", "logrules::x"]
    assert checks[0].location == "/etc/perfsig/logs/app.log"
    assert plan_log_checks(spec, "Production")[0].location == "http://127.0.0.1:1/log"
    with pytest.raises(MonspecError, match=r"logrules\[0\]\.pattern: not a regular expression"):
        parse_monspec(
            '{"S": {"environments": {"A": {}}, "perfsignature": [{"timeseries": "service.requests", '
            '"aggregate": "count"}], "logrules": [{"pattern": "(("}]}}',
            "m.json",
        )


@pytest.mark.e2e
def test_causeerror_during_the_window_fails_the_rule(
    gate_dir: pytest.Pytester, sample_app: Callable[..., RunningApp]
) -> None:
    staging = sample_app("Staging", build=1)
    gate_dir.makefile(
        ".json",
        monspec=json.dumps(
            {
                "Svc": {
                    "environments": {"Staging": {"url": staging.url, "log": str(staging.log_file)}},
                    "logrules": [
                        {"name": "causeerror", "pattern": "somebody called /api/causeerror"},
                        {"name": "build switch", "pattern": "buildNumber", "level": "warning"},
                    ],
                }
            }
        ),
    )

    def cause_errors() -> None:
        for _ in range(3):
            httpx.get(f"{staging.url}/api/causeerror", timeout=5)

    # Inside the load window: once the load has stored 20 requests, however slow the machine is.
    caller = when_stored(gate_dir.path / ".perfsig" / "perfsig.db", "Staging", 20, cause_errors)
    result = gate_dir.runpytest_subprocess(
        "--monspec=monspec.json", "--stage=Staging", "--perfsig-duration=5", "--perfsig-users=3", "-rA"
    )
    caller.join()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*error log 'causeerror' seen 3 times in *, allowed 0*"])
    again = gate_dir.runpytest_subprocess(
        "--monspec=monspec.json", "--stage=Staging", "--perfsig-duration=3", "--perfsig-users=3"
    )
    again.assert_outcomes(passed=2)
