"""The embedded store: one SQLite file with load runs, raw samples, gates and verdicts,
validation requests, and deployment and remediation events.

``SqliteStore`` is the one class the rest of the package opens; each group of tables lives in
its own module (``samples``, ``gates``, ``requests``, ``events``, ``retention``) over one
connection (``database``). Samples are written by the Locust process while load runs (WAL
mode, so the pytest process can read progress at the same time), so nothing measured is lost
if the gate errors later.
"""

from __future__ import annotations

from .database import DEFAULT_TIMEOUT_S, Database
from .events import DeploymentEvent, EventTables
from .gates import GateRecord, GateTables, StoredVerdict
from .migrations import SCHEMA_VERSION
from .requests import RequestTables
from .retention import Collection, RetentionTables, StoreUsage
from .runs import RunRecord
from .samples import SampleColumns, SampleRow

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "SCHEMA_VERSION",
    "Collection",
    "Database",
    "DeploymentEvent",
    "GateRecord",
    "RunRecord",
    "SampleColumns",
    "SampleRow",
    "SqliteStore",
    "StoreUsage",
    "StoredVerdict",
]


class SqliteStore(RetentionTables, GateTables, RequestTables, EventTables):
    """Runs, samples, gates, verdicts, validation requests and events in one SQLite file."""
