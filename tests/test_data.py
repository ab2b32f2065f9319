"""Tests of vitrepro.data on real files: the bundled CIFAR-10 sample, small trees, python batches and
fakes of torchvision's Oxford-IIIT Pets / Flowers-102 layouts written to tmp_path, and (marked slow)
the full CIFAR-10 JPEG copy in ../shared/data/cifar10-jpeg."""

from __future__ import annotations

import filecmp
import pickle
import re
import time
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch

from vitrepro.data.sampler import ResumableSampler
from PIL import Image

from vitrepro.data import (
    DATASETS,
    DEFAULT_VAL_FRACTION,
    PRESETS,
    SAMPLE_ROOT,
    ImageClassificationDataModule,
    balanced_order,
    build_transform,
    clear_cache,
    denormalize,
    normalize,
    read_cifar_python,
    read_flowers102,
    read_pets_annotations,
    resolve_source,
)

REPO = Path(__file__).resolve().parents[1]
REAL_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
needs_real = pytest.mark.skipif(not REAL_CIFAR.is_dir(), reason=f"real CIFAR-10 JPEG copy not found at {REAL_CIFAR}")


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv("VITREPRO_DATA", raising=False)


@pytest.fixture(scope="module")
def sample_dm():
    dm = ImageClassificationDataModule(batch_size=32)
    dm.setup()
    return dm


# ----------------------------------------------------------------------------- helpers


