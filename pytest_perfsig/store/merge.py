"""Copies of one store file, and what a session changed in its copy carried into a newer one.

A session that works on a copy of the store (``store.s3``) keeps the file as it found it (the
*base*). When another writer saved a newer file meanwhile, the rows this session added or changed
(its copy minus the base) are written into the newer file:

- every table has a primary key: every row of ours that is not identical in the base replaces
  the row with the same key (new rows are added; a row both sides changed keeps ours);
- the raw samples of a run this session collected (``perfsig gc``: ``samples_collected_at``
  set) are deleted from the newer file too, so that no run says "collected" and keeps them.

Every id (gate, run, event) is unique, so what two sessions write never collides; only the same
validation request or remediation updated by two sessions at once would keep the last one, and
an unpin (``perfsig pin --remove``) made while another session saved is not carried over.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from ..errors import StoreError
from .database import Database

# Where a run's raw samples are: gone from the newer file once this session collected them.
RAW_SAMPLES = ("sample_batches", "sample_chunks")
FILES = ("main", "ours", "base")


def remove_store_file(path: Path) -> None:
    """A store file with its WAL and shared-memory files."""
    for extra in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{extra}").unlink(missing_ok=True)


def snapshot(source: Path, target: Path) -> None:
    """A consistent single-file copy of a store (its WAL folded in), also while others have it
    open; the copy has no WAL of its own, so the file alone is the whole store."""
    remove_store_file(target)
    try:
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy store {source} to {target}: {exc}") from exc


def _tables(db: sqlite3.Connection, schema: str) -> dict[str, list[tuple[str, int]]]:
    """Each table of an attached file: its (column, primary-key position) in order."""
    names = [
        str(row[0])
        for row in db.execute(
            f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        name: [(str(col[1]), int(col[5])) for col in db.execute(f"PRAGMA {schema}.table_info({name})")]
        for name in names
    }


def merge_changes(target: Path, *, base: Path, ours: Path) -> int:
    """Write into ``target`` the rows ``ours`` added or changed since ``base``; how many rows
    were written. ``target`` is brought to this version's schema first (a newer one is refused)."""
    Database(target).close()
    try:
        with closing(sqlite3.connect(target, isolation_level=None)) as db:
            db.execute("ATTACH DATABASE ? AS ours", (str(ours),))
            db.execute("ATTACH DATABASE ? AS base", (str(base),))
            versions = {name: db.execute(f"PRAGMA {name}.user_version").fetchone()[0] for name in FILES}
            if len(set(versions.values())) != 1:
                raise StoreError(f"cannot merge stores of different schema versions: {versions}")
            tables = _tables(db, "main")
            if _tables(db, "ours") != tables or _tables(db, "base") != tables:
                raise StoreError("cannot merge stores whose tables differ")
            db.execute("BEGIN IMMEDIATE")
            try:
                for table, columns in tables.items():
                    _merge_table(db, table, columns)
                for table in RAW_SAMPLES:
                    db.execute(
                        f"DELETE FROM main.{table} WHERE run_id IN "
                        "(SELECT run_id FROM ours.runs WHERE samples_collected_at IS NOT NULL)"
                    )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return db.total_changes
    except sqlite3.Error as exc:
        raise StoreError(f"cannot merge this session's rows into {target}: {exc}") from exc


def _merge_table(db: sqlite3.Connection, table: str, columns: list[tuple[str, int]]) -> None:
    if not any(pk for _, pk in columns):
        raise StoreError(f"table {table} has no primary key: its rows cannot be merged")
    names = ", ".join(name for name, _ in columns)
    db.execute(
        f"INSERT OR REPLACE INTO main.{table} ({names}) "
        f"SELECT {names} FROM ours.{table} EXCEPT SELECT {names} FROM base.{table}"
    )
