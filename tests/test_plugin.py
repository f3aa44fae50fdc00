"""The pytest face through pytester: options, collection, selection and fail-closed errors.
These runs drive no real load (see test_e2e.py for that)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "tests" / "data" / "monspecs" / "seed-monspec.json"
SHARED_SEED = ROOT.parent / "shared" / "fixtures" / "seed-monspec.json"

SMALL_MONSPEC = """
// a small monspec, JSON5
{
  "Svc": {
    "environments": {"Staging": {"url": "http://127.0.0.1:9"}, "Production": {}},
    "comparisons": [
      {"name": "StagingToProduction", "source": "Staging", "compare": "Production",
       "scalefactorperc": {"default": 30}},
      {"name": "ProdToProd", "source": "Production", "compare": "Production",
       "shiftcomparetimeframe": 3600},
    ],
    "perfsignature": [
      {"timeseries": "com.dynatrace.builtin:service.responsetime", "aggregate": "p90"},
      {"timeseries": "service.failurerate", "aggregate": "avg"},
    ],
    "servicemethods": [
      {"name": "/api/invoke", "perfsignature": [{"timeseries": "servicemethod.failurerate"}]},
    ],
  },
}
"""


def seed_path() -> Path:
    return SHARED_SEED if SHARED_SEED.exists() else SEED


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def small(gate_dir: pytest.Pytester) -> pytest.Pytester:
    gate_dir.makefile(".json", monspec=SMALL_MONSPEC)
    return gate_dir


def test_monspec_items_are_collected_with_readable_ids(small: pytest.Pytester) -> None:
    result = small.runpytest_subprocess("--monspec=monspec.json", "--stage=Staging", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "monspec.json::StagingToProduction::service.responsetime[[]p90]",
            "monspec.json::StagingToProduction::service.failurerate[[]avg]",
            "monspec.json::StagingToProduction::/api/invoke::servicemethod.failurerate[[]avg]",
            "3 tests collected*",
        ]
    )
    # ProdToProd has Production as its source: not part of the Staging gate.
    assert "ProdToProd" not in result.stdout.str()


def test_keyword_selection_picks_items(small: pytest.Pytester) -> None:
    result = small.runpytest_subprocess(
        "--monspec=monspec.json", "--stage=Staging", "--collect-only", "-q", "-k", "failurerate"
    )
    result.stdout.fnmatch_lines(["*2/3 tests collected (1 deselected)*"])


def test_seed_monspec_gives_every_staging_comparison(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        f"--monspec={seed_path()}", "--stage=Staging", "--collect-only", "-q"
    )
    # 3 comparisons have Staging as source, 9 entries each (smartscape ones included, skipped later).
    result.stdout.fnmatch_lines(["27 tests collected*"])
    for name in ("StagingToProduction::", "StagingToProductionYesterday::", "StagingToStagingLastHour::"):
        assert name in result.stdout.str()


def test_comparison_option_narrows_the_gate(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        f"--monspec={seed_path()}",
        "--stage=Staging",
        "--collect-only",
        "-q",
        "--perfsig-comparison=StagingToStagingLastHour",
    )
    result.stdout.fnmatch_lines(["9 tests collected*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stage=Staging", "--monspec=missing.json"], "perfsig: missing.json: file not found"),
        (["--monspec=monspec.json"], "--monspec needs --stage ENV*"),
        (
            ["--monspec=monspec.json", "--stage=QA"],
            "*'QA' is not an environment of monspec.json (defined: Production, Staging)",
        ),
        (
            ["--monspec=monspec.json", "--stage=Staging", "--perfsig-comparison=Nope"],
            "*--perfsig-comparison 'Nope' is not defined in monspec.json",
        ),
        (
            ["--monspec=monspec.json", "--stage=Staging", "--perfsig-comparison=ProdToProd"],
            "*comparison 'ProdToProd' has source 'Production', not the stage under test 'Staging'",
        ),
        (
            ["--monspec=monspec.json", "--stage=Staging", "--perfsig-url=Staging"],
            "*--perfsig-url expects ENV=http://host:port, got 'Staging'",
        ),
        (
            ["--monspec=monspec.json", "--stage=Staging", "--perfsig-source=redis://127.0.0.1:6379"],
            "*unknown metric source 'redis://127.0.0.1:6379': use local, prometheus://host:port*",
        ),
        (
            ["--monspec=monspec.json", "--stage=Staging", "--perfsig-url=QA=http://127.0.0.1:1"],
            "*--perfsig-url names unknown environment(s): QA",
        ),
    ],
)
def test_usage_errors_are_messages_not_tracebacks(
    small: pytest.Pytester, args: list[str], message: str
) -> None:
    result = small.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_broken_monspec_names_file_path_and_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", broken='{\n  "Svc": {\n    "environments": {"A": {}},,\n  }\n}\n')
    result = pytester.runpytest_subprocess("--monspec=broken.json", "--stage=A")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*broken.json: line 3, column *: syntax error*"])
    pytester.makefile(
        ".json",
        wrong='{"Svc": {"environments": {"A": {}}, "comparisons": ['
        '{"name": "c", "source": "A", "compare": "A", "scalefactorperc": {"default": "x"}}],'
        '"perfsignature": [{"timeseries": "service.responsetime"}]}}',
    )
    result = pytester.runpytest_subprocess("--monspec=wrong.json", "--stage=A")
    result.stderr.fnmatch_lines(["*wrong.json: Svc.comparisons[[]0].scalefactorperc.default: *number*"])


def test_unreachable_stage_errors_every_item_and_never_passes(small: pytest.Pytester) -> None:
    port = closed_port()
    result = small.runpytest_subprocess(
        "--monspec=monspec.json", "--stage=Staging", f"--perfsig-url=Staging=http://127.0.0.1:{port}", "-rE"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == 3 and "passed" not in outcomes
    result.stdout.fnmatch_lines(
        [f"*Staging at http://127.0.0.1:{port} is unreachable*", "*gate * for Staging: ERROR*"]
    )


def test_stage_without_url_is_an_error_naming_the_fix(gate_dir: pytest.Pytester) -> None:
    gate_dir.makefile(".json", monspec=SMALL_MONSPEC.replace('"url": "http://127.0.0.1:9"', ""))
    result = gate_dir.runpytest_subprocess("--monspec=monspec.json", "--stage=Staging")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "passed" not in result.parseoutcomes()
    result.stdout.fnmatch_lines(
        [
            "*no URL for Staging: set environments.Staging.url in monspec.json "
            "or pass --perfsig-url Staging=http://host:port*"
        ]
    )


def test_ini_options_are_honoured(small: pytest.Pytester) -> None:
    port = closed_port()
    small.makeini(f"""
        [pytest]
        perfsig_monspec = monspec.json
        perfsig_stage = Staging
        perfsig_users = 3
        perfsig_duration = 2
        perfsig_urls =
            Staging=http://127.0.0.1:{port}
    """)
    result = small.runpytest_subprocess()
    result.stdout.fnmatch_lines(
        ["*gate *: Staging, 3 checks, 3 users, 2 s of load*", f"*http://127.0.0.1:{port} is unreachable*"]
    )


def test_command_line_beats_ini(small: pytest.Pytester) -> None:
    small.makeini("""
        [pytest]
        perfsig_users = 3
    """)
    result = small.runpytest_subprocess(
        "--monspec=monspec.json",
        "--stage=Staging",
        "--perfsig-users=7",
        f"--perfsig-url=Staging=http://127.0.0.1:{closed_port()}",
    )
    result.stdout.fnmatch_lines(["*3 checks, 7 users*"])


def test_gate_alone_unless_paths_are_named(small: pytest.Pytester) -> None:
    small.makepyfile(test_plain="def test_plain():\n    pass\n")
    alone = small.runpytest_subprocess("--monspec=monspec.json", "--stage=Staging", "--collect-only", "-q")
    alone.stdout.fnmatch_lines(["3 tests collected*"])
    both = small.runpytest_subprocess(
        "--monspec=monspec.json", "--stage=Staging", "--collect-only", "-q", "test_plain.py"
    )
    both.stdout.fnmatch_lines(["4 tests collected*"])


def test_plain_runs_are_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "perfsig verdicts" not in result.stdout.str()
    assert "perfsig load" not in result.stdout.str()


def test_options_do_not_clash_with_locusts_plugin(pytester: pytest.Pytester) -> None:
    # Locust's own pytest plugin stays loaded; both sets of options parse together.
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == 0
    out = result.stdout.str()
    assert "--monspec" in out and "--perfsig-url" in out
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    run = pytester.runpytest_subprocess()
    run.stdout.fnmatch_lines(["plugins:*locust-*perfsig-*"])


def test_monspec_in_the_ini_file_runs_the_gate_only_when_no_test_path_is_named(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".json", monspec=SMALL_MONSPEC)
    pytester.makeini("[pytest]\nperfsig_monspec = monspec.json\nperfsig_stage = Staging\n")
    pytester.makepyfile(test_unit="def test_x():\n    pass\n")
    named = pytester.runpytest_subprocess("test_unit.py", "--collect-only", "-q")
    named.stdout.fnmatch_lines(["test_unit.py::test_x", "1 test collected*"])
    assert "monspec.json::" not in named.stdout.str()
    node = pytester.runpytest_subprocess("test_unit.py::test_x", "-q")
    assert node.ret == pytest.ExitCode.OK and "perfsig" not in node.stdout.str()
    # Naming the monspec, or naming nothing, collects the gate.
    for args in (["monspec.json"], []):
        gate = pytester.runpytest_subprocess(*args, "--collect-only", "-q")
        gate.stdout.fnmatch_lines(["monspec.json::StagingToProduction::service.failurerate[avg]"])
    both = pytester.runpytest_subprocess("test_unit.py", "--monspec=monspec.json", "--collect-only", "-q")
    both.stdout.fnmatch_lines(["monspec.json::*", "test_unit.py::test_x"])


@pytest.mark.parametrize("family", ["xunit2", "xunit1"])
def test_junit_is_valid_for_the_family_in_use(pytester: pytest.Pytester, family: str) -> None:
    from tests.junit_schemas import validate

    pytester.makefile(".json", monspec=SMALL_MONSPEC)  # Staging at port 9: every check errors
    result = pytester.runpytest_subprocess(
        "--monspec=monspec.json", "--stage=Staging", "--junitxml=junit.xml", "-o", f"junit_family={family}"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    validate(pytester.path / "junit.xml", family)
    text = (pytester.path / "junit.xml").read_text()
    name = "StagingToProduction::service.failurerate[avg]"
    if family == "xunit2":
        assert f'name="{name}::status" value="error"' in text
    else:
        assert 'name="status" value="error"' in text


def test_load_progress_logs_every_ten_seconds_off_a_terminal_and_redraws_on_one() -> None:
    from pytest_perfsig.load.runner import LoadSpec
    from pytest_perfsig.plugin import LoadProgress

    class Reporter:
        def __init__(self, isatty: bool) -> None:
            self.isatty = isatty
            self.lines: list[str] = []
            self.rewrites: list[str] = []

        def write_line(self, line: str) -> None:
            self.lines.append(line)

        def rewrite(self, line: str, erase: bool) -> None:
            self.rewrites.append(line)

        def write(self, text: str) -> None:
            self.lines.append(text)

    spec = LoadSpec("Svc", "Staging", "http://127.0.0.1:1", "x.py", 1, 1.0, 60.0)
    log = Reporter(isatty=False)
    progress = LoadProgress(log)
    for second in range(2, 62, 2):
        progress(float(second), 60.0, [(spec, second * 10, 0)])
    progress.close()
    assert [line.split("/")[0] for line in log.lines] == [
        "perfsig: load    2",
        "perfsig: load   12",
        "perfsig: load   22",
        "perfsig: load   32",
        "perfsig: load   42",
        "perfsig: load   52",
    ]
    tty = Reporter(isatty=True)
    progress = LoadProgress(tty)
    for second in range(2, 62, 2):
        progress(float(second), 60.0, [(spec, second * 10, 0)])
    progress.close()
    assert len(tty.rewrites) == 30 and tty.lines == ["\n"]
    assert tty.rewrites[-1] == "perfsig: load   60/60 s  Staging 600 req (0 failed)"


def test_smartscape_without_topology_is_an_error_that_says_how_to_skip_it(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", monspec=seed_path().read_text())
    result = pytester.runpytest_subprocess(
        "--monspec=monspec.json",
        "--stage=Staging",
        "-k",
        "StagingToProduction and not Yesterday",
        "--perfsig-url=Staging=http://127.0.0.1:9",
        "-rA",
    )
    text = result.stdout.str()
    smartscape = [
        line for line in text.splitlines() if line.startswith("ERROR monspec.json") and "smartscape" in line
    ]
    assert len(smartscape) == 2, text
    how = (
        "has no topology (smartscape {!r}): judge it with a source that can, or skip it: mark the entry "
        '"optional": true in the monspec, or run with --perfsig-optional smartscape'
    )
    assert how.format("toRelationships:calls") in text and how.format("fromRelationships:runsOn") in text
    skipped = pytester.runpytest_subprocess(
        "--monspec=monspec.json",
        "--stage=Staging",
        "-k",
        "StagingToProduction and not Yesterday",
        "--perfsig-url=Staging=http://127.0.0.1:9",
        "-rA",
        "--perfsig-optional=smartscape",
    )
    lines = skipped.stdout.str().splitlines()
    assert (
        len([line for line in lines if line.startswith("SKIPPED [1]") and line.endswith("(optional)")]) == 2
    )
    assert not [line for line in lines if line.startswith("ERROR monspec.json") and "smartscape" in line]


def test_a_named_locustfile_that_is_missing_is_a_usage_error_before_any_load(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".json", monspec=SMALL_MONSPEC)
    result = pytester.runpytest_subprocess(
        "--monspec=monspec.json", "--stage=Staging", "--perfsig-locustfile=nowhere/locustfile.py"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "nowhere/locustfile.py" in result.stderr.str() and "perfsig load" not in result.stdout.str()
    assert not (pytester.path / ".perfsig" / "perfsig.db").exists()  # no ERROR gate clutters the history
