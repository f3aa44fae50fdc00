"""Loopback-only URL validation for the downstream call.

The sample app must never be usable to reach the internet (or the rest of
the network), whatever URL a client passes to ``/api/invoke``.
"""

from __future__ import annotations

import ipaddress

import httpx

LOOPBACK_ONLY_MESSAGE = "only loopback downstream URLs are allowed"


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (also IPv4-mapped)."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # Other names could resolve anywhere; odd numeric forms such as
        # "127.1" are rejected too rather than trusting the resolver.
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def parse_loopback_url(url: str | httpx.URL) -> httpx.URL:
    """Parse ``url`` and return it only if it targets a loopback host.

    Parsing with httpx (the client that sends the request) avoids parser
    differentials such as ``http://127.0.0.1@evil.example/``.

    Raises:
        ValueError: the URL is malformed, not http(s), or not loopback.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(LOOPBACK_ONLY_MESSAGE) from exc
    if parsed.scheme not in ("http", "https") or not is_loopback_host(parsed.host):
        raise ValueError(LOOPBACK_ONLY_MESSAGE)
    return parsed


def format_host(host: str) -> str:
    """Host as it appears in a URL (IPv6 literals need brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
