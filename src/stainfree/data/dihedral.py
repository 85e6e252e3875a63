"""The 8 symmetries of a square (the D4 group): the ONE definition of the paper's rotations/flips.

Transform id ``k`` in 0..7 = ``k % 4`` quarter turns (numpy ``rot90`` direction: from the first
image axis towards the second), then a left-right flip when ``k >= 4``. The CPU path (per sample,
in the loader workers) and the device path (per batch, after the host->device copy) both call
:func:`dihedral`, so the two can only differ in which id a sample draws, never in its pixels.

Ids are drawn uniformly: each of the 8 symmetries has probability 1/8 on both paths.
"""
from __future__ import annotations

import numpy as np
import torch

N_SYMMETRIES = 8


def dihedral(images: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry ``k`` of the last two (H, W) axes of ``images`` (any leading shape, any dtype)."""
    if not 0 <= int(k) < N_SYMMETRIES:
        raise ValueError(f"dihedral transform id {k} is outside 0..{N_SYMMETRIES - 1}")
    out = torch.rot90(images, int(k) % 4, dims=(-2, -1))
    return out.flip(-1) if k >= 4 else out


def dihedral_image(image: np.ndarray, k: int) -> np.ndarray:
    """:func:`dihedral` on one uint8 H x W numpy image (the CPU path); returns a contiguous copy."""
    return dihedral(torch.from_numpy(np.ascontiguousarray(image)), k).contiguous().numpy()


def dihedral_batch(images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Sample ``i`` of a square batch [B, ..., S, S] gets symmetry ``ids[i]``.

    Selects with ``torch.where`` over the 8 whole-batch ops rather than boolean indexing: indexing
    would make the device report each id's count to the host (a sync per batch); uint8 copies are cheap.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"dihedral_batch needs square images, got {tuple(images.shape[-2:])}")
    if ids.shape != images.shape[:1]:
        raise ValueError(f"{len(ids)} transform ids for a batch of {len(images)}")
    pick = ids.to(images.device).view(-1, *([1] * (images.dim() - 1)))
    out = images
    for k in range(1, N_SYMMETRIES):  # id 0 is the identity: already in `out`
        out = torch.where(pick == k, dihedral(images, k), out)
    return out


def draw_ids(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` uniform transform ids on the generator's device."""
    return torch.randint(0, N_SYMMETRIES, (n,), generator=generator, device=generator.device)
