"""Sample app under test for the pytest-perfsig performance-gate demo.

A Python port of the Node.js sample app of Dynatrace's "Unbreakable
Pipeline" tutorial: builds 1 and 3 are healthy, build 2 fails half of its
``/api/invoke`` calls everywhere, build 4 is slower and fails 10% of its
invokes in production only. Run it with ``python -m sample_app``.
"""

from sample_app.app import AppConfig, AppState, create_app, startup_line
from sample_app.builds import BuildPolicy, is_production
from sample_app.urls import LOOPBACK_ONLY_MESSAGE, is_loopback_host, parse_loopback_url

__all__ = [
    "LOOPBACK_ONLY_MESSAGE",
    "AppConfig",
    "AppState",
    "BuildPolicy",
    "create_app",
    "is_loopback_host",
    "is_production",
    "parse_loopback_url",
    "startup_line",
]
