"""What a gate consists of: its options, one check per perfsignature entry of every comparison
whose source is the stage, one per log rule, and the load each environment gets."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LoadError, UsageError
from ..load.profiles import BUILTIN_LOCUSTFILE, builtin_endpoints, builtin_env, describe_builtin, pace_for
from ..load.spec import LoadSpec
from ..metrics import DEFAULT_MIN_SAMPLES
from ..monspec import Comparison, LogRule, Monspec, SignatureEntry
from ..sources import LOCAL
from ..store import DEFAULT_STORE_PATH

PRODUCTION_PREFIX = "Production"
#: seconds at the start of the load left out of the judged window, unless --perfsig-warmup says
WARMUP_S = 2.0
#: the same for a sequential gate: every second of warm-up is a second before any decision,
#: and the tests are valid from their first sample (docs/judges.md, "Warm-up")
SEQUENTIAL_WARMUP_S = 0.5
#: the status of a stored run that stands for an environment judged without synthetic load
NOT_LOADED = "not_loaded"


@dataclass(frozen=True)
class GateOptions:
    stage: str
    comparisons: tuple[str, ...] = ()
    urls: dict[str, str] = field(default_factory=dict)
    users: int = 10
    spawn_rate: float = 10.0
    duration_s: float = 10.0
    locustfile: str | None = None
    store_path: Path = Path(DEFAULT_STORE_PATH)
    min_samples: int = DEFAULT_MIN_SAMPLES
    build: str | None = None
    loadtests_dir: Path = Path("loadtests")
    # Pin the compare side of every comparison to one stored run.
    baseline_run: str | None = None
    # Seconds at the start of the load phase left out of every window (None: the default of
    # the gate's kind, see ``warmup``).
    warmup_s: float | None = None
    # Where metrics are read for environments whose monspec names no source.
    source_url: str | None = None
    # Compare environments that get synthetic load although their numbers come from a remote
    # source (--perfsig-load-env; the monspec's way: environments.<Env>.load).
    load_envs: tuple[str, ...] = ()
    # Load topology and model.
    processes: int = 1
    workers: int = 0
    master_bind: str = "127.0.0.1"
    arrival_rate: float | None = None  # open model: tasks started per second in total
    # Closed model: the load goes on past duration_s, up to this (default 3 × duration_s),
    # until every selected check's window holds the samples its aggregate needs.
    max_duration_s: float | None = None
    # Entries skipped, not errors, when their source cannot answer them: "smartscape" or a
    # metric key (for monspecs that must stay unchanged; the monspec's own way is "optional").
    optional: tuple[str, ...] = ()
    # Judge while the load runs and stop it once every check is decided (gate/sequential.py);
    # duration_s is then the longest the checks are watched.
    sequential: bool = False
    # The sequential tests' false-rejection level for every comparison (None: each
    # comparison's "sequential": {"alpha"}, else 0.05), split across the gate's checks.
    alpha: float | None = None

    @property
    def warmup(self) -> float:
        """Seconds at the start of the load phase left out of every window."""
        if self.warmup_s is not None:
            return self.warmup_s
        return SEQUENTIAL_WARMUP_S if self.sequential else WARMUP_S

    @property
    def max_duration(self) -> float:
        return self.max_duration_s if self.max_duration_s is not None else 3 * self.duration_s

    def is_optional(self, entry: SignatureEntry) -> bool:
        return entry.optional or ("smartscape" if entry.smartscape else entry.metric_key) in self.optional


@dataclass(frozen=True)
class Check:
    """One signature entry of one comparison: what becomes one test item."""

    check_id: str
    service: str
    comparison: Comparison
    method: str | None
    entry: SignatureEntry

    @property
    def comparison_name(self) -> str:
        return self.comparison.name


@dataclass(frozen=True)
class LogCheck:
    """One log rule of one service, judged in the stage under test."""

    check_id: str
    service: str
    env: str
    rule: LogRule
    location: str  # file path or URL

    @property
    def comparison_name(self) -> str:
        return "logrules"


AnyCheck = Check | LogCheck


def parse_url_overrides(values: Iterable[str]) -> dict[str, str]:
    """``ENV=URL`` pairs from the command line."""
    urls: dict[str, str] = {}
    for value in values:
        env, sep, url = value.partition("=")
        if not sep or not env or not url.startswith(("http://", "https://")):
            raise UsageError(f"--perfsig-url expects ENV=http://host:port, got {value!r}")
        urls[env] = url.rstrip("/")
    return urls


def plan_checks(monspec: Monspec, options: GateOptions, *, allow_empty: bool = False) -> list[Check]:
    """Every check the stage's gate consists of, in monspec order."""
    if options.stage not in monspec.environments():
        raise UsageError(
            f"--stage {options.stage!r} is not an environment of {monspec.path} "
            f"(defined: {', '.join(sorted(monspec.environments()))})"
        )
    for name in options.comparisons:
        matches = [c for e in monspec.entities.values() if (c := e.comparison(name)) is not None]
        if not matches:
            raise UsageError(f"--perfsig-comparison {name!r} is not defined in {monspec.path}")
        if all(c.source != options.stage for c in matches):
            raise UsageError(
                f"comparison {name!r} has source {matches[0].source!r}, "
                f"not the stage under test {options.stage!r}"
            )
    unknown_urls = set(options.urls) - monspec.environments()
    if unknown_urls:
        raise UsageError(f"--perfsig-url names unknown environment(s): {', '.join(sorted(unknown_urls))}")
    prefix_entity = len(monspec.entities) > 1
    checks: list[Check] = []
    for service, entity in monspec.entities.items():
        for comparison in entity.comparisons:
            if comparison.source != options.stage:
                continue
            if options.comparisons and comparison.name not in options.comparisons:
                continue
            seen: dict[str, int] = {}
            for method, entry in entity.entries():
                scope = f"{method}::" if method else ""
                base = f"{comparison.name}::{scope}{entry.metric_key}[{entry.aggregate}]"
                if prefix_entity:
                    base = f"{service}::{base}"
                seen[base] = seen.get(base, 0) + 1
                check_id = base if seen[base] == 1 else f"{base}#{seen[base]}"
                checks.append(Check(check_id, service, comparison, method, entry))
    if not checks and not allow_empty:
        raise UsageError(
            f"no comparison in {monspec.path} has {options.stage!r} as its source"
            + (f" among {', '.join(options.comparisons)}" if options.comparisons else "")
        )
    return checks