def write_cifar10_python(folder: Path, n_per_batch: int = 6, n_test: int = 5, seed: int = 0) -> dict:
    """A tiny copy of the official cifar-10-batches-py layout (Python-3 pickles with bytes keys)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    out = {"train_data": [], "train_labels": []}

    def dump(name, n):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"{i}.png".encode() for i in range(n)]}, f, protocol=2)
        return data, labels

    for i in range(1, 6):
        d, lab = dump(f"data_batch_{i}", n_per_batch)
        out["train_data"].append(d)
        out["train_labels"] += lab
    out["test_data"], out["test_labels"] = dump("test_batch", n_test)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": n_per_batch,
                     b"num_vis": 3072}, f, protocol=2)
    out["train_data"] = np.concatenate(out["train_data"])
    return out


def write_tree(root: Path, sizes: dict[str, list[tuple[int, int]]], splits=("train", "test")) -> None:
    """ImageFolder tree: root/<split>/<class>/<i>.<png|jpg> with the given (width, height) sizes."""
    rng = np.random.default_rng(1)
    for split in splits:
        for cls, whs in sizes.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for i, (w, h) in enumerate(whs):
                arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                if i % 3 == 0:
                    Image.fromarray(arr).save(d / f"{i}.png")
                elif i % 3 == 1:
                    Image.fromarray(arr).save(d / f"{i}.jpg", quality=90)
                else:
                    Image.fromarray(arr[..., 0]).convert("L").save(d / f"{i}.png")  # greyscale


# ----------------------------------------------------------------------------- bundled sample


def test_sample_items_shapes_dtype_range(sample_dm):
    dm = sample_dm
    assert dm.num_classes == 10 and dm.classes == CIFAR10_CLASSES
    assert dm.source.kind == "sample" and dm.source.root == SAMPLE_ROOT
    for ds in (dm.train_set, dm.val_set, dm.test_set, dm.fewshot_pool()):
        x, y = ds[0]
        assert isinstance(x, torch.Tensor) and type(x) is torch.Tensor
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert isinstance(y, int) and 0 <= y < 10
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (32, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert xb.min() >= -1 and xb.max() <= 1 and xb.min() < -0.5 and xb.max() > 0.5


def test_sample_counts_and_labels(sample_dm):
    dm = sample_dm
    assert len(dm.train_set) + len(dm.val_set) == 400
    assert len(dm.val_set) == 8  # round(0.02 * 400)
    assert len(dm.test_set) == 200
    labels = dm.fewshot_pool_labels()
    assert labels.dtype == np.int64 and labels.shape == (400,)
    assert np.bincount(labels).tolist() == [40] * 10
    test_labels = np.array([y for _, y in dm.test_set])
    assert np.bincount(test_labels).tolist() == [20] * 10
    # the label of a file is its class folder
    path, label = dm.source.samples("train")[123]
    assert Path(path).parent.name == CIFAR10_CLASSES[label] == CIFAR10_CLASSES[int(labels[123])]


def test_sample_is_byte_copy_of_first_files():
    # 40 train / 20 test per class, the first files of each class in sorted order.
    for split, n in (("train", 40), ("test", 20)):
        for cls in CIFAR10_CLASSES:
            names = sorted(p.name for p in (SAMPLE_ROOT / split / cls).glob("*.jpg"))
            assert len(names) == n, (split, cls)
            if REAL_CIFAR.is_dir():
                assert names == sorted(p.name for p in (REAL_CIFAR / split / cls).iterdir())[:n]
                for name in names:
                    assert filecmp.cmp(SAMPLE_ROOT / split / cls / name, REAL_CIFAR / split / cls / name, shallow=False)
    assert (SAMPLE_ROOT.parent / "README.md").is_file()


def test_fewshot_pool_is_unaugmented_and_ordered(sample_dm):
    pool = sample_dm.fewshot_pool()
    labels = sample_dm.fewshot_pool_labels()
    assert len(pool) == 400
    assert [pool[i][1] for i in range(0, 400, 37)] == labels[::37].tolist()
    torch.testing.assert_close(pool[5][0], pool[5][0], rtol=0, atol=0)  # deterministic: no augmentation
    # eval transform = exact normalization of the decoded pixels (32x32 images: resize is a no-op)
    raw = np.asarray(Image.open(sample_dm.source.samples("train")[5][0]).convert("RGB"))
    expected = (torch.from_numpy(raw.copy()).permute(2, 0, 1).float() - 127.5) / 127.5
    torch.testing.assert_close(pool[5][0], expected, rtol=0, atol=0)


def test_train_augmentation_is_random(sample_dm):
    torch.manual_seed(0)
    outs = [sample_dm.train_set[3][0] for _ in range(8)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_dev_split_disjoint_seeded_balanced():
    a = ImageClassificationDataModule(val_fraction=0.1, seed=3)
    b = ImageClassificationDataModule(val_fraction=0.1, seed=3)
    c = ImageClassificationDataModule(val_fraction=0.1, seed=4)
    tr_a, dev_a = a.split_indices()
    tr_b, dev_b = b.split_indices()
    _, dev_c = c.split_indices()
    assert len(dev_a) == 40 and len(tr_a) == 360
    assert set(tr_a).isdisjoint(dev_a) and set(tr_a) | set(dev_a) == set(range(400))
    assert np.array_equal(tr_a, tr_b) and np.array_equal(dev_a, dev_b)
    assert set(dev_a) != set(dev_c)
    labels = a.fewshot_pool_labels()
    assert np.bincount(labels[dev_a], minlength=10).tolist() == [4] * 10
    a.setup()
    assert np.array_equal(a.val_indices, dev_a) and len(a.val_set) == 40 and len(a.train_set) == 360


def test_train_size_balanced_and_nested():
    subsets = {}
    for n in (10, 25, 100, 392):
        dm = ImageClassificationDataModule(train_size=n, seed=7)
        tr, dev = dm.split_indices()
        assert len(tr) == n and len(set(tr)) == n and set(tr).isdisjoint(dev)
        counts = np.bincount(dm.fewshot_pool_labels()[tr], minlength=10)
        assert counts.max() - counts.min() <= 1, counts
        subsets[n] = set(tr.tolist())
        dm.setup()
        assert len(dm.train_set) == n
    assert subsets[10] < subsets[25] < subsets[100] < subsets[392]
    # the dev set does not depend on train_size
    assert np.array_equal(ImageClassificationDataModule(train_size=10, seed=7).split_indices()[1],
                          ImageClassificationDataModule(seed=7).split_indices()[1])


def test_balanced_order_uneven_classes():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1, dtype=np.int64)
    order = balanced_order(labels, seed=0)
    assert sorted(order.tolist()) == list(range(14))
    assert sorted(labels[order[:3]].tolist()) == [0, 1, 2]
    assert labels[order[-7:]].tolist() == [0] * 7


def test_val_fraction_zero_gives_no_validation():
    dm = ImageClassificationDataModule(val_fraction=0.0, batch_size=50)
    dm.setup()
    assert dm.val_set is None and dm.val_dataloader() == []
    assert len(dm.train_set) == 400


def test_setup_idempotent_and_memory_cache_shared():
    a = ImageClassificationDataModule()
    a.setup()
    first = a.train_set
    a.setup("fit")
    a.setup("test")
    assert a.train_set is first
    b = ImageClassificationDataModule(seed=1, img_size=16)
    b.setup()
    assert b.train_set.images is a.train_set.images  # decoded once per process
    assert b.train_set[0][0].shape == (3, 16, 16)


def test_cached_and_uncached_give_same_tensors():
    cached = ImageClassificationDataModule(cache_in_memory=True, img_size=40)
    files = ImageClassificationDataModule(cache_in_memory=False, img_size=40)
    assert type(files.fewshot_pool()).__name__ == "FileImageDataset"
    assert type(cached.fewshot_pool()).__name__ == "TensorImageDataset"
    for i in (0, 199, 399):
        xc, yc = cached.fewshot_pool()[i]
        xf, yf = files.fewshot_pool()[i]
        assert yc == yf and xc.shape == (3, 40, 40)
        torch.testing.assert_close(xc, xf, rtol=0, atol=0)


def test_dataloader_settings(sample_dm):
    tl = sample_dm.train_dataloader()
    assert tl.drop_last and tl.batch_size == 32 and not tl.persistent_workers
    assert isinstance(tl.sampler, ResumableSampler)  # seeded, resumable mid-epoch (test_resume.py)
    assert len(tl) == 392 // 32
    vl, te = sample_dm.val_dataloader(), sample_dm.test_dataloader()
    assert not vl.drop_last and not te.drop_last
    assert isinstance(te.sampler, torch.utils.data.SequentialSampler)
    assert sum(len(y) for _, y in te) == 200
    dm = ImageClassificationDataModule(batch_size=64, eval_batch_size=100, num_workers=1)
    dm.setup()
    assert dm.test_dataloader().batch_size == 100 and dm.train_dataloader().persistent_workers


def test_train_smaller_than_batch_keeps_partial_batch():
    dm = ImageClassificationDataModule(train_size=20, batch_size=128)
    dm.setup()
    with pytest.warns(UserWarning, match="smaller than batch_size"):
        loader = dm.train_dataloader()
    assert len(loader) == 1


def test_describe_sample():
    dm = ImageClassificationDataModule()
    d = dm.describe()
    assert d.startswith("cifar10 bundled sample (vitrepro/data/sample/cifar10; train 400, test 200, fingerprint ")
    fp = re.search(r"fingerprint ([0-9a-f]+)\)", d).group(1)
    assert len(fp) == 12 and fp == dm.source.fingerprint
    assert "split train 392 / dev 8" in d and "\n" not in d


def test_lightning_fit_runs_with_and_without_validation(tmp_path):
    class Tiny(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(3 * 8 * 8, 10)
            self.val_batches = 0

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x.flatten(1)), y)

        def validation_step(self, batch, _):
            self.val_batches += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    for val_fraction, expect_val in ((0.0, False), (0.1, True)):
        model = Tiny()
        dm = ImageClassificationDataModule(img_size=8, batch_size=64, val_fraction=val_fraction)
        trainer = lightning.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                                    enable_progress_bar=False, enable_model_summary=False,
                                    num_sanity_val_steps=0, limit_val_batches=1, val_check_interval=1,
                                    default_root_dir=tmp_path)
        trainer.fit(model, datamodule=dm)
        assert trainer.global_step == 2
        assert (model.val_batches > 0) == expect_val


# ----------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_shapes_and_range(preset):
    torch.manual_seed(0)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    tensor = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    for train in (True, False):
        t = build_transform(preset, 24, train=train)
        for inp in (img, tensor):
            x = t(inp)
            assert type(x) is torch.Tensor and x.shape == (3, 24, 24) and x.dtype == torch.float32
            assert x.min() >= -1 and x.max() <= 1
    # evaluation is deterministic and the same for PIL and tensor inputs
    ev = build_transform(preset, 24, train=False)
    torch.testing.assert_close(ev(img), ev(tensor), rtol=0, atol=0)


def test_normalization_matches_official():
    x = torch.tensor([0, 127, 128, 255], dtype=torch.uint8)
    torch.testing.assert_close(normalize(x), torch.tensor([-1.0, -0.5 / 127.5, 0.5 / 127.5, 1.0]))
    assert torch.equal(denormalize(normalize(x)), x)
    ev = build_transform("none", 2, train=False)
    img = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    assert torch.equal(ev(img), torch.ones(3, 2, 2))


def test_pad_crop_pads_with_zero_pixels():
    t = build_transform("pad_crop", 8, train=True)
    img = torch.full((3, 8, 8), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    outs = torch.stack([t(img) for _ in range(30)])
    assert set(outs.unique().tolist()) <= {-1.0, 1.0} and (outs == -1).any()


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match=r"'random_erase'.*pad_crop, inception_crop, flip, none"):
        build_transform("random_erase", 32, train=True)
    with pytest.raises(ValueError, match="'bogus'"):
        ImageClassificationDataModule(train_augment="bogus")


# ----------------------------------------------------------------------------- errors


def test_unknown_dataset_raises():
    with pytest.raises(ValueError, match=r"'mnist'.*auto, cifar10, cifar100, imagefolder, imagenet, imagenet21k, pets, flowers"):
        ImageClassificationDataModule(dataset="mnist")
    assert DATASETS == ("auto", "cifar10", "cifar100", "imagefolder", "imagenet", "imagenet21k", "pets", "flowers")


@pytest.mark.parametrize("dataset", ["cifar100", "imagefolder", "imagenet", "imagenet21k", "pets", "flowers"])
def test_root_required_for_other_datasets(dataset):
    with pytest.raises(ValueError, match=f"data root required for dataset '{dataset}'.*VITREPRO_DATA"):
        ImageClassificationDataModule(dataset=dataset)


def test_missing_root_raises(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        ImageClassificationDataModule(root=str(missing))


def test_wrong_layout_raises(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "train").mkdir()  # train/ without test/ or val/
    with pytest.raises(ValueError, match=re.escape(str(tmp_path)) + r".*python batches.*ImageFolder tree"):
        ImageClassificationDataModule(dataset="cifar10", root=str(tmp_path))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path)) + r" holds no data set.*ImageFolder tree.*python batches"):
        ImageClassificationDataModule(root=str(tmp_path))  # dataset "auto"
    with pytest.raises(ValueError, match="ImageFolder tree"):
        ImageClassificationDataModule(dataset="imagefolder", root=str(tmp_path))


def test_class_count_mismatch_raises(tmp_path):
    write_tree(tmp_path, {"a": [(8, 8)], "b": [(8, 8)], "c": [(8, 8)]})
    with pytest.raises(ValueError, match=r"'cifar10' expects 10 classes.*has 3 class folders"):
        ImageClassificationDataModule(dataset="cifar10", root=str(tmp_path))
    with pytest.raises(ValueError, match="expects 100 classes"):
        ImageClassificationDataModule(dataset="cifar100", root=str(tmp_path))


def test_train_size_too_large_raises():
    dm = ImageClassificationDataModule(train_size=393)
    with pytest.raises(ValueError, match=r"train_size=393.*392 training images available"):
        dm.setup()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="val_fraction"):
        ImageClassificationDataModule(val_fraction=1.0)
    with pytest.raises(ValueError, match="download=True is only supported for cifar10 and cifar100"):
        ImageClassificationDataModule(dataset="imagenet", root="/tmp", download=True)


# ----------------------------------------------------------------------------- other layouts


def test_imagefolder_mixed_sizes(tmp_path):
    sizes = {"cat": [(17, 9), (40, 30), (8, 64), (33, 33)], "dog": [(5, 5), (100, 20), (12, 13)]}
    write_tree(tmp_path, sizes, splits=("train", "val"))
    dm = ImageClassificationDataModule(dataset="imagefolder", root=str(tmp_path), img_size=24, val_fraction=0.0,
                                       batch_size=2, train_augment="inception_crop")
    assert dm.classes == ["cat", "dog"] and dm.num_classes == 2 and not dm.cache_in_memory
    assert dm.source.eval_dir == "val"
    dm.setup()
    assert len(dm.train_set) == 7 and len(dm.test_set) == 7
    for ds in (dm.train_set, dm.test_set, dm.fewshot_pool()):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and x.abs().max() <= 1
    assert dm.fewshot_pool_labels().tolist() == [0, 0, 0, 0, 1, 1, 1]
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (2, 3, 24, 24)
    assert re.fullmatch(rf"imagefolder ImageFolder tree at {re.escape(str(tmp_path))} \(train 7, val 7, "
                        r"fingerprint [0-9a-f]{12}\); split train 7 / dev 0 \(val_fraction 0, seed 0\)", dm.describe())
    # an in-memory cache needs one image size
    cached = ImageClassificationDataModule(dataset="imagefolder", root=str(tmp_path), cache_in_memory=True)
    with pytest.raises(ValueError, match="different sizes.*cache_in_memory=False"):
        cached.setup()


def test_imagenet_prefers_val(tmp_path):
    write_tree(tmp_path, {"n01": [(10, 10)] * 2, "n02": [(10, 10)] * 2}, splits=("train", "val", "test"))
    dm = ImageClassificationDataModule(dataset="imagenet", root=str(tmp_path), img_size=16, val_fraction=0.5)
    assert dm.source.eval_dir == "val" and dm.source.root == tmp_path.resolve()
    assert ImageClassificationDataModule(dataset="imagefolder", root=str(tmp_path)).source.eval_dir == "test"
    dm.setup()
    assert len(dm.train_set) == 2 and len(dm.val_set) == 2
    assert sorted(dm.fewshot_pool_labels()[dm.val_indices].tolist()) == [0, 1]


def test_read_cifar_python(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    ref = write_cifar10_python(folder)
    images, labels, classes = read_cifar_python(folder, "train")
    assert images.shape == (30, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == ref["train_labels"]
    assert classes == CIFAR10_CLASSES
    # channel-planar rows: first 1024 values red, row-major
    assert images[7, 0, 1, 2] == ref["train_data"][7, 32 + 2]
    assert images[7, 2, 31, 31] == ref["train_data"][7, 3071]
    timages, tlabels, _ = read_cifar_python(folder, "test")
    assert np.array_equal(timages.reshape(5, -1), ref["test_data"]) and tlabels.tolist() == ref["test_labels"]
    with pytest.raises(ValueError, match="not a CIFAR python batch folder"):
        read_cifar_python(tmp_path, "train")


def test_cifar_python_layout_datamodule(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    ref = write_cifar10_python(folder)
    for root in (tmp_path, folder):  # the parent, or the batch folder itself
        clear_cache()
        dm = ImageClassificationDataModule(root=str(root), val_fraction=0.2, batch_size=4)
        assert dm.source.kind == "cifar-python" and dm.source.root == folder.resolve()
        assert dm.classes == CIFAR10_CLASSES
        dm.setup()
        assert len(dm.train_set) == 24 and len(dm.val_set) == 6 and len(dm.test_set) == 5
        x, y = dm.fewshot_pool()[11]
        assert y == ref["train_labels"][11]
        expected = (torch.from_numpy(ref["train_data"][11].reshape(3, 32, 32)).float() - 127.5) / 127.5
        torch.testing.assert_close(x, expected, rtol=0, atol=0)
        assert dm.fewshot_pool_labels().tolist() == ref["train_labels"]
        d = dm.describe()
        assert d.startswith(f"cifar10 python batches at {folder.resolve()} (train 30, test 5, fingerprint ")
        xb, _ = next(iter(dm.train_dataloader()))
        assert xb.shape == (4, 3, 32, 32)
    # a cifar-10 batch folder is not a cifar-100 one
    with pytest.raises(ValueError, match="neither layout"):
        ImageClassificationDataModule(dataset="cifar100", root=str(tmp_path))


def test_cifar100_python_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 12), ("test", 4)):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": list(range(n)), "coarse_labels": [0] * n}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i:02d}" for i in range(100)], "coarse_label_names": ["x"] * 20}, f)
    dm = ImageClassificationDataModule(dataset="cifar100", root=str(tmp_path), val_fraction=0.0)
    assert dm.num_classes == 100 and dm.classes[3] == "c03" and dm.cache_in_memory
    dm.setup()
    assert len(dm.train_set) == 12 and len(dm.test_set) == 4 and dm.test_set[3][1] == 3


# ----------------------------------------------------------------------------- Pets, Flowers-102, ImageNet-21k

# 37 Pets breeds: three real names (cats are capitalized, dogs lower case in the real file names),
# then made-up ones. torchvision names a class by its image name without "_<n>", words title-cased.
PET_NAMES = ["Abyssinian", "american_bulldog", "Egyptian_Mau"] + [f"breed_{k:02d}" for k in range(3, 37)]
PET_CLASSES = ["Abyssinian", "American Bulldog", "Egyptian Mau"] + [f"Breed {k:02d}" for k in range(3, 37)]


def _write_image(path: Path, rng: np.random.Generator, grey: bool = False) -> tuple[int, int]:
    """A small JPEG of random size (width 5..39, height 5..39); returns (width, height)."""
    w, h = (int(v) for v in rng.integers(5, 40, size=2))
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr[..., 0]).convert("L") if grey else Image.fromarray(arr)
    img.save(path, quality=90)
    return w, h


def write_pets(root: Path, n_trainval: int = 2, n_test: int = 1, n_classes: int = 37, seed: int = 0) -> dict:
    """torchvision's Oxford-IIIT Pet layout: root/oxford-iiit-pet/images/<Name>_<n>.jpg (mixed sizes,
    one greyscale) + annotations/{trainval,test}.txt, lines "<Name>_<n> <class id> <species> <breed id>"
    in shuffled order. Returns {split: [(image id, 0-based label), ...] in file order}."""
    rng = np.random.default_rng(seed)
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    out = {}
    n = 1
    for split, per_class in (("trainval", n_trainval), ("test", n_test)):
        rows = []
        for c in range(n_classes):
            name = PET_NAMES[c]
            species = 1 if name[0].isupper() else 2
            for _ in range(per_class):
                image_id = f"{name}_{n}"
                _write_image(base / "images" / f"{image_id}.jpg", rng, grey=(n == 2))
                rows.append((image_id, c, species))
                n += 1
        rows = [rows[i] for i in rng.permutation(len(rows))]
        with open(base / "annotations" / f"{split}.txt", "w") as f:
            for image_id, c, species in rows:
                f.write(f"{image_id} {c + 1} {species} {c // 2 + 1}\n")
        out[split] = [(image_id, c) for image_id, c, _ in rows]
    return out


def write_flowers(root: Path, per_split: int = 1, n_classes: int = 102, seed: int = 0) -> dict:
    """torchvision's Flowers-102 layout: root/flowers-102/jpg/image_%05d.jpg (mixed sizes),
    imagelabels.mat (labels 1..102 of image ids 1..N) and setid.mat (trnid, valid, tstid): each class
    has ``per_split`` images in each split, ids shuffled. Returns {split: (ids, 0-based labels)}."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    base = root / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    n = 3 * per_split * n_classes
    labels = rng.permutation(np.repeat(np.arange(1, n_classes + 1), 3 * per_split))  # label of image id i+1
    for i in range(n):
        _write_image(base / "jpg" / f"image_{i + 1:05d}.jpg", rng)
    ids = {k: [] for k in ("trnid", "valid", "tstid")}
    for c in range(1, n_classes + 1):
        own = np.flatnonzero(labels == c) + 1
        for j, k in enumerate(ids):
            ids[k] += own[j * per_split:(j + 1) * per_split].tolist()
    ids = {k: rng.permutation(v) for k, v in ids.items()}
    savemat(base / "imagelabels.mat", {"labels": labels[None, :].astype(np.uint8)})
    savemat(base / "setid.mat", {k: v[None, :].astype(np.uint16) for k, v in ids.items()})
    return {s: (ids[k], labels[ids[k] - 1] - 1) for s, k in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))}


