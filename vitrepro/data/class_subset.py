"""Some classes of a data set, relabelled: an upstream and a downstream task cut from one data copy.

The paper pre-trains on one data set and transfers to others (Sec. 4.1); with CIFAR-10 alone at hand, a
class split stands for that: pre-train on some classes (e.g. ``data.classes: [0, 1, 2, 3, 4]``), fine-tune
or probe on the others (``finetune.data.classes: [5, 6, 7, 8, 9]``), so the downstream classes are never
seen upstream. :class:`ClassSubset` wraps a :class:`~vitrepro.data.sources.DataSource` and reads as one:
the same files and fingerprint (the copy), only the kept classes' images, labels ``0..k-1`` in the order
given.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .readers import _SUBSET_CACHE
from .sources import DataSource


class ClassSubset:
    """``source`` restricted to the classes ``keep`` (indices into ``source.classes``), relabelled
    ``keep[i] -> i``. Reads as a ``DataSource``: ``classes``, ``num_classes``, ``samples``, ``labels``,
    ``count``, ``load_tensors`` give the subset; ``files``, ``fingerprint``, ``root``, ``dataset``, ``kind``
    are the source's.

    Raises:
        ValueError: ``keep`` empty, with a repeat, or with an index outside ``0..num_classes-1`` (the
            message lists the source's classes with their indices).
    """

    def __init__(self, source: DataSource, keep: Sequence[int]):
        n = source.num_classes
        keep = tuple(keep)
        if not keep or len(set(keep)) != len(keep) or not all(isinstance(k, int) and 0 <= k < n for k in keep):
            named = ", ".join(f"{i} {c}" for i, c in enumerate(source.classes[:12])) + (", ..." if n > 12 else "")
            raise ValueError(f"data.classes must be distinct class indices in 0..{n - 1} of {source.dataset} "
                             f"({named}), got {list(keep)!r}")
        self.source, self.keep = source, keep
        self.classes = [source.classes[k] for k in keep]
        self._new = np.full(n, -1, dtype=np.int64)
        self._new[list(keep)] = np.arange(len(keep))

    def __getattr__(self, name: str):  # files, fingerprint, root, dataset, kind, has_files, eval_dir, ...
        return getattr(self.source, name)

    @property
    def num_classes(self) -> int:
        return len(self.keep)

    def _kept(self, split: str) -> np.ndarray:
        """Positions in the source's split of the kept classes' images, in dataset order."""
        return np.flatnonzero(self._new[self.source.labels(split)] >= 0)

    def samples(self, split: str) -> list[tuple[str, int]]:
        """``(file path, new label)`` of the kept classes' images, in dataset order."""
        return [(p, int(self._new[lab])) for p, lab in self.source.samples(split) if self._new[lab] >= 0]

    def labels(self, split: str) -> np.ndarray:
        """int64 new labels ``(N,)`` of the kept images, in dataset order."""
        return self._new[self.source.labels(split)[self._kept(split)]]

    def count(self, split: str) -> int:
        return int(self._kept(split).size)

    def load_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(N, 3, H, W)`` images and int64 new labels ``(N,)`` of the kept classes (decoded once)."""
        key = (str(self.source.root), split, self.keep)
        if key not in _SUBSET_CACHE:
            images, labels = self.source.load_tensors(split)
            idx = torch.from_numpy(self._kept(split))
            _SUBSET_CACHE[key] = (images[idx], torch.from_numpy(self._new)[labels[idx]])
        return _SUBSET_CACHE[key]

    def describe(self) -> str:
        """The source's line, then the classes kept, e.g. ``"...; classes 5-9 of 10 (dog, frog, horse, ship,
        truck) as 0..4: train 25000, test 5000"``."""
        names = ", ".join(self.classes[:10]) + (", ..." if len(self.classes) > 10 else "")
        return (f"{self.source.describe()}; classes {spans(self.keep)} of {self.source.num_classes} ({names}) as "
                f"0..{len(self.keep) - 1}: train {self.count('train')}, {self.source.eval_dir} {self.count('test')}")


def spans(keep: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2,5"``."""
    out, start = [], keep[0]
    for a, b in zip(keep, keep[1:] + (None,)):
        if b != a + 1:
            out.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ",".join(out)
