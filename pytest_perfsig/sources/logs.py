"""Log lines of an environment, from a file or an http(s) URL (``environments.ENV.log``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx

from ..errors import SourceError


def read_log(location: str, timeout_s: float = 10.0) -> Iterator[str]:
    """The lines of a log file or URL; SourceError when it cannot be read."""
    if location.startswith(("http://", "https://")):
        try:
            response = httpx.get(location, timeout=timeout_s)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot read the log {location}: {exc}") from None
        yield from response.text.splitlines()
        return
    try:
        with Path(location).open(encoding="utf-8", errors="replace") as handle:
            yield from handle
    except OSError as exc:
        raise SourceError(f"cannot read the log {location}: {exc.strerror or exc}") from None
