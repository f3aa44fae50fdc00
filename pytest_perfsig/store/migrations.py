"""The store's schema versions and the ordered migrations between them.

The version lives in ``PRAGMA user_version``. The first release (version 1) kept it in a
``meta`` table instead and left ``user_version`` at 0; such a file is read as version 1. A
new file starts at version 0 and goes through every migration like an old one does.

``MIGRATIONS[n]`` takes a store from version ``n`` to ``n + 1``; each runs in one transaction
together with the version bump, so a store is never left half-migrated. A migration is
written against the schema of its time and must not change once released: later changes get
a new migration.

Version 2: verdicts stored with structure (service, comparison, judge, windows as numbers,
values as columns beside the full record), and finished validation requests say ``pass``
instead of ``ok``.

Version 3: validation requests carry a fencing token (``fence``), incremented by every claim,
so a worker that lost a request to another one can no longer write to it.

Version 4: remediation claims with a lease (``lease_until``, ``owner``, ``attempts``).

Version 5 (long gates and long-lived stores): a finished run's samples are column chunks of
bounded size (``sample_chunks``, replacing one block per run), each run keeps per-second
aggregates (``sample_seconds``) that outlive its raw samples, runs record how many samples the
capture dropped and when their raw samples were collected, and pinned baseline runs are kept
in ``pins``.

Version 6: a running load's samples are column batches (``sample_batches``, one per write of the
capture, laid out like the chunks), not one indexed row each (``samples``, ``sample_runs``).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from .migration_v5 import chunked_samples_and_retention
from .migration_v6 import column_batches

# ---------------------------------------------------------------------------- version 1

_V1_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        gate_id TEXT,
        service TEXT NOT NULL,
        env TEXT NOT NULL,
        url TEXT,
        build TEXT,
        locustfile TEXT,
        users INTEGER,
        spawn_rate REAL,
        duration_s REAL,
        load_model TEXT NOT NULL DEFAULT 'closed',
        started_at REAL NOT NULL,
        ended_at REAL,
        status TEXT NOT NULL,
        detail TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS samples (
        run_id TEXT NOT NULL,
        ts REAL NOT NULL,
        service TEXT NOT NULL,
        env TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        latency_ms REAL NOT NULL,
        success INTEGER NOT NULL,
        status_code INTEGER NOT NULL
    )""",
    # Covering the window queries' filter (run_id: rows of runs not yet compacted into blocks).
    "CREATE INDEX IF NOT EXISTS samples_by_window_run ON samples (service, env, ts, run_id)",
    # A finished run's samples, column by column (little-endian float64 / uint8 / int32
    # arrays): what analysis reads, so a gate over a million samples builds no million rows.
    """CREATE TABLE IF NOT EXISTS sample_blocks (
        run_id TEXT PRIMARY KEY,
        service TEXT NOT NULL,
        env TEXT NOT NULL,
        t_min REAL NOT NULL,
        t_max REAL NOT NULL,
        n INTEGER NOT NULL,
        ts BLOB NOT NULL,
        latency_ms BLOB NOT NULL,
        success BLOB NOT NULL,
        endpoint_codes BLOB NOT NULL,
        endpoint_names TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sample_blocks_by_window ON sample_blocks (service, env, t_min, t_max)",
    "CREATE INDEX IF NOT EXISTS samples_by_run ON samples (run_id)",
    """CREATE TABLE IF NOT EXISTS gates (
        gate_id TEXT PRIMARY KEY,
        monspec TEXT NOT NULL,
        stage TEXT NOT NULL,
        build TEXT,
        started_at REAL NOT NULL,
        ended_at REAL,
        status TEXT NOT NULL,
        summary TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS validation_requests (
        pipeline TEXT NOT NULL,
        timestamp_ms INTEGER NOT NULL,
        comparison TEXT NOT NULL,
        minutes REAL NOT NULL,
        approval_action TEXT,
        stage TEXT,
        action TEXT,
        monspec TEXT NOT NULL,
        status TEXT NOT NULL,
        ready_at REAL NOT NULL,
        results TEXT,
        reason TEXT,
        worker TEXT,
        lease_until REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        gate_id TEXT,
        PRIMARY KEY (pipeline, timestamp_ms)
    )""",
    "CREATE INDEX IF NOT EXISTS validation_requests_due ON validation_requests (status, ready_at)",
    """CREATE TABLE IF NOT EXISTS deployment_events (
        event_id TEXT PRIMARY KEY,
        ts REAL NOT NULL,
        env TEXT NOT NULL,
        pipeline TEXT,
        stage TEXT,
        application TEXT,
        deployment_group TEXT,
        deployment_id TEXT,
        revision TEXT,
        remediation_url TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS deployment_events_by_env ON deployment_events (env, ts)",
    """CREATE TABLE IF NOT EXISTS remediation_events (
        problem_id TEXT PRIMARY KEY,
        ts REAL NOT NULL,
        env TEXT,
        status TEXT NOT NULL,
        action TEXT,
        deployment_event_id TEXT,
        new_deployment_id TEXT,
        detail TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS verdicts (
        gate_id TEXT NOT NULL,
        check_id TEXT NOT NULL,
        record TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (gate_id, check_id)
    )""",
)


def _v1_tables(db: sqlite3.Connection) -> None:
    """The tables of the first release."""
    for statement in _V1_TABLES:
        db.execute(statement)


# ---------------------------------------------------------------------------- version 2

_V2_VERDICTS = """CREATE TABLE verdicts_v2 (
    gate_id TEXT NOT NULL,
    check_id TEXT NOT NULL,
    service TEXT,
    comparison TEXT NOT NULL,
    metric TEXT NOT NULL,
    aggregate TEXT NOT NULL,
    method TEXT,
    judge TEXT NOT NULL,
    status TEXT NOT NULL,
    source_start REAL,
    source_end REAL,
    compare_start REAL,
    compare_end REAL,
    source_value REAL,
    compare_value REAL,
    limit_value REAL,
    record TEXT NOT NULL,
    PRIMARY KEY (gate_id, check_id)
)"""

# How version 1 wrote a window: ``2026-11-28 04:09:46–04:09:55 UTC`` (the end's date only when
# it differs). Version 2 stores numbers; this is the only place that reads the text.
_WINDOW_TEXT = re.compile(
    r"^\s*(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\s*[–-]\s*((?:\d{4}-\d{2}-\d{2} )?\d{2}:\d{2}:\d{2})\s*UTC\s*$"
)


def window_from_text(text: object) -> dict[str, float] | None:
    """A version-1 window text as ``{"start", "end"}`` epoch seconds; the end is widened by
    the second the text cut off, so the window holds every sample that was judged."""
    if not isinstance(text, str):
        return None
    match = _WINDOW_TEXT.match(text)
    if match is None:
        return None
    first, last = match.groups()
    if len(last) == 8:
        last = f"{first[:10]} {last}"
    try:
        start = datetime.strptime(first, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
        end = datetime.strptime(last, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    return {"start": start, "end": end + 1.0}


def split_check_id(
    check_id: str, metric: object, method: object, services: Sequence[str]
) -> tuple[str | None, str]:
    """(service, comparison) of a version-1 check id: ``[service::]comparison::[method::]metric[agg][#n]``,
    or ``logrules::[service::]label`` for a log rule. ``services``: those the gate's runs
    measured; a single one is the service of ids without a prefix."""
    only = services[0] if len(services) == 1 else None
    if check_id.startswith("logrules::"):
        rest = check_id[len("logrules::") :]
        prefixed = next((s for s in services if rest.startswith(f"{s}::")), None)
        return prefixed or only, "logrules"
    service = next(
        (s for s in sorted(services, key=len, reverse=True) if check_id.startswith(f"{s}::")), None
    )
    rest = check_id[len(service) + 2 :] if service else check_id
    cut = rest.rfind(f"::{metric}[") if isinstance(metric, str) and metric else -1
    if cut < 0:
        return service or only, rest.split("::", 1)[0] if "::" in rest else ""
    prefix = rest[:cut]
    if isinstance(method, str) and method and prefix.endswith(f"::{method}"):
        prefix = prefix[: -len(method) - 2]
    if service is None and "::" in prefix:
        # Several entities, none of them known from a run: the comparison is the last part.
        service, prefix = prefix.rsplit("::", 1)
    return service or only, prefix


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def upgrade_verdict_record(
    check_id: str, record: dict[str, Any], status: str, services: Sequence[str]
) -> tuple[str | None, dict[str, Any]]:
    """(service, record in the version-2 shape) of a version-1 verdict record."""
    new = {k: v for k, v in record.items() if k not in ("check_id", "service")}
    new["status"] = record.get("status") or status
    for key in ("metric", "aggregate", "unit", "source_env", "compare_env", "message", "rule"):
        new.setdefault(key, "")
    new.setdefault("method", None)
    source_text, compare_text = record.get("source_window"), record.get("compare_window")
    new["source_window"] = window_from_text(source_text)
    new["compare_window"] = window_from_text(compare_text)
    # Version 1 put a baseline of stored runs ("run R", "median of 3 of 3 runs: ...") where
    # the compare window goes.
    new.setdefault("baseline", None)
    if new["compare_window"] is None and isinstance(compare_text, str) and compare_text:
        new["baseline"] = compare_text
    service, comparison = split_check_id(check_id, new["metric"], new["method"], services)
    if isinstance(record.get("service"), str):
        service = record["service"]
    new["comparison"] = record.get("comparison") or comparison
    details = record.get("details")
    if "judge" not in new:
        if isinstance(details, dict) and isinstance(details.get("judge"), str):
            new["judge"] = details["judge"]
        elif new["comparison"] == "logrules":
            new["judge"] = "logrule"
        else:
            new["judge"] = "scalefactor"
    new.setdefault("details", None)
    return service, new


def _structured_verdicts(db: sqlite3.Connection) -> None:
    """Version 2: the verdicts table with columns; request status ``ok`` becomes ``pass``."""
    db.execute(_V2_VERDICTS)
    services: dict[str, list[str]] = {}
    rows = db.execute("SELECT gate_id, check_id, record, status FROM verdicts ORDER BY rowid").fetchall()
    for gate_id, check_id, text, status in rows:
        if gate_id not in services:
            found = db.execute("SELECT DISTINCT service FROM runs WHERE gate_id = ?", (gate_id,)).fetchall()
            services[gate_id] = sorted(str(row[0]) for row in found)
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            record = {"status": "error", "message": f"unreadable verdict record: {text!r}"}
        service, new = upgrade_verdict_record(check_id, record, status, services[gate_id])
        source, compare = new["source_window"] or {}, new["compare_window"] or {}
        db.execute(
            "INSERT INTO verdicts_v2 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                gate_id,
                check_id,
                service,
                str(new["comparison"]),
                str(new["metric"]),
                str(new["aggregate"]),
                new["method"],
                str(new["judge"]),
                str(new["status"]),
                source.get("start"),
                source.get("end"),
                compare.get("start"),
                compare.get("end"),
                _number(new.get("source_value")),
                _number(new.get("compare_value")),
                _number(new.get("limit")),
                json.dumps(new),
            ),
        )
    db.execute("DROP TABLE verdicts")
    db.execute("ALTER TABLE verdicts_v2 RENAME TO verdicts")
    db.execute("CREATE INDEX verdicts_by_check ON verdicts (check_id)")
    db.execute("UPDATE validation_requests SET status = 'pass' WHERE status = 'ok'")


# ---------------------------------------------------------------------------- version 3


def _request_fences(db: sqlite3.Connection) -> None:
    """Version 3: the fencing token of validation requests. Requests claimed before it start
    at 0; the next claim makes it 1."""
    db.execute("ALTER TABLE validation_requests ADD COLUMN fence INTEGER NOT NULL DEFAULT 0")


# ---------------------------------------------------------------------------- version 4


def _remediation_leases(db: sqlite3.Connection) -> None:
    """Version 4: a ``started`` remediation claim has a lease, an owner and an attempt count,
    so that a claim left behind by a receiver that died is taken over once its lease ran out.
    Claims left ``started`` by an earlier version get a lease of 900 s from their claim."""
    db.execute("ALTER TABLE remediation_events ADD COLUMN lease_until REAL")
    db.execute("ALTER TABLE remediation_events ADD COLUMN owner TEXT")
    db.execute("ALTER TABLE remediation_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1")
    db.execute("UPDATE remediation_events SET lease_until = ts + 900 WHERE status = 'started'")


# ---------------------------------------------------------------------------- running them

MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1_tables,
    _structured_verdicts,
    _request_fences,
    _remediation_leases,
    chunked_samples_and_retention,
    column_batches,
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    """The version of an open store file: ``user_version``, else version 1's ``meta`` row,
    else 0 (a new file)."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version:
        return int(version)
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 1
    return 0


def migrate(db: sqlite3.Connection) -> None:
    """Bring the store to :data:`SCHEMA_VERSION`, one migration per transaction. Another
    process may be migrating the same file: the version is read again under the lock."""
    if schema_version(db) >= SCHEMA_VERSION:
        return  # the usual case: no write lock taken
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(db)
            if version >= SCHEMA_VERSION:
                db.execute("COMMIT")
                return
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version + 1),))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
