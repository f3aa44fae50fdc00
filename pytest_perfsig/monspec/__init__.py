"""The monspec: monitoring as code. ``models`` holds what a monspec says (environments,
comparisons, perfsignature entries, log rules); ``loader`` reads JSON or JSON5 into them.

The format is the one of the original Unbreakable Pipeline (``_comment*`` keys are ignored,
``_upperlimit`` / ``_lowerlimit`` are static limits); our extensions are marked in ``models``.
"""

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
    "Entity",
    "Environment",
    "JudgeConfig",
    "LogRule",
    "Monspec",
    "ServiceMethod",
    "SignatureEntry",
    "Tag",
    "load_monspec",
    "parse_monspec",
]
