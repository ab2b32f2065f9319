"""Readers of the on-disk formats: the official CIFAR python batches, the annotation files of
torchvision's Oxford-IIIT Pets and Flowers-102 layouts, ImageFolder trees, and fast image decoding.

Labels come from annotation files or folder names alone (no image is opened); decoded splits and
directory scans are cached per process (``clear_cache`` drops them). ``sources.py`` puts these
together into a :class:`~vitrepro.data.sources.DataSource`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


#: Number of classes the data must have for these names (checked on every layout). ImageNet
#: (1,000) and ImageNet-21k (21,843) are not checked, so that class subsets can be used.
EXPECTED_CLASSES = {"cifar10": 10, "cifar100": 100, "pets": 37, "flowers": 102}
#: Datasets whose evaluation folder of a tree is preferably ``val/`` (the ImageNet convention).
_VAL_FIRST = ("imagenet", "imagenet21k")
#: torchvision's base folders (``OxfordIIITPet`` / ``Flowers102`` put their files there under root).
PETS_FOLDER = "oxford-iiit-pet"
FLOWERS_FOLDER = "flowers-102"
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
# (kind, resolved base folder, split) -> (list of (path, label), list of sizes in bytes)
_LIST_CACHE: dict[tuple[str, str, str], tuple[list[tuple[str, int]], list[int]]] = {}
# (resolved root, split, kept classes) -> decoded images and new labels of a class subset (class_subset.py)
_SUBSET_CACHE: dict[tuple[str, str, tuple[int, ...]], tuple[torch.Tensor, torch.Tensor]] = {}


def clear_cache() -> None:
    """Drop every decoded split and directory scan held by this module (frees the memory)."""
    _TENSOR_CACHE.clear()
    _SCAN_CACHE.clear()
    _PYTHON_LABELS.clear()
    _LIST_CACHE.clear()
    _SUBSET_CACHE.clear()


# ----------------------------------------------------------------------------- python batches


#: The only globals a CIFAR python batch may name: numpy's array and dtype reconstructors (the numpy 1 and
#: 2 module names) and the byte-string encoder of protocol-2 pickles written by Python 3. Dicts, lists,
#: strings and numbers are pickle opcodes and need no global.
_BATCH_GLOBALS = frozenset({
    *((m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")),
    *((m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _BatchUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only ``_BATCH_GLOBALS``: a file that names any other callable
    (``os.system``, ``builtins.eval``, ...) is refused before anything of it runs."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _BATCH_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds (allowed: "
                                         f"numpy arrays, dicts, lists, strings and numbers)")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    """One CIFAR python batch, read with ``_BatchUnpickler`` (no code from the file runs). Raises
    ``ValueError`` naming the file for a pickle that names another global, or is not a dict."""
    # The official batches were pickled by Python 2 (str keys); files written by Python 3 tools
    # often have bytes keys. Normalize keys, and bytes label names, to str.
    with open(path, "rb") as f:
        try:
            entry = _BatchUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as e:
            raise ValueError(f"{path} is refused as a CIFAR python batch: {' '.join(str(e).split()) or 'truncated'}")\
                from None
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
    read by a restricted unpickler (numpy arrays, dicts, lists, strings, numbers): a batch that names any
    other global, such as ``os.system``, is refused before any of its code runs.

    Args:
        folder: the batch folder itself (``.../cifar-10-batches-py`` or ``.../cifar-100-python``).
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(images, labels, classes)``: uint8 array ``(N, 3, 32, 32)`` (CHW), int64 array ``(N,)``,
        and the class names in label order.

    Raises:
        ValueError: unknown split, a folder that is not a batch folder, or a malformed batch (one
            that names a global other than numpy's array reconstructors included).
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


# ----------------------------------------------------------------------------- Pets / Flowers-102

_PETS_SPLITS = {"trainval": "trainval.txt", "test": "test.txt"}
_FLOWERS_SPLITS = {"train": "trnid", "val": "valid", "test": "tstid"}


def _pets_missing(folder: Path) -> list[str]:
    """What ``folder`` lacks of torchvision's Oxford-IIIT Pet layout (empty list: complete)."""
    need = [("images", True)] + [(f"annotations/{f}", False) for f in _PETS_SPLITS.values()]
    return [n + ("/" if is_dir else "") for n, is_dir in need
            if not ((folder / n).is_dir() if is_dir else (folder / n).is_file())]


def _flowers_missing(folder: Path) -> list[str]:
    """What ``folder`` lacks of torchvision's Flowers-102 layout (empty list: complete)."""
    need = [("jpg", True), ("imagelabels.mat", False), ("setid.mat", False)]
    return [n + ("/" if is_dir else "") for n, is_dir in need
            if not ((folder / n).is_dir() if is_dir else (folder / n).is_file())]


_OFFICIAL = {"pets": (PETS_FOLDER, _pets_missing), "flowers": (FLOWERS_FOLDER, _flowers_missing)}


