"""Finding and opening a data root.

Four ways to get images, all ending in the same :class:`DataSource`:

* the **bundled sample** (``vitrepro/data/sample/cifar10``): 400 train + 200 test CIFAR-10 JPEGs
  shipped with the package, used when ``dataset="cifar10"`` and no root is given (offline default);
* the **official CIFAR python batches** (``cifar-10-batches-py/`` or ``cifar-100-python/``), read by
  :func:`read_cifar_python` -- our own small pickle reader, because ``torchvision.datasets.CIFAR10``
  checks the md5 of every batch file in its constructor and so refuses any other copy;
* an **ImageFolder tree** ``root/train/<class>/*`` + ``root/test/<class>/*`` (or ``val/``), class
  index = position of the class folder in sorted order (as ``torchvision.datasets.ImageFolder``);
* a **torchvision download** of CIFAR-10/100 into ``root`` (``download=True``), which then is read as
  python batches.

Decoded splits are kept in a module-level cache keyed by (resolved path, split), so that several
DataModules in one process (e.g. a grid of runs) decode the same 50,000 images only once.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "SAMPLE_ROOT",
    "DataSource",
    "clear_cache",
    "decode_images",
    "read_cifar_python",
    "resolve_source",
]

#: Dataset names accepted by :func:`resolve_source` and the DataModule.
DATASETS = ("cifar10", "cifar100", "imagefolder", "imagenet")
#: Number of classes a tree or batch folder must have for the named CIFAR datasets.
EXPECTED_CLASSES = {"cifar10": 10, "cifar100": 100}
#: The bundled offline sample (40 train + 20 test JPEGs per CIFAR-10 class); see sample/README.md.
SAMPLE_ROOT = Path(__file__).resolve().parent / "sample" / "cifar10"
#: Image file extensions of an ImageFolder tree (same list as torchvision.datasets.folder).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: Official python-batch layouts: folder name, train files, test files, meta file, label-name key,
#: label key (https://www.cs.toronto.edu/~kriz/cifar.html).
_CIFAR_PYTHON = {
    "cifar10": dict(
        folder="cifar-10-batches-py",
        train=[f"data_batch_{i}" for i in range(1, 6)],
        test=["test_batch"],
        meta="batches.meta",
        names_key="label_names",
        labels_key="labels",
    ),
    "cifar100": dict(
        folder="cifar-100-python",
        train=["train"],
        test=["test"],
        meta="meta",
        names_key="fine_label_names",
        labels_key="fine_labels",
    ),
}

# (resolved path, split) -> (uint8 images (N, 3, H, W), int64 labels (N,))
_TENSOR_CACHE: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
# (resolved split dir, class tuple) -> (list of (path, label), list of sizes in bytes)
_SCAN_CACHE: dict[tuple[str, tuple[str, ...]], tuple[list[tuple[str, int]], list[int]]] = {}
# resolved batch folder -> (classes, {split: labels})
_PYTHON_LABELS: dict[str, dict[str, np.ndarray]] = {}


def clear_cache() -> None:
    """Drop every decoded split and directory scan held by this module (frees the memory)."""
    _TENSOR_CACHE.clear()
    _SCAN_CACHE.clear()
    _PYTHON_LABELS.clear()


# ----------------------------------------------------------------------------- python batches


def _unpickle(path: Path) -> dict:
    # The official batches were pickled by Python 2 (str keys); files written by Python 3 tools
    # often have bytes keys. Normalize keys, and bytes label names, to str.
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    if not isinstance(entry, dict):
        raise ValueError(f"{path} is not a CIFAR python batch (expected a pickled dict, got {type(entry).__name__})")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def _python_layout(folder: Path) -> str | None:
    """'cifar10' / 'cifar100' if ``folder`` holds that python-batch layout, else None."""
    for name, spec in _CIFAR_PYTHON.items():
        files = spec["train"] + spec["test"] + [spec["meta"]]
        if all((folder / f).is_file() for f in files):
            return name
    return None


def read_cifar_python(folder: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read one split of the official CIFAR-10 / CIFAR-100 python batches.

    Layouts (https://www.cs.toronto.edu/~kriz/cifar.html): ``cifar-10-batches-py/`` holds
    ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` (``label_names``);
    ``cifar-100-python/`` holds ``train``, ``test`` and ``meta`` (``fine_label_names``; labels are
    the 100 fine labels). Each batch is a pickled dict with ``data``: uint8 ``(n, 3072)`` (1024 red,
    then 1024 green, then 1024 blue values, row-major 32x32) and ``labels`` / ``fine_labels``: a
    list of n ints. Keys may be str (the official Python-2 pickles) or bytes. No md5 check is made
    (unlike ``torchvision.datasets.CIFAR10``), so re-packed or tiny test copies load too. Files are
    unpickled: only read batch folders you trust.

    Args:
        folder: the batch folder itself (``.../cifar-10-batches-py`` or ``.../cifar-100-python``).
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(images, labels, classes)``: uint8 array ``(N, 3, 32, 32)`` (CHW), int64 array ``(N,)``,
        and the class names in label order.

    Raises:
        ValueError: unknown split, a folder that is not a batch folder, or a malformed batch.
    """
    folder = Path(folder)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    layout = _python_layout(folder)
    if layout is None:
        raise ValueError(
            f"{folder} is not a CIFAR python batch folder (expected data_batch_1..5, test_batch, batches.meta "
            f"for CIFAR-10, or train, test, meta for CIFAR-100)"
        )
    spec = _CIFAR_PYTHON[layout]
    classes = _python_classes(folder, layout)
    datas, labels = [], []
    for name in spec[split]:
        entry = _unpickle(folder / name)
        if "data" not in entry or spec["labels_key"] not in entry:
            raise ValueError(f"{folder / name}: missing 'data' or {spec['labels_key']!r} in the batch dict")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{folder / name}: 'data' has shape {data.shape}, expected (n, 3072)")
        lab = np.asarray(entry[spec["labels_key"]], dtype=np.int64)
        if lab.shape != (data.shape[0],):
            raise ValueError(f"{folder / name}: {lab.shape[0]} labels for {data.shape[0]} images")
        datas.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    images = np.concatenate(datas)
    labels_arr = np.concatenate(labels)
    if labels_arr.size and (labels_arr.min() < 0 or labels_arr.max() >= len(classes)):
        raise ValueError(f"{folder}: labels outside 0..{len(classes) - 1}")
    return images, labels_arr, classes


