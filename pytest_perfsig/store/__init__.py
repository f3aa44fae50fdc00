"""Stores: where samples, runs, gates, verdicts, validation requests and events are kept."""

from .events import DeploymentEvent
from .gates import GateRecord, StoredVerdict
from .migrations import SCHEMA_VERSION
from .runs import RunRecord
from .samples import SampleColumns, SampleRow
from .sqlite import SqliteStore

DEFAULT_STORE_PATH = ".perfsig/perfsig.db"

__all__ = [
    "DEFAULT_STORE_PATH",
    "SCHEMA_VERSION",
    "DeploymentEvent",
    "GateRecord",
    "RunRecord",
    "SampleColumns",
    "SampleRow",
    "SqliteStore",
    "StoredVerdict",
]
