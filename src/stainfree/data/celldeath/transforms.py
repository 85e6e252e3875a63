"""Transmitted-light augmentation: the celldeath recipe's flips, rotations and small lighting change.

The original tool used fastai's ``get_transforms(do_flip=True, flip_vert=True, max_lighting=0.1)``:
all 8 dihedral flips/90-degree turns, a small random rotation (+-10 degrees) and zoom (<=1.1) with
reflection padding, and brightness/contrast jitter of +-10 %. Implemented on uint8 numpy tiles
(one cv2.warpAffine call) so a tile stays uint8 until the GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stainfree.data.dihedral import N_SYMMETRIES, dihedral_image


@dataclass(frozen=True)
class TLMAugment:
    """Random dihedral flip + small affine (p_affine) + brightness/contrast (p_lighting) on a square uint8 tile."""

    max_rotate: float = 10.0
    max_zoom: float = 1.1
    p_affine: float = 0.75
    max_lighting: float = 0.1
    p_lighting: float = 0.75

    def cpu_only_parts(self) -> list[str]:
        """The parts beyond the 8 symmetries that this setting can fire (they have no device version)."""
        parts = []
        if (self.max_rotate > 0 or self.max_zoom > 1) and self.p_affine > 0:
            parts.append(f"rotate/zoom (max_rotate={self.max_rotate}, max_zoom={self.max_zoom}, p_affine={self.p_affine})")
        if self.max_lighting > 0 and self.p_lighting > 0:
            parts.append(f"lighting (max_lighting={self.max_lighting}, p_lighting={self.p_lighting})")
        return parts

    def __call__(self, tile: np.ndarray, rng: np.random.Generator | int) -> np.ndarray:
        """Augment one square uint8 tile; ``rng`` may be a seed (the same seed, the same result)."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(int(rng))
        out = dihedral_image(tile, int(rng.integers(N_SYMMETRIES)))
        if (self.max_rotate > 0 or self.max_zoom > 1) and rng.random() < self.p_affine:
            angle = float(rng.uniform(-self.max_rotate, self.max_rotate))
            scale = float(rng.uniform(1.0, self.max_zoom))
            h, w = out.shape
            m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), angle, scale)
            out = cv2.warpAffine(np.ascontiguousarray(out), m, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT_101)
        if self.max_lighting > 0 and rng.random() < self.p_lighting:
            brightness = float(rng.uniform(-self.max_lighting, self.max_lighting)) * 255.0
            contrast = 1.0 + float(rng.uniform(-self.max_lighting, self.max_lighting))
            mean = float(out.mean())
            lut = np.clip((np.arange(256, dtype=np.float32) - mean) * contrast + mean + brightness + 0.5, 0, 255)
            out = lut.astype(np.uint8)[out]
        return np.ascontiguousarray(out)
