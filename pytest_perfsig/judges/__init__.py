"""The judges: one module per judge, each a function ``judge(subject, source, compare) ->
Verdict``. Pure: numbers and monspec entries in, a verdict out.

- ``scalefactor``: the aggregate against the scaled baseline (or a static limit);
- ``mannwhitney``: a rank test on the raw observations (Fisher's exact test for failure
  rates), violated only when the shift is significant *and* beyond the effect-size floor;
- ``keptn``: a Keptn SLO objective's pass / warning criteria, weight and key-SLI flag;
- ``sequential``: anytime-valid tests (e-processes, confidence sequences; ``evalues``) that
  decide an entry conclusively outside or within its limit, or leave it to the scale factor.

A new judge is a module with ``NAME`` and ``judge``, listed in ``JUDGES`` and in the monspec's
``JudgeConfig.type``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..verdict import Subject, Verdict
from ..windows import Measurement
from . import keptn, mannwhitney, scalefactor, sequential

Judge = Callable[[Subject, Measurement, Measurement | None], Verdict]

JUDGES: dict[str, Judge] = {
    scalefactor.NAME: scalefactor.judge,
    mannwhitney.NAME: mannwhitney.judge,
    keptn.NAME: keptn.judge,
    sequential.NAME: sequential.judge,
}


def judge(subject: Subject, source: Measurement, compare: Measurement | None) -> Verdict:
    """The entry's judge. The rank test needs observations on both sides and no static limit,
    the sequential judge observations of the source; without them the scale factor judges
    (the verdict's ``judge`` says which)."""
    name: str = subject.config.type
    statistical = (
        subject.entry.static_limit is None
        and compare is not None
        and source.observations is not None
        and compare.observations is not None
    )
    if name == mannwhitney.NAME and not statistical:
        name = scalefactor.NAME
    if name == sequential.NAME and source.observations is None:
        name = scalefactor.NAME
    return JUDGES[name](subject, source, compare)
