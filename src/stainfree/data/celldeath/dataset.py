"""A torch Dataset over cached uint8 tiles, yielding the project's dict samples."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from stainfree.data.celldeath.transforms import TLMAugment


class TileDataset(Dataset):
    """Sample ``i`` = tile ``rows[i]`` of the tile array; ``index`` = i (its row in the split table).

    Augmentation randomness comes from torch's generator, so ``seed_everything(workers=True)``
    makes it reproducible while every epoch still sees new draws.
    """

    def __init__(self, tiles: np.ndarray, rows: np.ndarray, targets: np.ndarray, augment: TLMAugment | None = None):
        if len(rows) != len(targets):
            raise ValueError(f"{len(rows)} tile rows but {len(targets)} targets")
        self.tiles = tiles
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        tile = np.array(self.tiles[self.rows[i]])  # copy: the cache memmap is read-only
        if self.augment is not None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            tile = self.augment(tile, rng)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(tile)).unsqueeze(0),
            "target": torch.tensor(self.targets[i], dtype=torch.int64),
            "index": torch.tensor(i, dtype=torch.int64),
        }
