"""Per-build behaviour of the sample app, as a small pure policy.

Kept free of I/O so the "which build misbehaves where" table can be unit
tested without starting a server.
"""

from __future__ import annotations

from dataclasses import dataclass

PRODUCTION_PREFIX = "Production"


def is_production(stage: str) -> bool:
    """Return True for production stages.

    Mirrors the original tutorial, where any deployment group whose name
    starts with "Production" counts as production.
    """
    return stage.startswith(PRODUCTION_PREFIX)


@dataclass(frozen=True)
class BuildPolicy:
    """How a build behaves in a stage.

    ``latency_factor`` multiplies the base latency of every request;
    ``invoke_failure_every`` makes every n-th ``/api/invoke`` fail with
    HTTP 500 (``None``: never).
    """

    latency_factor: float = 1.0
    invoke_failure_every: int | None = None

    @classmethod
    def for_build(cls, build: int, production: bool) -> BuildPolicy:
        if build == 2:
            # Broken everywhere: a regression the staging gate must catch.
            return cls(latency_factor=1.0, invoke_failure_every=2)
        if build == 4:
            if production:
                # Only misbehaves in production, so the staging gate passes
                # and the production gate has to catch it.
                return cls(latency_factor=2.0, invoke_failure_every=10)
            return cls()
        # Builds 1 and 3 are healthy; unknown builds behave like build 1.
        return cls()

    def invoke_fails(self, invoke_count: int) -> bool:
        """Whether the ``invoke_count``-th invoke (1-based) must fail."""
        every = self.invoke_failure_every
        return every is not None and invoke_count % every == 0
