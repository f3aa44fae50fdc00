"""The ``perfsig`` command: check a monspec, list stored gates, show a gate's verdicts."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .cli_store import add_store_commands
from .errors import MonspecError, PerfsigError, UsageError
from .gate.storage import is_remote, opened_store
from .monspec import load_monspec
from .report.terminal import render_table, verdict_rows
from .store import DEFAULT_STORE_PATH

# As pytest: 4 for a wrong command line or monspec; 2 for a failure the command could not get
# past (a store, AWS, a source); 1 for a judged violation or error (``perfsig worker``).
EXIT_USAGE, EXIT_FAILURE = 4, 2


def _validate(args: argparse.Namespace) -> int:
    monspec = load_monspec(args.monspec)
    for warning in monspec.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for name, entity in monspec.entities.items():
        entries = list(entity.entries())
        print(
            f"{monspec.path}: {name} ({entity.etype}): {len(entity.environments)} environments "
            f"({', '.join(entity.environments)}), {len(entity.comparisons)} comparisons, "
            f"{len(entries)} signature entries"
        )
        for comparison in entity.comparisons:
            print(
                f"  {comparison.name}: {comparison.source} vs {comparison.compare} "
                f"(shift {comparison.shiftsourcetimeframe}/{comparison.shiftcomparetimeframe} s)"
            )
    return 0


def _gates(args: argparse.Namespace) -> int:
    with opened_store(args.store, write=False) as store:
        for gate in store.gates(args.limit):
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(gate.started_at))
            print(
                f"{gate.gate_id}  {started}  {gate.stage:<12} build={gate.build or '-':<8} "
                f"{gate.status.upper()}"
            )
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report.html import write_html_report
    from .report.json_report import write_json_report

    out = Path(args.out or f"perfsig-report.{args.format}")
    write = write_html_report if args.format == "html" else write_json_report
    with opened_store(args.store, write=False) as store:
        if not store.gates(1):
            print(f"perfsig: no gate in {args.store} yet", file=sys.stderr)
            return 1
        try:
            written = write(store, out, gate_id=args.gate, history_limit=args.history)
        except KeyError:
            print(f"perfsig: no gate {args.gate!r} in {args.store}", file=sys.stderr)
            return 1
    print(f"perfsig: {args.format.upper()} report {written}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with opened_store(args.store, write=False) as store:
        stored = store.verdicts(args.gate_id)
    if not stored:
        print(f"perfsig: no verdicts stored for gate {args.gate_id!r} in {args.store}", file=sys.stderr)
        return 1
    width = shutil.get_terminal_size().columns
    for line, _ in render_table(verdict_rows((v.check_id, v.verdict) for v in stored), width=width):
        print(line)
    return 0


def _register(args: argparse.Namespace) -> int:
    from .registry import new_request, open_registry, parse_user_parameters

    if args.user_parameters:
        comparison, minutes, approval = parse_user_parameters(args.user_parameters)
    else:
        if not args.comparison or args.minutes is None:
            raise UsageError("give 'Comparison,Minutes[,ApprovalAction]' or --comparison and --minutes")
        comparison, minutes, approval = args.comparison, args.minutes, args.approval_action
    pipeline = args.pipeline or _default_pipeline()
    if not pipeline:
        raise UsageError("--pipeline is required outside CodeBuild (CODEBUILD_INITIATOR is not set)")
    monspec = load_monspec(args.monspec)  # fail now, not when the worker picks it up
    if not any(e.comparison(comparison) for e in monspec.entities.values()):
        raise UsageError(f"comparison {comparison!r} is not defined in {args.monspec}")
    text = (
        Path(args.monspec).read_text(encoding="utf-8")
        if args.embed_monspec
        else str(Path(args.monspec).resolve())
    )
    request = new_request(
        pipeline, comparison, minutes, text, approval_action=approval, stage=args.stage, action=args.action
    )
    registry = open_registry(args.registry, args.store)
    registry.register(request)
    print(
        f"perfsig: registered {comparison} for {pipeline} at {request.timestamp_ms} in {registry}: "
        f"due in {minutes:g} min" + (f", then {approval} is approved or rejected" if approval else "")
    )
    return 0


def _default_pipeline() -> str | None:
    from .aws.codepipeline import default_pipeline_name

    name = default_pipeline_name()
    return str(name) if name else None


def _worker(args: argparse.Namespace) -> int:
    from .gate.deferred import codepipeline_approver, describe, run_worker
    from .registry import open_registry

    if is_remote(args.store) and not args.once:
        raise UsageError(f"{args.store} is saved when the worker ends: with an S3 store, schedule --once")
    registry = open_registry(args.registry, args.store)
    approve = None if args.no_approve else codepipeline_approver()
    with opened_store(args.store, write=True) as store:
        count = run_worker(
            registry,
            store,
            interval_s=args.interval,
            once=args.once,
            worker=args.worker_id,
            approve=approve,
            lease_s=args.lease,
            report=lambda p: print(f"perfsig: {describe(p)}", flush=True),
        )
    if args.once:
        print(f"perfsig: {count} request(s) processed from {registry}")
    return 0


def _requests(args: argparse.Namespace) -> int:
    from .registry import open_registry

    for request in open_registry(args.registry, args.store).recent(args.pipeline, args.limit):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(request.timestamp_ms / 1000))
        print(
            f"{request.pipeline}  {request.timestamp_ms}  {started}  {request.comparison:<28} "
            f"{request.minutes:g} min  {request.status:<9} attempts={request.attempts}"
            + (f" worker={request.worker} fence={request.fence}" if request.status == "running" else "")
            + (f"  {request.reason}" if request.reason else "")
        )
    return 0


def _deployment_event(args: argparse.Namespace) -> int:
    from .store import DeploymentEvent

    event = DeploymentEvent(
        env=args.stage,
        deployment_id=args.codedeploy_deployment_id,
        application=args.application,
        deployment_group=args.deployment_group,
        revision=json.loads(args.revision) if args.revision else None,
        pipeline=args.pipeline,
        stage=args.pipeline_stage or args.stage,
        remediation_url=args.remediation_url,
    )
    if args.codedeploy_deployment_id and not (
        event.application and event.deployment_group and event.revision
    ):
        from .aws.codedeploy import describe_deployment

        event = describe_deployment(event)
    with opened_store(args.store, write=True) as store:
        store.add_deployment_event(event)
    print(
        f"perfsig: deployment event {event.event_id} for {event.env}: {event.application}/"
        f"{event.deployment_group} {event.deployment_id or ''}"
    )
    from .dynatrace.events import DynatraceEvents as DynatraceApi

    dynatrace = DynatraceApi.from_env()
    if dynatrace is not None:  # stored first: a Dynatrace outage loses nothing
        dynatrace.push_deployment_event(event, args.entity_selector)
        print(f"perfsig: deployment event sent to {dynatrace.base_url}")
    return 0


def _load_worker(args: argparse.Namespace) -> int:
    """A Locust worker for a gate started with --perfsig-workers: its samples go to the master.

    The master tells it the load model and the built-in profile's endpoints; the locustfile
    must be the one the gate uses (default: the built-in profile)."""
    import os
    import subprocess

    from .load.capture import ENV_WORKER
    from .load.channel import ENV_FD
    from .load.profiles import BUILTIN_LOCUSTFILE

    command = [
        sys.executable,
        "-m",
        "pytest_perfsig.load.locust_main",
        "-f",
        args.locustfile or BUILTIN_LOCUSTFILE,
        "--worker",
        "--master-host",
        args.master,
        "--master-port",
        str(args.master_port),
        "--loglevel",
        "WARNING",
    ]
    if args.processes > 1:
        command += ["--processes", str(args.processes)]
    env = {**os.environ, ENV_WORKER: "1"}
    env.pop(ENV_FD, None)  # a worker sends its samples to the master, never to a pipe of ours
    return subprocess.call(command, env=env)


def _remediate_serve(args: argparse.Namespace) -> int:
    from .remediation.server import serve

    serve(
        args.host,
        args.port,
        args.store,
        production_prefix=args.production_prefix,
        max_body=args.max_body,
        log_level=args.log_level,
        lease_s=args.lease,
        max_connections=args.max_connections,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perfsig", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a monspec file and list what it defines")
    validate.add_argument("monspec")
    validate.set_defaults(handler=_validate)
    gates = sub.add_parser("gates", help="list the most recent gates in the store")
    gates.add_argument("--store", default=DEFAULT_STORE_PATH)
    gates.add_argument("--limit", type=int, default=20)
    gates.set_defaults(handler=_gates)
    add_store_commands(sub)
    report = sub.add_parser("report", help="write the HTML or JSON report of a gate and its history")
    report.add_argument("--out", help="file to write (default perfsig-report.html / .json)")
    report.add_argument("--format", choices=("html", "json"), default="html")
    report.add_argument("--gate", help="gate id (default: the newest)")
    report.add_argument("--history", type=int, default=50, help="gates in the history view (default 50)")
    report.add_argument("--store", default=DEFAULT_STORE_PATH)
    report.set_defaults(handler=_report)
    show = sub.add_parser("show", help="show the verdicts of one stored gate")
    show.add_argument("gate_id")
    show.add_argument("--store", default=DEFAULT_STORE_PATH)
    show.set_defaults(handler=_show)
    register = sub.add_parser("register", help="register a deferred validation request (pipeline action)")
    register.add_argument(
        "user_parameters", nargs="?", help="'Comparison,Minutes[,ApprovalAction]' (original form)"
    )
    register.add_argument("--comparison")
    register.add_argument("--minutes", type=float)
    register.add_argument("--approval-action")
    register.add_argument("--pipeline", help="default: from CODEBUILD_INITIATOR inside CodeBuild")
    register.add_argument("--stage", help="pipeline stage that registers it")
    register.add_argument("--action", help="pipeline action that registers it")
    register.add_argument("--monspec", default="monspec.json")
    register.add_argument("--embed-monspec", action="store_true", help="store the monspec text, not its path")
    register.add_argument("--registry", help="sqlite:PATH (default: the store) or dynamodb:TABLE")
    register.add_argument("--store", default=DEFAULT_STORE_PATH)
    register.set_defaults(handler=_register)
    worker = sub.add_parser("worker", help="judge due validation requests and approve / reject their actions")
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    worker.add_argument("--interval", type=float, default=120.0, help="seconds between passes (default 120)")
    worker.add_argument("--worker-id")
    worker.add_argument(
        "--lease",
        type=float,
        default=600.0,
        help="seconds a claimed request stays with this worker before others may retry it; renewed "
        "while it is judged (default 600)",
    )
    worker.add_argument("--no-approve", action="store_true", help="judge and record only, call no AWS API")
    worker.add_argument("--registry")
    worker.add_argument("--store", default=DEFAULT_STORE_PATH)
    worker.set_defaults(handler=_worker)
    requests = sub.add_parser("requests", help="list validation requests and their outcome")
    requests.add_argument("--pipeline")
    requests.add_argument("--limit", type=int, default=20)
    requests.add_argument("--registry")
    requests.add_argument("--store", default=DEFAULT_STORE_PATH)
    requests.set_defaults(handler=_requests)
    event = sub.add_parser("deployment-event", help="record a deployment into an environment")
    event.add_argument("--stage", required=True, help="environment deployed to, e.g. Production")
    event.add_argument("--pipeline")
    event.add_argument("--pipeline-stage")
    event.add_argument("--codedeploy-deployment-id")
    event.add_argument("--application")
    event.add_argument("--deployment-group")
    event.add_argument("--revision", help="the CodeDeploy revision as JSON (looked up when omitted)")
    event.add_argument("--remediation-url", help="URL to POST problems of this deployment to")
    event.add_argument(
        "--entity-selector",
        help="Dynatrace entities to attach the event to (with "
        "PERFSIG_DYNATRACE_URL; default: services tagged DeploymentGroup:<stage>)",
    )
    event.add_argument("--store", default=DEFAULT_STORE_PATH, help="SQLite file or s3://BUCKET/KEY")
    event.set_defaults(handler=_deployment_event)
    remediate = sub.add_parser("remediate", help="self-healing: problem notifications roll Production back")
    remediate_sub = remediate.add_subparsers(dest="remediate_command", required=True)
    serve = remediate_sub.add_parser(
        "serve", help="run the webhook receiver (POST /problems); secret from PERFSIG_WEBHOOK_SECRET"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    serve.add_argument("--store", default=DEFAULT_STORE_PATH)
    serve.add_argument("--production-prefix", default="Production")
    serve.add_argument("--max-body", type=int, default=64 * 1024)
    serve.add_argument(
        "--max-connections", type=int, help="open connections at most; the oldest idle one makes room (1024)"
    )
    serve.add_argument("--header-timeout", type=float, help="seconds a client has to send its headers (10)")
    serve.add_argument("--body-timeout", type=float, help="seconds a client has to send its body (10)")
    serve.add_argument(
        "--lease",
        type=float,
        help="seconds a claimed problem stays with this receiver before another may take it over "
        "(default: PERFSIG_REMEDIATION_LEASE, else 900)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="debug adds one access line per request (path only, never the query)",
    )
    serve.set_defaults(handler=_remediate_serve)
    load_worker = sub.add_parser("load-worker", help="a Locust worker for a gate run with --perfsig-workers")
    load_worker.add_argument("--master", required=True, help="host of the gate's Locust master")
    load_worker.add_argument("--master-port", type=int, default=5557)
    load_worker.add_argument(
        "-f", "--locustfile", default=None, help="the gate's locustfile (default: the built-in profile)"
    )
    load_worker.add_argument("--processes", type=int, default=1, help="worker processes on this machine")
    load_worker.set_defaults(handler=_load_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (UsageError, MonspecError) as exc:
        print(f"perfsig: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PerfsigError as exc:
        print(f"perfsig: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
