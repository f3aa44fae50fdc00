"""The charts of the HTML report as geometry for its templates: response time and failures
over the judged windows (inline SVG paths and bars), and the bullet that places a verdict's
value against its baseline and limit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import VerdictRow, finite, format_value
from .series import Series

SOURCE_COLOR = "src"
COMPARE_COLOR = "cmp"


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def tick_text(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:.3g}"


@dataclass
class ChartPath:
    d: str
    kind: str  # CSS class: "src", "cmp"
    dashed: bool = False
    label: str = ""


@dataclass
class ChartBar:
    x: float
    y: float
    w: float
    h: float
    kind: str


@dataclass
class Chart:
    title: str
    y_label: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    paths: list[ChartPath] = field(default_factory=list)
    bars: list[ChartBar] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    hovers: list[tuple[float, float, str]] = field(default_factory=list)
    legend: list[tuple[str, bool, str]] = field(default_factory=list)
    empty: str = ""
    bar_legend: bool = False

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom


def _path(xs: Sequence[float], ys: Sequence[float | None]) -> str:
    parts: list[str] = []
    pen_up = True
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            pen_up = True
            continue
        parts.append(f"{'M' if pen_up else 'L'}{x:.1f},{y:.1f}")
        pen_up = False
    return "".join(parts)


def _frame(
    title: str, y_label: str, x_max: float, y_max: float, width: int = 560, height: int = 210
) -> Chart:
    chart = Chart(title, y_label, width, height, left=48, right=14, top=22, bottom=28)
    for value in nice_ticks(0.0, y_max):
        chart.y_ticks.append((value, tick_text(value)))
    for value in nice_ticks(0.0, x_max, 6):
        if value <= x_max + 1e-9:
            chart.x_ticks.append((value, f"{tick_text(value)} s"))
    return chart


def _scale(chart: Chart, x_max: float) -> tuple[Any, Any]:
    y_top = chart.y_ticks[-1][0] if chart.y_ticks else 1.0
    y_top = y_top or 1.0

    def sx(x: float) -> float:
        return chart.left + chart.plot_w * (x / x_max if x_max else 0.0)

    def sy(y: float) -> float:
        return chart.top + chart.plot_h * (1.0 - y / y_top)

    chart.y_ticks = [(sy(v), text) for v, text in chart.y_ticks]
    chart.x_ticks = [(sx(v), text) for v, text in chart.x_ticks]
    return sx, sy


def side_names(source_env: str, compare_env: str) -> tuple[str, str]:
    """How charts name the two sides: the environments, or roles when both are one."""
    if source_env != compare_env:
        return source_env, compare_env
    return f"{source_env} (this gate)", f"{compare_env} (baseline)"


def _sides(
    source: Series | None, compare: Series | None, names: tuple[str, str] | None
) -> list[tuple[str, str, Series]]:
    source_name, compare_name = names or (
        source.env if source else "source",
        compare.env if compare else "baseline",
    )
    pairs = ((SOURCE_COLOR, source_name, source), (COMPARE_COLOR, compare_name, compare))
    return [(kind, name, s) for kind, name, s in pairs if s is not None]


def _hover_text(t0: float, width: float, sides: Sequence[tuple[str, str, Series]], index: int) -> str:
    lines = [f"{tick_text(t0)}–{tick_text(t0 + width)} s"]
    for _, name, series in sides:
        if index >= len(series.t):
            continue
        n, failed = series.requests[index], series.failures[index]
        mean, p90 = series.mean_ms[index], series.p90_ms[index]
        if n:
            share = 100.0 * failed / n
            lines.append(
                f"{name}: {n} req, {failed} failed ({share:.3g} %), "
                f"mean {format_value(mean, 'ms')}, p90 {format_value(p90, 'ms')}"
            )
        else:
            lines.append(f"{name}: no requests")
    return "\n".join(lines)


def latency_chart(
    source: Series | None, compare: Series | None, names: tuple[str, str] | None = None
) -> Chart:
    """Mean and p90 response time per bucket, source and compare windows laid over each other."""
    sides = _sides(source, compare, names)
    values = [v for _, _, s in sides for v in (*s.mean_ms, *s.p90_ms) if v is not None]
    x_max = max((s.t[-1] + s.bucket_s for _, _, s in sides), default=1.0)
    chart = _frame("Response time", "ms", x_max, max(values, default=1.0) * 1.05)
    if not sides:
        chart.empty = "no samples stored for these windows"
        return chart
    sx, sy = _scale(chart, x_max)
    for kind, side, series in sides:
        xs = [sx(t + series.bucket_s / 2) for t in series.t]
        for ys, dashed, name in ((series.mean_ms, False, "mean"), (series.p90_ms, True, "p90")):
            d = _path(xs, [None if v is None else sy(v) for v in ys])
            chart.paths.append(ChartPath(d, kind, dashed, f"{side} {name}"))
            chart.legend.append((kind, dashed, f"{side} {name}"))
    _add_hovers(chart, sides, sx)
    return chart


def failure_chart(
    source: Series | None, compare: Series | None, names: tuple[str, str] | None = None
) -> Chart:
    """Share of failed requests per bucket, as paired bars (source, compare)."""
    sides = _sides(source, compare, names)
    values = [v for _, _, s in sides for v in s.failure_percent if v is not None]
    x_max = max((s.t[-1] + s.bucket_s for _, _, s in sides), default=1.0)
    top = max(values, default=0.0)
    chart = _frame("Failed requests", "%", x_max, max(top * 1.05, 1.0))
    chart.bar_legend = True
    if not sides:
        chart.empty = "no samples stored for these windows"
        return chart
    sx, sy = _scale(chart, x_max)
    slots = len(sides)
    for slot, (kind, side, series) in enumerate(sides):
        for t, share in zip(series.t, series.failure_percent, strict=True):
            if not share:
                continue
            x0, x1 = sx(t), sx(t + series.bucket_s)
            gap = min(1.5, (x1 - x0) * 0.1)
            w = (x1 - x0 - 2 * gap) / slots
            y = sy(share)
            chart.bars.append(ChartBar(x0 + gap + slot * w, y, max(w, 0.5), max(sy(0.0) - y, 0.5), kind))
        total = sum(series.failures)
        chart.legend.append((kind, False, f"{side} ({total} of {series.samples} failed)"))
    _add_hovers(chart, sides, sx)
    return chart


def _add_hovers(chart: Chart, sides: Sequence[tuple[str, str, Series]], sx: Any) -> None:
    longest = max((s for _, _, s in sides), key=lambda s: len(s.t))
    for index, t in enumerate(longest.t):
        x0, x1 = sx(t), sx(t + longest.bucket_s)
        chart.hovers.append((x0, max(x1 - x0, 0.5), _hover_text(t, longest.bucket_s, sides, index)))


@dataclass
class Bullet:
    """Where the source value lies against baseline and limit, for one verdict row."""

    width: int
    height: int
    zone_x: float
    zone_w: float
    limit_x: float
    compare_x: float | None
    source_x: float
    title: str


def bullet(verdict: VerdictRow, width: int = 120, height: int = 18) -> Bullet | None:
    """None unless the limit bounds the value itself (scale rule, static limits)."""
    direction = verdict.direction
    source, limit = finite(verdict.get("source_value")), finite(verdict.get("limit"))
    compare = finite(verdict.get("compare_value"))
    if direction is None or source is None or limit is None:
        return None
    values = [v for v in (source, limit, compare) if v is not None]
    low, high = min(0.0, *values), max(values)
    span = (high - low) * 1.15 or 1.0
    pad = 4.0

    def x(v: float) -> float:
        return pad + (width - 2 * pad) * (v - low) / span

    right = float(width) - pad
    zone = (x(limit), right - x(limit)) if direction == "upper" else (pad, x(limit) - pad)
    unit = verdict.unit
    title = (
        f"{verdict.text('source_env')} {format_value(source, unit)} · "
        f"{verdict.text('compare_env')} {format_value(compare, unit)} · limit {format_value(limit, unit)} "
        f"({direction})"
    )
    return Bullet(
        width,
        height,
        zone[0],
        max(zone[1], 0.0),
        x(limit),
        None if compare is None else x(compare),
        x(source),
        title,
    )


@dataclass
class EvidenceChart:
    """A sequential check's evidence over time: one path per side (outside its limit, within
    it) against the level at which a side decides, on a log scale."""

    width: int
    height: int
    outside: str  # SVG path data
    within: str
    threshold_y: float
    decided_x: float | None
    title: str
    x_label: str
    y_top: str
    y_bottom: str


def evidence_chart(verdict: VerdictRow, width: int = 260, height: int = 64) -> EvidenceChart | None:
    """None unless the verdict's details hold a sequential trajectory ([s, log10 outside,
    log10 within] points) and the level it was judged at."""
    details = verdict.verdict.details or {}
    points = details.get("trajectory")
    threshold = finite(details.get("threshold"))
    if not isinstance(points, list) or not points or threshold is None or threshold <= 1:
        return None
    rows: list[list[float]] = [
        [float(v) for v in p]
        for p in points
        if isinstance(p, list) and len(p) == 3 and all(finite(v) is not None for v in p)
    ]
    if not rows:
        return None
    level = math.log10(threshold)
    top = max(level * 1.5, *(min(max(r[1], r[2]), 12.0) for r in rows))
    bottom = -2.0
    x_max = max(max(r[0] for r in rows), 1.0)
    pad_l, pad_r, pad_t, pad_b = 4.0, 4.0, 4.0, 4.0

    def x(seconds: float) -> float:
        return pad_l + (width - pad_l - pad_r) * seconds / x_max

    def y(log10: float) -> float:
        clipped = min(max(log10, bottom), top)
        return pad_t + (height - pad_t - pad_b) * (top - clipped) / (top - bottom)

    xs = [x(r[0]) for r in rows]
    decided = finite(details.get("decided_at_s"))
    return EvidenceChart(
        width,
        height,
        _path(xs, [y(r[1]) for r in rows]),
        _path(xs, [y(r[2]) for r in rows]),
        y(level),
        None if decided is None else x(min(decided, x_max)),
        f"evidence over {x_max:.1f} s of load: outside the limit (red) and within it (green), "
        f"log scale; a side decides at {format_value(threshold)} (dashed)",
        f"{x_max:.0f} s",
        f"1e{top:.0f}",
        "1e-2",
    )
