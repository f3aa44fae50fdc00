"""The store as one S3 object (``s3://bucket/key``): the SQLite file is downloaded to a local
working file before a session and uploaded after it with a conditional write, so that the
history outlives short-lived machines (CodeBuild containers, Lambda instances) and two writers
at once never lose each other's rows.

- **open**: the object and its ETag are downloaded; no object is a new, empty store. The file
  as downloaded is kept beside the working file (the *base*).
- **save**: ``PutObject`` with ``IfMatch: <ETag>`` (``IfNoneMatch: *`` for a new store). When
  the object changed meanwhile (another gate, the deployment-event action, the worker), the
  newer object is downloaded, this session's rows are merged into it (``store.merge``) and that
  file is uploaded under the same condition, up to ``attempts`` times.
- **nothing measured is lost**: when saving fails, the working file stays where it is, and the
  error says where. It is removed only once saved.

S3 itself is reached through an :class:`ObjectStore` handed in by whoever opens the store
(``aws.s3.S3Objects``), so the store package does not depend on the AWS adapters.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import PerfsigError, StoreError, UsageError
from .database import Database
from .merge import merge_changes, remove_store_file, snapshot

DEFAULT_ATTEMPTS = 5


class ObjectStore(Protocol):
    """Whole-object reads and conditional writes (S3's GetObject and PutObject)."""

    def download(self, bucket: str, key: str, path: Path) -> str | None:
        """Write the object to ``path``; its ETag, or None when there is no such object."""
        ...

    def upload(self, bucket: str, key: str, path: Path, *, if_match: str | None) -> str | None:
        """Put ``path`` if the object is still ``if_match`` (None: if there is none); the new
        ETag, or None when the condition did not hold."""
        ...


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str) -> S3Url:
    """``s3://bucket/key/of/store.db`` -> (bucket, key)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key or key.endswith("/"):
        raise UsageError(f"an S3 store is s3://BUCKET/KEY (the object holding the SQLite file), got {url!r}")
    return S3Url(bucket, key)


class S3StoreFile:
    """One session's working copy of a store kept in S3."""

    remote = True

    def __init__(
        self,
        url: str,
        objects: ObjectStore,
        workdir: Path,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self.location = parse_s3_url(url)
        self.url = str(self.location)
        self.objects = objects
        self.attempts = attempts
        self.pause = pause
        name = Path(self.location.key).name
        stem, dot, suffix = name.rpartition(".")
        token = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # One working file per session: a file left behind by a failed save is never overwritten.
        local = f"{stem}.{token}.{suffix}" if dot and stem else f"{name}.{token}"
        self.path = Path(workdir) / self.location.bucket / local
        self.etag: str | None = None
        self.saved = False

    def __repr__(self) -> str:
        return f"S3StoreFile({self.url!r}, path={str(self.path)!r})"

    def _side(self, what: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{what}")

    def open(self) -> Path:
        """Download the store to the working file (an empty store when there is no object)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.etag = self.objects.download(self.location.bucket, self.location.key, self.path)
        except PerfsigError as exc:
            raise StoreError(f"cannot read the store {self.url}: {exc}") from exc
        # At this version's schema now (a newer one is refused before anything is measured),
        # so that the base and the working file differ only by what this session writes.
        Database(self.path).close()
        snapshot(self.path, self._side("base"))
        return self.path

    def save(self) -> str:
        """Upload the working file; on a conflict merge it into the newer object and try
        again. What happened, for the log; StoreError naming the working file when not saved."""
        try:
            return self._save()
        except PerfsigError as exc:
            raise StoreError(
                f"the store {self.url} was not saved: {exc}. Nothing is lost: this session's "
                f"results, with the history it started from, are in {self.path}"
            ) from exc

    def _save(self) -> str:
        bucket, key = self.location.bucket, self.location.key
        ours = self._side("ours")
        snapshot(self.path, ours)
        upload, etag, merges = ours, self.etag, 0
        for attempt in range(self.attempts):
            new_etag = self.objects.upload(bucket, key, upload, if_match=etag)
            if new_etag is not None:
                self.etag, self.saved = new_etag, True
                how = f", merged with {merges} newer version(s) written meanwhile" if merges else ""
                return f"store saved to {self.url}{how}"
            # Another writer saved first: add this session's rows to what it saved.
            newer = self._side("newer")
            remove_store_file(newer)
            etag = self.objects.download(bucket, key, newer)
            if etag is None:  # deleted meanwhile: ours holds the history it started from
                upload = ours
            else:
                merge_changes(newer, base=self._side("base"), ours=ours)
                upload = self._side("merged")
                snapshot(newer, upload)
                merges += 1
            if attempt + 1 < self.attempts:
                self.pause(random.uniform(0.1, 0.5) * (attempt + 1))  # writers racing step apart
        raise StoreError(f"it changed {self.attempts} times while this session tried to save it")

    def discard(self) -> None:
        """Remove the working file and its side files (once saved, or when nothing was written)."""
        remove_store_file(self.path)
        for what in ("base", "ours", "newer", "merged", "part", "newer.part"):
            remove_store_file(self._side(what))
