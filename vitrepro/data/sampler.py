"""A training sampler that makes every epoch reproducible and resumable at any batch.

Preemption-safe training (README, "Checkpoints and preemption") needs a run resumed mid-epoch to see
exactly the batches, and the augmentations, that the uninterrupted run would have seen:

- ``ResumableSampler`` draws epoch ``e``'s order from ``numpy.random.default_rng([seed, e])`` (not from
  torch's global generator), shards it across DDP ranks as ``torch.utils.data.DistributedSampler`` does
  (padded to a multiple of the world size, rank ``r`` takes every ``world``-th index from ``r``), and
  starts ``skip`` items into the shard after a resume (``resume_at``);
- it yields ``(index, item_seed)`` keys; ``SeededItems`` runs the dataset's random transforms for that
  item with torch's CPU generator seeded by ``item_seed`` (its state restored afterwards), so an augmentation
  depends on (seed, epoch, index) alone and the global generator (dropout, masking) is untouched by
  data loading, whatever the number of workers.

The runner's ``ResumeState`` callback (``vitrepro.experiments.trainer``) records the epoch and the
batches done in every checkpoint and calls ``resume_at`` when a run restarts from one.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ResumableSampler(DistributedSampler):
    """Seeded, rank-sharded, resumable order over ``n`` items; yields ``(index, item_seed)`` tuples.

    A ``DistributedSampler`` by type only (its ``__init__`` is not called: the rank and world size are
    read at iteration, once DDP has started), so that Lightning keeps it instead of wrapping it in its own.

    Args:
        n: the dataset's length.
        seed: the run's seed; epoch ``e`` uses ``default_rng([seed, e])``.

    ``len()`` is this rank's share of a whole epoch, ``ceil(n / world)`` (a resumed epoch yields fewer:
    the loop ends it when the iterator stops). ``set_epoch`` (Lightning calls it every epoch) is used when
    no ``epoch_source`` is given.
    """

    def __init__(self, n: int, seed: int = 0, epoch_source: Callable[[], int] | None = None):
        if n < 1:
            raise ValueError(f"ResumableSampler needs at least one item, got n={n}")
        self.n, self.seed = int(n), int(seed)  # DistributedSampler.__init__ deliberately not called
        self.epoch = 0
        self.epoch_source = epoch_source
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, items: int) -> None:
        """When epoch ``epoch`` is next iterated, start after the ``items`` this rank already consumed."""
        self._resume = (int(epoch), int(items))
        self.epoch = int(epoch)

    def current_epoch(self) -> int:
        """The epoch being iterated: ``epoch_source()`` when given (the runner passes the Trainer's
        ``current_epoch``: after some restarts Lightning's ``set_epoch`` counts processed epochs, one ahead),
        else the last ``set_epoch``."""
        return int(self.epoch_source()) if self.epoch_source is not None else self.epoch

    def __len__(self) -> int:
        return math.ceil(self.n / _rank_world()[1])

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(this rank's indices, every index's item seed) of ``epoch``."""
        rank, world = _rank_world()
        rng = np.random.default_rng([self.seed, int(epoch)])
        perm = rng.permutation(self.n)
        item_seeds = rng.integers(0, 2**31 - 1, size=self.n)
        total = math.ceil(self.n / world) * world
        if total > self.n:  # pad as DistributedSampler does, so every rank steps the same number of times
            perm = np.concatenate([perm, perm[: total - self.n]])
        return perm[rank::world], item_seeds

    def take_start(self, epoch: int) -> int:
        """The items of ``epoch`` this rank already consumed (``resume_at``), once: later calls give 0."""
        start = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        return start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.current_epoch()
        shard, item_seeds = self.order(epoch)
        start = self.take_start(epoch)
        for i in shard[start:]:
            yield int(i), int(item_seeds[i])


class SeededItems(Dataset):
    """``dataset`` addressed by ``(index, item_seed)`` keys: the item's random transforms run with torch's
    CPU generator seeded by ``item_seed``; the generator's state is saved before and restored after each
    batch (``__getitems__``, the DataLoader's batched fetch) or item. A plain integer key reads the item as
    it is. (``torch.manual_seed`` would also seed every accelerator and costs ~100x more per call.)"""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def _seeded(self, key):
        if isinstance(key, tuple):
            index, seed = key
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]
        return self.dataset[key]

    def __getitem__(self, key):
        state = torch.get_rng_state()
        try:
            return self._seeded(key)
        finally:
            torch.set_rng_state(state)

    def __getitems__(self, keys: list) -> list:
        state = torch.get_rng_state()
        try:
            return [self._seeded(k) for k in keys]
        finally:
            torch.set_rng_state(state)


__all__ = ["ResumableSampler", "SeededItems"]
