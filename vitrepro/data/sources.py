"""Finding and opening a data root.

Five ways to get images, all ending in the same :class:`DataSource`:

* the **bundled sample** (``vitrepro/data/sample/cifar10``): 400 train + 200 test CIFAR-10 JPEGs
  shipped with the package, used when ``dataset="cifar10"`` and no root is given (offline default);
* the **official CIFAR python batches** (``cifar-10-batches-py/`` or ``cifar-100-python/``), read by
  :func:`read_cifar_python` -- our own small pickle reader, because ``torchvision.datasets.CIFAR10``
  checks the md5 of every batch file in its constructor and so refuses any other copy;
* **torchvision's on-disk layouts of the paper's transfer datasets** (Sec. 4.1): Oxford-IIIT Pets
  (``oxford-iiit-pet/images/*.jpg`` + ``annotations/{trainval,test}.txt``, read by
  :func:`read_pets_annotations`) and Oxford Flowers-102 (``flowers-102/jpg/image_%05d.jpg`` +
  ``imagelabels.mat`` + ``setid.mat``, read by :func:`read_flowers102`). Our own readers again:
  they parse only the annotation files (no image is opened to get labels), and
  ``torchvision.datasets.Flowers102`` checks the md5 of both ``.mat`` files in its constructor
  (``OxfordIIITPet`` only checks that ``images/`` and ``annotations/`` exist); labels, file order and
  class names are those torchvision gives;
* an **ImageFolder tree** ``root/train/<class>/*`` + ``root/test/<class>/*`` (or ``val/``), class
  index = position of the class folder in sorted order (as ``torchvision.datasets.ImageFolder``);
  for any dataset name (ImageNet / ImageNet-21k only come this way);
* a **torchvision download** of CIFAR-10/100, Pets or Flowers-102 into ``root`` (``download=True``),
  which then is read as above.

Decoded splits are kept in a module-level cache keyed by (resolved path, split), so that several
DataModules in one process (e.g. a grid of runs) decode the same 50,000 images only once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .readers import (_CIFAR_PYTHON, _OFFICIAL, _PETS_SPLITS, _PYTHON_LABELS, _TENSOR_CACHE, _VAL_FIRST,
                      EXPECTED_CLASSES, FLOWERS_FOLDER, PETS_FOLDER, _find_classes, _find_imagefolder,
                      _find_official, _find_python_batches, _fingerprint, _list_split, _official_classes,
                      _python_classes, _python_layout, _scan_split, decode_images, read_cifar_python)

__all__ = ["DATASETS", "SAMPLE_ROOT", "DataSource", "resolve_source"]

#: Dataset names accepted by :func:`resolve_source` and the DataModule: CIFAR-10/100, any
#: ImageFolder tree, ImageNet (ILSVRC-2012) and ImageNet-21k (trees), and the paper's transfer
#: datasets Oxford-IIIT Pets and Oxford Flowers-102 (Sec. 4.1).
DATASETS = ("auto", "cifar10", "cifar100", "imagefolder", "imagenet", "imagenet21k", "pets", "flowers")
#: The class folders of a CIFAR-10 ImageFolder tree (torchvision's class names), which ``auto`` reads as cifar10.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: The bundled offline sample (40 train + 20 test JPEGs per CIFAR-10 class); see sample/README.md.
SAMPLE_ROOT = Path(__file__).resolve().parent / "sample" / "cifar10"

# ----------------------------------------------------------------------------- the source


@dataclass
class DataSource:
    """One resolved copy of a dataset on disk.

    Attributes:
        dataset: one of :data:`DATASETS`.
        kind: ``"sample"`` (the bundled sample, an ImageFolder tree), ``"imagefolder"``,
            ``"cifar-python"`` (official python batches), ``"oxford-iiit-pet"`` or ``"flowers-102"``
            (torchvision's layouts of Pets / Flowers-102).
        root: absolute path: the tree root (holding ``train/``), the python batch folder itself, or
            torchvision's base folder (``.../oxford-iiit-pet``, ``.../flowers-102``).
        classes: class names in label order (sorted folder names, the batches' meta names, Pets
            names from the annotation files, or ``torchvision.datasets.Flowers102.classes``).
        eval_dir: for trees, the evaluation folder used as the ``"test"`` split (``"test"`` or
            ``"val"``); ``"test"`` otherwise.
        train_dirs: for trees, the folders making up the ``"train"`` split: ``("train",)``, or
            ``("train", "val")`` for a Pets / Flowers tree holding ``train/``, ``val/`` and
            ``test/`` (the paper trains on the official train + val).

    Splits are named ``"train"`` (the full training split the paper trains on, dev part included:
    CIFAR's 50,000, Pets' trainval, Flowers' train + val) and ``"test"``. Nothing is decoded or
    scanned until asked for.
    """

    dataset: str
    kind: str
    root: Path
    classes: list[str]
    eval_dir: str = "test"
    train_dirs: tuple[str, ...] = ("train",)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        """Number of classes (length of :attr:`classes`)."""
        return len(self.classes)

    @property
    def is_tree(self) -> bool:
        """True for ImageFolder trees (bundled sample included)."""
        return self.kind in ("sample", "imagefolder")

    @property
    def has_files(self) -> bool:
        """True when every image is its own file (all kinds but ``"cifar-python"``)."""
        return self.kind != "cifar-python"

    def _split_dirs(self, split: str) -> list[Path]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return [self.root / d for d in (self.train_dirs if split == "train" else (self.eval_dir,))]

    def _samples_sizes(self, split: str) -> tuple[list[tuple[str, int]], list[int]]:
        if self.is_tree:
            samples: list[tuple[str, int]] = []
            sizes: list[int] = []
            for d in self._split_dirs(split):
                s, z = _scan_split(d, self.classes)
                samples += s
                sizes += z
            return samples, sizes
        if self.has_files:
            return _list_split(self.kind, self.root, split)
        raise ValueError(f"{self.kind} source has no per-image files")

    def samples(self, split: str) -> list[tuple[str, int]]:
        """``(file path, label)`` pairs of a split, in dataset order (stat only, no decoding).

        Trees: ImageFolder order (``train/`` then ``val/`` when both make up the training split).
        Pets: the lines of ``annotations/trainval.txt`` / ``test.txt``. Flowers-102: the ids of
        ``setid.mat`` (``trnid`` then ``valid`` for ``"train"``, ``tstid`` for ``"test"``).

        Raises:
            ValueError: for python batches (no files per image), or a split without images.
            FileNotFoundError: Pets / Flowers images listed by the annotations are missing.
        """
        return self._samples_sizes(split)[0]

    def labels(self, split: str) -> np.ndarray:
        """int64 labels ``(N,)`` of a split in dataset order, without decoding images."""
        if self.has_files:
            return np.fromiter((lab for _, lab in self.samples(split)), dtype=np.int64)
        key = str(self.root)
        cached = _PYTHON_LABELS.setdefault(key, {})
        if split not in cached:
            if (key, split) in _TENSOR_CACHE:
                cached[split] = _TENSOR_CACHE[(key, split)][1].numpy()
            else:
                self.load_tensors(split)
        return cached[split]

    def count(self, split: str) -> int:
        """Number of images in a split."""
        return int(self.labels(split).shape[0])

    def load_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode a whole split once into memory (module-level cache keyed by (path, split)).

        Returns:
            ``(images, labels)``: uint8 tensor ``(N, 3, H, W)`` at the native image size and int64
            tensor ``(N,)``, in the same order as :meth:`labels`. Shared, do not modify in place.

        Raises:
            ValueError: image files of different sizes (see :func:`decode_images`).
        """
        key = (str(self.root), split)
        if key not in _TENSOR_CACHE:
            if self.has_files:
                samples = self.samples(split)
                images = decode_images([p for p, _ in samples])
                labels = torch.tensor([lab for _, lab in samples], dtype=torch.int64)
            else:
                arr, lab, _ = read_cifar_python(self.root, split)
                images, labels = torch.from_numpy(arr), torch.from_numpy(lab)
                _PYTHON_LABELS.setdefault(str(self.root), {})[split] = lab
            _TENSOR_CACHE[key] = (images, labels)
        return _TENSOR_CACHE[key]

    def files(self) -> list[tuple[str, int]]:
        """``(path relative to root, size in bytes)`` of every file this source reads (stat only):
        the images of both splits, plus the batch / annotation / ``.mat`` files."""
        if self.kind == "cifar-python":
            spec = _CIFAR_PYTHON[_python_layout(self.root)]
            names = spec["train"] + spec["test"] + [spec["meta"]]
            return [(n, (self.root / n).stat().st_size) for n in names]
        out = []
        for split in ("train", "test"):
            samples, sizes = self._samples_sizes(split)
            out += [(Path(p).relative_to(self.root).as_posix(), s) for (p, _), s in zip(samples, sizes)]
        if self.kind == "oxford-iiit-pet":
            extra = [f"annotations/{f}" for f in _PETS_SPLITS.values()]
        elif self.kind == "flowers-102":
            extra = ["imagelabels.mat", "setid.mat"]
        else:
            extra = []
        return out + [(n, (self.root / n).stat().st_size) for n in extra]

    @property
    def fingerprint(self) -> str:
        """First 12 hex digits of sha1 over the sorted ``(relative path, size)`` list of :meth:`files`.

        Cheap (stat only): it identifies a copy and catches missing or re-encoded files, not
        same-size edits.
        """
        if self._fingerprint is None:
            self._fingerprint = _fingerprint(self.files())
        return self._fingerprint

    def describe(self) -> str:
        """One line naming the copy: kind, path, counts and fingerprint.

        E.g. ``"cifar10 ImageFolder JPEG tree at /abs/cifar10-jpeg (train 50000, test 10000,
        fingerprint 3fa2c1d9e0b1)"``, ``"flowers torchvision Flowers-102 layout at /abs/flowers-102
        (train 2040 = train+val, test 6149, fingerprint ...)"``.
        """
        n_train, n_test = self.count("train"), self.count("test")
        merged = " = train+val" if self.kind == "flowers-102" or self.train_dirs != ("train",) else ""
        counts = f"train {n_train}{merged}, {self.eval_dir} {n_test}, fingerprint {self.fingerprint}"
        if self.kind == "sample":
            try:
                where = self.root.relative_to(Path(__file__).resolve().parents[2]).as_posix()
            except ValueError:
                where = str(self.root)
            return f"{self.dataset} bundled sample ({where}; {counts})"
        if self.kind == "cifar-python":
            return f"{self.dataset} python batches at {self.root} ({counts})"
        if self.kind == "oxford-iiit-pet":
            return f"{self.dataset} torchvision Oxford-IIIT Pet layout at {self.root} ({counts})"
        if self.kind == "flowers-102":
            return f"{self.dataset} torchvision Flowers-102 layout at {self.root} ({counts})"
        exts = {Path(p).suffix.lower() for p, _ in self.samples("train") + self.samples("test")}
        what = "ImageFolder JPEG tree" if exts <= {".jpg", ".jpeg"} else "ImageFolder tree"
        return f"{self.dataset} {what} at {self.root} ({counts})"


#: How each official layout is named in error messages, per dataset.
_LAYOUT_NAMES = {
    "cifar10": "official CIFAR-10 python batches",
    "cifar100": "official CIFAR-100 python batches",
    "pets": "torchvision's Oxford-IIIT Pet layout",
    "flowers": "torchvision's Flowers-102 layout",
}


def _official_layout_text(root: Path, dataset: str) -> str | None:
    if dataset in _CIFAR_PYTHON:
        return f"{_LAYOUT_NAMES[dataset]} ({root}/{_CIFAR_PYTHON[dataset]['folder']}/ or that folder itself)"
    if dataset == "pets":
        return (f"{_LAYOUT_NAMES[dataset]} ({root}/{PETS_FOLDER}/images/<Name>_<n>.jpg with "
                f"annotations/trainval.txt and annotations/test.txt, or that folder itself)")
    if dataset == "flowers":
        return (f"{_LAYOUT_NAMES[dataset]} ({root}/{FLOWERS_FOLDER}/jpg/image_<id>.jpg with imagelabels.mat "
                f"and setid.mat, or that folder itself)")
    return None


def _layouts_message(root: Path, dataset: str) -> str:
    """One line: the root, the dataset, the layouts expected, and what was found instead."""
    eval_dirs = "val/ (or test/)" if dataset in _VAL_FIRST else "test/ (or val/)"
    tree = f"an ImageFolder tree {root}/train/<class>/<image> with {root}/{eval_dirs.replace('/ ', '/<class>/ ', 1)}"
    official = _official_layout_text(root, dataset)
    if official is None:
        msg = f"data root {root} does not hold the layout expected for dataset {dataset!r}: {tree}"
    else:
        msg = f"data root {root} holds neither layout expected for dataset {dataset!r}: (a) {official}, or (b) {tree}"
    notes = []
    if root.is_dir():
        if dataset in _OFFICIAL:
            name, missing = _OFFICIAL[dataset]
            for folder in (root / name, root):
                lacks = missing(folder) if folder.is_dir() else []
                if folder.is_dir() and 0 < len(lacks) < 3:
                    notes.append(f"{folder} lacks {', '.join(lacks)}")
        if (root / "train").is_dir() and _find_imagefolder(root, dataset) is None:
            notes.append(f"{root}/train exists but neither test/ nor val/")
        others = [d for d in ("cifar10", "cifar100") if d != dataset and _find_python_batches(root, d) is not None]
        others += [d for d in _OFFICIAL if d != dataset and _find_official(root, d) is not None]
        notes += [f"found {_LAYOUT_NAMES[d]} there (dataset={d!r}?)" for d in others]
    return msg + "".join(f"; {n}" for n in notes)


def _download(dataset: str, root: Path) -> None:
    """Fetch ``dataset`` with torchvision into ``root``. Raises ``OSError`` in one line when it cannot
    (no network, say), naming the data set, the folder and what to do instead."""
    try:
        _torchvision_download(dataset, root)
    except OSError as e:  # urllib's URLError, socket errors, a full disk
        raise OSError(f"could not download {dataset} into {root} ({' '.join(str(e).split())}); without network, "
                      f"copy the data set there yourself (an ImageFolder tree or the official files) and drop "
                      f"--download") from None


def _torchvision_download(dataset: str, root: Path) -> None:
    import torchvision

    root.mkdir(parents=True, exist_ok=True)
    if dataset == "cifar10":
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    elif dataset == "cifar100":
        torchvision.datasets.CIFAR100(str(root), train=True, download=True)
    elif dataset == "pets":
        torchvision.datasets.OxfordIIITPet(str(root), split="trainval", target_types="category", download=True)
    elif dataset == "flowers":
        torchvision.datasets.Flowers102(str(root), split="train", download=True)


#: Datasets ``download=True`` can fetch (with torchvision).
DOWNLOADABLE = ("cifar10", "cifar100", "pets", "flowers")


def _check_class_count(dataset: str, classes: list[str], where: Path, what: str) -> None:
    """Raise ValueError if ``dataset`` has a fixed class count that ``classes`` does not match.
    ``what`` is the verb phrase with ``{n}`` for the count found, e.g. ``"has {n} class folders"``."""
    expected = EXPECTED_CLASSES.get(dataset)
    if expected is not None and len(classes) != expected:
        raise ValueError(
            f"dataset {dataset!r} expects {expected} classes but {where} {what.format(n=len(classes))} "
            f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}); for an ImageFolder tree of your "
            f"own add --data.dataset=imagefolder (or --data.dataset=auto)"
        )


