"""The store's size and what ``perfsig gc`` did, as people read them (``perfsig runs``,
``perfsig gc``, the plugin's summary and the reports)."""

from __future__ import annotations

from ..store.sqlite import Collection, StoreUsage


def describe_usage(usage: StoreUsage) -> str:
    """``1.2 GB, 10,000,000 raw samples in 2 runs (121 bytes per sample); 5 runs collected``"""
    per_sample = f" ({usage.bytes_per_sample:.0f} bytes per sample)" if usage.bytes_per_sample else ""
    text = (
        f"{size_text(usage.bytes)}, {usage.samples:,} raw samples in {usage.runs_with_samples} "
        f"run{'' if usage.runs_with_samples == 1 else 's'}{per_sample}"
    )
    if usage.runs_collected:
        text += f"; raw samples of {usage.runs_collected} older runs collected (aggregates kept)"
    return text


def size_text(count: float) -> str:
    """``1.2 GB``, ``512 kB``, ``900 bytes`` (powers of 1000)."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


def describe_collection(done: Collection) -> list[str]:
    """What a collection did, for people (``perfsig gc`` and the plugin's summary)."""
    verb = "would delete" if done.dry_run else "deleted"
    lines = [
        f"gc {verb} the raw samples of {len(done.collected)} run{'' if len(done.collected) == 1 else 's'} "
        f"({done.samples:,} samples); their gates, verdicts and per-second aggregates stay"
    ]
    for why, runs in done.kept.items():
        lines.append(
            f"gc kept {len(runs)} older run{'' if len(runs) == 1 else 's'} ({why}): {', '.join(runs)}"
        )
    if not done.dry_run:
        lines.append(f"store {size_text(done.bytes_before)} -> {size_text(done.bytes_after)}")
    return lines
