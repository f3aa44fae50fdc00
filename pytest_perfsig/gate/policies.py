"""Gate rules beside the judging itself: when the load has the samples its checks need, the
first-run policy of a stored-run baseline, and what a gate planned from a Keptn SLO file needs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from ..errors import NoBaselineError, UsageError
from ..load.runner import Enough
from ..metrics import required_samples
from ..monspec import Monspec
from ..sources import check_expression_source
from ..verdict import Subject, Verdict, measured_fields, subject_fields
from ..windows import Measurement
from .plan import AnyCheck, Check, GateOptions

NEED_MARGIN = 1.25  # the judged window is the overlap of the loads: a little less than each run


class SampleCounter(Protocol):
    def endpoint_counts(self, run_id: str, skip_s: float = 0.0) -> dict[str, int]: ...


def enough_samples(store: SampleCounter, options: GateOptions, checks: Sequence[AnyCheck]) -> Enough:
    """Whether every selected check's windows hold the samples its aggregate needs yet (a
    busy machine buys fewer requests per second: the load runs until it has them). Counts
    leave out each run's warm-up, with a margin for the overlap of the loads."""
    needs: dict[tuple[str, str], dict[str | None, int]] = {}
    for check in checks:
        if not isinstance(check, Check) or check.entry.metric is None:
            continue
        need = math.ceil(NEED_MARGIN * required_samples(check.entry.aggregate_spec, options.min_samples))
        for env in {options.stage, check.comparison.compare}:
            per_endpoint = needs.setdefault((check.service, env), {})
            per_endpoint[check.method] = max(per_endpoint.get(check.method, 0), need)

    def enough(run_ids: Mapping[tuple[str, str], str]) -> bool:
        for key, run_id in run_ids.items():
            counts = store.endpoint_counts(run_id, skip_s=options.warmup)
            for endpoint, need in needs.get(key, {}).items():
                have = sum(counts.values()) if endpoint is None else counts.get(endpoint, 0)
                if have < need:
                    return False
        return True

    return enough


def check_slo_gate(monspec: Monspec, options: GateOptions) -> None:
    """A gate planned from a Keptn SLO file reads PromQL and loads the stage at a URL the file
    cannot name: both are usage errors before any load."""
    check_expression_source(options.source_url, monspec.path)
    if options.stage not in options.urls:
        raise UsageError(f"{monspec.path} names no URL: pass --perfsig-url {options.stage}=http://HOST:PORT")


FIRST_RUN_APPROVED = "first run: no baseline yet, approved by policy (first_run: approve)"


def first_run_verdict(subject: Subject, source: Measurement, missing: NoBaselineError) -> Verdict | None:
    """The verdict of a check whose stored-run baseline does not exist yet, by its comparison's
    ``first_run`` policy: ``approve`` passes it and says so (``details["first_run"]``);
    ``error`` (the default) returns None, and the missing baseline stays an error."""
    if subject.comparison.first_run != "approve":
        return None
    return Verdict(
        status="pass",
        **subject_fields(subject),
        message=f"{subject.label}: {FIRST_RUN_APPROVED}",
        rule=FIRST_RUN_APPROVED,
        judge=subject.config.type,
        details={"first_run": True, "policy": "approve", "reason": str(missing)},
        **measured_fields(source, None),
    )
