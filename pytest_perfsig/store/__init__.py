"""Stores: where samples, runs and verdicts are kept."""

from .sqlite import DeploymentEvent, RunRecord, SampleColumns, SampleRow, SqliteStore

DEFAULT_STORE_PATH = ".perfsig/perfsig.db"

__all__ = ["DEFAULT_STORE_PATH", "DeploymentEvent", "RunRecord", "SampleColumns", "SampleRow", "SqliteStore"]