def plan_log_checks(monspec: Monspec, stage: str) -> list[LogCheck]:
    """One check per log rule of every entity that knows the stage. A stage without a log
    location keeps its checks: they error with the reason instead of vanishing."""
    checks = []
    prefix = len(monspec.entities) > 1
    for service, entity in monspec.entities.items():
        env = entity.environments.get(stage)
        if env is None:
            continue
        location = env.log or ""
        if location and not location.startswith(("http://", "https://")):
            location = str(Path(monspec.path).parent / location)
        for rule in entity.logrules:
            check_id = f"logrules::{service + '::' if prefix else ''}{rule.label}"
            checks.append(LogCheck(check_id, service, stage, rule, location))
    return checks


def compares_same_window(comparison: Comparison, options: GateOptions) -> bool:
    """Whether the compare side is measured in the gate's own window (not shifted, not stored runs)."""
    return (
        comparison.shiftsourcetimeframe == comparison.shiftcomparetimeframe == 0
        and comparison.baseline is None
        and options.baseline_run is None
    )


def default_locustfile(env: str, loadtests_dir: Path) -> Path:
    """The conventional locustfile of an environment: ``loadtests/production.py`` for
    Production stages, ``loadtests/staging.py`` for the others (used when it exists)."""
    profile = "production.py" if env.startswith(PRODUCTION_PREFIX) else "staging.py"
    return loadtests_dir / profile


def source_url(monspec: Monspec, options: GateOptions, service: str, env: str) -> str:
    """Where an environment's numbers are read: its own source, else --perfsig-source, else local."""
    return monspec.entities[service].environments[env].source or options.source_url or LOCAL


def takes_load(monspec: Monspec, options: GateOptions, service: str, env: str) -> bool | None:
    """Whether a compare environment gets synthetic load: True when asked for (--perfsig-load-env,
    ``load: true``), False when refused (``load: false``) or when its numbers come from a remote
    source (its real users are the baseline, as in the original pipeline), None (load it if it
    has a URL) with the local source."""
    if env in options.load_envs:
        return True
    configured = monspec.entities[service].environments[env].load
    if configured is not None:
        return configured
    return None if source_url(monspec, options, service, env) == LOCAL else False


