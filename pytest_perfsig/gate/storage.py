"""Where the store lives, chosen from its URL in this one place: a local SQLite file (a path),
or an S3 object (``s3://bucket/key``) that is downloaded to a working file for the session and
saved back with a conditional write (``store.s3``, through ``aws.s3``). The pytest plugin
(``--perfsig-store``), the ``perfsig`` command (``--store``) and the Lambda worker
(``PERFSIG_STORE``) all open their store here.

It lives above ``store`` and ``aws`` because it joins the two (``aws`` already reads the store's
types); neither imports the other's way round.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from ..errors import PerfsigError, UsageError
from ..store import SqliteStore
from ..store.s3 import ObjectStore, S3StoreFile

ENV_WORKDIR = "PERFSIG_STORE_WORKDIR"
DEFAULT_WORKDIR = ".perfsig/s3"


class StoreLocation(Protocol):
    """A store's file for one session, and how it is kept afterwards."""

    url: str
    path: Path  # the SQLite file the session reads and writes
    remote: bool  # whether ``save`` sends it anywhere
    saved: bool

    def open(self) -> Path: ...

    def save(self) -> str: ...

    def discard(self) -> None: ...


class LocalStore:
    """A store file on this machine (or on shared storage): nothing to fetch or send."""

    remote = False
    saved = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = str(path)

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    def open(self) -> Path:
        return self.path

    def save(self) -> str:
        return f"store {self.path}"

    def discard(self) -> None:
        """The file is the store itself: it stays."""


def default_workdir() -> Path:
    """Where working copies of remote stores go: ``$PERFSIG_STORE_WORKDIR``, else ``.perfsig/s3``."""
    return Path(os.environ.get(ENV_WORKDIR) or DEFAULT_WORKDIR)


def is_remote(url: str | Path) -> bool:
    return str(url).startswith("s3://")


def store_location(
    url: str | Path, *, workdir: Path | None = None, objects: ObjectStore | None = None
) -> StoreLocation:
    """The location a store URL names: ``s3://BUCKET/KEY`` or a file path."""
    text = str(url)
    if is_remote(text):
        if objects is None:
            from ..aws.s3 import S3Objects

            objects = S3Objects()
        return S3StoreFile(text, objects, workdir or default_workdir())
    if "://" in text:
        raise UsageError(f"unknown store {text!r}: use a file path or s3://BUCKET/KEY")
    return LocalStore(Path(text))


@contextmanager
def opened_store(url: str | Path, *, write: bool, workdir: Path | None = None) -> Iterator[SqliteStore]:
    """The store for one piece of work; with ``write`` a remote store is saved afterwards (also
    when the work failed: what it recorded before is kept). Its working file is removed once
    saved, or when nothing was to be written; a save that fails keeps it and says where."""
    location = store_location(url, workdir=workdir)
    store = SqliteStore(location.open())
    try:
        yield store
    except BaseException as exc:
        store.close()
        if write and location.remote:
            try:
                location.save()
            except PerfsigError as problem:
                exc.add_note(str(problem))
        if location.saved or not write:
            location.discard()
        raise
    store.close()
    if write:
        location.save()
    location.discard()
