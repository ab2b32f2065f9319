"""The from-scratch recipe beyond the paper's (issue 18): RandAugment (CPU and device paths), Mixup/CutMix,
stochastic depth and a weight EMA; off by default, seeded, refused in one line when out of range."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vitrepro.cli import main
from vitrepro.data.device import DeviceAugment, randaugment_groups
from vitrepro.data.transforms import RANDAUGMENT_OPS, build_transform, randaugment
from vitrepro.models import create_model
from vitrepro.tasks.recipe import Mixer, MixConfig

ROOT = Path(__file__).resolve().parents[1]
POS_EMB = ROOT / "experiments" / "pos_emb_ablation.yaml"


@pytest.mark.parametrize("override, allowed", [
    ("--mixing.mixup_alpha=-0.2", "mixup_alpha=-0.2 is not allowed: expected a finite number >= 0"),
    ("--mixing.prob=1.5", "prob=1.5 is not allowed: expected a number in [0, 1]"),
    ("--data.randaugment_ops=[Rotate,Warp]", "'Warp' is not allowed: expected a non-empty list of Identity"),
    ("--data.randaugment=2 --data.randaugment_magnitude=31", "expected an integer in 0..30"),
    ("--data.randaugment=-1", "expected the operations per image, an integer >= 0"),
    ("--model.drop_path_rate=1.0", "drop_path_rate=1.0 is not in [0, 1)"),
    ("--ema.decay=1", "decay=1.0 is not allowed: expected a number in (0, 1)"),
])
def test_bad_recipe_values_are_refused_in_one_line_before_anything_is_written(override, allowed, tmp_path, capsys):
    argv = ["run", str(POS_EMB), "--cell", "0", "--results-dir", str(tmp_path / "r"), *override.split()]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pos_emb_ablation.yaml" in err and allowed in err, err
    assert not (tmp_path / "r").exists()


def test_the_recipe_is_off_by_default_and_leaves_every_run_id_alone(capsys):
    """The new data keys at their defaults (RandAugment off) are not part of a run's identity."""
    assert main(["run", str(POS_EMB), "--cell", "0", "--dry-run"]) == 0
    plain = capsys.readouterr().out
    assert main(["run", str(POS_EMB), "--cell", "0", "--dry-run", "--data.randaugment=0",
                 "--data.randaugment_magnitude=5"]) == 0
    same = capsys.readouterr().out
    assert main(["run", str(POS_EMB), "--cell", "0", "--dry-run", "--data.randaugment=2"]) == 0
    other = capsys.readouterr().out
    run_id = lambda out: out.splitlines()[0]  # noqa: E731  "run_id: <run id>"
    assert run_id(plain) == run_id(same) != run_id(other)


def test_randaugment_is_seeded_per_item_and_draws_only_the_ops_given():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    t = build_transform("pad_crop", 32, train=True, augment=randaugment(2, 15))
    torch.manual_seed(0)
    a = t(img)
    torch.manual_seed(0)
    assert torch.equal(t(img), a) and a.shape == (3, 32, 32) and a.dtype == torch.float32
    only = randaugment(3, 20, ["Identity"])
    assert list(only._AUGMENTATION_SPACE) == ["Identity"] and torch.equal(only(img), img)
    assert randaugment(0, 9) is None and len(RANDAUGMENT_OPS) == 14
    eval_t = build_transform("pad_crop", 32, train=False, augment=randaugment(2, 15))
    assert not any(type(op).__name__ == "RandAugment" for op in eval_t.transforms)


def test_device_randaugment_runs_per_group_seeded_by_the_batch_generator():
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    ra = randaugment(2, 20)
    state = torch.get_rng_state()
    a = randaugment_groups(x, ra, torch.Generator().manual_seed(1), group=8)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    assert torch.equal(randaugment_groups(x, ra, torch.Generator().manual_seed(1), group=8), a)
    assert not torch.equal(randaugment_groups(x, ra, torch.Generator().manual_seed(2), group=8), a)
    changed = [(a[i:i + 8] != x[i:i + 8]).any().item() for i in range(0, 32, 8)]
    assert a.dtype == torch.uint8 and any(changed)
    out = DeviceAugment("pad_crop", 32, True, ra)(x, torch.Generator().manual_seed(0))
    assert out.shape == (32, 3, 32, 32) and out.dtype == torch.float32 and out.abs().max() <= 1


def test_mixing_is_seeded_soft_and_keeps_the_global_numpy_state():
    x, y = torch.randn(7, 3, 8, 8), torch.arange(7) % 3
    mixer = Mixer(MixConfig(mixup_alpha=0.8, cutmix_alpha=1.0), num_classes=3, label_smoothing=0.1)
    np.random.seed(5)
    state = np.random.get_state()[1].copy()
    xa, ta = mixer(x, y, seed=11)
    assert np.array_equal(np.random.get_state()[1], state)
    xb, tb = mixer(x, y, seed=11)
    assert torch.equal(xa, xb) and torch.equal(ta, tb) and not torch.equal(mixer(x, y, seed=12)[0], xa)
    assert ta.shape == (7, 3) and torch.allclose(ta.sum(1), torch.ones(7))
    assert torch.equal(xa[6], x[6]) and ta[6].argmax() == y[6]  # an odd batch keeps its last image unmixed
    assert not torch.equal(xa[:6], x[:6])


def test_stochastic_depth_rises_linearly_and_is_off_in_eval():
    m = create_model("ViT-C/4", num_classes=10, img_size=32, depth=3, drop_path_rate=0.2)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in m.transformer.encoderblock]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    ref = create_model("ViT-C/4", num_classes=10, img_size=32, depth=3)
    ref.load_state_dict(m.state_dict())
    ref.eval()
    assert torch.equal(m(x), ref.eval()(x))


@pytest.mark.slow  # one short training run with every part of the recipe on
def test_a_run_with_the_whole_recipe_records_it_and_ends_on_the_ema_weights(tmp_path):
    args = ["run", str(POS_EMB), "--cell", "1", "--results-dir", str(tmp_path), "--trainer.max_steps=6",
            "--data.randaugment=2", "--mixing.mixup_alpha=0.8", "--ema.decay=0.5", "--model.drop_path_rate=0.1"]
    assert main(args) == 0
    run_dir = next((tmp_path / "pos_emb_ablation" / "runs").iterdir())
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "finished" and "mixing.mixup_alpha=0.8" in record["variant"]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert "current_model_state" in ckpt and "averaging_state" in ckpt  # Lightning's EMAWeightAveraging
    assert int(ckpt["averaging_state"]["n_averaged"]) == 6
    assert 0 <= record["metrics"]["top1_online"] <= 1  # the online weights' top-1 beside the EMA's
