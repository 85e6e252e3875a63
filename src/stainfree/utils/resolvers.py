"""OmegaConf resolvers used in `conf/` (registered when `stainfree` is imported)."""
from __future__ import annotations

import math

from omegaconf import OmegaConf


def scale_lr(lr: float, reference_batch_size: int, batch_size: int, rule: str = "sqrt") -> float:
    """Learning rate for ``batch_size`` given one tuned at ``reference_batch_size``.

    ``linear`` (Goyal et al. 2017, for SGD) or ``sqrt`` (the usual rule for Adam-type optimizers,
    whose per-step update size does not grow with the batch). Used by the large-batch recipes so a
    ``data.batch_size=`` override rescales the step size with it.
    """
    ratio = float(batch_size) / float(reference_batch_size)
    if ratio <= 0:
        raise ValueError(f"scale_lr: batch sizes must be positive, got {reference_batch_size} -> {batch_size}")
    if rule == "linear":
        return float(lr) * ratio
    if rule == "sqrt":
        return float(lr) * math.sqrt(ratio)
    raise ValueError(f"scale_lr: rule must be 'linear' or 'sqrt', got {rule!r}")


def register_resolvers() -> None:
    """Register ``${scale_lr:lr,ref_bs,bs[,rule]}`` once (safe to call repeatedly)."""
    if not OmegaConf.has_resolver("scale_lr"):
        OmegaConf.register_new_resolver("scale_lr", scale_lr)
