"""The device-resident input path (vitrepro.data.device) on CPU tensors: the same distributions as the CPU
transforms, deterministic and resumable batches; and the speed options' CPU behaviour."""
import math
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from vitrepro.data import ImageClassificationDataModule
from vitrepro.data.device import DeviceAugment, DeviceLoader, inception_crop_params, resized_crops
from vitrepro.data.sampler import ResumableSampler
from vitrepro.data.transforms import build_transform, normalize
from vitrepro.experiments.speed import SpeedCallback, SpeedConfig, compile_in_place


def ks(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = torch.cat([a, b]).unique()
    ca = torch.searchsorted(a.sort().values, grid, right=True) / len(a)
    cb = torch.searchsorted(b.sort().values, grid, right=True) / len(b)
    return float((ca - cb).abs().max())


def test_pad_crop_hits_every_cpu_outcome_uniformly():
    """Each device output equals one of the 9 x 9 offsets x 2 flips the CPU RandomCrop(padding=4) + flip can
    give, and all 162 come up about equally often (chi-square, 161 dof: 99.9% quantile ~ 222)."""
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    padded = TF.pad(img.float(), [4, 4, 4, 4])
    outcomes = torch.stack([o for i in range(9) for j in range(9)
                            for o in (padded[:, i:i + 32, j:j + 32], padded[:, i:i + 32, j:j + 32].flip(-1))])
    n = 16200
    out = DeviceAugment("pad_crop", 32)(img.expand(n, 3, 32, 32), torch.Generator().manual_seed(1))
    raw = (out * 127.5 + 127.5).round().double().flatten(1)
    proj = torch.rand(raw.shape[1], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sig, ref = raw @ proj, outcomes.double().flatten(1) @ proj  # a random projection names each image
    match = (sig[:, None] - ref[None]).abs() < 1e-6  # (n, 162)
    assert match.sum(1).eq(1).all()
    counts = match.float().argmax(1).bincount(minlength=162).float()
    chi2 = float(((counts - n / 162) ** 2 / (n / 162)).sum())
    assert chi2 < 222, chi2


@pytest.mark.parametrize("hw", [(32, 32), (24, 40)])
def test_inception_crop_boxes_follow_torchvision_get_params(hw):
    h, w = hw
    n = 20000
    ours = inception_crop_params(n, h, w, torch.Generator().manual_seed(0)).float()
    torch.manual_seed(0)
    img = torch.zeros(3, h, w)
    ref = torch.tensor([v2.RandomResizedCrop.get_params(img, scale=[0.05, 1.0], ratio=[3 / 4, 4 / 3])
                        for _ in range(n)], dtype=torch.float)
    for k, name in enumerate(("top", "left", "height", "width")):
        assert ks(ours[:, k], ref[:, k]) < 0.025, name
    assert (ours[:, 0] + ours[:, 2] <= h).all() and (ours[:, 1] + ours[:, 3] <= w).all()


def test_resized_crop_matches_torchvision_on_the_same_box():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    for box in ([4, 6, 20, 18], [0, 0, 32, 32], [10, 3, 9, 12]):
        ours = resized_crops(img.float(), torch.tensor([box, box]), 32)[0]
        ref = TF.resized_crop(img[0].float(), *box, size=[32, 32], antialias=True)
        assert (ours - ref).abs().mean() < 4.0, box  # of 255: bilinear sampling vs torchvision's resize


def test_eval_path_and_flip_match_the_cpu_transforms():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    cpu = torch.stack([build_transform("pad_crop", 32, train=False)(i) for i in img])
    assert torch.equal(DeviceAugment("pad_crop", 32, train=False)(img), cpu)
    n = 4000
    out = DeviceAugment("flip", 32)(img[:1].expand(n, 3, 32, 32), torch.Generator().manual_seed(0))
    flipped = (out == normalize(img[0].flip(-1))).flatten(1).all(1).float().mean()
    assert abs(flipped - 0.5) < 4 * math.sqrt(0.25 / n)


def tiny_set():
    dm = ImageClassificationDataModule(batch_size=32, loader="device")
    dm.setup()
    return dm


def test_device_loader_is_seeded_and_resumes_mid_epoch():
    dm = tiny_set()
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_set) // 32 and batches[0][0].shape == (32, 3, 32, 32)
    again = list(ImageClassificationDataModule(batch_size=32, loader="device").train_dataloader())
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    sampler = ResumableSampler(len(dm.train_set), dm.seed)
    labels = torch.as_tensor(dm.train_set.labels)[torch.as_tensor(dm.train_set.indices)]
    order = torch.as_tensor(sampler.order(0)[0][:32])
    assert torch.equal(batches[0][1], labels[order])  # the CPU loader's order
    resumed = ImageClassificationDataModule(batch_size=32, loader="device")
    resumed.resume_at(0, 3)
    rest = list(resumed.train_dataloader())
    assert len(rest) == len(batches) - 3 and torch.equal(rest[0][0], batches[3][0])


def test_device_loader_refuses_files_not_in_memory():
    dm = ImageClassificationDataModule(batch_size=8, cache_in_memory=False)
    dm.setup()
    with pytest.raises(ValueError, match="cache_in_memory"):
        DeviceLoader(dm.train_set, 8, DeviceAugment("none", 32), "cpu")
    with pytest.raises(ValueError, match="allowed values: cpu, device"):
        ImageClassificationDataModule(loader="gpu")


def test_speed_options_are_off_on_cpu_and_compile_falls_back(monkeypatch):
    assert SpeedConfig().resolved(torch.device("cpu")) == {"compile": False, "fused_optimizer": False,
                                                            "channels_last": False}
    assert all(SpeedConfig().resolved(torch.device("cuda")).values())
    with pytest.raises(ValueError, match="sdpa='fast' is not one of auto, flash"):
        SpeedConfig(sdpa="fast")
    import torch._dynamo as dynamo
    monkeypatch.setattr(dynamo, "is_dynamo_supported", lambda: False)
    with pytest.warns(UserWarning, match="training uncompiled"):
        assert compile_in_place(torch.nn.Linear(2, 2)) is False


@pytest.mark.slow  # a training run end to end
def test_a_run_on_the_device_path_with_speed_options(tmp_path, monkeypatch):
    """A smoke cell end to end with data.loader=device: its own run id (the input path draws other
    crops), the speed section out of the id, and on CPU nothing compiled or fused."""
    from vitrepro.cli import main

    applied = []
    monkeypatch.setattr(SpeedCallback, "teardown", lambda self, *a, **k: applied.append(dict(self.applied)), raising=False)
    argv = ["run", "experiments/pos_emb_ablation.yaml", "--cell", "0", "--results-dir", str(tmp_path)]
    assert main(argv + ["--data.loader=device", "--speed.compile_mode=max-autotune"]) == 0
    assert main(argv + ["--dry-run"]) == 0 and main(argv + ["--speed.sdpa=math", "--dry-run"]) == 0
    runs = __import__("pandas").read_csv(tmp_path / "pos_emb_ablation" / "runs.csv")
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"
    assert applied and applied[0] == {"compile": False, "fused_optimizer": False, "channels_last": False}