def _find_official(root: Path, dataset: str) -> Path | None:
    """The base folder of torchvision's layout for ``dataset`` (``root/<folder>`` or root itself), or None."""
    if dataset not in _OFFICIAL:
        return None
    name, missing = _OFFICIAL[dataset]
    for folder in (root / name, root):
        if folder.is_dir() and not missing(folder):
            return folder
    return None


def read_pets_annotations(folder: str | os.PathLike, split: str) -> tuple[list[str], np.ndarray, dict[int, str]]:
    """Read one split of Oxford-IIIT Pets from torchvision's layout, without opening any image.

    Layout (``torchvision.datasets.OxfordIIITPet``; https://www.robots.ox.ac.uk/~vgg/data/pets/):
    ``folder/images/<Name>_<n>.jpg`` and ``folder/annotations/trainval.txt`` / ``test.txt`` with one
    line per image, ``"<Name>_<n> <class id 1..37> <species 1 cat | 2 dog> <breed id>"``. As
    torchvision: the label is the class id minus 1, the class name is the image name without its
    ``_<n>`` suffix, ``"_"``-separated words title-cased (``american_bulldog_12`` -> ``"American
    Bulldog"``), and images keep the file's line order. Empty lines and ``#`` comments are skipped.
    No md5 or existence check of the images is made here.

    Args:
        folder: the base folder (``.../oxford-iiit-pet``), holding ``images/`` and ``annotations/``.
        split: ``"trainval"`` (the paper's training set, 3,680 images) or ``"test"`` (3,669).

    Returns:
        ``(paths, labels, names)``: image paths (str, ``folder/images/<name>.jpg``), int64 labels
        ``(N,)`` 0-based, and ``{label: class name}`` for the labels seen in this split.

    Raises:
        ValueError: unknown split, or a malformed line (names the file and line number).
        FileNotFoundError: the annotation file is missing.
    """
    folder = Path(folder)
    if split not in _PETS_SPLITS:
        raise ValueError(f"split must be 'trainval' or 'test', got {split!r}")
    ann = folder / "annotations" / _PETS_SPLITS[split]
    if not ann.is_file():
        raise FileNotFoundError(f"Oxford-IIIT Pet annotation file {ann} not found")
    paths: list[str] = []
    labels: list[int] = []
    names: dict[int, str] = {}
    images = folder / "images"
    with open(ann, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            try:
                if len(fields) < 2:
                    raise ValueError
                class_id = int(fields[1])
                if class_id < 1:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"{ann}:{lineno}: expected '<Name>_<n> <class id >= 1> <species> <breed id>', got {line.strip()!r}"
                ) from None
            image_id = fields[0]
            label = class_id - 1
            paths.append(str(images / f"{image_id}.jpg"))
            labels.append(label)
            names.setdefault(label, " ".join(part.title() for part in image_id.rsplit("_", 1)[0].split("_")))
    return paths, np.asarray(labels, dtype=np.int64), names


def _flowers_classes() -> list[str]:
    """The 102 class names of Flowers-102 in label order, as torchvision names them."""
    from torchvision.datasets.flowers102 import Flowers102

    return list(Flowers102.classes)


def read_flowers102(folder: str | os.PathLike, split: str) -> tuple[list[str], np.ndarray]:
    """Read one split of Oxford Flowers-102 from torchvision's layout, without opening any image.

    Layout (``torchvision.datasets.Flowers102``; https://www.robots.ox.ac.uk/~vgg/data/flowers/102/):
    ``folder/jpg/image_00001.jpg ...``, ``folder/imagelabels.mat`` (``labels``: class 1..102 of image
    id 1..N) and ``folder/setid.mat`` (``trnid`` / ``valid`` / ``tstid``: the 1-based image ids of
    the train (1,020), val (1,020) and test (6,149) splits). As torchvision: label = class - 1,
    images in the order of the id list, class names ``torchvision.datasets.Flowers102.classes``.
    Unlike torchvision no md5 check of the ``.mat`` files is made, so copies and tiny test fakes load.
    Needs scipy (``scipy.io.loadmat``).

    Args:
        folder: the base folder (``.../flowers-102``).
        split: ``"train"``, ``"val"`` or ``"test"`` (the paper trains on train + val).

    Returns:
        ``(paths, labels)``: image paths (str) and int64 labels ``(N,)`` in 0..101.

    Raises:
        ValueError: unknown split; a ``.mat`` file without the expected arrays; an image id outside
            1..len(labels); a class outside 1..102.
        FileNotFoundError: a ``.mat`` file is missing.
    """
    from scipy.io import loadmat

    folder = Path(folder)
    if split not in _FLOWERS_SPLITS:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    for name in ("imagelabels.mat", "setid.mat"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"Flowers-102 file {folder / name} not found")
    key = _FLOWERS_SPLITS[split]
    set_ids = loadmat(folder / "setid.mat", squeeze_me=True)
    labels_mat = loadmat(folder / "imagelabels.mat", squeeze_me=True)
    if key not in set_ids:
        raise ValueError(f"{folder / 'setid.mat'}: no {key!r} array (expected trnid, valid, tstid)")
    if "labels" not in labels_mat:
        raise ValueError(f"{folder / 'imagelabels.mat'}: no 'labels' array")
    all_labels = np.atleast_1d(np.asarray(labels_mat["labels"])).astype(np.int64).ravel()
    ids = np.atleast_1d(np.asarray(set_ids[key])).astype(np.int64).ravel()
    if ids.size and (ids.min() < 1 or ids.max() > all_labels.size):
        raise ValueError(f"{folder / 'setid.mat'}: {key} has image ids outside 1..{all_labels.size}")
    n_classes = EXPECTED_CLASSES["flowers"]
    if all_labels.size and (all_labels.min() < 1 or all_labels.max() > n_classes):
        raise ValueError(f"{folder / 'imagelabels.mat'}: labels outside 1..{n_classes}")
    images = folder / "jpg"
    paths = [str(images / f"image_{i:05d}.jpg") for i in ids.tolist()]
    return paths, all_labels[ids - 1] - 1


