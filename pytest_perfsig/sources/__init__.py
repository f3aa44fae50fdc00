"""Metric sources: where the gate reads the numbers it judges, chosen by URL in one table
(scheme → factory), used both to check a URL before any load and to open it:
``local`` (the samples in the embedded store, default), ``prometheus://host:port``,
``dynatrace://tenant`` and ``cloudwatch://region``."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import UsageError
from ..metrics import DEFAULT_MIN_SAMPLES
from .base import ExpressionSource, MetricSource, SampleReader, TopologySource
from .local import LocalSource

__all__ = [
    "ExpressionSource",
    "MetricSource",
    "SampleReader",
    "TopologySource",
    "check_source_url",
    "display_url",
    "open_source",
]

Factory = Callable[[str, int], MetricSource]
"""(url, min_samples) -> source; raises UsageError for a malformed URL. Opening makes no call."""


def _prometheus(url: str, min_samples: int) -> MetricSource:
    from .prometheus import PrometheusSource

    return PrometheusSource.from_url(url, min_samples=min_samples)


def _dynatrace(url: str, min_samples: int) -> MetricSource:
    from ..dynatrace.source import DynatraceSource

    return DynatraceSource.from_url(url, min_samples=min_samples)


def _cloudwatch(url: str, min_samples: int) -> MetricSource:
    from .cloudwatch import CloudWatchSource

    return CloudWatchSource.from_url(url, min_samples=min_samples)


FACTORIES: dict[str, Factory] = {
    "prometheus": _prometheus,
    "prometheus+http": _prometheus,
    "prometheus+https": _prometheus,
    "dynatrace": _dynatrace,
    "dynatrace+http": _dynatrace,
    "dynatrace+https": _dynatrace,
    "dynatrace+v1": _dynatrace,
    "dynatrace+v1+http": _dynatrace,
    "dynatrace+v1+https": _dynatrace,
    "cloudwatch": _cloudwatch,
}

LOCAL = "local"


def _factory(url: str) -> Factory:
    scheme = url.partition("://")[0]
    factory = FACTORIES.get(scheme)
    if factory is None:
        raise UsageError(
            f"unknown metric source {url.split('@')[-1]!r}: use local, prometheus://host:port, "
            "dynatrace://tenant or cloudwatch://region"
        )
    return factory


def display_url(url: str) -> str:
    """A source URL as messages may show it: without ``user:password@``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def check_source_url(url: str | None) -> None:
    """Refuse a malformed or unknown source URL up front (a usage error), not after the load."""
    if url and url != LOCAL:
        source = _factory(url)(url, DEFAULT_MIN_SAMPLES)
        close = getattr(source, "close", None)
        if close is not None:
            close()


def check_expression_source(url: str | None, what: str) -> None:
    """Refuse, before any load, a source that cannot evaluate query expressions (``what``
    names the file that needs them)."""
    source = None if not url or url == LOCAL else _factory(url)(url, DEFAULT_MIN_SAMPLES)
    try:
        if not isinstance(source, ExpressionSource):
            raise UsageError(
                f"{what} reads its SLIs with PromQL: pass --perfsig-source prometheus://HOST:PORT "
                f"(the metric source is {url.split('@')[-1] if url else LOCAL})"
            )
    finally:
        if source is not None:
            source.close()


def open_source(url: str | None, store: SampleReader, min_samples: int = DEFAULT_MIN_SAMPLES) -> MetricSource:
    """The metric source a URL names (``local`` or none: the stored samples)."""
    if not url or url == LOCAL:
        return LocalSource(store, min_samples)
    source: MetricSource = _factory(url)(url, min_samples)
    return source
