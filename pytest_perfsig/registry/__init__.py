"""Validation registries, chosen by URL: ``sqlite:PATH`` (default: the store) or
``dynamodb:TABLE`` (region and endpoint from the usual AWS settings)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..store import SqliteStore
from .base import ValidationRegistry, ValidationRequest, new_request, parse_user_parameters
from .sqlite import SqliteRegistry

__all__ = ["ValidationRegistry", "ValidationRequest", "new_request", "open_registry", "parse_user_parameters"]


def open_registry(url: str | None, store_path: str | Path) -> ValidationRegistry:
    scheme, _, rest = (url or "sqlite").partition(":")
    if scheme == "sqlite":
        path = rest.removeprefix("//") or store_path
        if "://" in str(path):
            # Claims need one shared file; a store synced per session would let two workers claim one request.
            raise UsageError(f"the SQLite registry needs a local store file, not {path}: use dynamodb:TABLE")
        return SqliteRegistry(SqliteStore(path))
    if scheme == "dynamodb":
        from ..aws.clients import dynamodb_resource
        from .dynamodb import DEFAULT_TABLE, DynamoDbRegistry

        return DynamoDbRegistry(dynamodb_resource().Table(rest.removeprefix("//") or DEFAULT_TABLE))
    raise UsageError(f"unknown registry {url!r}: use sqlite:PATH or dynamodb:TABLE")