def detect_dataset(root: str | os.PathLike | None) -> str:
    """The data set a root holds, for ``dataset="auto"``: ``cifar10`` without a root (the bundled sample);
    ``cifar10`` / ``cifar100`` for CIFAR python batches; ``pets`` / ``flowers`` for torchvision's layouts;
    for an ImageFolder tree (``train/<class>/`` with ``test/`` or ``val/``) ``cifar10`` when its class
    folders are CIFAR-10's ten (:data:`CIFAR10_CLASSES`), else ``imagefolder``.

    Raises ``FileNotFoundError`` when ``root`` does not exist, ``ValueError`` (one line naming the root and
    the layouts) when it holds none of these."""
    if root is None:
        return "cifar10"
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"data root {root} does not exist")
    for dataset in ("cifar10", "cifar100"):
        if root.is_dir() and _find_python_batches(root, dataset) is not None:
            return dataset
    for dataset in ("pets", "flowers"):
        if root.is_dir() and _find_official(root, dataset) is not None:
            return dataset
    if root.is_dir() and _find_imagefolder(root, "imagefolder") is not None:
        classes = _find_classes(root / "train")
        return "cifar10" if sorted(classes) == list(CIFAR10_CLASSES) else "imagefolder"
    raise ValueError(f"data root {root} holds no data set this suite reads: expected an ImageFolder tree "
                     f"{root}/train/<class>/<image> with {root}/test/<class>/ (or val/), CIFAR python batches "
                     f"(cifar-10-batches-py, cifar-100-python) or torchvision's Pets / Flowers-102 layouts")


