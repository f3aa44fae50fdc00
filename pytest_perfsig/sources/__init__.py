"""Metric sources: where the gate reads the numbers it judges."""

from .base import Measurement, MetricQuery, MetricSource, Window

__all__ = ["Measurement", "MetricQuery", "MetricSource", "Window"]
