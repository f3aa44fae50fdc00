"""The pytest face's hooks: the gate is built at configure time, its items are collected, the
load runs before the items, reports and the approval follow at the end of the session.

Option names are ``--monspec``, ``--stage`` and ``--perfsig-*`` so that they never clash
with Locust's own pytest plugin (``--host``, fixtures ``session`` / ``fastsession``).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from .errors import PerfsigError, UsageError
from .gate import AnyCheck, Gate
from .gate.status import partial_note
from .gate.storage import StoreLocation, store_location
from .items import GATE_KEY, MonspecFile, PerfsigItem, gate_of
from .load.spec import LoadSpec
from .monspec import Monspec, is_slo_file, load_monspec, load_slo
from .options import KEPTN_FLAGS, add_options, gate_options, keptn_labels, setting
from .report.html import write_html_report
from .report.json_report import write_json_report
from .report.storage import describe_collection
from .report.terminal import STATUS_MARKUP, render_table, verdict_rows
from .sources import display_url


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "perfsig: a check of the performance-signature gate")
    named = config.getoption("perfsig_monspec")
    monspec_path = named or config.getini("perfsig_monspec")
    if not monspec_path:
        return
    if not named and config.args_source == pytest.Config.ArgsSource.ARGS and not _names(config, monspec_path):
        # A monspec from the ini file does not start the gate when test paths are named
        # (`pytest tests/test_x.py`): only `pytest`, `pytest MONSPEC` or --monspec do.
        return
    stage = config.getoption("perfsig_stage") or config.getini("perfsig_stage")
    if not stage:
        raise pytest.UsageError(
            "--monspec needs --stage ENV: the environment under test, e.g. --stage=Staging"
        )
    try:
        monspec = _load(config, monspec_path, stage)
        location = store_location(setting(config, "--perfsig-store"))
        gate = Gate(monspec, gate_options(config, stage, store_path=location.path))
        gate.check_load_plan()
        location.open()  # an s3:// store is downloaded now, before any load
        config.stash[STORE_KEY] = location
        gate.store  # noqa: B018  (opened now: a store that cannot be written is a usage error before any load)
        if not config.option.collectonly:
            # Unreachable sources and refused credentials are found now, before any load is sent.
            gate.probe_sources()
        config.stash[GATE_KEY] = gate
    except (PerfsigError, ValueError) as exc:
        raise pytest.UsageError(f"perfsig: {exc}") from None
    for warning in monspec.warnings:
        config.issue_config_time_warning(pytest.PytestConfigWarning(f"perfsig: {warning}"), stacklevel=2)


def _load(config: pytest.Config, path: str, stage: str) -> Monspec:
    """The monspec (JSON), or a Keptn SLO file (YAML) and its SLI file."""
    if not is_slo_file(path):
        given = [flag for flag in KEPTN_FLAGS if setting(config, flag)]
        if given:
            raise UsageError(f"{', '.join(given)}: for a Keptn slo.yaml only, not the monspec {path}")
        return load_monspec(path)
    return load_slo(
        path,
        stage=stage,
        service=setting(config, "--perfsig-keptn-service"),
        sli_path=setting(config, "--perfsig-sli"),
        labels=keptn_labels(setting(config, "--perfsig-keptn-label")),
    )


STORE_KEY = pytest.StashKey[StoreLocation]()


def _store_name(config: pytest.Config, gate: Gate) -> str:
    """The store as the user named it (its URL), not the working file of a remote one."""
    location = config.stash.get(STORE_KEY, None)
    return location.url if location is not None else str(gate.options.store_path)


def _save_store(config: pytest.Config, gate: Gate, lines: list[str]) -> None:
    """Send a remote store back, before anything reports or approves the gate: a gate whose
    results could not be kept is not a pass (as for a verdict that could not be stored)."""
    location = config.stash.get(STORE_KEY, None)
    if location is None or not location.remote:
        return
    try:
        lines.append(f"perfsig: {location.save()}")
    except PerfsigError as exc:
        gate.store_errors.append(str(exc))
        gate.finish()  # the working file now says why, too


def pytest_unconfigure(config: pytest.Config) -> None:
    # A remote store's working file goes once saved (or when no gate wrote to it); a file
    # that could not be saved stays, and the summary said where.
    location = config.stash.get(STORE_KEY, None)
    gate = _gate(config)
    if location is None or not location.remote or not (location.saved or gate is None or not gate.started):
        return
    if gate is not None:
        gate.store.close()
    location.discard()


def _names(config: pytest.Config, monspec_path: str) -> bool:
    """Whether a command-line argument names the monspec file."""
    wanted = (config.invocation_params.dir / monspec_path).resolve()
    return any((config.invocation_params.dir / arg.split("::")[0]).resolve() == wanted for arg in config.args)


def _gate(config: pytest.Config) -> Gate | None:
    return gate_of(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    # `pytest monspec.json` (the monspec named as a path) collects the gate like a test file.
    gate = _gate(parent.config)
    if gate is not None and file_path.resolve() == Path(gate.monspec.path).resolve():
        return MonspecFile.from_parent(parent, path=file_path)
    return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # `pytest --monspec=... --stage=...` runs the gate alone; paths named on the command line
    # are still collected beside it.
    if _gate(config) is not None and config.args_source != pytest.Config.ArgsSource.ARGS:
        return True
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: our items must exist before -k / -m deselection runs.
    gate = _gate(config)
    if gate is None or any(isinstance(item, PerfsigItem) for item in items):
        return  # collected already: the monspec was named as a path
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


class LoadProgress:
    """The load's progress: on a terminal one line redrawn in place; in a log (CI) a line
    every ``LOG_EVERY_S`` seconds, so that a long gate does not flood the log."""

    LOG_EVERY_S = 10.0

    def __init__(self, reporter: Any, notes: list[str] | None = None) -> None:
        self.reporter = reporter
        self.tty = bool(getattr(reporter, "isatty", False))
        self.next_log_s = 0.0
        self.drawn = False
        self.notes = notes or []  # environments judged without load, shown beside the loaded ones

    def __call__(self, elapsed: float, duration: float, runs: list[tuple[LoadSpec, int, int]]) -> None:
        parts = [f"{spec.env} {requests} req ({failures} failed)" for spec, requests, failures in runs]
        parts += self.notes
        clock = (
            f"{elapsed:4.0f}/{duration:.0f} s"
            if elapsed <= duration
            else f"{elapsed:4.0f} s, until enough samples"
        )
        line = f"perfsig: load {clock}  " + "  ".join(parts)
        if self.reporter is None:
            return
        if self.tty:
            self.reporter.rewrite(line, erase=True)
            self.drawn = True
        elif elapsed >= self.next_log_s:
            self.reporter.write_line(line)
            self.next_log_s = elapsed + self.LOG_EVERY_S

    def close(self) -> None:
        if self.drawn:
            self.reporter.write("\n")


def _run_load(config: pytest.Config, gate: Gate, checks: list[AnyCheck]) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str, **markup: bool) -> None:
        if reporter is not None:
            reporter.write_line(line, **markup)

    unloaded = [(env, display_url(url)) for _, env, url in gate.unloaded(checks)]
    progress = LoadProgress(reporter, [f"{env} not loaded" for env, _ in unloaded])

    if reporter is not None:
        reporter.ensure_newline()
        reporter.section("perfsig load", sep="-")
    opts = gate.options
    load = (
        f"at most {opts.duration_s:g} s of load, judged as it runs"
        if opts.sequential
        else (f"{opts.duration_s:g} s of load")
    )
    write(
        f"perfsig: gate {gate.gate_id}: {opts.stage}, {len(checks)} checks, {opts.users} users, "
        f"{load}, store {_store_name(config, gate)}"
    )
    for env, url in unloaded:
        write(f"perfsig: {env}: not loaded (its numbers come from {url})")
    if opts.baseline_run is not None:
        try:
            gate.store.pin_run(opts.baseline_run, gate.gate_id)  # gc never collects it
        except PerfsigError as exc:
            write(f"perfsig: could not pin the baseline run {opts.baseline_run}: {exc}", red=True)
    gate.run(checks, progress=progress)
    progress.close()
    if gate.load_error is not None:
        write(f"perfsig: load failed: {gate.load_error}", red=True, bold=True)
        return
    if gate.monitor is not None and gate.monitor.stopped:
        write(f"perfsig: load stopped early: {gate.monitor.stopped}")
    for (_, env), result in gate.load_results.items():
        write(
            f"perfsig: {env}: {result.detail or f'{result.requests} requests, {result.failures} failed'}, "
            f"{result.spec.load_model} model, {result.spec.described} (run {result.run_id}, "
            f"log {result.log_path})"
        )


REPORTS_KEY = pytest.StashKey[list[str]]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gate = _gate(session.config)
    if gate is None or not gate.started:
        return
    gate.finish()
    lines: list[str] = []
    _save_store(session.config, gate, lines)
    writers = (("--perfsig-html", "HTML", write_html_report), ("--perfsig-json", "JSON", write_json_report))
    for flag, kind, write in writers:
        target = setting(session.config, flag)
        if not target:
            continue
        try:
            written = write(gate.store, Path(target), gate_id=gate.gate_id)
            lines.append(f"perfsig: {kind} report {written}")
        except (OSError, PerfsigError) as exc:
            # The verdicts are in the store already; a report can be written again with `perfsig report`.
            lines.append(f"perfsig: could not write the {kind} report {target}: {exc}")
    action = setting(session.config, "--perfsig-approve")
    sent = _approve(session, gate, action, lines) if action else True
    keep = setting(session.config, "--perfsig-keep-gates")
    if keep is not None:
        lines += _collect(gate, keep)
    # A gate that did not pass (nothing judged, incomplete) or whose approval failed is never green.
    if (not sent or gate.status() != "pass") and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    session.config.stash[REPORTS_KEY] = lines


def _collect(gate: Gate, keep_gates: int) -> list[str]:
    """Retention after the gate (ini ``perfsig_keep_gates``): its outcome is decided already;
    a store that cannot be collected is reported, it does not change the gate."""
    try:
        done = gate.store.collect_samples(keep_gates=max(0, keep_gates))
    except (PerfsigError, ValueError) as exc:
        return [f"perfsig: gc failed, nothing changed in the gate: {exc}"]
    return [f"perfsig: {line}" for line in describe_collection(done)]


def _approve(session: pytest.Session, gate: Gate, action: str, lines: list[str]) -> bool:
    """Send the approval; False when it could not be sent (the run must not look green)."""
    from .aws.codepipeline import default_pipeline_name
    from .gate.approval import gate_summary, send_approval

    pipeline = setting(session.config, "--perfsig-pipeline") or default_pipeline_name()
    if not pipeline:
        lines.append(f"perfsig: cannot approve {action}: no --perfsig-pipeline and no CODEBUILD_INITIATOR")
        return False
    summary = gate_summary(
        gate.gate_id,
        gate.options.stage,
        gate.outcome(),
        report_url=setting(session.config, "--perfsig-report-url"),
        allow_partial=setting(session.config, "--perfsig-allow-partial"),
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
    width = config.get_terminal_writer().fullwidth
    for line, status in render_table(verdict_rows(ordered), width=width):
        terminalreporter.write_line(line, **(STATUS_MARKUP[status] if status else {"bold": True}))
    outcome = gate.outcome()
    markup = {"green": True} if outcome.passed else {"red": True, "bold": True}
    where = f"{gate.options.stage}: {outcome.status.upper()} (store {_store_name(config, gate)})"
    terminalreporter.write_line(
        f"perfsig: gate {gate.gate_id} for {where}",
        **markup,
    )
    if outcome.total_score is not None:
        terminalreporter.write_line(f"perfsig: {outcome.total_score}", **markup)
    if outcome.partial:
        terminalreporter.write_line(f"perfsig: {partial_note(outcome)}", yellow=True)
    for problem in gate.gate_problems():
        terminalreporter.write_line(f"perfsig: {problem}", red=True)
    for line in config.stash.get(REPORTS_KEY, []):
        terminalreporter.write_line(line, red="could not" in line or "failed" in line)
