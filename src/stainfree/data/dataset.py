"""CropDataset: dict samples sliced from the crop store (no decoding), epoch-seeded augmentation."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from stainfree.data.transforms import sample_seed

# (uint8 S x S image, 32-bit seed) -> augmented uint8 S x S image; the same seed gives the same image
Augment = Callable[[np.ndarray, int], np.ndarray]


class CropDataset(Dataset):
    """Sample ``i`` = row ``rows[i]`` of the store array; ``index`` = i (its row in ``split_table``).

    Keys are ``i`` or ``(i, epoch)`` (the epoch samplers of ``stainfree.data.samplers``): augmentation
    is seeded by (seed, epoch, i), so a resumed run sees the same images and persistent workers need
    no epoch hook. The memmap is opened lazily once per worker and never pickled.
    """

    def __init__(self, array_path: str | os.PathLike, rows: np.ndarray, targets: np.ndarray,
                 augment: Augment | None = None, seed: int = 0) -> None:
        if len(rows) != len(targets):
            raise ValueError(f"{len(rows)} store rows but {len(targets)} targets")
        self.array_path = str(array_path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.augment = augment
        self.seed = int(seed)
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.array_path, mmap_mode="r")
        return self._array

    def image(self, i: int) -> np.ndarray:
        """The unaugmented model input of sample ``i`` (S x S uint8)."""
        return np.array(self.array[self.rows[i]])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        i, epoch = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        img = self.image(i)
        if self.augment is not None:
            img = self.augment(img, sample_seed(self.seed, epoch, i))
        return {"image": torch.from_numpy(np.ascontiguousarray(img))[None],
                "target": torch.tensor(self.targets[i], dtype=torch.int64),
                "index": torch.tensor(i, dtype=torch.int64)}
