"""The LightningDataModule for image classification (CIFAR-10/100, Oxford-IIIT Pets, Oxford
Flowers-102, ImageNet, ImageNet-21k, any ImageFolder tree).

Splits, as in the paper's fine-tuning setup (App. B.1.1: a held-out dev split of the training data
for hyper-parameter selection, 2% for CIFAR, 10% for Pets and Flowers, 1% for ImageNet; the
official vit_jax configs call CIFAR's 2% "minival"):

* ``train_set``: the official training split (Pets: trainval; Flowers: train + val) minus a seeded
  dev hold-out (``val_fraction``, default :data:`DEFAULT_VAL_FRACTION` of the dataset), optionally
  reduced to a class-balanced seeded subset of ``train_size`` images;
* ``val_set``: the dev hold-out (``None`` when ``val_fraction == 0``);
* ``test_set``: the official test split (``val/`` for ImageNet), never used for selection;
* :meth:`ImageClassificationDataModule.fewshot_pool`: the whole training split, evaluation
  transform, for the paper's few-shot linear probes.
"""

from __future__ import annotations

import warnings
from typing import Callable

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .class_subset import ClassSubset
from .sampler import ResumableSampler, SeededItems, _rank_world
from .sources import DATASETS, DataSource, resolve_source
from .transforms import build_transform, randaugment as build_randaugment

__all__ = [
    "DEFAULT_VAL_FRACTION",
    "ImageClassificationDataModule",
    "TensorImageDataset",
    "FileImageDataset",
    "balanced_order",
]

#: Fraction of the training split held out as the dev set when ``val_fraction=None``, per dataset.
#: Source: the paper, App. B.1.1 (held-out dev: 2% of CIFAR, 10% of Pets and Flowers, 1% of
#: ImageNet; ImageNet-21k like ImageNet); ``imagefolder`` keeps 0.02, this module's former default.
DEFAULT_VAL_FRACTION: dict[str, float] = {
    "cifar10": 0.02,
    "cifar100": 0.02,
    "imagefolder": 0.02,
    "imagenet": 0.01,
    "imagenet21k": 0.01,
    "pets": 0.10,
    "flowers": 0.10,
}
#: The dev split's floor, in images per class (``dev_size``): 2% of ants-vs-bees' 244 images is 5 images,
#: too few to tell learning rates apart.
MIN_DEV_PER_CLASS = 5
#: Datasets decoded into memory by default (``cache_in_memory=None``): small images of one size.
_IN_MEMORY = ("cifar10", "cifar100")
#: Input paths (``loader``): a CPU ``DataLoader``, or the device-resident path of ``vitrepro.data.device``.
LOADERS = ("cpu", "device")


