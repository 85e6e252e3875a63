"""Repetitions, interleaving and the statistics the bench prints (median, min-max, spread).

Why: one short timing on a shared machine can be off by 5-10x (issue 13). Every arm is repeated,
the arms of one comparison take turns (a/b/a/b...) so a neighbour's burst hits both, each
repetition runs for a fixed time rather than a fixed number of steps, and the table shows the
spread and the machine's load average so a noisy figure is visible as such.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

SPREAD_LIMIT = 0.10  # (max - min) / median above this: the figure is flagged


def load_average() -> float:
    """The machine's 1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return math.nan


@dataclass
class Repetition:
    """One timed window of an arm: ``count`` items in ``seconds``, the load around it, the settings it ran with."""

    count: int
    seconds: float
    load_before: float
    load_after: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else math.nan


@dataclass
class Summary:
    """Median and range of repeated rates, and the load seen while they were measured."""

    median: float
    low: float
    high: float
    n: int
    load_low: float = math.nan
    load_high: float = math.nan

    @property
    def spread(self) -> float:
        """(max - min) / median: the relative width of what the repetitions saw."""
        return (self.high - self.low) / self.median if self.median > 0 else math.nan

    def warning(self, name: str, limit: float = SPREAD_LIMIT) -> str | None:
        """One line when the repetitions disagree by more than ``limit``, else None."""
        if not self.spread > limit:
            return None
        return (f"warning: {name}: spread {self.spread:.1%} > {limit:.0%} over {self.n} repetitions "
                f"(load {self.load_low:.2f}-{self.load_high:.2f}); rerun on a quieter machine before quoting it")

    def as_dict(self) -> dict[str, float]:
        return dict(median=self.median, min=self.low, max=self.high, spread=self.spread, n=self.n,
                    load_min=self.load_low, load_max=self.load_high)


def summarise(rates: Sequence[float], loads: Sequence[float] = ()) -> Summary:
    """Median with min-max of ``rates`` (NaNs dropped); ``loads`` give the load range."""
    good = [r for r in rates if not math.isnan(r)]
    if not good:
        return Summary(math.nan, math.nan, math.nan, 0)
    seen = [x for x in loads if not math.isnan(x)]
    return Summary(statistics.median(good), min(good), max(good), len(good),
                   min(seen) if seen else math.nan, max(seen) if seen else math.nan)


@dataclass
class Arm:
    """One thing to time. ``run`` does one repetition and returns (items, seconds) of its timed window."""

    name: str
    unit: str
    run: Callable[[], tuple[int, float]]
    settings: dict[str, Any] = field(default_factory=dict)
    reps: list[Repetition] = field(default_factory=list)

    @property
    def summary(self) -> Summary:
        loads = [x for r in self.reps for x in (r.load_before, r.load_after)]
        return summarise([r.rate for r in self.reps], loads)

    def as_dict(self) -> dict[str, Any]:
        return dict(name=self.name, unit=self.unit, settings=self.settings, summary=self.summary.as_dict(),
                    repetitions=[dict(count=r.count, seconds=r.seconds, rate=r.rate, load_before=r.load_before,
                                      load_after=r.load_after, settings=r.settings) for r in self.reps])

    def setting(self, key: str) -> str:
        """A setting as run: ``2``, or ``1-2`` when the runtime rule chose differently between repetitions."""
        seen = sorted({r.settings[key] for r in self.reps if key in r.settings} or
                      ({self.settings[key]} if key in self.settings else set()))
        return "-".join(str(v) for v in (seen[0], seen[-1])) if len(seen) > 1 else (str(seen[0]) if seen else "?")


def paired_ratio(numerator: Arm, denominator: Arm) -> Summary:
    """numerator/denominator per repetition (taken back to back), summarised like a rate."""
    ratios = [n.rate / d.rate for n, d in zip(numerator.reps, denominator.reps) if d.rate > 0]
    loads = [x for r in (*numerator.reps, *denominator.reps) for x in (r.load_before, r.load_after)]
    return summarise(ratios, loads)


def run_interleaved(arms: Sequence[Arm], repeats: int, say: Callable[[str], None] = print) -> None:
    """Repetition r of every arm, then r + 1 of every arm, ...: a/b/a/b, never aaa/bbb."""
    for rep in range(repeats):
        for arm in arms:
            before = load_average()
            count, seconds = arm.run()
            arm.reps.append(Repetition(int(count), float(seconds), before, load_average(), dict(arm.settings)))
            last = arm.reps[-1]
            say(f"[bench] {arm.name}  {rep + 1}/{repeats}: {last.rate:.1f} {arm.unit} in {last.seconds:.1f} s "
                f"(load {last.load_before:.2f} -> {last.load_after:.2f})")


def run_for(step: Callable[[], int], seconds: float, warmup: int, sync: Callable[[], None] = lambda: None
            ) -> tuple[int, float]:
    """``warmup`` untimed steps, then steps until ``seconds`` have passed; returns (items, seconds).

    The clock is read without waiting for the device each step (so the host keeps queueing work
    ahead of it, as in training); the device is synchronised at both ends of the window.
    """
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    count = 0
    while True:
        count += step()
        if time.perf_counter() - start >= seconds:
            break
    sync()
    return count, time.perf_counter() - start
