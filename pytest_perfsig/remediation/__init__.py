"""Self-healing: problem notifications (Dynatrace, Prometheus Alertmanager) roll Production back.

- :mod:`.payloads`: both notification formats mapped to one :class:`Problem`;
- :mod:`.rollback`: the decision (:func:`remediate`) and the CodeDeploy rollback;
- :mod:`.server`: the webhook receiver (Starlette, :func:`create_app`, :func:`serve`) and its
  authentication (bearer secret or HMAC signature with replay protection);
- :mod:`.lambdas`: the same receiver as a Lambda handler (:func:`problem_handler`).

See docs/self-healing.md. Importing this package needs neither Starlette nor boto3.
"""

from __future__ import annotations

from .payloads import PayloadError, Problem, parse_problem
from .rollback import Outcome, remediate
from .server import SECRET_ENV, RemediationConfigError, create_app, secret_from_env, serve, sign

__all__ = [
    "SECRET_ENV",
    "Outcome",
    "PayloadError",
    "Problem",
    "RemediationConfigError",
    "create_app",
    "parse_problem",
    "problem_handler",
    "remediate",
    "secret_from_env",
    "serve",
    "sign",
]


def __getattr__(name: str) -> object:
    if name == "problem_handler":
        from .lambdas import problem_handler

        return problem_handler
    raise AttributeError(name)