@pytest.fixture(scope="module")
def pets_fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets")
    return root, write_pets(root)


@pytest.fixture(scope="module")
def flowers_fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("flowers")
    return root, write_flowers(root)


def test_default_val_fractions(pets_fake):
    assert DEFAULT_VAL_FRACTION == {"cifar10": 0.02, "cifar100": 0.02, "imagefolder": 0.02, "imagenet": 0.01,
                                    "imagenet21k": 0.01, "pets": 0.1, "flowers": 0.1}
    assert set(DEFAULT_VAL_FRACTION) == set(DATASETS) - {"auto"}  # auto takes the fraction of the kind it finds
    assert ImageClassificationDataModule().val_fraction == 0.02
    assert ImageClassificationDataModule(val_fraction=None).val_fraction == 0.02
    root, _ = pets_fake
    assert ImageClassificationDataModule(dataset="pets", root=str(root)).val_fraction == 0.1
    dm = ImageClassificationDataModule(dataset="pets", root=str(root), val_fraction=0.25)  # an explicit number wins
    assert dm.val_fraction == 0.25 and len(dm.split_indices()[1]) == round(0.25 * 74)
    assert len(ImageClassificationDataModule(dataset="pets", root=str(root), val_fraction=0.0).split_indices()[1]) == 0


