"""The store's SQLite file: opening it (WAL, busy timeout), bringing its schema to the current
version, and the three ways the store's tables talk to it — a query, a write transaction, and
a single write statement.

Only modules of ``pytest_perfsig.store`` use ``_query``, ``_transaction`` and ``_statement``;
everything else reads and writes through the store's public methods.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from ..errors import StoreError
from .migrations import SCHEMA_VERSION, migrate, schema_version

DEFAULT_TIMEOUT_S = 30.0  # how long a write waits for a lock held by another process


class Database:
    """One connection to the store file, opened at the current schema version."""

    def __init__(self, path: str | Path, timeout_s: float | None = None) -> None:
        if timeout_s is None:
            timeout_s = float(os.environ.get("PERFSIG_STORE_TIMEOUT", DEFAULT_TIMEOUT_S))
        self.path = Path(path)
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A long busy timeout: the Locust processes write while pytest reads.
            db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
            # Refuse a newer store before anything writes to it (WAL switch included).
            found = schema_version(db)
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {found}, but this pytest-perfsig reads "
                    f"up to version {SCHEMA_VERSION}: upgrade pytest-perfsig to use it"
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(db)
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        except BaseException:
            if db is not None:
                db.close()
            raise
        self._db = db

    @property
    def schema_version(self) -> int:
        """The schema version of the file (always :data:`SCHEMA_VERSION` once open)."""
        return schema_version(self._db)

    def leave_checkpoints_to_others(self) -> None:
        """No automatic WAL checkpoint on this connection: the capture's writer must not stall
        for one (tens of ms) while samples arrive; the runner's loop checkpoints while it waits."""
        self._db.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> None:
        """Fold the WAL into the database without waiting for writers (best effort)."""
        with contextlib.suppress(sqlite3.Error):  # a busy store is checkpointed next time
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (IMMEDIATE) so it never fails half-way on a lock."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc

    def _statement(self, sql: str, params: Sequence[Any] = ()) -> None:
        """One write statement, atomic by itself (the connection autocommits): no BEGIN and
        COMMIT around it, so one call into SQLite instead of three."""
        try:
            self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc

    def _columns(self, table: str) -> list[str]:
        """The columns a table has in this file, in order."""
        return [str(row[1]) for row in self._query(f"PRAGMA table_info({table})")]