def resolve_source(dataset: str, root: str | os.PathLike | None = None, download: bool = False) -> DataSource:
    """Find the data for ``dataset`` and describe it, cheaply (no image is decoded or opened).

    Args:
        dataset: one of :data:`DATASETS`; ``"auto"``: :func:`detect_dataset`. ``"imagenet"`` and ``"imagenet21k"`` are ImageFolder trees
            with ``train/`` and ``val/`` (``val/`` preferred over ``test/``); ``"imagefolder"`` any
            such tree; ``"pets"`` (Oxford-IIIT Pets, 37 classes) and ``"flowers"`` (Oxford
            Flowers-102, 102 classes) torchvision's layouts or a tree.
        root: where the data lives. ``None`` with ``"cifar10"`` (and ``download=False``) selects the
            bundled sample :data:`SAMPLE_ROOT`. Otherwise the layout is detected, official first:
            (a) cifar10/cifar100: python batches ``root/cifar-10-batches-py`` (``cifar-100-python``)
            or ``root`` being that folder; pets: ``root/oxford-iiit-pet/`` (``images/`` +
            ``annotations/{trainval,test}.txt``) or ``root`` being that folder; flowers:
            ``root/flowers-102/`` (``jpg/`` + ``imagelabels.mat`` + ``setid.mat``) or that folder;
            (b) any dataset: an ImageFolder tree ``root/train/<class>/*`` + ``root/test/<class>/*``
            (or ``val/``). A pets / flowers tree with ``train/``, ``val/`` and ``test/`` trains on
            ``train/`` + ``val/`` and tests on ``test/``.
        download: cifar10/cifar100/pets/flowers only: if the official layout is not under ``root``
            yet, download it there with torchvision (``CIFAR10/100``, ``OxfordIIITPet``,
            ``Flowers102`` with ``download=True``; needs network; ``root=None`` means ``./data``).

    Returns:
        The :class:`DataSource`; its class list comes from the tree's class folders (one
        ``scandir``), the batches' meta file, the Pets annotation files, or torchvision's Flowers-102
        class names (after checking the ``.mat`` labels).

    Raises:
        ValueError: unknown dataset (lists the allowed values); no root for a dataset other than
            cifar10; ``download`` for a dataset torchvision cannot fetch; a root holding none of
            the layouts expected (one line naming the root, the dataset and the layouts, and what
            was found instead); a class count other than :data:`EXPECTED_CLASSES` (cifar10 10,
            cifar100 100, pets 37, flowers 102; ImageNet / ImageNet-21k are not checked).
        FileNotFoundError: ``root`` does not exist.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed values: {', '.join(DATASETS)}")
    if dataset == "auto":
        if download:
            raise ValueError(f"download needs a named data set, not 'auto': add --data.dataset= one of "
                             f"{', '.join(DOWNLOADABLE)}")
        dataset = detect_dataset(root)
    if download and dataset not in DOWNLOADABLE:
        raise ValueError(
            f"download=True is only supported for cifar10 and cifar100 (python batches) and pets and flowers "
            f"(torchvision layouts), not {dataset!r}; set data.root to a prepared ImageFolder tree"
        )
    if root is None:
        if download:
            root = "data"
        elif dataset == "cifar10":
            return DataSource(dataset="cifar10", kind="sample", root=SAMPLE_ROOT, classes=_find_classes(SAMPLE_ROOT / "train"))
        else:
            raise ValueError(f"data root required for dataset {dataset!r}: set data.root, --data-root or VITREPRO_DATA")
    root = Path(root).expanduser().resolve()
    if download and _find_python_batches(root, dataset) is None and _find_official(root, dataset) is None:
        _download(dataset, root)
    if not root.exists():
        raise FileNotFoundError(f"data root {root} does not exist")
    if not root.is_dir():
        raise ValueError(_layouts_message(root, dataset))

    folder = _find_python_batches(root, dataset)
    if folder is not None:
        classes = _python_classes(folder, dataset)
        _check_class_count(dataset, classes, folder, "names {n}")
        return DataSource(dataset=dataset, kind="cifar-python", root=folder, classes=classes)

    folder = _find_official(root, dataset)
    if folder is not None:
        kind = "oxford-iiit-pet" if dataset == "pets" else "flowers-102"
        return DataSource(dataset=dataset, kind=kind, root=folder, classes=_official_classes(dataset, folder))

    eval_dir = _find_imagefolder(root, dataset)
    if eval_dir is None:
        raise ValueError(_layouts_message(root, dataset))
    classes = _find_classes(root / "train")
    if not classes:
        raise ValueError(f"{root / 'train'} has no class folders (expected {root}/train/<class>/<image>)")
    _check_class_count(dataset, classes, root / "train", "has {n} class folders")
    train_dirs: tuple[str, ...] = ("train",)
    if dataset in _OFFICIAL and eval_dir == "test" and (root / "val").is_dir():
        train_dirs = ("train", "val")
    kind = "sample" if root == SAMPLE_ROOT else "imagefolder"
    return DataSource(dataset=dataset, kind=kind, root=root, classes=classes, eval_dir=eval_dir, train_dirs=train_dirs)