def test_pets_torchvision_layout(pets_fake, monkeypatch):
    import torchvision

    root, ref = pets_fake
    base = (root / "oxford-iiit-pet").resolve()
    dm = ImageClassificationDataModule(dataset="pets", root=str(root), img_size=24, batch_size=8)
    src = dm.source
    assert src.kind == "oxford-iiit-pet" and src.root == base and not dm.cache_in_memory
    assert dm.num_classes == 37 and dm.classes == PET_CLASSES
    # labels and order are what annotations/trainval.txt says: class id - 1, line order
    labels = dm.fewshot_pool_labels()
    assert labels.dtype == np.int64 and labels.tolist() == [c for _, c in ref["trainval"]]
    assert [Path(p).stem for p, _ in src.samples("train")] == [i for i, _ in ref["trainval"]]
    assert src.labels("test").tolist() == [c for _, c in ref["test"]] and src.count("test") == 37
    # ... and what torchvision's own OxfordIIITPet reads from the same files (it checks no md5)
    for split, ours in (("trainval", "train"), ("test", "test")):
        tv = torchvision.datasets.OxfordIIITPet(str(root), split=split, target_types="category")
        assert tv.classes == PET_CLASSES and len(tv) == src.count(ours)
        assert [tv[i][1] for i in range(len(tv))] == src.labels(ours).tolist()
        torch.testing.assert_close(dm.eval_transform(tv[3][0]),
                                   dm.fewshot_pool()[3][0] if ours == "train" else dm.eval_transform(
                                       Image.open(src.samples("test")[3][0])), rtol=0, atol=0)
    # 10% dev by default, class-balanced; images of mixed sizes (and one greyscale) resized to img_size
    dm.setup()
    assert len(dm.val_set) == 7 and len(dm.train_set) == 67 and len(dm.test_set) == 37
    assert len(set(labels[dm.val_indices].tolist())) == 7
    sizes = {Image.open(p).size for p, _ in src.samples("train")}
    assert len(sizes) > 20
    for ds in (dm.fewshot_pool(), dm.test_set):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and x.abs().max() <= 1 and 0 <= y < 37
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (8, 3, 24, 24) and yb.dtype == torch.int64
    assert re.fullmatch(rf"pets torchvision Oxford-IIIT Pet layout at {re.escape(str(base))} \(train 74, test 37, "
                        r"fingerprint [0-9a-f]{12}\); split train 67 / dev 7 \(val_fraction 0.1, seed 0\)", dm.describe())
    # the base folder itself is accepted too; labels, counts and fingerprint need no image decoding
    clear_cache()

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was opened")

    monkeypatch.setattr(Image, "open", no_decoding)
    monkeypatch.setattr("vitrepro.data.sources.decode_images", no_decoding)
    same = ImageClassificationDataModule(dataset="pets", root=str(base))
    assert same.source.root == base and same.fewshot_pool_labels().tolist() == labels.tolist()
    assert same.source.fingerprint == src.fingerprint and "train 74, test 37" in same.describe()
    assert np.array_equal(same.split_indices()[1], dm.val_indices)


