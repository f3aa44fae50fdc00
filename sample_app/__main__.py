"""Command line entry point: ``python -m sample_app --stage S --build N --port P``."""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from sample_app.app import AppConfig, create_app, startup_line
from sample_app.urls import parse_loopback_url


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _latency(value: str) -> float:
    latency = float(value)
    if not math.isfinite(latency) or latency < 0:
        raise argparse.ArgumentTypeError(f"latency must be >= 0 ms: {value}")
    return latency


def _loopback_url(value: str) -> str:
    try:
        parse_loopback_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def build_parser() -> argparse.ArgumentParser:
    """Argument parser; env defaults are read when this is called."""
    parser = argparse.ArgumentParser(
        prog="python -m sample_app", description="Sample app for the performance-gate demo."
    )
    parser.add_argument(
        "--stage",
        default=os.environ.get("DEPLOYMENT_GROUP_NAME") or "Staging",
        help="stage name; names starting with 'Production' are production "
        "(default: $DEPLOYMENT_GROUP_NAME or Staging)",
    )
    parser.add_argument(
        "--build",
        type=int,
        # argparse applies type= to string defaults, so a bad env value errors cleanly.
        default=os.environ.get("BUILD_NUMBER") or "1",
        help="build number 1-4 (default: $BUILD_NUMBER or 1)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8080, help="port, 0 = any free (default: 8080)")
    parser.add_argument(
        "--latency-ms", type=_latency, default=5.0, help="base latency per request (default: 5)"
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=Path("serviceoutput.log"),
        help="log file, appended to (default: ./serviceoutput.log)",
    )
    parser.add_argument(
        "--downstream-url",
        type=_loopback_url,
        default=None,
        help="loopback URL /api/invoke calls (default: this app's /api/echo)",
    )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> AppConfig:
    args = build_parser().parse_args(argv)
    return AppConfig(
        stage=args.stage,
        build=args.build,
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        log_file=args.log_file,
        downstream_url=args.downstream_url,
    )


class _AnnouncingServer(uvicorn.Server):
    """Prints the readiness line only once the socket actually listens."""

    def __init__(self, config: uvicorn.Config, app_config: AppConfig) -> None:
        super().__init__(config)
        self.app_config = app_config

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started or self.should_exit:
            return
        port = self.app_config.port
        if self.servers and self.servers[0].sockets:
            # The bound socket knows the real port when --port 0 was given.
            port = int(self.servers[0].sockets[0].getsockname()[1])
        print(startup_line(self.app_config, port), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    app = create_app(config)
    server = _AnnouncingServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            workers=1,
            access_log=False,
            log_level="warning",
            lifespan="on",
        ),
        config,
    )
    server.run()
    # uvicorn itself exits with 1 on a bind failure; this covers a shutdown
    # requested before startup completed.
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
