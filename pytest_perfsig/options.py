"""The pytest face's options: every ``--perfsig-*`` flag with its ini key, type and default,
and the gate options read from them (command line first, then the ini file, then the default)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .errors import UsageError
from .gate import GateOptions, parse_url_overrides
from .metrics import DEFAULT_MIN_SAMPLES
from .store import DEFAULT_STORE_PATH

ENV_BUILD = "PERFSIG_BUILD"


def _bool(text: str) -> bool:
    """An ini value as a boolean (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


@dataclass(frozen=True)
class Option:
    """One ``--perfsig-*`` flag and its ini key (every option has one)."""

    flag: str
    ini: str
    kind: Any  # int, float, str, bool, or "linelist" (repeatable)
    default: Any
    metavar: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def type_name(self) -> str:
        names = {int: "int", float: "number", str: "string", bool: "bool", "linelist": "lines"}
        return names[self.kind]


OPTIONS: tuple[Option, ...] = (
    Option(
        "--perfsig-comparison",
        "perfsig_comparisons",
        "linelist",
        None,
        "NAME",
        "comparison to judge; repeatable (default: every comparison whose source is the stage)",
    ),
    Option(
        "--perfsig-url",
        "perfsig_urls",
        "linelist",
        None,
        "ENV=URL",
        "where an environment takes load; repeatable, overrides environments.ENV.url",
    ),
    Option("--perfsig-users", "perfsig_users", int, 10, "N", "concurrent Locust users per environment"),
    Option("--perfsig-spawn-rate", "perfsig_spawn_rate", float, 10.0, "R", "users started per second"),
    Option("--perfsig-duration", "perfsig_duration", float, 10.0, "S", "seconds of load"),
    Option(
        "--perfsig-max-duration",
        "perfsig_max_duration",
        float,
        None,
        "S",
        "longest load: past --perfsig-duration it goes on until every selected check's window holds "
        "the samples its aggregate needs (default: 3 × --perfsig-duration)",
    ),
    Option(
        "--perfsig-sequential",
        "perfsig_sequential",
        bool,
        False,
        "",
        "judge while the load runs and stop it as soon as a check is conclusively outside its limit "
        "or every check conclusively within it (anytime-valid tests, docs/judges.md); "
        "--perfsig-duration is then the longest the checks are watched",
    ),
    Option(
        "--perfsig-alpha",
        "perfsig_alpha",
        float,
        None,
        "A",
        "false-rejection level of the sequential tests per gate, split across its checks "
        '(default: each comparison\'s "sequential": {"alpha"}, else 0.05)',
    ),
    Option(
        "--perfsig-warmup",
        "perfsig_warmup",
        float,
        None,
        "S",
        "seconds at the start of the load left out of the judged window, at most a quarter of it "
        "(default: 2, or 0.5 with --perfsig-sequential)",
    ),
    Option(
        "--perfsig-locustfile",
        "perfsig_locustfile",
        str,
        None,
        "PATH",
        "locustfile of the stage under test (default: environments.ENV.locustfile, "
        "loadtests/staging.py or production.py if present, else the built-in profile)",
    ),
    Option(
        "--perfsig-store",
        "perfsig_store",
        str,
        DEFAULT_STORE_PATH,
        "PATH|URL",
        "the store of runs, samples, gates and verdicts: a SQLite file, or s3://BUCKET/KEY "
        "(downloaded before the gate, saved after it with a conditional write)",
    ),
    Option(
        "--perfsig-keep-gates",
        "perfsig_keep_gates",
        int,
        None,
        "N",
        "after the gate, delete the raw samples of runs older than the newest N gates and shrink "
        "the store (as `perfsig gc --keep-gates N`; pinned and latest passed runs stay)",
    ),
    Option(
        "--perfsig-min-samples",
        "perfsig_min_samples",
        int,
        DEFAULT_MIN_SAMPLES,
        "N",
        "fewest samples a window needs to be judged",
    ),
    Option(
        "--perfsig-build",
        "perfsig_build",
        str,
        None,
        "LABEL",
        f"build label stored with the stage's run (default: ${ENV_BUILD})",
    ),
    Option(
        "--perfsig-baseline",
        "perfsig_baseline",
        str,
        None,
        "RUN_ID",
        "compare every comparison with this stored run (see `perfsig runs`); the store pins it, "
        "so gc keeps it",
    ),
    Option(
        "--perfsig-processes",
        "perfsig_processes",
        int,
        1,
        "N",
        "Locust worker processes per environment on this machine (Locust's --processes)",
    ),
    Option(
        "--perfsig-workers",
        "perfsig_workers",
        int,
        0,
        "N",
        "remote Locust workers to wait for (start them with `perfsig load-worker --master HOST`)",
    ),
    Option(
        "--perfsig-master-bind",
        "perfsig_master_bind",
        str,
        "127.0.0.1",
        "ADDRESS",
        "address the Locust master listens on for --perfsig-workers",
    ),
    Option(
        "--perfsig-arrival-rate",
        "perfsig_arrival_rate",
        float,
        None,
        "R",
        "open load model: R tasks started per second (with the built-in profile, requests), each "
        "at its intended time, latency measured from it",
    ),
    Option(
        "--perfsig-source",
        "perfsig_source",
        str,
        None,
        "URL",
        "where metrics are read for environments without a source of their own: local (stored "
        "samples), prometheus://HOST:PORT, dynatrace://TENANT, cloudwatch://REGION (default: local)",
    ),
    Option(
        "--perfsig-load-env",
        "perfsig_load_envs",
        "linelist",
        None,
        "ENV",
        "send synthetic load to this compare environment although its numbers come from a remote "
        "source (by default such an environment is judged from its real traffic); repeatable "
        "(the monspec's way: environments.ENV.load)",
    ),
    Option(
        "--perfsig-html", "perfsig_html", str, None, "PATH", "write the HTML report (gate and history) here"
    ),
    Option("--perfsig-json", "perfsig_json", str, None, "PATH", "write the JSON report here"),
    Option(
        "--perfsig-approve",
        "perfsig_approve",
        str,
        None,
        "ACTION",
        "CodePipeline approval action to approve (the gate passed) or reject (anything else) at the end",
    ),
    Option(
        "--perfsig-pipeline",
        "perfsig_pipeline",
        str,
        None,
        "NAME",
        "pipeline of --perfsig-approve (default: from CODEBUILD_INITIATOR inside CodeBuild)",
    ),
    Option(
        "--perfsig-report-url",
        "perfsig_report_url",
        str,
        None,
        "URL",
        "link to the report, put in the approval summary",
    ),
    Option(
        "--perfsig-optional",
        "perfsig_optional",
        "linelist",
        None,
        "KIND",
        "skip, instead of failing on, entries the source cannot answer: smartscape, or a metric "
        'key such as service.responsetime; repeatable (the monspec\'s way: "optional": true)',
    ),
    Option(
        "--perfsig-sli",
        "perfsig_sli",
        str,
        None,
        "PATH",
        "Keptn SLI file of --monspec slo.yaml (default: sli.yaml or prometheus/sli.yaml beside it)",
    ),
    Option(
        "--perfsig-keptn-service",
        "perfsig_keptn_service",
        str,
        None,
        "NAME",
        "service of --monspec slo.yaml, its $SERVICE (default: filter.service, else the file's folder)",
    ),
    Option(
        "--perfsig-keptn-label",
        "perfsig_keptn_labels",
        "linelist",
        None,
        "NAME=VALUE",
        "value of $LABEL.NAME in the SLI queries of --monspec slo.yaml; repeatable",
    ),
    Option(
        "--perfsig-allow-partial",
        "perfsig_allow_partial",
        bool,
        False,
        "",
        "approve a gate that judged only some of its checks (-k, --perfsig-comparison); "
        "without it such a gate is rejected",
    ),
)
_BY_FLAG = {option.flag: option for option in OPTIONS}


def _help(option: Option) -> str:
    if option.default in (None, False) or "default" in option.help:
        return option.help
    return f"{option.help} (default: {option.default})"


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfsig", "performance-signature gate")
    group.addoption(
        "--monspec",
        dest="perfsig_monspec",
        default=None,
        metavar="PATH",
        help="monspec file (JSON, JSON5): turns the run into a performance gate",
    )
    group.addoption(
        "--stage",
        dest="perfsig_stage",
        default=None,
        metavar="ENV",
        help="environment under test, e.g. Staging",
    )
    parser.addini(
        "perfsig_monspec", "[string] monspec file: the gate runs when no test path is named", default=None
    )
    parser.addini("perfsig_stage", "[string] environment under test", default=None)
    for option in OPTIONS:
        ini_help = f"[{option.type_name}, default {option.default}] {option.help}"
        if option.kind == "linelist":
            group.addoption(
                option.flag,
                dest=option.dest,
                action="append",
                default=None,
                metavar=option.metavar,
                help=option.help,
            )
            parser.addini(option.ini, f"[lines] {option.help}", type="linelist", default=[])
        elif option.kind is bool:
            group.addoption(
                option.flag, dest=option.dest, action="store_true", default=None, help=_help(option)
            )
            parser.addini(option.ini, ini_help, default=None)
        else:
            group.addoption(
                option.flag,
                dest=option.dest,
                default=None,
                type=option.kind,
                metavar=option.metavar,
                help=_help(option),
            )
            parser.addini(option.ini, ini_help, default=None)


def setting(config: pytest.Config, flag: str) -> Any:
    """Command line first, then the ini file, then the built-in default."""
    option = _BY_FLAG[flag]
    if option.kind == "linelist":
        return config.getoption(option.dest) or config.getini(option.ini) or []
    value = config.getoption(option.dest)
    if value is None:
        raw = config.getini(option.ini)
        convert = _bool if option.kind is bool else option.kind
        value = convert(raw) if raw not in (None, "") else option.default
    return value


def gate_options(config: pytest.Config, stage: str, store_path: Path | None = None) -> GateOptions:
    """The gate's options from the command line and the ini file; ValueError / UsageError
    for values that do not parse. ``store_path``: the local file of a store named by URL."""
    return GateOptions(
        stage=stage,
        comparisons=tuple(setting(config, "--perfsig-comparison")),
        urls=parse_url_overrides(setting(config, "--perfsig-url")),
        users=setting(config, "--perfsig-users"),
        spawn_rate=setting(config, "--perfsig-spawn-rate"),
        duration_s=setting(config, "--perfsig-duration"),
        max_duration_s=setting(config, "--perfsig-max-duration"),
        locustfile=setting(config, "--perfsig-locustfile"),
        store_path=store_path or Path(setting(config, "--perfsig-store")),
        min_samples=setting(config, "--perfsig-min-samples"),
        build=setting(config, "--perfsig-build") or os.environ.get(ENV_BUILD),
        loadtests_dir=loadtests_dir(config),
        baseline_run=setting(config, "--perfsig-baseline"),
        warmup_s=setting(config, "--perfsig-warmup"),
        source_url=setting(config, "--perfsig-source"),
        load_envs=tuple(setting(config, "--perfsig-load-env")),
        processes=setting(config, "--perfsig-processes"),
        workers=setting(config, "--perfsig-workers"),
        master_bind=setting(config, "--perfsig-master-bind"),
        arrival_rate=setting(config, "--perfsig-arrival-rate"),
        optional=tuple(setting(config, "--perfsig-optional")),
        sequential=setting(config, "--perfsig-sequential"),
        alpha=_level(setting(config, "--perfsig-alpha")),
    )


KEPTN_FLAGS = ("--perfsig-sli", "--perfsig-keptn-service", "--perfsig-keptn-label")


def keptn_labels(values: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs of --perfsig-keptn-label."""
    labels: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise UsageError(
                f"--perfsig-keptn-label expects NAME=VALUE (NAME: letters, digits, _ or -), got {value!r}"
            )
        labels[name] = text
    return labels


def _level(value: float | None) -> float | None:
    if value is not None and not 0.0 < value < 1.0:
        raise ValueError(f"--perfsig-alpha must be between 0 and 1 (exclusive), got {value:g}")
    return value


def loadtests_dir(config: pytest.Config) -> Path:
    """Default profiles live in ``loadtests/`` of the working directory, else of the rootdir."""
    here = config.invocation_params.dir / "loadtests"
    return here if here.is_dir() else config.rootpath / "loadtests"
