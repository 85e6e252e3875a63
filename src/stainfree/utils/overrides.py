"""Which Hydra overrides describe a run: one rule for run names in `compare` and in W&B.

A sweep's jobs are told apart by the overrides that differ between them (``-m model=a,b`` ->
``model=a``); overrides every job shares describe the sweep as a whole, and overrides that only
say where things go (paths, hydra, logger, devices) describe neither.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

# Overrides that name where things go, not what was trained.
_NOISE = re.compile(r"^(\+{0,2})(paths|hydra|logger|trainer\.devices|trainer\.accelerator|ckpt_path)[.=]")


def describing_overrides(overrides: Iterable[object]) -> list[str]:
    """The overrides that say what was trained, in their given order."""
    return [str(o) for o in overrides if not _NOISE.match(str(o))]


def shared_overrides(per_run: Sequence[Sequence[str]]) -> set[str]:
    """Overrides every run has; none when there are fewer than two runs (nothing to tell apart)."""
    if len(per_run) < 2:
        return set()
    return set(per_run[0]).intersection(*per_run[1:])


def distinct_overrides(overrides: Sequence[str], shared: set[str]) -> list[str]:
    """This run's overrides minus the shared ones; all of them when nothing would be left."""
    distinct = [o for o in overrides if o not in shared]
    return distinct or list(overrides)
