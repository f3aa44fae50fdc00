"""S3 objects as whole files, for the persisted store (``store.s3``): a download that keeps the
object's ETag, and an upload that only succeeds while the object is still the one downloaded
(conditional ``PutObject``: ``IfMatch: <ETag>``, or ``IfNoneMatch: *`` for an object that did
not exist). A failed condition is an answer, not an error: the caller merges and tries again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import AwsError
from .errors import aws_call, region_of

__all__ = ["CONDITION_FAILED", "NOT_FOUND", "S3Objects"]

#: what S3 answers when a conditional write lost: the object changed (412), another conditional
#: write was in flight (409), or the object was deleted since it was read (``IfMatch``: 404)
CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
#: a missing object (a bucket without ``s3:ListBucket`` for the caller answers 403 instead)
NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
_CHUNK = 1 << 20


class S3Objects:
    """Whole-object reads and conditional writes (the ``ObjectStore`` of ``store.s3``)."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            from .clients import s3_client

            client = s3_client()
        self.client = client

    def _where(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key} ({region_of(self.client)})"

    def download(self, bucket: str, key: str, path: Path) -> str | None:
        """Write the object to ``path``; its ETag, or None when there is no such object (then
        ``path`` is left alone)."""
        where = self._where(bucket, key)
        try:
            return str(aws_call("s3:GetObject", self._fetch, where=where, bucket=bucket, key=key, path=path))
        except AwsError as exc:
            if exc.code in NOT_FOUND:
                return None
            raise

    def _fetch(self, bucket: str, key: str, path: Path) -> str:
        answer = self.client.get_object(Bucket=bucket, Key=key)
        partial = path.with_name(path.name + ".part")
        # Streamed to a side file, then renamed: a broken download never looks like a store.
        with partial.open("wb") as out:
            for chunk in answer["Body"].iter_chunks(_CHUNK):
                out.write(chunk)
        os.replace(partial, path)
        return str(answer["ETag"])

    def upload(self, bucket: str, key: str, path: Path, *, if_match: str | None) -> str | None:
        """Put ``path`` as the object if it is still the version ``if_match`` (None: only if
        there is no object yet); the new ETag, or None when the condition did not hold."""
        condition: dict[str, Any] = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        try:
            with path.open("rb") as body:
                answer = aws_call(
                    "s3:PutObject",
                    self.client.put_object,
                    where=self._where(bucket, key),
                    Bucket=bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/vnd.sqlite3",
                    **condition,
                )
        except AwsError as exc:
            if exc.code in CONDITION_FAILED:
                return None
            raise
        return str(answer["ETag"])