def _python_classes(folder: Path, layout: str) -> list[str]:
    spec = _CIFAR_PYTHON[layout]
    meta = _unpickle(folder / spec["meta"])
    if spec["names_key"] not in meta:
        raise ValueError(f"{folder / spec['meta']}: no {spec['names_key']!r} entry")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in meta[spec["names_key"]]]


def _find_python_batches(root: Path, dataset: str) -> Path | None:
    spec = _CIFAR_PYTHON.get(dataset)
    if spec is None:
        return None
    for folder in (root / spec["folder"], root):
        if folder.is_dir() and _python_layout(folder) == dataset:
            return folder
    return None


# ----------------------------------------------------------------------------- image folders


def _find_classes(split_dir: Path) -> list[str]:
    # As torchvision.datasets.folder.find_classes (sorted sub-folder names), skipping hidden folders.
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _scan_split(split_dir: Path, classes: list[str]) -> tuple[list[tuple[str, int]], list[int]]:
    """(path, label) pairs and file sizes of an ImageFolder split, in ImageFolder's order."""
    key = (str(split_dir), tuple(classes))
    if key in _SCAN_CACHE:
        return _SCAN_CACHE[key]
    found = _find_classes(split_dir)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(
            f"{split_dir} has class folders not in the training split: {unknown[:5]}"
            + (" ..." if len(unknown) > 5 else "")
        )
    index = {c: i for i, c in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    sizes: list[int] = []
    for cls in found:
        # Same walk and order as torchvision.datasets.folder.make_dataset.
        for dirpath, _, fnames in sorted(os.walk(split_dir / cls, followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    path = os.path.join(dirpath, fname)
                    samples.append((path, index[cls]))
                    sizes.append(os.stat(path).st_size)
    if not samples:
        raise ValueError(f"no image files ({', '.join(IMG_EXTENSIONS)}) under {split_dir}")
    _SCAN_CACHE[key] = (samples, sizes)
    return samples, sizes


def _find_imagefolder(root: Path, dataset: str) -> str | None:
    """Name of the evaluation folder ('test' or 'val') if ``root`` is an ImageFolder tree, else None."""
    if not (root / "train").is_dir():
        return None
    order = ("val", "test") if dataset == "imagenet" else ("test", "val")
    for name in order:
        if (root / name).is_dir():
            return name
    return None


def _decode_pil(path: str) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _tv_decoder() -> Callable[[str], torch.Tensor] | None:
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:  # torchvision.io image decoding is deprecated since 0.29
        return None

    def decode(path: str) -> torch.Tensor:
        try:
            with open(path, "rb") as f:
                data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
            return decode_image(data, mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError):
            return _decode_pil(path)

    return decode


def decode_images(paths: list[str]) -> torch.Tensor:
    """Decode image files into one uint8 tensor.

    Uses ``torchvision.io.decode_image`` (libjpeg-turbo; about 3x faster than PIL on 32x32 JPEGs and
    pixel-identical to ``PIL.Image.open(p).convert("RGB")`` on the CIFAR-10 JPEG copy), falling
    back to PIL for formats it cannot read. Greyscale / palette / RGBA images become RGB.

    Args:
        paths: image files, all of the same height and width.

    Returns:
        uint8 tensor ``(N, 3, H, W)``.

    Raises:
        ValueError: the images do not all have the same size (the message names the first one
            that differs; set ``cache_in_memory=False`` for such trees).
    """
    if not paths:
        raise ValueError("no image files to decode")
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image decoders (in favour of torchcodec) with one warning a call.
        warnings.simplefilter("ignore", DeprecationWarning)
        decode = _tv_decoder() or _decode_pil
        first = decode(paths[0])
        out = torch.empty((len(paths), *first.shape), dtype=torch.uint8)
        out[0] = first
        for i in range(1, len(paths)):
            img = decode(paths[i])
            if img.shape != first.shape:
                raise ValueError(
                    f"cannot cache images of different sizes in memory: {paths[i]} is {tuple(img.shape[1:])} "
                    f"but {paths[0]} is {tuple(first.shape[1:])}; use cache_in_memory=False"
                )
            out[i] = img
    return out


def _fingerprint(entries: list[tuple[str, int]]) -> str:
    h = hashlib.sha1()
    for rel, size in sorted(entries):
        h.update(f"{rel}\t{size}\n".encode("utf-8"))
    return h.hexdigest()[:12]


# ----------------------------------------------------------------------------- the source


@dataclass
class DataSource:
    """One resolved copy of a dataset on disk.

    Attributes:
        dataset: ``"cifar10"``, ``"cifar100"``, ``"imagefolder"`` or ``"imagenet"``.
        kind: ``"sample"`` (the bundled sample, an ImageFolder tree), ``"imagefolder"`` or
            ``"cifar-python"`` (official python batches).
        root: absolute path: the tree root (holding ``train/``), or the python batch folder itself.
        classes: class names in label order (sorted folder names, or the batches' meta names).
        eval_dir: for trees, the evaluation folder used as the ``"test"`` split (``"test"`` or
            ``"val"``); ``"test"`` for python batches.

    Splits are named ``"train"`` (the full official training split, dev part included) and
    ``"test"``. Nothing is decoded or scanned until asked for.
    """

    dataset: str
    kind: str
    root: Path
    classes: list[str]
    eval_dir: str = "test"
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        """Number of classes (length of :attr:`classes`)."""
        return len(self.classes)

    @property
    def is_tree(self) -> bool:
        """True for ImageFolder trees (bundled sample included), False for python batches."""
        return self.kind in ("sample", "imagefolder")

    def _split_dir(self, split: str) -> Path:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return self.root / ("train" if split == "train" else self.eval_dir)

    def samples(self, split: str) -> list[tuple[str, int]]:
        """``(file path, label)`` pairs of a tree split, in ImageFolder order (stat only, no decoding).

        Raises:
            ValueError: for python batches (no files per image), or a split without images.
        """
        if not self.is_tree:
            raise ValueError(f"{self.kind} source has no per-image files")
        return _scan_split(self._split_dir(split), self.classes)[0]

    def labels(self, split: str) -> np.ndarray:
        """int64 labels ``(N,)`` of a split in dataset order, without decoding images."""
        if self.is_tree:
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
            ValueError: tree images of different sizes (see :func:`decode_images`).
        """
        key = (str(self.root), split)
        if key not in _TENSOR_CACHE:
            if self.is_tree:
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
        """``(path relative to root, size in bytes)`` of every file this source reads (stat only)."""
        if self.is_tree:
            out = []
            for split in ("train", "test"):
                samples, sizes = _scan_split(self._split_dir(split), self.classes)
                out += [(Path(p).relative_to(self.root).as_posix(), s) for (p, _), s in zip(samples, sizes)]
            return out
        spec = _CIFAR_PYTHON[_python_layout(self.root)]
        names = spec["train"] + spec["test"] + [spec["meta"]]
        return [(n, (self.root / n).stat().st_size) for n in names]

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
        fingerprint 3fa2c1d9e0b1)"``.
        """
        n_train, n_test = self.count("train"), self.count("test")
        counts = f"train {n_train}, {self.eval_dir} {n_test}, fingerprint {self.fingerprint}"
        if self.kind == "sample":
            try:
                where = self.root.relative_to(Path(__file__).resolve().parents[2]).as_posix()
            except ValueError:
                where = str(self.root)
            return f"{self.dataset} bundled sample ({where}; {counts})"
        if self.kind == "cifar-python":
            return f"{self.dataset} python batches at {self.root} ({counts})"
        exts = {Path(p).suffix.lower() for p, _ in self.samples("train") + self.samples("test")}
        what = "ImageFolder JPEG tree" if exts <= {".jpg", ".jpeg"} else "ImageFolder tree"
        return f"{self.dataset} {what} at {self.root} ({counts})"


def _layouts_message(root: Path, dataset: str) -> str:
    folder = _CIFAR_PYTHON.get(dataset, _CIFAR_PYTHON["cifar10"])["folder"]
    return (
        f"data root {root} holds neither layout expected for dataset {dataset!r}: "
        f"(a) official CIFAR python batches ({root}/{folder}/ or that folder itself; cifar10/cifar100 only), "
        f"or (b) an ImageFolder tree {root}/train/<class>/<image> with {root}/test/<class>/ (or val/)"
    )


def resolve_source(dataset: str, root: str | os.PathLike | None = None, download: bool = False) -> DataSource:
    """Find the data for ``dataset`` and describe it, cheaply (no image is decoded).

    Args:
        dataset: one of :data:`DATASETS`. ``"imagenet"`` is an ImageFolder tree with ``train/`` and
            ``val/`` (``val/`` preferred over ``test/``); ``"imagefolder"`` any such tree.
        root: where the data lives. ``None`` with ``"cifar10"`` (and ``download=False``) selects the
            bundled sample :data:`SAMPLE_ROOT`. Otherwise the layout is detected: (a) official python
            batches ``root/cifar-10-batches-py`` (``cifar-100-python`` for cifar100) or ``root`` being
            that folder; (b) an ImageFolder tree ``root/train/<class>/*`` + ``root/test/<class>/*``
            (or ``val/``). (a) is tried first.
        download: cifar10/cifar100 only: if the python batches are not under ``root`` yet, download
            them there with ``torchvision.datasets.CIFAR10/100(root, download=True)`` (needs network;
            ``root=None`` means ``./data``).

    Returns:
        The :class:`DataSource`; its class list comes from the tree's class folders (one
        ``scandir``) or the batches' meta file.

    Raises:
        ValueError: unknown dataset (lists the allowed values); no root for a dataset other than
            cifar10; ``download`` for a dataset other than cifar10/cifar100; a root holding neither
            layout (names the root and both layouts); a cifar10/cifar100 tree whose number of class
            folders is not 10/100.
        FileNotFoundError: ``root`` does not exist.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed values: {', '.join(DATASETS)}")
    if download and dataset not in _CIFAR_PYTHON:
        raise ValueError(
            f"download=True is only supported for cifar10 and cifar100 (torchvision), not {dataset!r}; "
            f"set data.root to a prepared ImageFolder tree"
        )
    if root is None:
        if download:
            root = "data"
        elif dataset == "cifar10":
            return DataSource(dataset="cifar10", kind="sample", root=SAMPLE_ROOT, classes=_find_classes(SAMPLE_ROOT / "train"))
        else:
            raise ValueError(f"data root required for dataset {dataset!r}: set data.root, --data-root or VITREPRO_DATA")
    root = Path(root).expanduser().resolve()
    if download and _find_python_batches(root, dataset) is None:
        import torchvision

        root.mkdir(parents=True, exist_ok=True)
        cls = torchvision.datasets.CIFAR10 if dataset == "cifar10" else torchvision.datasets.CIFAR100
        cls(str(root), train=True, download=True)
    if not root.exists():
        raise FileNotFoundError(f"data root {root} does not exist")
    if not root.is_dir():
        raise ValueError(_layouts_message(root, dataset))

    folder = _find_python_batches(root, dataset)
    if folder is not None:
        classes = _python_classes(folder, dataset)
        expected = EXPECTED_CLASSES[dataset]
        if len(classes) != expected:
            raise ValueError(f"dataset {dataset!r} expects {expected} classes but {folder} names {len(classes)}")
        return DataSource(dataset=dataset, kind="cifar-python", root=folder, classes=classes)

    eval_dir = _find_imagefolder(root, dataset)
    if eval_dir is None:
        raise ValueError(_layouts_message(root, dataset))
    classes = _find_classes(root / "train")
    if not classes:
        raise ValueError(f"{root / 'train'} has no class folders (expected {root}/train/<class>/<image>)")
    expected = EXPECTED_CLASSES.get(dataset)
    if expected is not None and len(classes) != expected:
        raise ValueError(
            f"dataset {dataset!r} expects {expected} classes but {root / 'train'} has {len(classes)} class folders "
            f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"
        )
    kind = "sample" if root == SAMPLE_ROOT else "imagefolder"
    return DataSource(dataset=dataset, kind=kind, root=root, classes=classes, eval_dir=eval_dir)
