"""Training augmentation for grey uint8 patches: the 8 rotations/flips of a square (the paper's set),
seeded so a resumed run sees the same images.

Two places can apply it (``data.augment_on``): per sample in the loader workers
(:class:`DihedralAugment`, seeded by (seed, epoch, sample)) or per batch on the training device
after the host->device copy (:class:`BatchDihedralAugment`, seeded by (seed, epoch, batch, rank)).
Both draw each symmetry with probability 1/8 and apply it with ``stainfree.data.dihedral``.
"""
from __future__ import annotations

import numpy as np
import torch

from stainfree.data.dihedral import N_SYMMETRIES, dihedral_batch, dihedral_image, draw_ids


def sample_seed(seed: int, epoch: int, index: int, *more: int) -> int:
    """A well-mixed 32-bit seed for (run seed, epoch, sample or batch index[, more keys])."""
    keys = [int(seed) & 0xFFFFFFFF, int(epoch), int(index), *(int(m) for m in more)]
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


class DihedralAugment:
    """One of the 8 symmetries of a square, uniformly at random, on one uint8 H x W image."""

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        """Augment one image; the same ``seed`` always gives the same result."""
        return dihedral_image(image, int(np.random.default_rng(seed).integers(N_SYMMETRIES)))


class BatchDihedralAugment:
    """The same symmetries drawn per sample for a whole batch on its device (``data.augment_on=gpu``).

    The ids come from a generator on the batch's device seeded by (seed, epoch, batch index, rank):
    no host work per sample and no device->host sync; a rerun on the same kind of device sees the
    same images. (CPU and CUDA generators give different streams, so the draws differ between the
    two paths; the distribution and the pixels of each symmetry do not.)
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def __call__(self, images: torch.Tensor, epoch: int, batch_index: int, rank: int = 0) -> torch.Tensor:
        generator = torch.Generator(device=images.device)
        generator.manual_seed(sample_seed(self.seed, epoch, batch_index, rank))
        return dihedral_batch(images, draw_ids(len(images), generator))
