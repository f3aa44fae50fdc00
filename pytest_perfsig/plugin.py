"""The pytest face: options, collection of one item per check, the load phase, reporting.

Option names are ``--monspec``, ``--stage`` and ``--perfsig-*`` so that they never clash
with Locust's own pytest plugin (``--host``, fixtures ``session`` / ``fastsession``).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import pytest

from .errors import PerfsigError
from .gate import AnyCheck, Gate, GateOptions, parse_url_overrides
from .load.runner import LoadSpec
from .monspec import load_monspec
from .report.html import write_html_report
from .report.json_report import write_json_report
from .report.terminal import STATUS_MARKUP, render_table, verdict_rows
from .sources.local import DEFAULT_MIN_SAMPLES
from .store import DEFAULT_STORE_PATH
from .verdict import Verdict

GATE_KEY = pytest.StashKey[Gate]()
ENV_BUILD = "PERFSIG_BUILD"

# (option, ini name, type, default, help) — every option has an ini equivalent.
_OPTIONS: list[tuple[str, str, Any, Any, str]] = [
    (
        "--perfsig-comparison",
        "perfsig_comparisons",
        "linelist",
        None,
        "comparison to evaluate (repeatable; default: every comparison whose source is the stage)",
    ),
    (
        "--perfsig-url",
        "perfsig_urls",
        "linelist",
        None,
        "ENV=URL where an environment is reachable for load (repeatable; overrides the monspec)",
    ),
    ("--perfsig-users", "perfsig_users", int, 10, "concurrent Locust users per environment"),
    ("--perfsig-spawn-rate", "perfsig_spawn_rate", float, 10.0, "users started per second"),
    ("--perfsig-duration", "perfsig_duration", float, 10.0, "length of the load phase, seconds"),
    (
        "--perfsig-warmup",
        "perfsig_warmup",
        float,
        2.0,
        "seconds at the start of the load left out of the judged window (at most a quarter of it)",
    ),
    (
        "--perfsig-locustfile",
        "perfsig_locustfile",
        str,
        None,
        "locustfile for the stage under test (default: loadtests/staging.py or production.py)",
    ),
    ("--perfsig-store", "perfsig_store", str, DEFAULT_STORE_PATH, "SQLite file for samples and verdicts"),
    (
        "--perfsig-min-samples",
        "perfsig_min_samples",
        int,
        DEFAULT_MIN_SAMPLES,
        "fewest samples a window needs before it is judged",
    ),
    ("--perfsig-build", "perfsig_build", str, None, f"build label recorded with the runs (env {ENV_BUILD})"),
    (
        "--perfsig-baseline",
        "perfsig_baseline",
        str,
        None,
        "RUN_ID of a stored run to compare every comparison with (see `perfsig runs`)",
    ),
    (
        "--perfsig-processes",
        "perfsig_processes",
        int,
        1,
        "Locust worker processes on this machine per environment (Locust's --processes)",
    ),
    (
        "--perfsig-workers",
        "perfsig_workers",
        int,
        0,
        "remote Locust workers to wait for (start them with `perfsig load-worker --master HOST`)",
    ),
    (
        "--perfsig-master-bind",
        "perfsig_master_bind",
        str,
        "127.0.0.1",
        "address the Locust master listens on for --perfsig-workers",
    ),
    (
        "--perfsig-arrival-rate",
        "perfsig_arrival_rate",
        float,
        None,
        "open load model: requests per second per endpoint, latency measured from the intended send time",
    ),
    (
        "--perfsig-source",
        "perfsig_source",
        str,
        None,
        "where metrics are read: local (stored samples, default), prometheus://HOST:PORT, ...",
    ),
    ("--perfsig-html", "perfsig_html", str, None, "write the HTML report (this gate and its history) here"),
    ("--perfsig-json", "perfsig_json", str, None, "write the JSON report here"),
    (
        "--perfsig-approve",
        "perfsig_approve",
        str,
        None,
        "CodePipeline approval action to approve (gate passed) or reject (anything else) at the end",
    ),
    (
        "--perfsig-pipeline",
        "perfsig_pipeline",
        str,
        None,
        "pipeline of --perfsig-approve (default: from CODEBUILD_INITIATOR inside CodeBuild)",
    ),
    (
        "--perfsig-report-url",
        "perfsig_report_url",
        str,
        None,
        "link to the report, put in the approval summary",
    ),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfsig", "performance-signature gate")
    group.addoption(
        "--monspec",
        dest="perfsig_monspec",
        default=None,
        metavar="PATH",
        help="monspec file (JSON or JSON5): turns the run into a performance gate",
    )
    group.addoption(
        "--stage",
        dest="perfsig_stage",
        default=None,
        metavar="ENV",
        help="environment under test, e.g. Staging",
    )
    parser.addini("perfsig_monspec", "monspec file for the performance gate", default=None)
    parser.addini("perfsig_stage", "environment under test", default=None)
    for flag, ini, kind, default, help_text in _OPTIONS:
        dest = ini if kind != "linelist" else flag.removeprefix("--").replace("-", "_")
        if kind == "linelist":
            group.addoption(flag, dest=dest, action="append", default=None, metavar="VALUE", help=help_text)
            parser.addini(ini, help_text, type="linelist", default=[])
        else:
            group.addoption(flag, dest=dest, default=None, type=kind, help=f"{help_text} (default {default})")
            parser.addini(ini, help_text, default=None)


def _setting(config: pytest.Config, flag: str) -> Any:
    """Command line first, then the ini file, then the built-in default."""
    for option_flag, ini, kind, default, _ in _OPTIONS:
        if option_flag != flag:
            continue
        if kind == "linelist":
            return config.getoption(flag.removeprefix("--").replace("-", "_")) or config.getini(ini) or []
        value = config.getoption(ini)
        if value is None:
            raw = config.getini(ini)
            value = kind(raw) if raw not in (None, "") else default
        return value
    raise KeyError(flag)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "perfsig: a check of the performance-signature gate")
    monspec_path = config.getoption("perfsig_monspec") or config.getini("perfsig_monspec")
    if not monspec_path:
        return
    stage = config.getoption("perfsig_stage") or config.getini("perfsig_stage")
    if not stage:
        raise pytest.UsageError(
            "--monspec needs --stage ENV: the environment under test, e.g. --stage=Staging"
        )
    try:
        monspec = load_monspec(monspec_path)
        options = GateOptions(
            stage=stage,
            comparisons=tuple(_setting(config, "--perfsig-comparison")),
            urls=parse_url_overrides(_setting(config, "--perfsig-url")),
            users=_setting(config, "--perfsig-users"),
            spawn_rate=_setting(config, "--perfsig-spawn-rate"),
            duration_s=_setting(config, "--perfsig-duration"),
            locustfile=_setting(config, "--perfsig-locustfile"),
            store_path=Path(_setting(config, "--perfsig-store")),
            min_samples=_setting(config, "--perfsig-min-samples"),
            build=_setting(config, "--perfsig-build") or os.environ.get(ENV_BUILD),
            loadtests_dir=_loadtests_dir(config),
            baseline_run=_setting(config, "--perfsig-baseline"),
            warmup_s=_setting(config, "--perfsig-warmup"),
            source_url=_setting(config, "--perfsig-source"),
            processes=_setting(config, "--perfsig-processes"),
            workers=_setting(config, "--perfsig-workers"),
            master_bind=_setting(config, "--perfsig-master-bind"),
            arrival_rate=_setting(config, "--perfsig-arrival-rate"),
        )
        config.stash[GATE_KEY] = Gate(monspec, options)
    except (PerfsigError, ValueError) as exc:
        raise pytest.UsageError(f"perfsig: {exc}") from None


def _loadtests_dir(config: pytest.Config) -> Path:
    """Default profiles live in ``loadtests/`` of the working directory, else of the rootdir."""
    here = config.invocation_params.dir / "loadtests"
    return here if here.is_dir() else config.rootpath / "loadtests"


def _gate(config: pytest.Config) -> Gate | None:
    return config.stash.get(GATE_KEY, None)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # `pytest --monspec=... --stage=...` runs the gate alone; paths named on the command line
    # are still collected beside it.
    if _gate(config) is not None and config.args_source != pytest.Config.ArgsSource.ARGS:
        return True
    return None


class MonspecFile(pytest.File):
    """The monspec as a collector: one child item per check."""

    def collect(self) -> Iterable[pytest.Item]:
        gate = _gate(self.config)
        assert gate is not None
        every: list[AnyCheck] = [*gate.checks, *gate.log_checks]
        for check in every:
            yield PerfsigItem.from_parent(self, name=check.check_id, check=check)


class ViolationError(Exception):
    """A judged entry outside its limit."""


class PerfsigItem(pytest.Item):
    def __init__(self, *, check: AnyCheck, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.add_marker("perfsig")

    def setup(self) -> None:
        gate = _gate(self.config)
        assert gate is not None
        verdict = gate.verdict(self.check)
        self.user_properties.extend(_properties(self.check, verdict))
        if verdict.status == "skipped":
            # Report the skip at the monspec item, not at this line of the plugin.
            raise pytest.skip.Exception(verdict.message, _use_item_location=True)
        if verdict.status == "error":
            # An error in setup: pytest reports E (could not judge), not F (judged and failed).
            pytest.fail(verdict.message, pytrace=False)

    def runtest(self) -> None:
        gate = _gate(self.config)
        assert gate is not None
        verdict = gate.verdict(self.check)
        if verdict.status != "pass":
            raise ViolationError(verdict.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, ViolationError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"perfsig {self.check.check_id}"


def _properties(check: AnyCheck, verdict: Verdict) -> list[tuple[str, object]]:
    props: list[tuple[str, object]] = [
        ("status", verdict.status),
        ("judge", verdict.judge),
        ("comparison", check.comparison_name),
        ("metric", verdict.metric),
        ("aggregate", verdict.aggregate),
        ("unit", verdict.unit),
        ("rule", verdict.rule),
        ("source_env", verdict.source_env),
        ("compare_env", verdict.compare_env),
    ]
    optional = [
        ("method", verdict.method),
        ("source_value", verdict.source_value),
        ("compare_value", verdict.compare_value),
        ("limit", verdict.limit),
        ("source_samples", verdict.source_samples),
        ("compare_samples", verdict.compare_samples),
        ("source_window", verdict.source_window),
        ("compare_window", verdict.compare_text),
    ]
    props += [(k, v if isinstance(v, int | float | str) else str(v)) for k, v in optional if v is not None]
    props += list((verdict.details or {}).items())
    props.append(("message", verdict.message))
    return props


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: our items must exist before -k / -m deselection runs.
    gate = _gate(config)
    if gate is None:
        return
    # The node id is the path as the user wrote it, also for a monspec outside the rootdir.
    monspec_file = MonspecFile.from_parent(
        session, path=Path(gate.monspec.path).resolve(), nodeid=gate.monspec.path
    )
    # Collected as pytest collects a file, so reporters count and list the items.
    report = monspec_file.ihook.pytest_make_collect_report(collector=monspec_file)
    monspec_file.ihook.pytest_collectreport(report=report)
    items[:0] = [node for node in report.result if isinstance(node, pytest.Item)]


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    gate = _gate(session.config)
    selected = [item.check for item in session.items if isinstance(item, PerfsigItem)]
    collect_failed = session.testsfailed and not session.config.option.continue_on_collection_errors
    if gate is not None and selected and not session.config.option.collectonly and not collect_failed:
        _run_load(session.config, gate, selected)
    return (yield)


def _run_load(config: pytest.Config, gate: Gate, checks: list[AnyCheck]) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str, **markup: bool) -> None:
        if reporter is not None:
            reporter.write_line(line, **markup)

    def progress(elapsed: float, duration: float, runs: list[tuple[LoadSpec, int, int]]) -> None:
        parts = [f"{spec.env} {requests} req ({failures} failed)" for spec, requests, failures in runs]
        write(f"perfsig: load {elapsed:4.0f}/{duration:.0f} s  " + "  ".join(parts))

    if reporter is not None:
        reporter.ensure_newline()
        reporter.section("perfsig load", sep="-")
    opts = gate.options
    write(
        f"perfsig: gate {gate.gate_id}: {opts.stage}, {len(checks)} checks, {opts.users} users, "
        f"{opts.duration_s:g} s of load, store {opts.store_path}"
    )
    gate.run(checks, progress=progress)
    if gate.load_error is not None:
        write(f"perfsig: load failed: {gate.load_error}", red=True, bold=True)
        return
    for (_, env), result in gate.load_results.items():
        write(
            f"perfsig: {env}: {result.requests} requests, {result.failures} failed, "
            f"{result.spec.load_model} model (run {result.run_id}, log {result.log_path})"
        )


REPORTS_KEY = pytest.StashKey[list[str]]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gate = _gate(session.config)
    if gate is None or not gate.started:
        return
    gate.finish()
    lines: list[str] = []
    writers = (("--perfsig-html", "HTML", write_html_report), ("--perfsig-json", "JSON", write_json_report))
    for flag, kind, write in writers:
        target = _setting(session.config, flag)
        if not target:
            continue
        try:
            written = write(gate.store, Path(target), gate_id=gate.gate_id)
            lines.append(f"perfsig: {kind} report {written}")
        except (OSError, PerfsigError) as exc:
            # The verdicts are in the store already; a report can be written again with `perfsig report`.
            lines.append(f"perfsig: could not write the {kind} report {target}: {exc}")
    action = _setting(session.config, "--perfsig-approve")
    sent = _approve(session, gate, action, lines) if action else True
    # A gate that did not pass (nothing judged, incomplete) or whose approval failed is never green.
    if (not sent or gate.status() != "pass") and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    session.config.stash[REPORTS_KEY] = lines


def _approve(session: pytest.Session, gate: Gate, action: str, lines: list[str]) -> bool:
    """Send the approval; False when it could not be sent (the run must not look green)."""
    from .aws.codepipeline import default_pipeline_name
    from .gate.approval import gate_summary, send_approval

    pipeline = _setting(session.config, "--perfsig-pipeline") or default_pipeline_name()
    if not pipeline:
        lines.append(f"perfsig: cannot approve {action}: no --perfsig-pipeline and no CODEBUILD_INITIATOR")
        return False
    summary = gate_summary(
        gate.gate_id,
        gate.options.stage,
        gate.outcome(),
        report_url=_setting(session.config, "--perfsig-report-url"),
    )
    try:
        outcome = send_approval(pipeline, action, summary)
    except PerfsigError as exc:
        lines.append(f"perfsig: approval of {action} in {pipeline} failed, nothing approved: {exc}")
        return False
    lines.append(f"perfsig: {pipeline}/{action}: {outcome.message}")
    return True


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    gate = _gate(config)
    if gate is None or not gate.verdicts:
        return
    terminalreporter.section("perfsig verdicts")
    every: list[AnyCheck] = [*gate.checks, *gate.log_checks]
    ordered = [(c.check_id, gate.verdicts[c.check_id]) for c in every if c.check_id in gate.verdicts]
    rows = verdict_rows(ordered)
    lines = render_table(rows)
    terminalreporter.write_line(lines[0], bold=True)
    for line, (_, verdict) in zip(lines[1:], ordered, strict=True):
        terminalreporter.write_line(line, **STATUS_MARKUP[verdict.status])
    status = gate.status()
    markup = {"green": True} if status == "pass" else {"red": True, "bold": True}
    stage = gate.options.stage
    terminalreporter.write_line(
        f"perfsig: gate {gate.gate_id} for {stage}: {status.upper()} (store {gate.options.store_path})",
        **markup,
    )
    for line in config.stash.get(REPORTS_KEY, []):
        terminalreporter.write_line(line, red="could not" in line or "failed" in line)
