"""Tests of vitrepro.data on real files: the bundled CIFAR-10 sample, small trees and python batches
written to tmp_path, and (marked slow) the full CIFAR-10 JPEG copy in ../shared/data/cifar10-jpeg."""

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
from PIL import Image

from vitrepro.data import (
    DATASETS,
    PRESETS,
    SAMPLE_ROOT,
    ImageClassificationDataModule,
    balanced_order,
    build_transform,
    clear_cache,
    denormalize,
    normalize,
    read_cifar_python,
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
    assert isinstance(tl.sampler, torch.utils.data.RandomSampler)
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
    with pytest.raises(ValueError, match=r"'mnist'.*cifar10, cifar100, imagefolder, imagenet"):
        ImageClassificationDataModule(dataset="mnist")
    assert DATASETS == ("cifar10", "cifar100", "imagefolder", "imagenet")


@pytest.mark.parametrize("dataset", ["cifar100", "imagefolder", "imagenet"])
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
        ImageClassificationDataModule(root=str(tmp_path))
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
