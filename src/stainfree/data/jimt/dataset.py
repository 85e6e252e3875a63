"""Patch dataset over the preprocessing cache: a patch is a slice of the memory-mapped 8-bit
BF array, resized to the model input and (for training) augmented. No image decoding."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from stainfree.data.transforms import DihedralAugment, sample_seed


def resize_patch(patch: np.ndarray, size: int) -> np.ndarray:
    """Window -> model input: INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging."""
    if patch.shape[0] == size and patch.shape[1] == size:
        return patch
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


class JimtPatchDataset(Dataset):
    """Samples of one split: ``table`` rows (frame_idx, y, x, target) in split order.

    Keys may be an int (val/test) or an ``(index, epoch)`` pair from the epoch samplers
    (train), which seeds the augmentation so the same (index, epoch) always looks the same.
    """

    def __init__(self, bf8_path: str | Path, table: pd.DataFrame, window: int, input_size: int,
                 augment: bool = False, seed: int = 0) -> None:
        self.bf8_path = str(bf8_path)
        self.frame_idx = table["frame_idx"].to_numpy(np.int64)
        self.ys = table["y"].to_numpy(np.int64)
        self.xs = table["x"].to_numpy(np.int64)
        self.targets = table["target"].to_numpy(np.int64)
        self.window = int(window)
        self.input_size = int(input_size)
        self.augment = DihedralAugment() if augment else None
        self.seed = int(seed)
        self._bf8: np.ndarray | None = None  # opened lazily, once per worker process

    def __len__(self) -> int:
        return len(self.targets)

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle the memmap into workers (that would copy the whole array).
        state = self.__dict__.copy()
        state["_bf8"] = None
        return state

    @property
    def bf8(self) -> np.ndarray:
        if self._bf8 is None:
            self._bf8 = np.load(self.bf8_path, mmap_mode="r")
        return self._bf8

    def patch(self, i: int) -> np.ndarray:
        """The raw 8-bit window of sample ``i`` (window x window), before resize/augmentation."""
        y, x, w = self.ys[i], self.xs[i], self.window
        return np.asarray(self.bf8[self.frame_idx[i], y:y + w, x:x + w])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, epoch = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        img = resize_patch(self.patch(i), self.input_size)
        if self.augment is not None:
            img = self.augment(img, sample_seed(self.seed, epoch, i))
        return {"image": torch.from_numpy(np.ascontiguousarray(img))[None],
                "target": torch.tensor(self.targets[i], dtype=torch.int64),
                "index": torch.tensor(i, dtype=torch.int64)}
