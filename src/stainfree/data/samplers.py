"""Epoch-seeded training samplers: the draw of epoch e depends only on (seed, e), so a run
resumed from a checkpoint sees the same samples as an uninterrupted one.

They yield ``(index, epoch)`` pairs: the dataset uses the epoch to seed augmentation, which keeps
working with persistent DataLoader workers (their copy of the dataset never sees ``set_epoch``).
Lightning calls ``set_epoch`` on the sampler at the start of every training epoch.

Multi-GPU: the samplers shard their own draw (``num_replicas``/``rank``, by default read from the
initialised process group: every rank draws the same epoch sequence and keeps every
``num_replicas``-th item). They are also ``DistributedSampler``
instances, so Lightning leaves them in place (instead of wrapping them, which would freeze their
epoch) and still calls ``set_epoch`` each epoch.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler, RandomSampler, WeightedRandomSampler


def class_balanced_weights(targets: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Per-sample weight 1 / (count of its class): each class is drawn equally often on average."""
    targets = np.asarray(targets, dtype=np.int64)
    if targets.size == 0:
        raise ValueError("cannot build a class-balanced sampler for an empty training split")
    if targets.min() < 0:
        raise ValueError("targets must be class indices >= 0 (drop unlabelled samples first)")
    counts = np.bincount(targets)
    return torch.as_tensor(1.0 / counts[targets], dtype=torch.double)


class _EpochSharded:
    """Shared epoch seeding and rank sharding for the two samplers below."""

    seed: int
    epoch: int
    num_replicas: int
    rank: int
    total: int

    def _setup(self, seed: int, total: int, num_replicas: int | None, rank: int | None) -> None:
        if num_replicas is None or rank is None:  # like DistributedSampler: ask the process group
            import torch.distributed as dist

            live = dist.is_available() and dist.is_initialized()
            num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if live else 1)
            rank = rank if rank is not None else (dist.get_rank() if live else 0)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.seed, self.epoch = int(seed), 0
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.total = int(total)
        # DistributedSampler attributes that callers may read
        self.shuffle, self.drop_last = True, False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def _per_rank(self) -> int:
        return -(-self.total // self.num_replicas)  # ceil: ranks get equal counts (padding wraps)

    def _shard(self, drawn: list[int]) -> Iterator[tuple[int, int]]:
        n = self._per_rank()
        padded = (drawn * (1 + (n * self.num_replicas) // max(len(drawn), 1)))[: n * self.num_replicas]
        for i in padded[self.rank::self.num_replicas]:
            yield int(i), self.epoch


class EpochWeightedRandomSampler(_EpochSharded, WeightedRandomSampler, DistributedSampler):
    """``WeightedRandomSampler`` (with replacement) reseeded from seed + epoch; ``num_samples`` in total
    over all ranks."""

    def __init__(self, weights: Sequence[float] | torch.Tensor, num_samples: int, seed: int = 0,
                 replacement: bool = True, num_replicas: int | None = None, rank: int | None = None) -> None:
        WeightedRandomSampler.__init__(self, weights, num_samples, replacement=replacement)
        self._setup(seed, num_samples, num_replicas, rank)

    def __len__(self) -> int:
        return self._per_rank()

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        self.generator = self._generator()
        return self._shard([int(i) for i in WeightedRandomSampler.__iter__(self)])


class EpochRandomSampler(_EpochSharded, RandomSampler, DistributedSampler):
    """Uniform shuffling (``weighted_sampler=false``) reseeded from seed + epoch."""

    def __init__(self, data_source: Sequence, num_samples: int | None = None, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        replacement = num_samples is not None and num_samples > len(data_source)
        RandomSampler.__init__(self, data_source, replacement=replacement, num_samples=num_samples)
        self._setup(seed, self.num_samples, num_replicas, rank)

    def __len__(self) -> int:
        return self._per_rank()

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        self.generator = self._generator()
        return self._shard([int(i) for i in RandomSampler.__iter__(self)])


def drop_lone_last_batch(samples_per_rank: int, batch_size: int) -> bool:
    """``drop_last`` for a training loader: True only when the last batch would hold one sample.

    BatchNorm cannot train on a batch of one (it raises mid-epoch), and any dataset whose size is
    1 more than a multiple of the batch size would hit it; dropping that one draw of a random
    epoch costs nothing, while every other batch size keeps all samples.
    """
    return samples_per_rank > batch_size and samples_per_rank % batch_size == 1
