"""OneCycleLR arguments that work for any number of steps, however small.

OneCycleLR splits its steps into phases ending at ``pct_start * total - 1`` (and, with
``three_phase``, ``2 * pct_start * total - 2``) and ``total - 1``, and divides by each phase's
length: a phase of zero length (e.g. ``pct_start=0.25`` over 4 steps, a tiny debug run) raises
ZeroDivisionError on the first step. Only such a ``pct_start`` is moved, by half a step; it
happens only when ``pct_start * total`` is exactly 1 (or ``pct_start`` 1), i.e. runs of a few steps.
"""
from __future__ import annotations

EPSILON = 1e-9


def one_cycle_total_steps(estimated_steps: float | int) -> int:
    """Total steps for OneCycleLR: at least 1 (a fit with no training batch still builds one)."""
    return max(1, int(estimated_steps))


def one_cycle_pct_start(pct_start: float, total_steps: int, three_phase: bool = False) -> float:
    """``pct_start``, or the nearest half-step shift of it that leaves no phase of zero length."""
    for shift in (0.0, 0.5, -0.5, 1.0, -1.0):
        candidate = pct_start + shift / total_steps
        if 0.0 < candidate < 1.0 and not _has_empty_phase(candidate, total_steps, three_phase):
            return candidate
    return pct_start


def _has_empty_phase(pct_start: float, total_steps: int, three_phase: bool) -> bool:
    ends = [pct_start * total_steps - 1]
    if three_phase:
        ends.append(2 * pct_start * total_steps - 2)
    ends.append(total_steps - 1)
    starts = [0.0, *ends[:-1]]
    return any(abs(end - start) < EPSILON for start, end in zip(starts, ends))
