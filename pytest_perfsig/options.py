"""The pytest face's options: every ``--perfsig-*`` flag with its ini key, type and default,
and the gate options read from them (command line first, then the ini file, then the default)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .gate import GateOptions, parse_url_overrides
from .sources.local import DEFAULT_MIN_SAMPLES
from .store import DEFAULT_STORE_PATH

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


def add_options(parser: pytest.Parser) -> None:
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


def setting(config: pytest.Config, flag: str) -> Any:
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


def gate_options(config: pytest.Config, stage: str) -> GateOptions:
    """The gate's options from the command line and the ini file; ValueError / UsageError
    for values that do not parse."""
    return GateOptions(
        stage=stage,
        comparisons=tuple(setting(config, "--perfsig-comparison")),
        urls=parse_url_overrides(setting(config, "--perfsig-url")),
        users=setting(config, "--perfsig-users"),
        spawn_rate=setting(config, "--perfsig-spawn-rate"),
        duration_s=setting(config, "--perfsig-duration"),
        locustfile=setting(config, "--perfsig-locustfile"),
        store_path=Path(setting(config, "--perfsig-store")),
        min_samples=setting(config, "--perfsig-min-samples"),
        build=setting(config, "--perfsig-build") or os.environ.get(ENV_BUILD),
        loadtests_dir=loadtests_dir(config),
        baseline_run=setting(config, "--perfsig-baseline"),
        warmup_s=setting(config, "--perfsig-warmup"),
        source_url=setting(config, "--perfsig-source"),
        processes=setting(config, "--perfsig-processes"),
        workers=setting(config, "--perfsig-workers"),
        master_bind=setting(config, "--perfsig-master-bind"),
        arrival_rate=setting(config, "--perfsig-arrival-rate"),
    )


def loadtests_dir(config: pytest.Config) -> Path:
    """Default profiles live in ``loadtests/`` of the working directory, else of the rootdir."""
    here = config.invocation_params.dir / "loadtests"
    return here if here.is_dir() else config.rootpath / "loadtests"
