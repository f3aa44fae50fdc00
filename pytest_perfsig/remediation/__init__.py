"""Self-healing: problem notifications (Dynatrace, Prometheus Alertmanager) roll Production back.

- :mod:`.payloads`: both notification formats mapped to one :class:`Problem`;
- :mod:`.rollback`: the decision (:func:`remediate`): roll back, call a remediation URL, or
  leave alone (the CodeDeploy calls are :mod:`pytest_perfsig.aws.codedeploy`'s);
- :mod:`.server`: the webhook receiver (Starlette, :func:`create_app`, :func:`serve`) and its
  authentication (bearer secret or HMAC signature with replay protection).

The same receiver runs as a Lambda function: :func:`pytest_perfsig.lambdas.problem_handler`.

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
    "remediate",
    "secret_from_env",
    "serve",
    "sign",
]
