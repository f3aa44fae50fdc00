"""The one HTTP client of a Dynatrace tenant's REST API, shared by the metric source (reads)
and the deployment events and problem comments (writes).

The token is sent as ``Authorization: Api-Token ...``, comes from ``$DT_API_TOKEN`` unless given,
and is scrubbed from every error message, even when the tenant echoes it back. Proxies from the
environment are not used (``trust_env=False``: a token must not travel through a proxy nobody
configured for it), redirects are not followed, and every call has a timeout. Every failure is a
:class:`~pytest_perfsig.errors.DynatraceError` naming the URL and what was asked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import httpx

from ..errors import DynatraceError

__all__ = ["DEFAULT_TIMEOUT_S", "TOKEN_ENV", "DynatraceClient"]

log = logging.getLogger(__name__)

TOKEN_ENV = "DT_API_TOKEN"
DEFAULT_TIMEOUT_S = 10.0
#: how much of a non-JSON error answer a message quotes
DETAIL_CHARS = 200


class DynatraceClient:
    """GET and POST JSON on one tenant (``https://<tenant>[/e/<environment-id>]``)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        scopes: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        name: str = "dynatrace",
        http: httpx.Client | None = None,
    ) -> None:
        """``scopes`` names the token scopes the caller needs, for the messages that ask for a
        token; ``name`` starts every message; ``http`` replaces the client built here."""
        self.base_url = base_url.rstrip("/")
        self.scopes = scopes
        self.timeout_s = timeout_s
        self.name = name
        self._token = token or None
        self._http = http or httpx.Client(
            timeout=timeout_s,
            headers={"Accept": "application/json"},
            trust_env=False,
            follow_redirects=False,
        )

    @classmethod
    def from_env(
        cls, base_url: str, environ: Mapping[str, str] = os.environ, **options: Any
    ) -> DynatraceClient:
        """A client whose token is ``$DT_API_TOKEN`` (checked when a call is made)."""
        return cls(base_url, environ.get(TOKEN_ENV), **options)

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:  # never the token
        return f"DynatraceClient({self.base_url!r})"

    def scrub(self, text: str) -> str:
        """``text`` with the token replaced by ``***``."""
        return text.replace(self._token, "***") if self._token else text

    def missing_token(self) -> DynatraceError:
        needed = f" with scopes {self.scopes}" if self.scopes else ""
        return DynatraceError(f"{self.name}: ${TOKEN_ENV} is not set: an API token{needed} is needed")

    # ------------------------------------------------------------------ calls

    def get_json(self, path: str, params: Any, *, described: str) -> dict[str, Any]:
        """The JSON object ``GET path?params`` answers; ``described`` says what was asked."""
        response = self._send("GET", path, described, params=params)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise DynatraceError(
                f"{self.name} at {self.base_url + path}: malformed answer (not a JSON object) to {described}"
            )
        return body

    def post_json(self, path: str, body: dict[str, Any], *, described: str) -> dict[str, Any]:
        """``POST path`` with a JSON body; the answer's JSON object, or ``{}`` when it has none
        (the write was accepted: its answer only informs)."""
        response = self._send("POST", path, described, json=body)
        try:
            answer = response.json()
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def _send(self, method: str, path: str, described: str, **request: Any) -> httpx.Response:
        url = self.base_url + path
        if self._token is None:
            raise self.missing_token()
        log.debug("%s: %s %s (%s)", self.name, method, url, described)
        headers = {"Authorization": f"Api-Token {self._token}"}
        try:
            response = self._http.request(method, url, headers=headers, **request)
        except httpx.TimeoutException:
            raise DynatraceError(
                f"{self.name} at {url} did not answer within {self.timeout_s:g} s ({described})"
            ) from None
        except httpx.HTTPError as exc:  # from None: the chain would carry the request and its token
            raise DynatraceError(
                self.scrub(f"{self.name} at {url} is unreachable: {type(exc).__name__}: {exc} ({described})")
            ) from None
        if not response.is_success:
            hint = ""
            if response.status_code in {401, 403}:
                hint = f" (check ${TOKEN_ENV} and its scopes{': ' + self.scopes if self.scopes else ''})"
            raise DynatraceError(
                self.scrub(
                    f"{self.name} at {url} answered HTTP {response.status_code}{_detail(response)}{hint} "
                    f"({described})"
                )
            )
        return response


def _detail(response: httpx.Response) -> str:
    """``": <the tenant's error message>"``, or the start of a non-JSON answer; "" for none."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return f": {text[:DETAIL_CHARS]}" if text else ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return f": {body['error'].get('message', '')}"
    return ""
