"""Anytime-valid building blocks: e-processes and confidence sequences for Bernoulli counts,
quantiles and two failure rates. Pure (numpy, scipy).

Every function here stays valid however often it is evaluated as the data grow and whenever
the looking stops (Ville's inequality: a nonnegative supermartingale with initial value 1
reaches 1/δ with probability at most δ). Logs are natural logs.

- ``bernoulli_log_e``: a one-sided mixture e-process for a Bernoulli mean against a boundary
  θ0, the mixing prior being Jeffreys' Beta(½, ½) restricted to the alternative side (Robbins'
  mixture martingale; the one-sided restriction as in Howard et al., "Time-uniform, nonparametric,
  nonasymptotic confidence sequences", Ann. Statist. 2021). Against θ0 it is a supermartingale
  under *any* sequence of means on the null side, also one that changes over time.
- ``bernoulli_bound`` and ``quantile_bounds``: confidence sequences from inverting it; for a
  quantile, through the indicators 1{X ≤ c} (Howard & Ramdas, "Sequential estimation of
  quantiles with applications to A/B-testing and best-arm identification", Bernoulli 2022).
- ``two_rates_log_e``: an e-process for H0: p_s ≤ m·p_c + c (or ≥) between two Bernoulli
  streams: a mixture over the alternative region divided by the best fit inside the null
  (universal inference, Wasserman, Ramdas & Balakrishnan, PNAS 2020), in the spirit of
  Lindon & Malek's anytime-valid tests on counts (NeurIPS 2022).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from scipy import optimize, special

Side = Literal["greater", "less"]
"""``greater``: evidence that the mean is above θ0 (null: at most θ0); ``less``: below."""

QUADRATURE_NODES = 256
_JEFFREYS = (0.5, 0.5)
# Which tail is the alternative; an unknown side is an error, not silently "less".
_UPPER_TAIL: dict[str, bool] = {"greater": True, "less": False}
_UPPER_BOUND: dict[str, bool] = {"upper": True, "lower": False}


def bernoulli_log_e(k: Any, n: int, theta0: float, side: Side) -> Any:
    """log e-value of ``k`` successes in ``n`` trials against the null on the other side of
    ``theta0`` (vectorised over ``k``). Null ``θ ≤ θ0`` for ``greater``, ``θ ≥ θ0`` for ``less``.

    E = ∫_alt θ^k (1−θ)^(n−k) π(θ) dθ / Π(alt) / (θ0^k (1−θ0)^(n−k)), π Jeffreys. For each
    alternative θ1 the likelihood ratio against θ0 is a supermartingale under every null mean,
    so their average is too."""
    k = np.asarray(k, dtype=float)
    if not 0.0 < theta0 < 1.0:  # decision
        # A boundary at 0 or 1: the null side holds nothing the data could contradict, or
        # everything; no evidence either way.
        return np.zeros_like(k)
    a, b = k + 0.5, n - k + 0.5
    upper = _UPPER_TAIL[side]  # decision
    mixture = (
        special.betaln(a, b)
        - special.betaln(*_JEFFREYS)
        + _log_tail(theta0, a, b, upper)
        - _log_tail(theta0, *_JEFFREYS, upper)
    )
    null = special.xlogy(k, theta0) + special.xlog1py(n - k, -theta0)
    return mixture - null


def _log_tail(x: float, a: Any, b: Any, upper: bool) -> Any:
    """log P(Beta(a, b) > x) (``upper``) or ≤ x; −inf where it underflows (no evidence)."""
    with np.errstate(divide="ignore"):
        return np.log(special.betaincc(a, b, x) if upper else special.betainc(a, b, x))


def claim_log_e(k: int, n: int, theta: float, side: Side) -> float:
    """``bernoulli_log_e`` for the claim "the mean is ``side`` of θ", also for θ outside (0, 1),
    where the claim is certain (+inf) or impossible (−inf)."""
    if theta <= 0.0 or theta >= 1.0:  # decision
        # Certain when the whole of [0, 1] lies on the claimed side of θ.
        return math.inf if (theta <= 0.0) == _UPPER_TAIL[side] else -math.inf  # decision
    return float(bernoulli_log_e(k, n, theta, side))


def best_crossing(
    rising: Callable[[float], float], falling: Callable[[float], float], low: float = 0.0, high: float = 1.0
) -> float:
    """max over t in [low, high] of min(rising(t), falling(t)) for a non-decreasing and a
    non-increasing function: found where they cross, by bisection."""
    for _ in range(60):
        mid = (low + high) / 2
        # (At a tie either half keeps a point where both are equal: "<" or "<=" find the same.)
        if rising(mid) < falling(mid):  # pragma: no mutate
            low = mid
        else:
            high = mid
    return max(min(rising(low), falling(low)), min(rising(high), falling(high)))


def bernoulli_bound(k: int, n: int, delta: float, side: Literal["upper", "lower"]) -> float:
    """One-sided confidence sequence for a Bernoulli mean at level ``delta``: the upper (or
    lower) end of the means the e-process has not rejected. 1.0 / 0.0 with no data."""
    threshold = math.log(1.0 / delta)  # decision
    if _UPPER_BOUND[side]:
        if k == n:  # (also no data at all)
            return 1.0
        low, high = k / n, 1.0  # the mean k/n is never rejected; 1.0 always is (k < n)
        for _ in range(50):
            mid = (low + high) / 2
            if float(bernoulli_log_e(k, n, mid, "less")) >= threshold:  # decision
                high = mid
            else:
                low = mid
        return high
    if k == 0:
        return 0.0
    low, high = 0.0, k / n
    for _ in range(50):
        mid = (low + high) / 2
        if float(bernoulli_log_e(k, n, mid, "greater")) >= threshold:  # decision
            low = mid
        else:
            high = mid
    return low


class QuantileSequence:
    """Confidence sequences for the q-quantile of one stream of values, at any level.

    For the true quantile Q, #{X ≤ Q} is a sum of Bernoulli indicators with mean at least q
    and #{X < Q} one with mean at most q; the one-sided e-processes on those counts bound
    how many values can lie below Q, hence which order statistics bracket it. The e-values
    of every possible count are computed once, so each level costs a lookup."""

    def __init__(self, values: Any, q: float) -> None:
        self.values = np.sort(np.asarray(values, dtype=float))
        self.n = int(self.values.size)
        # Only counts within ~10 standard deviations of n·q can sit at a crossing for any level
        # down to 1e-12; beyond them the e-values are taken as settled (±inf), which keeps
        # each look cheap for long runs.
        # (Every mutation of this line only widens the window: the same bounds, more work.)
        reach = int(10 * math.sqrt(self.n * q * (1 - q)) + 20)  # pragma: no mutate
        centre = int(self.n * q)
        self._first = max(0, centre - reach)
        counts = np.arange(self._first, min(self.n, centre + reach) + 1)
        # Decreasing in the count: how strongly "fewer than q below Q" is supported.
        self._less = bernoulli_log_e(counts, self.n, q, "less")
        # Increasing in the count: how strongly "more than q below Q" is supported.
        self._greater = bernoulli_log_e(counts, self.n, q, "greater")

    def lower(self, delta: float) -> float:
        """The quantile is at least this (−inf when too few values)."""
        plausible = np.flatnonzero(self._less < math.log(1.0 / delta))  # decision
        if not plausible.size or plausible[0] == 0:
            # The lowest count computed is plausible: no value need lie below the quantile (the
            # count 0), or the crossing could lie below the counts computed. No bound claimed.
            return -math.inf
        return float(self.values[self._first + int(plausible[0]) - 1])

    def upper(self, delta: float) -> float:
        """The quantile is at most this (+inf when too few values)."""
        plausible = np.flatnonzero(self._greater < math.log(1.0 / delta))  # decision
        if not plausible.size or plausible[-1] == self._greater.size - 1:
            # The highest count computed is plausible: every value may lie below the quantile
            # (the count n), or the crossing could lie above the counts computed.
            return math.inf
        return float(self.values[self._first + int(plausible[-1])])


def smallest_level(decides: Any, floor: float = 1e-12) -> float:
    """The smallest level δ in [floor, 1] at which ``decides(δ)`` holds (1.0 when it never
    does), for a decision that only gets easier as δ grows: an anytime-valid p-value."""
    # (decides is monotone: asked at any δ ≥ 1 here, the bisection below also ends at 1.0.)
    if not decides(1.0):  # pragma: no mutate
        return 1.0
    if decides(floor):  # decision
        return floor
    low, high = math.log(floor), 0.0
    for _ in range(40):
        mid = (low + high) / 2
        if decides(math.exp(mid)):
            high = mid
        else:
            low = mid
    return math.exp(high)


# ---------------------------------------------------------------------------- two failure rates


def _loglik(k: float, n: float, p: Any) -> Any:
    return special.xlogy(k, p) + special.xlog1py(n - k, -p)


def _mean_over(posterior: tuple[float, float], h: Any, lower: bool) -> float:
    """∫ h(F⁻¹(u)) du over a Beta ``posterior`` for a monotone h: the lower (or upper) Riemann
    sum on an even grid of u, so that the numerical error can only shrink (or grow) it."""
    u = np.linspace(0.0, 1.0, QUADRATURE_NODES + 1)
    values = h(special.betaincinv(*posterior, u))
    left, right = float(np.mean(values[:-1])), float(np.mean(values[1:]))
    return min(left, right) if lower else max(left, right)


def two_rates_log_e(ks: int, ns: int, kc: int, nc: int, slope: float, intercept: float, side: Side) -> float:
    """log e-value that the source's rate p_s is ``side`` of slope·p_c + intercept, the null
    being the other side (boundary included), from ks of ns and kc of nc failures.

    Numerator: the likelihood averaged over the alternative region with Jeffreys priors on
    both rates (renormalised to that region); denominator: the best likelihood inside the
    null. For every null pair (p_s, p_c) the ratio of the numerator to its likelihood is a
    nonnegative martingale with mean 1; the best null fit is at least that likelihood."""
    a_s, b_s = ks + 0.5, ns - ks + 0.5
    a_c, b_c = kc + 0.5, nc - kc + 0.5

    def boundary(pc: Any) -> Any:
        return np.clip(slope * pc + intercept, 0.0, 1.0)

    def region(a: float, b: float) -> Any:
        if _UPPER_TAIL[side]:  # decision
            return lambda pc: special.betaincc(a, b, boundary(pc))
        return lambda pc: special.betainc(a, b, boundary(pc))

    inside = _mean_over((a_c, b_c), region(a_s, b_s), lower=True)
    if inside <= 0.0:  # decision
        return -math.inf  # the data leave the alternative nothing: no evidence
    prior_mass = _prior_mass(slope, intercept, side)
    if prior_mass <= 0.0:  # (only a falling limit line could get here)
        return 0.0
    log_mixture = (
        special.betaln(a_s, b_s)
        + special.betaln(a_c, b_c)
        - 2 * special.betaln(*_JEFFREYS)
        + math.log(inside)
        - math.log(prior_mass)
    )
    return float(log_mixture - _best_null(ks, ns, kc, nc, slope, intercept, side))


@functools.lru_cache(maxsize=256)
def _prior_mass(slope: float, intercept: float, side: Side) -> float:
    """Jeffreys' prior mass of the alternative region (an upper bound: it divides)."""
    a, b = _JEFFREYS

    def region(pc: Any) -> Any:
        edge = np.clip(slope * pc + intercept, 0.0, 1.0)
        return special.betaincc(a, b, edge) if _UPPER_TAIL[side] else special.betainc(a, b, edge)

    return _mean_over(_JEFFREYS, region, lower=False)


def _best_null(ks: int, ns: int, kc: int, nc: int, slope: float, intercept: float, side: Side) -> float:
    """The highest log-likelihood of any (p_s, p_c) on the null side of the boundary: for each
    p_c the best p_s of that slice, then the best p_c (a concave profile: the null side is a
    convex set and the log-likelihood is jointly concave)."""
    ps_hat = ks / max(ns, 1)  # (no data: every p_s fits equally)
    pick = min if _UPPER_TAIL[side] else max  # decision

    def profile(pc: float) -> float:
        edge = min(max(slope * pc + intercept, 0.0), 1.0)
        return float(_loglik(ks, ns, pick(ps_hat, edge)) + _loglik(kc, nc, pc))

    # "bounded" is what scipy picks for bounds anyway (hence no mutation), but said for the reader.
    method = "bounded"  # pragma: no mutate
    found = optimize.minimize_scalar(
        lambda pc: -profile(pc), bounds=(0.0, 1.0), method=method, options={"xatol": 1e-12}
    )
    pc_hat = kc / max(nc, 1)
    return max(-float(found.fun), profile(0.0), profile(1.0), profile(pc_hat))
