"""The monspec: monitoring as code. ``models`` holds what a monspec says (environments,
comparisons, perfsignature entries, log rules); ``loader`` reads JSON or JSON5 into them;
``keptn`` reads a Keptn SLO file (``slo.yaml`` and its ``sli.yaml``) into the same models.

The format is the one of the original Unbreakable Pipeline (``_comment*`` keys are ignored,
``_upperlimit`` / ``_lowerlimit`` are static limits); our extensions are marked in ``models``.
"""

from .keptn import is_slo_file, load_slo
from .keptn_models import Criterion, KeptnBaseline, KeptnJudge, KeptnObjective, TotalScore
from .loader import MAX_MONSPEC_BYTES, load_monspec, parse_monspec
from .models import (
    ETYPES,
    JUDGES,
    LOG_LEVELS,
    MAX_SCALE_FACTOR,
    BaselineRuns,
    Comparison,
    Entity,
    Environment,
    JudgeConfig,
    LogRule,
    Monspec,
    ServiceMethod,
    SignatureEntry,
    Tag,
)

__all__ = [
    "ETYPES",
    "JUDGES",
    "LOG_LEVELS",
    "MAX_MONSPEC_BYTES",
    "MAX_SCALE_FACTOR",
    "BaselineRuns",
    "Comparison",
    "Criterion",
    "Entity",
    "Environment",
    "JudgeConfig",
    "KeptnBaseline",
    "KeptnJudge",
    "KeptnObjective",
    "LogRule",
    "Monspec",
    "ServiceMethod",
    "SignatureEntry",
    "Tag",
    "TotalScore",
    "is_slo_file",
    "load_monspec",
    "load_slo",
    "parse_monspec",
]