def not_loaded(
    monspec: Monspec, options: GateOptions, checks: Iterable[AnyCheck]
) -> list[tuple[str, str, str]]:
    """(service, environment, source URL) of the compare environments judged in the gate's
    window that get no synthetic load (``takes_load`` is False)."""
    found: dict[tuple[str, str, str], None] = {}
    for check in checks:
        if isinstance(check, LogCheck):
            continue
        comparison, env = check.comparison, check.comparison.compare
        if (
            compares_same_window(comparison, options)
            and env not in {comparison.source, options.stage}
            and takes_load(monspec, options, check.service, env) is False
        ):
            found[(check.service, env, source_url(monspec, options, check.service, env))] = None
    return list(found)


def plan_load(monspec: Monspec, options: GateOptions, checks: Iterable[AnyCheck]) -> list[LoadSpec]:
    """The stage under test, plus every compare environment judged in the same window that
    takes load (``takes_load``): asked for, or read from the local source and with a URL (the
    original had real-user traffic on Production all the time)."""
    wanted: dict[tuple[str, str], None] = {}
    for check in checks:
        wanted[(check.service, options.stage)] = None
        if isinstance(check, LogCheck):
            continue
        comparison = check.comparison
        if compares_same_window(comparison, options) and comparison.compare != comparison.source:
            load = takes_load(monspec, options, check.service, comparison.compare)
            if load or (load is None and _url(monspec, options, check.service, comparison.compare)):
                wanted[(check.service, comparison.compare)] = None
    rate = options.arrival_rate
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise UsageError(f"--perfsig-arrival-rate must be a positive number of tasks/s, got {rate:g}")
    specs = []
    for service, env in wanted:
        url = _url(monspec, options, service, env)
        if url is None:
            raise LoadError(
                f"no URL for {env}: set environments.{env}.url in {monspec.path} "
                f"or pass --perfsig-url {env}=http://host:port"
            )
        profile = _locustfile(monspec, options, service, env)
        specs.append(
            LoadSpec(
                service=service,
                env=env,
                url=url,
                locustfile=profile.locustfile,
                users=options.users,
                spawn_rate=options.spawn_rate,
                duration_s=options.duration_s,
                extra_env=profile.extra_env,
                build=options.build if env == options.stage else None,
                processes=options.processes,
                workers=options.workers,
                master_bind=options.master_bind,
                profile=profile.description,
                arrival_rate=options.arrival_rate,
                max_duration_s=options.max_duration if options.arrival_rate is None else None,
            )
        )
    return specs


@dataclass(frozen=True)
class LoadProfile:
    """The locustfile an environment gets, its name for people and its settings."""

    locustfile: str
    description: str
    extra_env: dict[str, str] = field(default_factory=dict)


def _url(monspec: Monspec, options: GateOptions, service: str, env: str) -> str | None:
    return options.urls.get(env) or monspec.entities[service].environments[env].url


def _locustfile(monspec: Monspec, options: GateOptions, service: str, env: str) -> LoadProfile:
    """``--perfsig-locustfile`` (stage under test only), then ``environments.<Env>.locustfile``,
    then the conventional ``loadtests/staging.py`` / ``production.py`` when it exists, then the
    built-in profile. A file that was named and does not exist is a usage error."""
    entity = monspec.entities[service]
    if env == options.stage and options.locustfile:
        path = Path(options.locustfile)
        if not path.is_file():
            raise UsageError(
                f"--perfsig-locustfile {options.locustfile}: no such file (for the stage under test "
                f"{env}); fix the path, or leave the option out to use the monspec's or the built-in profile"
            )
        return LoadProfile(str(path), str(path))
    configured = entity.environments[env].locustfile
    if configured is not None:
        path = Path(monspec.path).parent / configured
        if not path.is_file():
            # --perfsig-locustfile applies to the stage under test only: suggest it nowhere else.
            hint = f", or pass --perfsig-locustfile for {env}" if env == options.stage else ""
            raise UsageError(
                f"environments.{env}.locustfile {configured!r} in {monspec.path}: no such file ({path}); "
                f"fix the path (relative to the monspec) or remove the field for the built-in profile{hint}"
            )
        return LoadProfile(str(path), str(path))
    conventional = default_locustfile(env, options.loadtests_dir)
    if conventional.is_file():
        return LoadProfile(str(conventional), str(conventional))
    endpoints = builtin_endpoints(method.name for method in entity.servicemethods)
    pace = pace_for(env)
    return LoadProfile(BUILTIN_LOCUSTFILE, describe_builtin(endpoints, pace), builtin_env(endpoints, pace))
