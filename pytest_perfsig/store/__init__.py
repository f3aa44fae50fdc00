"""Stores: where samples, runs and verdicts are kept."""

from .sqlite import RunRecord, SampleColumns, SampleRow, SqliteStore

DEFAULT_STORE_PATH = ".perfsig/perfsig.db"

__all__ = ["DEFAULT_STORE_PATH", "RunRecord", "SampleColumns", "SampleRow", "SqliteStore"]
