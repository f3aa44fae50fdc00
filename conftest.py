"""Shared fixtures: the real sample app on loopback, and a pytester workspace that can run gates."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sample_app.launcher import RunningApp, start_app

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent


@pytest.fixture
def sample_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningApp]]:
    """Start real sample apps (``sample_app("Staging", build=2)``); all stopped at teardown."""
    started: list[RunningApp] = []
    log_dir = tmp_path_factory.mktemp("sample_app")

    def start(stage: str, build: int = 1, latency_ms: float = 5.0) -> RunningApp:
        app = start_app(stage, build, log_dir, latency_ms=latency_ms)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture
def gate_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester workspace with the bundled load profiles and a short think time."""
    shutil.copytree(ROOT / "loadtests", pytester.path / "loadtests")
    monkeypatch.setenv("PERFSIG_THINK_S", "0.2")
    return pytester
