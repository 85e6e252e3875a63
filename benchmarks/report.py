"""Markdown tables and the one-line conclusions of a bench run (what is noisy, how many workers a GPU needs)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.stats import Arm, Summary, paired_ratio


@dataclass(frozen=True)
class StepRate:
    """A training step rate the loader must keep up with: ``img_s`` images/s at ``input_size`` px."""

    label: str
    img_s: float
    input_size: int


# Bare training step on one H100 (bf16 + channels_last, batch 256), measured for issue 13: what
# the loader must feed on such a GPU, so a CPU-only bench can still say how many workers it needs.
H100_BARE_STEP = {"resnet18": StepRate("resnet18@224 bare step on one H100, bf16, bs 256", 11702.0, 224),
                  "inception_v3": StepRate("inception_v3@299 bare step on one H100, bf16, bs 256", 2201.0, 299)}


def fmt(summary: Summary, digits: int = 1) -> str:
    """``median (min-max)``."""
    if summary.n == 0:
        return "n/a"
    return f"{summary.median:.{digits}f} ({summary.low:.{digits}f}-{summary.high:.{digits}f})"


def load_range(summary: Summary) -> str:
    return f"{summary.load_low:.2f}-{summary.load_high:.2f}"


def step_table(pairs: Sequence[tuple[Arm, Arm]]) -> str:
    lines = ["| backbone | input | batch | threads / workers | (a) bare step img/s | (b) train path img/s "
             "| (b)/(a) | load |", "|---|---|---|---|---|---|---|---|"]
    for bare, real in pairs:
        s, loads = real.settings, [bare.summary, real.summary]
        load = f"{min(x.load_low for x in loads):.2f}-{max(x.load_high for x in loads):.2f}"
        lines.append(f"| {s['backbone']} | {s['input_size']} | {s['batch_size']} | {real.setting('threads')} / "
                     f"{real.setting('workers')} | {fmt(bare.summary)} | {fmt(real.summary)} | "
                     f"{fmt(paired_ratio(real, bare), 2)} | {load} |")
    return "\n".join(lines)


def loader_table(arms: Sequence[Arm]) -> str:
    lines = ["| input | batch | workers | patches/s | per process | load |", "|---|---|---|---|---|---|"]
    for arm in arms:
        s, summary = arm.settings, arm.summary
        per = summary.median / max(1, s["workers"])
        lines.append(f"| {s['input_size']} | {s['batch_size']} | {s['workers']} | {fmt(summary, 0)} | {per:.0f} | "
                     f"{load_range(summary)} |")
    return "\n".join(lines)


def pipeline_table(arms: Sequence[Arm]) -> str:
    lines = ["| pipeline | threads / workers | raw frames/s | load |", "|---|---|---|---|"]
    for arm in arms:
        lines.append(f"| {arm.name} | {arm.setting('threads')} / {arm.setting('workers')} | {fmt(arm.summary, 2)} | "
                     f"{load_range(arm.summary)} |")
    return "\n".join(lines)


def grid_table(arms: Sequence[Arm]) -> str:
    """(b) per threads x workers, each compared with the first arm: the runtime rule's own choice."""
    base = arms[0].summary.median if arms else math.nan
    lines = ["| settings | threads | workers | (b) train path img/s | vs the rule | load |", "|---|---|---|---|---|---|"]
    for i, arm in enumerate(arms):
        label = "**runtime rule (default)**" if i == 0 else "fixed"
        lines.append(f"| {label} | {arm.setting('threads')} | {arm.setting('workers')} | {fmt(arm.summary)} | "
                     f"{arm.summary.median / base:.2f} | {load_range(arm.summary)} |")
    return "\n".join(lines)


def spread_warnings(arms: Sequence[Arm]) -> list[str]:
    return [w for arm in arms if (w := arm.summary.warning(arm.name))]


def workers_needed(loader_arms: Sequence[Arm], rates: Sequence[StepRate], cores: int) -> list[str]:
    """"a GPU stepping at N img/s needs >= K workers of this CPU", from the one-worker loader rate.

    One worker is one core (1 thread), so K = ceil(N / patches/s of one worker); the table shows
    whether this machine's own workers scale that way.
    """
    lines = []
    for rate in rates:
        arms = {a.settings["workers"]: a for a in loader_arms if a.settings["input_size"] == rate.input_size}
        one = arms.get(1) or arms.get(0)
        if one is None or not one.summary.median > 0:
            continue
        per_worker = one.summary.median
        need = math.ceil(rate.img_s / per_worker)
        best = max(arms.values(), key=lambda a: a.summary.median)
        line = (f"a GPU stepping at {rate.img_s:,.0f} img/s ({rate.label}) needs >= {need} workers of this CPU "
                f"at {rate.input_size} px (one worker: {per_worker:,.0f} patches/s; best here: "
                f"{best.summary.median:,.0f} with {best.settings['workers']} workers)")
        if need > cores - 1:
            line += f"; this machine has {cores} cores"
        lines.append(line)
    return lines
