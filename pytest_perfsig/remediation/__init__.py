"""Self-healing: problem notifications (Dynatrace, Prometheus Alertmanager) roll Production back.

- :mod:`.payloads`: strict JSON and both notification formats mapped to one :class:`Problem`;
- :mod:`.rollback`: the decision (:func:`remediate`): claim with a lease, then roll back, call a
  remediation URL, or leave alone; :mod:`.revisions`: which revision to go back to (the
  CodeDeploy calls are :mod:`pytest_perfsig.aws.codedeploy`'s);
- :mod:`.auth`: the shared secret, bearer or HMAC signature with replay protection;
- :mod:`.refusals`: refusal answers and log lines written once per interval;
- :mod:`.server`: the webhook receiver (Starlette, :func:`create_app`, :func:`serve`);
- :mod:`.front`, :mod:`.exchange`, :mod:`.asgi`: the HTTP/1.1 front :func:`serve` runs it
  behind (read deadlines, a connection cap, refusals before the body).

The same receiver runs as a Lambda function: :func:`pytest_perfsig.lambdas.problem_handler`.

See docs/self-healing.md. Importing this package needs neither Starlette, h11 nor boto3.
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