def test_read_pets_annotations_returns_the_files(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "trainval.txt").write_text(
        "# Image CLASS-ID SPECIES BREED ID\n\nsaint_bernard_7 30 2 22\nBengal_12 6 1 2\nsaint_bernard_3 30 2 22\n")
    (base / "annotations" / "test.txt").write_text("Bengal_1 6\nbad_line\n")
    paths, labels, names = read_pets_annotations(base, "trainval")
    assert paths == [str(base / "images" / f"{n}.jpg") for n in ("saint_bernard_7", "Bengal_12", "saint_bernard_3")]
    assert labels.dtype == np.int64 and labels.tolist() == [29, 5, 29]
    assert names == {29: "Saint Bernard", 5: "Bengal"}
    with pytest.raises(ValueError, match=r"test.txt:2: expected .*'bad_line'"):
        read_pets_annotations(base, "test")
    with pytest.raises(ValueError, match="split must be 'trainval' or 'test'"):
        read_pets_annotations(base, "train")
    # an annotation file naming only 2 of the 37 classes: not a Pets copy
    (base / "images").mkdir()
    (base / "annotations" / "test.txt").write_text("Bengal_1 6 1 2\n")
    with pytest.raises(ValueError, match=r"'pets' expects 37 classes \(ids 1..37\) but .* name 2 class ids \(6, 30\)"):
        resolve_source("pets", tmp_path)