class TensorImageDataset(Dataset):
    """Images already decoded in memory.

    Args:
        images: uint8 tensor ``(N, 3, H, W)`` (shared, not copied).
        labels: int64 tensor ``(N,)``.
        indices: which rows this dataset exposes, in order (None: all N).
        transform: maps a uint8 ``(3, H, W)`` tensor to a float32 ``(3, S, S)`` tensor
            (see :func:`vitrepro.data.transforms.build_transform`).

    Items: ``(image float32 (3, S, S) in [-1, 1], label int)``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: np.ndarray | None, transform: Callable):
        self.images = images
        self.labels = labels
        self.indices = np.arange(len(labels), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[i])
        return self.transform(self.images[j]), int(self.labels[j])


class FileImageDataset(Dataset):
    """Image files decoded on access with PIL (any size / mode; converted to RGB).

    Equivalent to ``torchvision.datasets.ImageFolder`` restricted to ``indices`` (same file order
    and labels: the list comes from :meth:`vitrepro.data.sources.DataSource.samples`).

    Args:
        samples: ``(path, label)`` pairs.
        indices: which pairs this dataset exposes, in order (None: all).
        transform: maps a PIL image to a float32 ``(3, S, S)`` tensor.

    Items: ``(image float32 (3, S, S) in [-1, 1], label int)``.
    """

    def __init__(self, samples: list[tuple[str, int]], indices: np.ndarray | None, transform: Callable):
        self.samples = samples
        self.indices = np.arange(len(samples), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[int(self.indices[i])]
        with Image.open(path) as im:
            img = im.convert("RGB")
        return self.transform(img), int(label)


def balanced_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded, class-interleaved ordering of all indices.

    Each class's indices are shuffled (``numpy.random.default_rng(seed)``), then taken round-robin:
    the first image of every class (classes in a seeded order), then the second of every class, and
    so on; a class that runs out is skipped. Any contiguous run of n positions therefore holds
    ``floor(n/C)`` or ``ceil(n/C)`` images of each class (while no class has run out), and prefixes
    are nested: the first n are contained in the first m > n.

    Args:
        labels: int64 ``(N,)``.
        seed: RNG seed.

    Returns:
        int64 ``(N,)``, a permutation of ``0..N-1``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    present = np.unique(labels)
    class_pos = np.empty(int(present.max()) + 1 if present.size else 0, dtype=np.int64)
    class_pos[present] = rng.permutation(present.size)
    rank = np.empty(labels.shape[0], dtype=np.int64)
    for c in present:
        idx = np.flatnonzero(labels == c)
        rank[rng.permutation(idx)] = np.arange(idx.size)
    key = rank * max(present.size, 1) + class_pos[labels] if labels.size else rank
    return np.argsort(key, kind="stable").astype(np.int64)


class ImageClassificationDataModule(lightning.LightningDataModule):
    """Image-classification data for ViT training, fine-tuning and few-shot evaluation.

    Args:
        dataset: one of :data:`~vitrepro.data.sources.DATASETS`: ``"cifar10"``, ``"cifar100"``,
            ``"pets"`` (Oxford-IIIT Pets, 37 classes), ``"flowers"`` (Oxford Flowers-102, 102
            classes), ``"imagenet"`` / ``"imagenet21k"`` (ImageFolder trees with ``train/`` and
            ``val/``; the class count is not checked), ``"imagefolder"`` (any tree) or ``"auto"``
            (the default: the kind the root holds, :func:`vitrepro.data.sources.detect_dataset`;
            ``self.dataset`` is the kind found).
        root: data root (see :func:`vitrepro.data.sources.resolve_source` for the layouts: official
            CIFAR python batches, torchvision's Pets / Flowers-102 layouts, or an ImageFolder tree).
            ``None``: for cifar10, the bundled 400+200-image sample (offline default). (The CLI
            maps ``--data-root``/``VITREPRO_DATA`` here.)
        download: cifar10/cifar100/pets/flowers only: fetch the data with torchvision into
            ``root`` (``./data`` when no root) if absent. Happens in ``__init__``.
        img_size: side of the square images produced, in pixels (32 for CIFAR from scratch; the
            paper fine-tunes at 384).
        batch_size: training batch size: images per optimizer micro-step over all processes (the
            paper's batch, e.g. 4096), split evenly across DDP processes (``batch_size / world
            size`` each), so a run's result does not depend on how many devices run it. Raises
            ``ValueError`` at the first training loader when it does not divide by the world size.
        eval_batch_size: validation/test batch size per process (default ``batch_size``).
        num_workers: DataLoader worker processes (0 = load in the main process).
        train_size: if set, train on a class-balanced seeded subset of this many images of the
            non-dev part (nested across sizes for a fixed seed).
        val_fraction: fraction of the training split held out as the dev set, in [0, 1); ``None``
            (default): the dataset's fraction in :data:`DEFAULT_VAL_FRACTION`, as the paper (App.
            B.1.1): 0.02 for CIFAR-10/100 (the vit_jax "minival"), 0.10 for Pets and Flowers, 0.01
            for ImageNet and ImageNet-21k, 0.02 for ``imagefolder``. A number overrides it. The
            hold-out is class-balanced and seeded; the resolved number is ``self.val_fraction``.
        train_augment: training preset of :func:`vitrepro.data.transforms.build_transform`:
            ``"pad_crop"``, ``"inception_crop"``, ``"flip"`` or ``"none"``.
        seed: seed of the dev split, of the train subset and of the training order and augmentations
            (``ResumableSampler``: each item of each epoch augmented under its own seed, so a resumed
            run sees the same batches).
        cache_in_memory: decode the whole train and test splits once into uint8 tensors
            (process-wide cache shared by all DataModules) and augment tensors; needs images of
            one size. ``None``: True for cifar10/cifar100, False otherwise (Pets, Flowers and
            ImageNet images have any size: files are then decoded per item with PIL and resized
            by the transforms to ``img_size``). Python batches are always held in memory.
        loader: ``"cpu"`` (default): a ``DataLoader`` with ``num_workers`` workers and pinned memory;
            ``"device"``: the images held on the Trainer's device as uint8 and batches gathered and
            augmented there (:mod:`vitrepro.data.device`: the same presets, order, normalization, splits
            and subsets; for data sets of one image size that fit in device memory, e.g. CIFAR).
        randaugment: RandAugment operations per training image after the preset (Cubuk et al. 2020, as
            DeiT; ``torchvision.transforms.v2.RandAugment``); 0 (default, the paper): none.
            ``randaugment_magnitude``: the bin 0..30 of each operation's range; ``randaugment_ops``: the
            operations drawn from (None: all of ``vitrepro.data.transforms.RANDAUGMENT_OPS``). Seeded per
            item like the preset. On the device path it runs on the device in per-op groups.
        classes: keep only these classes (indices into the data set's classes), relabelled ``0..k-1`` in
            the order given, in every split (:class:`~vitrepro.data.class_subset.ClassSubset`): an upstream
            and a downstream task cut from one data copy. None (default): all classes.

    Attributes (after construction): ``source`` (:class:`~vitrepro.data.sources.DataSource`),
    ``classes`` (names in label order), ``num_classes``. After :meth:`setup`: ``train_set``,
    ``val_set`` (or None), ``test_set``, and the index arrays ``train_indices`` / ``val_indices``
    into the full training split.

    Every item is ``(image float32 (3, img_size, img_size) in [-1, 1], label int)``; pixels are
    normalized as the official vit_jax input pipeline, ``(x - 127.5) / 127.5``.

    Raises:
        ValueError: unknown dataset or preset (message lists the allowed values), missing root for
            a non-cifar10 dataset, a root without the named dataset (one line naming the root, the
            dataset and the layouts expected), a class-count mismatch (cifar10 10, cifar100 100,
            pets 37, flowers 102), ``val_fraction`` outside [0, 1), bad sizes; in :meth:`setup`:
            ``train_size`` larger than the images available (message names both numbers).
        FileNotFoundError: ``root`` does not exist; in :meth:`setup` (or any call listing files):
            Pets / Flowers images named by the annotation files are missing.
    """

    def __init__(
        self,
        dataset: str = "auto",
        root: str | None = None,
        download: bool = False,
        img_size: int = 32,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_size: int | None = None,
        val_fraction: float | None = None,
        train_augment: str = "pad_crop",
        seed: int = 0,
        cache_in_memory: bool | None = None,
        loader: str = "cpu",
        randaugment: int = 0,
        randaugment_magnitude: int = 9,
        randaugment_ops: list[str] | None = None,
        classes: list[int] | None = None,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; allowed values: {', '.join(DATASETS)}")
        if val_fraction is not None and not 0.0 <= float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        if int(batch_size) < 1 or (eval_batch_size is not None and int(eval_batch_size) < 1):
            raise ValueError(f"batch sizes must be >= 1, got batch_size={batch_size!r}, eval_batch_size={eval_batch_size!r}")
        if train_size is not None and int(train_size) < 1:
            raise ValueError(f"train_size must be >= 1 or None, got {train_size!r}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
        self.root = root
        self.source: DataSource = resolve_source(dataset, root, download=download)
        if classes is not None:
            self.source = ClassSubset(self.source, classes)
        self.dataset = dataset = self.source.dataset  # "auto" resolved to the kind the root holds
        if val_fraction is None:
            val_fraction = DEFAULT_VAL_FRACTION[dataset]
        self.img_size = int(img_size)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size is not None else self.batch_size
        self.num_workers = int(num_workers)
        self.train_size = None if train_size is None else int(train_size)
        self.val_fraction = float(val_fraction)
        self.train_augment = train_augment
        self.seed = int(seed)
        if loader not in LOADERS:
            raise ValueError(f"unknown loader {loader!r}; allowed values: {', '.join(LOADERS)}")
        self.loader = loader
        self.cache_in_memory = (dataset in _IN_MEMORY) if cache_in_memory is None else bool(cache_in_memory)
        if loader == "device":
            self.cache_in_memory = True
        # Build the pipelines now so that a bad preset / size / RandAugment fails at construction.
        self.randaugment = build_randaugment(randaugment, randaugment_magnitude, randaugment_ops)
        self.train_transform = build_transform(train_augment, self.img_size, train=True, augment=self.randaugment)
        self.eval_transform = build_transform(train_augment, self.img_size, train=False)

        self.classes: list[str] = list(self.source.classes)
        self.num_classes: int = self.source.num_classes

        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.train_indices: np.ndarray | None = None
        self.val_indices: np.ndarray | None = None
        self._pool: Dataset | None = None
        self.train_sampler: ResumableSampler | None = None
        self._resume_at: tuple[int, int] | None = None
        #: a callable giving the epoch being trained (the runner passes the Trainer's current_epoch)
        self.epoch_source = None

    # ------------------------------------------------------------------ splits

    def dev_size(self, n: int) -> int:
        """Images held out for dev out of ``n``: ``round(val_fraction * n)`` (the paper's fractions for its
        data sets); for an ``imagefolder`` tree (a data set of one's own) at least ``MIN_DEV_PER_CLASS``
        per class, never more than half the split, so that a small data set's learning-rate sweep is not
        decided by a handful of images; 0 when ``val_fraction`` is 0."""
        n_val = int(round(self.val_fraction * n))
        if self.val_fraction == 0 or self.dataset != "imagefolder":
            return n_val
        return max(n_val, min(MIN_DEV_PER_CLASS * self.num_classes, n // 2))

    def split_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices into the full training split: ``(train, dev)``, both int64 and disjoint.

        The dev set is the first ``dev_size(N)`` positions of
        :func:`balanced_order` (labels, seed); the train set is the rest, or, with ``train_size``,
        the next ``train_size`` positions (so subsets are class-balanced and nested). Labels only,
        no decoding.

        Raises:
            ValueError: ``train_size`` larger than the non-dev images available (names both), or a
                split that leaves no training image.
        """
        labels = self.fewshot_pool_labels()
        n = labels.shape[0]
        n_val = self.dev_size(n)
        order = balanced_order(labels, self.seed)
        available = n - n_val
        if self.train_size is not None:
            if self.train_size > available:
                raise ValueError(
                    f"train_size={self.train_size} is larger than the {available} training images available "
                    f"({n} in the training split minus {n_val} held out for dev with val_fraction={self.val_fraction})"
                )
            train = order[n_val : n_val + self.train_size]
        else:
            train = order[n_val:]
        if train.size == 0:
            raise ValueError(f"no training images left: {n} in the split, {n_val} held out (val_fraction={self.val_fraction})")
        return train.copy(), order[:n_val].copy()

    def _dataset(self, split: str, indices: np.ndarray | None, transform: Callable) -> Dataset:
        if self.cache_in_memory or not self.source.has_files:
            images, labels = self.source.load_tensors(split)
            return TensorImageDataset(images, labels, indices, transform)
        return FileImageDataset(self.source.samples(split), indices, transform)

    def setup(self, stage: str | None = None) -> None:
        """Build ``train_set``, ``val_set`` (None if ``val_fraction == 0``) and ``test_set``.

        Idempotent: later calls (any stage) return at once. With ``cache_in_memory`` the train and
        test splits are decoded here (once per process; 50k CIFAR JPEGs take a few seconds).

        Raises:
            ValueError: see :meth:`split_indices`; images of different sizes with ``cache_in_memory``.
        """
        if self.train_set is not None:
            return
        train_idx, val_idx = self.split_indices()
        self.train_indices, self.val_indices = train_idx, val_idx
        self.test_set = self._dataset("test", None, self.eval_transform)
        self.val_set = self._dataset("train", val_idx, self.eval_transform) if val_idx.size else None
        self.train_set = self._dataset("train", train_idx, self.train_transform)

    # ------------------------------------------------------------------ loaders

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        if self.loader == "device":
            return self._device_loader(dataset, batch_size, train)
        drop_last = train
        if train and len(dataset) < batch_size:
            warnings.warn(
                f"training set of {len(dataset)} images is smaller than batch_size={batch_size}: "
                f"keeping the partial batch (drop_last=False)",
                stacklevel=3,
            )
            drop_last = False
        sampler = None
        if train:  # seeded order and augmentations, resumable mid-epoch (sampler.py)
            sampler = self._train_order(len(dataset), batch_size)
            dataset = SeededItems(dataset)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            # the workers' base seed comes from this generator, not the global one (which a resumed
            # run restores and must not be drawn from by data loading)
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _train_order(self, n: int, batch_size: int) -> ResumableSampler:
        """The training order of both input paths (kept as ``train_sampler``), starting where a resumed
        run left off (``resume_at``)."""
        sampler = self.train_sampler = ResumableSampler(n, self.seed, self.epoch_source)
        if self._resume_at is not None:
            sampler.resume_at(self._resume_at[0], self._resume_at[1] * batch_size)
            self._resume_at = None
        return sampler

    def _device_loader(self, dataset: Dataset, batch_size: int, train: bool):
        from .device import DeviceAugment, DeviceLoader

        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        sampler = self._train_order(len(dataset), batch_size) if train else None
        return DeviceLoader(dataset, batch_size, DeviceAugment(self.train_augment, self.img_size, train,
                                                                 self.randaugment), device,
                            sampler=sampler, drop_last=train and len(dataset) >= batch_size, seed=self.seed)

    def resume_at(self, epoch: int, batches: int) -> None:
        """The next training loader starts epoch ``epoch`` after ``batches`` batches of this rank
        (``ResumableSampler.resume_at``); called when a run restarts from a mid-epoch checkpoint."""
        if self.train_sampler is not None:
            self.train_sampler.resume_at(int(epoch), int(batches) * self.rank_batch_size())
        else:
            self._resume_at = (int(epoch), int(batches))

    def rank_batch_size(self) -> int:
        """This process's share of ``batch_size``: ``batch_size / world size`` (1 process without DDP).
        Raises ``ValueError`` when ``batch_size`` does not divide by the world size."""
        _, world = _rank_world()
        if self.batch_size % world:
            raise ValueError(f"data.batch_size {self.batch_size} is the batch over all {world} processes and must "
                             f"divide by {world}: use a multiple of {world}")
        return self.batch_size // world

    def train_dataloader(self) -> DataLoader:
        """Loader over ``train_set`` in the ``ResumableSampler`` order (seeded per epoch, sharded per
        rank under DDP, each item augmented under its own seed), ``batch_size / world size`` images a
        process, ``drop_last=True``
        (unless the set is smaller than one batch). Batches: images float32 ``(B, 3, S, S)``, labels
        int64 ``(B,)``."""
        self.setup()
        return self._loader(self.train_set, self.rank_batch_size(), train=True)

    def val_dataloader(self) -> DataLoader | list:
        """Loader over the dev set (``eval_batch_size``, not shuffled), or ``[]`` when
        ``val_fraction == 0`` (Lightning then skips validation)."""
        self.setup()
        if self.val_set is None:
            return []
        return self._loader(self.val_set, self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        """Loader over the official test split (``eval_batch_size``, not shuffled)."""
        self.setup()
        return self._loader(self.test_set, self.eval_batch_size, train=False)

    # ------------------------------------------------------------------ few-shot

    def fewshot_pool(self) -> Dataset:
        """The full training split (train + dev, in dataset order) with the evaluation transform.

        Items ``(float32 (3, img_size, img_size) in [-1, 1], int)``; labels equal
        :meth:`fewshot_pool_labels` in the same order. For the paper's few-shot linear probes.
        """
        if self._pool is None:
            self._pool = self._dataset("train", None, self.eval_transform)
        return self._pool

    def fewshot_pool_labels(self) -> np.ndarray:
        """int64 labels ``(N,)`` of :meth:`fewshot_pool`, same order, without decoding images."""
        return np.asarray(self.source.labels("train"), dtype=np.int64)

    # ------------------------------------------------------------------ description

    def describe(self) -> str:
        """One line naming the data copy and the split, e.g. ``"cifar10 ImageFolder JPEG tree at
        /abs/cifar10-jpeg (train 50000, test 10000, fingerprint 3fa2c1d9e0b1); split train 49000 /
        dev 1000 (val_fraction 0.02, seed 0)"``. Stat and labels only, no decoding of trees."""
        n = self.source.count("train")
        n_val = self.dev_size(n)
        n_train = self.train_size if self.train_size is not None else n - n_val
        subset = f", train_size {self.train_size}" if self.train_size is not None else ""
        return (
            f"{self.source.describe()}; split train {n_train} / dev {n_val} "
            f"(val_fraction {self.val_fraction:g}, seed {self.seed}{subset})"
        )
