"""Add the trust blocks (``calibration``, ``ood``) to a checkpoint file, atomically."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from stainfree.utils.atomic import atomic_path


def write_trust_blocks(src: str | os.PathLike, blocks: Mapping[str, Any], dst: str | os.PathLike | None = None) -> Path:
    """Write ``src`` with ``checkpoint["stainfree"]`` updated by ``blocks`` to ``dst`` (default: ``src``).

    Written to a temp file and renamed, so a crash never leaves a half-written checkpoint. Callers
    pass ``dst=None`` only for a run's own best.ckpt; a user's checkpoint gets a new ``dst``.
    """
    checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    meta = checkpoint.get("stainfree")
    if not isinstance(meta, dict):
        raise ValueError(f"{src}: not a stainfree checkpoint (no 'stainfree' block)")
    meta.update(blocks)
    target = Path(dst if dst is not None else src)
    with atomic_path(target) as tmp:
        torch.save(checkpoint, tmp)
    return target