def test_flowers_torchvision_layout(flowers_fake, monkeypatch):
    import torchvision

    root, ref = flowers_fake
    base = (root / "flowers-102").resolve()
    dm = ImageClassificationDataModule(dataset="flowers", root=str(root), img_size=20, batch_size=16)
    src = dm.source
    assert src.kind == "flowers-102" and src.root == base and not dm.cache_in_memory
    assert dm.num_classes == 102 and dm.classes == list(torchvision.datasets.Flowers102.classes)
    # the paper's training set is train + val: setid.mat's trnid then valid, labels from imagelabels.mat
    labels = dm.fewshot_pool_labels()
    assert labels.tolist() == ref["train"][1].tolist() + ref["val"][1].tolist()
    assert [Path(p).name for p, _ in src.samples("train")] == [
        f"image_{i:05d}.jpg" for i in ref["train"][0].tolist() + ref["val"][0].tolist()]
    assert src.labels("test").tolist() == ref["test"][1].tolist()
    for split in ("train", "val", "test"):
        paths, lab = read_flowers102(base, split)
        assert lab.tolist() == ref[split][1].tolist() and [Path(p).name for p in paths] == [
            f"image_{i:05d}.jpg" for i in ref[split][0]]
        # torchvision's Flowers102 reads the same (its md5 check of the .mat files switched off)
        monkeypatch.setattr(torchvision.datasets.Flowers102, "_check_integrity", lambda self: True)
        tv = torchvision.datasets.Flowers102(str(root), split=split, loader=str)
        assert [tv[i] for i in range(len(tv))] == list(zip(paths, lab.tolist()))
    dm.setup()
    assert len(dm.val_set) == 20 and len(dm.train_set) == 184 and len(dm.test_set) == 102  # 10% of 204
    assert len(set(labels[dm.val_indices].tolist())) == 20
    for i in range(0, 204, 7):
        x, y = dm.fewshot_pool()[i]
        assert x.shape == (3, 20, 20) and x.abs().max() <= 1 and y == labels[i]
    assert dm.test_set[5][0].shape == (3, 20, 20)
    d = dm.describe()
    assert d.startswith(f"flowers torchvision Flowers-102 layout at {base} (train 204 = train+val, test 102, fingerprint ")
    assert d.endswith("split train 184 / dev 20 (val_fraction 0.1, seed 0)")
    # train/val/test sizes with one id in a split (loadmat squeezes it to a scalar)
    from scipy.io import savemat

    small = root / "small"
    small.mkdir()
    savemat(small / "imagelabels.mat", {"labels": np.array([[3, 1, 102]], dtype=np.uint8)})
    savemat(small / "setid.mat", {"trnid": np.array([[2]]), "valid": np.array([[3, 1]]), "tstid": np.array([[1]])})
    assert read_flowers102(small, "train")[1].tolist() == [0]
    assert read_flowers102(small, "val")[1].tolist() == [101, 2]
    assert read_flowers102(small, "val")[0] == [str(small / "jpg" / "image_00003.jpg"), str(small / "jpg" / "image_00001.jpg")]
    savemat(small / "setid.mat", {"trnid": np.array([[4]]), "valid": np.array([[1]]), "tstid": np.array([[1]])})
    with pytest.raises(ValueError, match=r"trnid has image ids outside 1..3"):
        read_flowers102(small, "train")


