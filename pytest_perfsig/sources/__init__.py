"""Metric sources: where the gate reads the numbers it judges, chosen by URL:
``local`` (the samples in the embedded store, default), ``prometheus://host:port``, ..."""

from __future__ import annotations

from ..errors import UsageError
from ..store.sqlite import SqliteStore
from .base import Measurement, MetricQuery, MetricSource, Window
from .local import DEFAULT_MIN_SAMPLES, LocalSource

__all__ = ["Measurement", "MetricQuery", "MetricSource", "Window", "check_source_url", "open_source"]


SCHEMES = (
    "prometheus",
    "prometheus+http",
    "prometheus+https",
    "dynatrace",
    "dynatrace+http",
    "dynatrace+v1",
    "dynatrace+v1+http",
    "cloudwatch",
)


def check_source_url(url: str | None) -> None:
    """Refuse an unknown source URL up front (a usage error), not in the middle of judging."""
    if url and url != "local" and url.partition("://")[0] not in SCHEMES:
        raise UsageError(
            f"unknown metric source {url!r}: use local, prometheus://host:port, "
            "dynatrace://tenant or cloudwatch://region"
        )


def open_source(url: str | None, store: SqliteStore, min_samples: int = DEFAULT_MIN_SAMPLES) -> MetricSource:
    """The metric source a URL names."""
    if not url or url == "local":
        return LocalSource(store, min_samples)
    scheme = url.partition("://")[0]
    raise UsageError(
        f"unknown metric source {url!r}: use local" + (f" ({scheme!r} is not supported)" if scheme else "")
    )
