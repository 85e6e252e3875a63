"""Epoch-seeded training samplers: the draw of epoch e depends only on (seed, e), so a run
resumed from a checkpoint sees the same samples as an uninterrupted one.

They yield ``(index, epoch)`` pairs: the dataset uses the epoch to seed augmentation, which keeps
working with persistent DataLoader workers (their copy of the dataset never sees ``set_epoch``).
Lightning calls ``set_epoch`` on the sampler at the start of every training epoch.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import RandomSampler, WeightedRandomSampler


def class_balanced_weights(targets: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Per-sample weight 1 / (count of its class): each class is drawn equally often on average."""
    targets = np.asarray(targets, dtype=np.int64)
    if targets.size == 0:
        raise ValueError("cannot build a class-balanced sampler for an empty training split")
    if targets.min() < 0:
        raise ValueError("targets must be class indices >= 0 (drop unlabelled samples first)")
    counts = np.bincount(targets)
    return torch.as_tensor(1.0 / counts[targets], dtype=torch.double)


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


class EpochWeightedRandomSampler(WeightedRandomSampler):
    """``WeightedRandomSampler`` (with replacement) whose generator is reseeded from seed + epoch."""

    def __init__(self, weights: Sequence[float] | torch.Tensor, num_samples: int, seed: int = 0,
                 replacement: bool = True) -> None:
        super().__init__(weights, num_samples, replacement=replacement)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        self.generator = _generator(self.seed, self.epoch)
        epoch = self.epoch
        for i in super().__iter__():
            yield int(i), epoch


class EpochRandomSampler(RandomSampler):
    """Uniform shuffling (used when ``weighted_sampler=false``), reseeded from seed + epoch."""

    def __init__(self, data_source: Sequence, num_samples: int | None = None, seed: int = 0) -> None:
        replacement = num_samples is not None and num_samples > len(data_source)
        super().__init__(data_source, replacement=replacement, num_samples=num_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        self.generator = _generator(self.seed, self.epoch)
        epoch = self.epoch
        for i in super().__iter__():
            yield int(i), epoch