def test_download_skipped_when_present(pets_fake, flowers_fake, monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.datasets, "OxfordIIITPet", no_network)
    monkeypatch.setattr(torchvision.datasets, "Flowers102", no_network)
    assert ImageClassificationDataModule(dataset="pets", root=str(pets_fake[0]), download=True).num_classes == 37
    assert ImageClassificationDataModule(dataset="flowers", root=str(flowers_fake[0]), download=True).num_classes == 102
    with pytest.raises(ValueError, match=r"download=True is only supported .* pets and flowers .*not 'imagenet21k'"):
        ImageClassificationDataModule(dataset="imagenet21k", root="/tmp", download=True)


def test_pets_flowers_imagenet21k_trees(tmp_path):
    rng = np.random.default_rng(0)
    # a Pets ImageFolder tree with train/, val/ and test/: the paper trains on train + val
    pets = tmp_path / "pets"
    for split in ("train", "val", "test"):
        for c in PET_CLASSES:
            (pets / split / c).mkdir(parents=True)
            _write_image(pets / split / c / "0.jpg", rng)
    dm = ImageClassificationDataModule(dataset="pets", root=str(pets), img_size=16)
    assert dm.source.kind == "imagefolder" and dm.source.train_dirs == ("train", "val") and dm.source.eval_dir == "test"
    assert dm.classes == sorted(PET_CLASSES) and dm.val_fraction == 0.1 and not dm.cache_in_memory
    assert dm.fewshot_pool_labels().tolist() == list(range(37)) * 2
    assert dm.source.count("test") == 37 and "(train 74 = train+val, test 37" in dm.describe()
    dm.setup()
    assert len(dm.val_set) == 7 and dm.train_set[0][0].shape == dm.test_set[36][0].shape == (3, 16, 16)
    # a tree of another class count is not Pets / Flowers
    with pytest.raises(ValueError, match=r"'flowers' expects 102 classes but .*has 37 class folders"):
        ImageClassificationDataModule(dataset="flowers", root=str(pets))
    # ImageNet-21k: val/ preferred, class count not checked, 1% dev, files decoded per item
    write_tree(tmp_path / "in21k", {"n00004475": [(9, 30), (40, 12)] * 5, "n00005787": [(20, 20)] * 10,
                                    "n00006024": [(7, 7)] * 10}, splits=("train", "val", "test"))
    dm = ImageClassificationDataModule(dataset="imagenet21k", root=str(tmp_path / "in21k"), img_size=12)
    assert dm.num_classes == 3 and dm.source.eval_dir == "val" and dm.val_fraction == 0.01 and not dm.cache_in_memory
    dm.setup()
    assert len(dm.train_set) == 30 and dm.val_set is None and len(dm.test_set) == 30  # round(0.3) = 0
    assert {tuple(dm.train_set[i][0].shape) for i in range(30)} == {(3, 12, 12)}


