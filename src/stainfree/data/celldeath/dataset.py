"""A torch Dataset over cached uint8 tiles, yielding the project's dict samples."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from stainfree.data.celldeath.transforms import TLMAugment
from stainfree.data.transforms import sample_seed


class TileDataset(Dataset):
    """Sample ``i`` = tile ``rows[i]`` of the tile array; ``index`` = i (its row in the split table).

    Keys are ``i`` or ``(i, epoch)`` (the epoch-seeded samplers of ``stainfree.data.samplers``):
    augmentation is seeded by (seed, epoch, i), so a resumed run sees exactly the same images and
    persistent workers need no epoch hook.
    """

    def __init__(self, tiles: np.ndarray, rows: np.ndarray, targets: np.ndarray, augment: TLMAugment | None = None,
                 seed: int = 0):
        if len(rows) != len(targets):
            raise ValueError(f"{len(rows)} tile rows but {len(targets)} targets")
        self.tiles = tiles
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.augment = augment
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        i, epoch = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        tile = np.array(self.tiles[self.rows[i]])  # copy: the cache memmap is read-only
        if self.augment is not None:
            tile = self.augment(tile, np.random.default_rng(sample_seed(self.seed, epoch, i)))
        return {
            "image": torch.from_numpy(np.ascontiguousarray(tile)).unsqueeze(0),
            "target": torch.tensor(self.targets[i], dtype=torch.int64),
            "index": torch.tensor(i, dtype=torch.int64),
        }
