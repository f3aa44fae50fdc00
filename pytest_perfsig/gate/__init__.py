"""One gate: plan the checks (``plan``), drive load, measure, judge and persist them (``run``),
and decide the outcome (``status``); ``deferred`` works off validations registered earlier."""

from .plan import AnyCheck, Check, GateOptions, LogCheck, parse_url_overrides, plan_checks
from .run import Gate
from .status import GateOutcome, decide

__all__ = [
    "AnyCheck",
    "Check",
    "Gate",
    "GateOptions",
    "GateOutcome",
    "LogCheck",
    "decide",
    "parse_url_overrides",
    "plan_checks",
]