def _one_line_error(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_root_without_the_dataset_raises(tmp_path, flowers_fake):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError) as e:
        ImageClassificationDataModule(dataset="pets", root=str(empty))
    msg = _one_line_error(e)
    assert msg.startswith(f"data root {empty} holds neither layout expected for dataset 'pets': ")
    assert "oxford-iiit-pet/images/<Name>_<n>.jpg with annotations/trainval.txt and annotations/test.txt" in msg
    assert f"ImageFolder tree {empty}/train/<class>/<image>" in msg
    with pytest.raises(ValueError, match=re.escape(str(empty)) + r".*'flowers'.*flowers-102/jpg/image_<id>.jpg with "
                       r"imagelabels.mat and setid.mat.*ImageFolder tree"):
        ImageClassificationDataModule(dataset="flowers", root=str(empty))
    with pytest.raises(ValueError) as e:
        ImageClassificationDataModule(dataset="imagenet21k", root=str(empty))
    assert _one_line_error(e) == (f"data root {empty} does not hold the layout expected for dataset 'imagenet21k': "
                                  f"an ImageFolder tree {empty}/train/<class>/<image> with {empty}/val/<class>/ (or test/)")
    # a Flowers root given as Pets: the message says what is there
    with pytest.raises(ValueError, match=r"holds neither layout expected for dataset 'pets'.*found torchvision's "
                       r"Flowers-102 layout there \(dataset='flowers'\?\)"):
        ImageClassificationDataModule(dataset="pets", root=str(flowers_fake[0]))
    # an incomplete Pets copy: the message names what is missing
    part = tmp_path / "part"
    (part / "oxford-iiit-pet" / "images").mkdir(parents=True)
    (part / "oxford-iiit-pet" / "annotations").mkdir()
    (part / "oxford-iiit-pet" / "annotations" / "trainval.txt").write_text("Bengal_1 6 1 2\n")
    with pytest.raises(ValueError, match=r"oxford-iiit-pet lacks annotations/test.txt$"):
        ImageClassificationDataModule(dataset="pets", root=str(part))
    # images listed by the annotations but missing on disk
    pets = tmp_path / "pets"
    ref = write_pets(pets, n_trainval=1, n_test=1)
    (pets / "oxford-iiit-pet" / "images" / f"{ref['test'][4][0]}.jpg").unlink()
    dm = ImageClassificationDataModule(dataset="pets", root=str(pets))
    assert dm.source.count("train") == 37
    with pytest.raises(FileNotFoundError, match=rf"1 of the 37 test images listed in .* are missing, e.g. .*{ref['test'][4][0]}.jpg"):
        dm.setup()


# ----------------------------------------------------------------------------- the real tree


@needs_real
def test_real_tree_resolves_cheaply():
    t0 = time.perf_counter()
    dm = ImageClassificationDataModule(root=str(REAL_CIFAR))
    assert time.perf_counter() - t0 < 1.0
    assert dm.source.kind == "imagefolder" and dm.classes == CIFAR10_CLASSES and dm.cache_in_memory


@pytest.mark.slow
@needs_real
def test_real_tree_full():
    clear_cache()
    dm = ImageClassificationDataModule(root=str(REAL_CIFAR), batch_size=256, train_size=5000)
    src = dm.source
    assert src.count("train") == 50000 and src.count("test") == 10000
    assert np.bincount(dm.fewshot_pool_labels()).tolist() == [5000] * 10
    d = dm.describe()
    assert d.startswith(f"cifar10 ImageFolder JPEG tree at {REAL_CIFAR.resolve()} (train 50000, test 10000, fingerprint ")
    fp = src.fingerprint
    clear_cache()
    assert resolve_source("cifar10", str(REAL_CIFAR)).fingerprint == fp  # stable
    t0 = time.perf_counter()
    dm.setup()
    decode_s = time.perf_counter() - t0
    print(f"\ndecoded 60,000 CIFAR-10 JPEGs (train + test) in {decode_s:.1f} s")
    assert decode_s < 60
    assert len(dm.train_set) == 5000 and len(dm.val_set) == 1000 and len(dm.test_set) == 10000
    assert np.bincount(dm.fewshot_pool_labels()[dm.train_indices]).tolist() == [500] * 10
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (256, 3, 32, 32) and xb.dtype == torch.float32 and yb.shape == (256,)
    assert xb.min() >= -1 and xb.max() <= 1
    # the bundled sample's images are the real tree's first 40 per class, pixel for pixel
    sample = ImageClassificationDataModule(val_fraction=0.0)
    pool, labels = dm.fewshot_pool(), dm.fewshot_pool_labels()
    for i in (0, 39, 40 * 3 + 5):
        cls = i // 40
        j = cls * 5000 + i % 40
        assert labels[j] == cls == sample.fewshot_pool_labels()[i]
        torch.testing.assert_close(pool[j][0], sample.fewshot_pool()[i][0], rtol=0, atol=0)


def test_an_imagefolder_dev_split_has_a_floor_of_a_few_images_per_class(tmp_path):
    """2% of a small tree of one's own (ants vs bees: 244 images -> 5) cannot tell learning rates apart:
    an imagefolder dev split keeps at least MIN_DEV_PER_CLASS per class, never more than half the split;
    the paper's data sets keep the paper's fractions (CIFAR: 2%)."""
    from vitrepro.data.datamodule import MIN_DEV_PER_CLASS
    from vitrepro.data.shapes import write_shapes_imagefolder

    tree = write_shapes_imagefolder(tmp_path / "shapes", train_per_class=30, test_per_class=2)  # 4 classes
    dm = ImageClassificationDataModule(dataset="imagefolder", root=str(tree))
    assert dm.dev_size(120) == MIN_DEV_PER_CLASS * 4 and dm.dev_size(10_000) == 200 and dm.dev_size(30) == 15
    _, dev = dm.split_indices()
    assert np.bincount(dm.fewshot_pool_labels()[dev]).tolist() == [MIN_DEV_PER_CLASS] * 4
    assert ImageClassificationDataModule(dataset="imagefolder", root=str(tree), val_fraction=0.0).dev_size(120) == 0
    assert ImageClassificationDataModule().dev_size(400) == 8  # the bundled CIFAR-10 sample: 2%