def _official_split(kind: str, folder: Path, split: str) -> list[tuple[str, int]]:
    """``(path, label)`` pairs of a Pets / Flowers-102 split (our "train" = trainval / train+val)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if kind == "oxford-iiit-pet":
        paths, labels, _ = read_pets_annotations(folder, "trainval" if split == "train" else "test")
        return list(zip(paths, labels.tolist()))
    parts = ("train", "val") if split == "train" else ("test",)
    out: list[tuple[str, int]] = []
    for part in parts:
        paths, labels = read_flowers102(folder, part)
        out += zip(paths, labels.tolist())
    return out


def _list_split(kind: str, folder: Path, split: str) -> tuple[list[tuple[str, int]], list[int]]:
    """Cached pairs and file sizes of a Pets / Flowers-102 split (stat only).

    Raises:
        FileNotFoundError: images listed by the annotations are missing (names the first one).
    """
    key = (kind, str(folder), split)
    if key in _LIST_CACHE:
        return _LIST_CACHE[key]
    samples = _official_split(kind, folder, split)
    sizes, missing = [], []
    for path, _ in samples:
        try:
            sizes.append(os.stat(path).st_size)
        except FileNotFoundError:
            missing.append(path)
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(samples)} {split} images listed in {folder} are missing, e.g. {missing[0]}"
        )
    if not samples:
        raise ValueError(f"the {split} split of {folder} lists no image")
    _LIST_CACHE[key] = (samples, sizes)
    return samples, sizes


def _official_classes(dataset: str, folder: Path) -> list[str]:
    """Class names in label order of torchvision's Pets / Flowers-102 layout (annotations only).

    Raises:
        ValueError: the labels found do not cover exactly ``0..C-1`` for the dataset's C classes.
    """
    expected = EXPECTED_CLASSES[dataset]
    if dataset == "pets":
        names: dict[int, str] = {}
        for split in _PETS_SPLITS:
            for label, name in read_pets_annotations(folder, split)[2].items():
                names.setdefault(label, name)
        found = sorted(names)
        if found != list(range(expected)):
            raise ValueError(
                f"dataset 'pets' expects {expected} classes (ids 1..{expected}) but the annotations in "
                f"{folder / 'annotations'} name {len(found)} class ids ({', '.join(str(i + 1) for i in found[:5])}"
                f"{', ...' if len(found) > 5 else ''})"
            )
        return [names[i] for i in found]
    labels = np.concatenate([read_flowers102(folder, s)[1] for s in _FLOWERS_SPLITS])
    found = np.unique(labels).tolist()
    if found != list(range(expected)):
        raise ValueError(
            f"dataset 'flowers' expects {expected} classes but the splits of {folder / 'setid.mat'} "
            f"hold images of {len(found)} classes"
        )
    return _flowers_classes()


# ----------------------------------------------------------------------------- image folders


def _find_classes(split_dir: Path) -> list[str]:
    # As torchvision.datasets.folder.find_classes (sorted sub-folder names), skipping hidden folders.
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _walk_once(top: Path) -> list[tuple[str, list[str]]]:
    """``(dirpath, filenames)`` of ``os.walk(top, followlinks=True)``. Raises ``ValueError`` naming the path
    when a folder is reached a second time (a symbolic link loop, which torchvision's walk follows about
    40 levels deep, or a second link to one folder): every image must count once."""
    seen: dict[tuple[int, int], str] = {}
    out = []
    for dirpath, _, fnames in os.walk(top, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            raise ValueError(f"{dirpath} reaches {seen[st.st_dev, st.st_ino]} a second time (a symbolic link loop "
                             f"or a second link to one folder): remove the link, so that each image counts once")
        seen[st.st_dev, st.st_ino] = dirpath
        out.append((dirpath, fnames))
    return out


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
        # Same walk and order as torchvision.datasets.folder.make_dataset, but each folder reached once.
        for dirpath, fnames in sorted(_walk_once(split_dir / cls)):
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
    order = ("val", "test") if dataset in _VAL_FIRST else ("test", "val")
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
