"""Training augmentation for grey uint8 patches: random 90-degree rotations + horizontal/vertical
flips (the paper's set), seeded per sample so a resumed run sees exactly the same images.

albumentations' ``Compose.set_random_seed`` gives every child transform the SAME seed, which
makes the two flips always fire together (only rotations would ever be produced); each child
therefore gets its own seed derived from the sample seed.
"""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations phones home otherwise
import albumentations as A  # noqa: E402


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for (run seed, epoch, sample index)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]).generate_state(1)[0])


class DihedralAugment:
    """Random rot90 (k = 0..3) and independent horizontal/vertical flips: all 8 symmetries of a square."""

    def __init__(self) -> None:
        self.compose = A.Compose([A.RandomRotate90(p=1.0), A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        """Augment one uint8 HxW image; the same ``seed`` always gives the same result."""
        children = np.random.SeedSequence(seed).generate_state(len(self.compose.transforms))
        for transform, child in zip(self.compose.transforms, children):
            transform.set_random_seed(int(child))
        return np.ascontiguousarray(self.compose(image=image)["image"])
