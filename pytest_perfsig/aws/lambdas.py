"""AWS Lambda handlers: the original system's ``registerDynatraceBuildValidation`` (a
CodePipeline action) and ``validateBuildDynatraceWorker`` (scheduled every 2 minutes).

Configuration by environment variables:
- ``PERFSIG_REGISTRY``: registry URL (default ``dynamodb:BuildValidationRequests``);
- ``PERFSIG_MONSPEC``: the monspec file shipped with the function (default ``monspec.json``);
- ``PERFSIG_STORE``: the SQLite store with the samples the worker judges (for the local
  source it must be shared storage such as EFS; default ``/tmp/perfsig.db``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import PerfsigError

DEFAULT_REGISTRY = "dynamodb:BuildValidationRequests"


def _registry() -> Any:
    from ..registry import open_registry

    return open_registry(os.environ.get("PERFSIG_REGISTRY", DEFAULT_REGISTRY), _store_path())


def _store_path() -> str:
    return os.environ.get("PERFSIG_STORE", "/tmp/perfsig.db")


def register_handler(
    event: dict[str, Any], context: Any, *, codepipeline: Any = None, registry: Any = None
) -> dict[str, Any]:
    """CodePipeline invoke action; UserParameters ``"StagingToProduction,5,ApproveStaging"``.
    The job fails (and with it the pipeline action) when anything is wrong: never silently."""
    from ..monspec import load_monspec
    from ..registry import new_request, parse_user_parameters
    from .clients import codepipeline_client

    codepipeline = codepipeline or codepipeline_client()
    job_id = event["CodePipeline.job"]["id"]
    try:
        details = codepipeline.get_job_details(jobId=job_id)["jobDetails"]["data"]
        context_ = details["pipelineContext"]
        parameters = details["actionConfiguration"]["configuration"].get("UserParameters", "")
        comparison, minutes, approval = parse_user_parameters(parameters)
        monspec_path = os.environ.get("PERFSIG_MONSPEC", "monspec.json")
        monspec = load_monspec(monspec_path)
        if not any(entity.comparison(comparison) for entity in monspec.entities.values()):
            raise PerfsigError(f"comparison {comparison!r} is not defined in {monspec_path}")
        request = new_request(
            context_["pipelineName"],
            comparison,
            minutes,
            Path(monspec_path).read_text(encoding="utf-8"),
            approval_action=approval,
            stage=context_["stage"]["name"],
            action=context_["action"]["name"],
        )
        (registry or _registry()).register(request)
    except (PerfsigError, KeyError) as exc:
        message = f"perfsig register failed: {exc}"
        codepipeline.put_job_failure_result(
            jobId=job_id, failureDetails={"type": "ConfigurationError", "message": message[:5000]}
        )
        return {"status": "failed", "message": message}
    codepipeline.put_job_success_result(jobId=job_id)
    return {"status": "registered", "pipeline": request.pipeline, "timestamp": request.timestamp_ms}


def worker_handler(
    event: dict[str, Any], context: Any, *, registry: Any = None, approve: Any = None
) -> dict[str, Any]:
    """Scheduled: judge every due request, approve / reject, record the outcome."""
    from ..gate.deferred import codepipeline_approver, describe, work_once
    from ..store import SqliteStore

    with SqliteStore(_store_path()) as store:
        processed = work_once(registry or _registry(), store, approve=approve or codepipeline_approver())
    return {"processed": [describe(p) for p in processed]}
