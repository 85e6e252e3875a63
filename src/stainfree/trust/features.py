"""One backbone pass over uint8 patches: logits and penultimate features (trust fitting and scoring)."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch


def _batches(images: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size]


@torch.no_grad()
def patch_logits_and_features(model: torch.nn.Module, patches: np.ndarray | torch.Tensor,
                              batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, C] and penultimate features [N, d] of uint8 patches [N, S, S] (one backbone pass)."""
    images = torch.as_tensor(patches)
    if images.ndim == 3:
        images = images.unsqueeze(1)
    logits, feats = [], []
    for chunk in _batches(images, batch_size):
        lg, ft = model.logits_and_features(chunk)
        logits.append(lg.float().cpu())
        feats.append(ft.float().flatten(1).cpu())
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return torch.cat(logits).numpy(), torch.cat(feats).numpy()
