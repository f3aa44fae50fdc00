"""The one way HTTP metric sources call their APIs: a GET whose transport failures become
SourceErrors naming the source, the URL and the query (with secrets scrubbed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from ..errors import SourceError


def get_json(
    client: httpx.Client,
    url: str,
    params: Any,
    *,
    name: str,
    timeout_s: float,
    described: str,
    scrub: Callable[[str], str] = lambda text: text,
) -> tuple[httpx.Response, Any]:
    """(response, decoded JSON body or None); raises SourceError on timeouts and transport errors."""
    try:
        response = client.get(url, params=params)
    except httpx.TimeoutException:
        raise SourceError(f"{name} at {url} did not answer within {timeout_s:g} s ({described})") from None
    except httpx.HTTPError as exc:
        raise SourceError(
            scrub(f"{name} at {url} is unreachable: {type(exc).__name__}: {exc} ({described})")
        ) from None
    try:
        return response, response.json()
    except ValueError:
        return response, None
