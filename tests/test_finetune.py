"""Fine-tuning (Sec. 3.2, App. B.1.1): loading every checkpoint kind, the zero D x K head, position
embeddings at a higher resolution, the SGD recipe, a short fine-tune, and the few-shot callback."""
import math

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from vitrepro.data import ImageClassificationDataModule
from vitrepro.evaluation.fewshot_callback import FewShotCallback
from vitrepro.models import create_model, resample_posemb_grid
from vitrepro.models.checkpoint import save_npz
from vitrepro.models.convert import vitrepro_to_timm
from vitrepro.tasks import (CheckpointMismatchError, ClassificationTask, FinetuneConfig, FinetuneTask, OptimConfig,
                            load_pretrained)

TRAINER = dict(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)


def pretrained():
    """A small "pre-trained" ViT-C/4: random weights everywhere, a non-zero 10-way head."""
    torch.manual_seed(0)
    model = create_model("ViT-C/4", depth=1, head_zero_init=False, head_bias_init=-10.0)
    with torch.no_grad():
        model.transformer.posembed_input.pos_embedding.normal_()
        model.cls.normal_()
    return model.eval()


def features(model, size=32):
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval().forward_head(model.forward_features(x), pre_logits=True)


def write(model, tmp_path, kind):
    """The model's weights as a checkpoint file of ``kind``."""
    sd = model.state_dict()
    if kind == "ours.pt":
        torch.save(sd, tmp_path / "w.pt")
        return tmp_path / "w.pt"
    if kind == "timm.pth":
        torch.save(vitrepro_to_timm(sd), tmp_path / "w.pth")
        return tmp_path / "w.pth"
    if kind == "timm.safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in vitrepro_to_timm(sd).items()}, tmp_path / "w.safetensors")
        return tmp_path / "w.safetensors"
    save_npz(model, tmp_path / "w.npz")
    return tmp_path / "w.npz"


@pytest.mark.parametrize("kind", ["ours.pt", "timm.pth", "timm.safetensors", "vit_jax.npz"])
def test_every_checkpoint_kind_loads_with_a_zero_d_by_k_head(tmp_path, kind):
    src = pretrained()
    model = load_pretrained("ViT-C/4", write(src, tmp_path, kind), num_classes=7, img_size=None, depth=1)
    head = model.get_classifier()
    assert tuple(head.weight.shape) == (7, 128) and model.num_classes == 7
    assert not head.weight.any() and not head.bias.any()
    torch.testing.assert_close(features(model), features(src), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["ours.pt", "vit_jax.npz"])
def test_pre_logits_dropped_unless_the_model_keeps_one(tmp_path, kind):
    """vit_jax load_pretrained: a checkpoint's pre-logits layer is dropped when the fine-tuned model has none."""
    torch.manual_seed(0)
    src = create_model("ViT-C/4", depth=1, representation_size=64).eval()
    path = write(src, tmp_path, kind)
    plain = load_pretrained("ViT-C/4", path, 5, None, depth=1)
    assert isinstance(plain.pre_logits, torch.nn.Identity) and plain.get_classifier().weight.shape == (5, 128)
    kept = load_pretrained("ViT-C/4", path, 5, None, depth=1, representation_size=64)
    assert kept.get_classifier().weight.shape == (5, 64)
    torch.testing.assert_close(features(kept), features(src))


def test_position_embeddings_resampled_at_higher_resolution_class_token_kept(tmp_path):
    src = pretrained()
    model = load_pretrained("ViT-C/4", write(src, tmp_path, "ours.pt"), 10, img_size=48, depth=1)
    old = src.transformer.posembed_input.pos_embedding.detach()
    new = model.transformer.posembed_input.pos_embedding.detach()
    assert new.shape == (1, 1 + 12 * 12, 128) and model.cfg.img_size == 48
    torch.testing.assert_close(new[:, :1], old[:, :1], rtol=0, atol=0)  # the class token's, kept
    torch.testing.assert_close(new, resample_posemb_grid(old, (12, 12), 1))  # 8x8 -> 12x12 in 2-D
    # the corners of an align_corners grid are the old corners
    torch.testing.assert_close(new[0, 1], old[0, 1])
    torch.testing.assert_close(new[0, -1], old[0, -1])
    assert features(model, 48).shape == (3, 128)


def test_learned_2d_tables_resampled_on_a_module():
    model = create_model("ViT-C/4", depth=1, posemb="learned_2d")
    x_old = model.transformer.posembed_input.pos_embedding_x.detach().clone()
    out = load_pretrained(model, None, 3, img_size=64)
    assert out is model and model.cfg.img_size == 64
    assert model.transformer.posembed_input.pos_embedding_x.shape == (16, 64)
    torch.testing.assert_close(model.transformer.posembed_input.pos_embedding_x[0], x_old[0])


@pytest.fixture(scope="module")
def runner_checkpoint(tmp_path_factory):
    """A runner-style Lightning checkpoint: ClassificationTask, 2 steps, ModelCheckpoint(save_last)."""
    root = tmp_path_factory.mktemp("run")
    L.seed_everything(0, verbose=False)
    dm = ImageClassificationDataModule(root=None, batch_size=16)
    task = ClassificationTask(create_model("ViT-C/4", depth=1), dm.num_classes, OptimConfig(warmup_steps=1))
    trainer = L.Trainer(max_steps=2, logger=False, limit_val_batches=0, default_root_dir=root,
                        callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, save_top_k=0)],
                        **TRAINER)
    trainer.fit(task, datamodule=dm)
    path = root / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(path)
    return path, task.model


def test_runner_checkpoint_gives_the_features_of_the_model_that_wrote_it(runner_checkpoint):
    path, trained = runner_checkpoint
    model = load_pretrained("ViT-C/4", path, num_classes=4, img_size=None, depth=1)
    torch.testing.assert_close(features(model), features(trained), rtol=0, atol=0)
    assert tuple(model.get_classifier().weight.shape) == (4, 128) and not model.get_classifier().weight.any()


def test_wrong_size_family_and_missing_file_errors_name_what_was_expected(runner_checkpoint, tmp_path):
    path, _ = runner_checkpoint
    with pytest.raises(CheckpointMismatchError) as e:
        load_pretrained("ViT-S/4", path, 10, None, depth=1)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert "ViT-S/4" in msg and "expected ViT (width 384" in msg and "found ViT (width 128" in msg
    assert "embedding.weight: checkpoint (128, 3, 4, 4), model (384, 3, 4, 4)" in msg
    with pytest.raises(ValueError, match=r"depth=2: expected ViT \(width 128, patch 4, depth 2.*found ViT "
                                         r"\(width 128, patch 4, depth 1.*missing: transformer\.encoderblock\.1\."):
        load_pretrained("ViT-C/4", path, 10, None, depth=2)

    bit = create_model("R50x1", layers=(1,), img_size=32, num_classes=10)
    torch.save(bit.state_dict(), tmp_path / "bit.pth")  # timm's resnetv2 names
    with pytest.raises(ValueError, match=r"does not fit ViT-C/4.*expected ViT \(width 128.*found BiT ResNet"):
        load_pretrained("ViT-C/4", tmp_path / "bit.pth", 10, None, depth=1)
    save_npz(pretrained(), tmp_path / "vit.npz")
    with pytest.raises(ValueError, match=r"\.npz checkpoint .* does not fit R50x1.*expected BiT ResNet.*found ViT"):
        load_pretrained("R50x1", tmp_path / "vit.npz", 10, 32, layers=(1,))
    with pytest.raises(ValueError, match=r"vit\.npz does not fit ViT-S/4.*found ViT \(width 128.*"
                                         r"width: checkpoint 128, model 384"):
        load_pretrained("ViT-S/4", tmp_path / "vit.npz", 10, None, depth=1)

    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        load_pretrained("ViT-C/4", tmp_path / "nowhere.ckpt", 10, None)
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"unknown suffix '\.h5'; allowed: \.ckpt, \.pth"):
        load_pretrained("ViT-C/4", tmp_path / "w.h5", 10, None)


def test_config_errors_name_field_and_allowed_values():
    with pytest.raises(ValueError, match="schedule='step' is not one of linear, cosine, constant"):
        FinetuneConfig(schedule="step")
    with pytest.raises(ValueError, match=r"momentum=1\.0 is not allowed: expected a number in \[0, 1\)"):
        FinetuneConfig(momentum=1.0)
    with pytest.raises(ValueError, match="steps=0 is not allowed: expected None or an integer >= 1"):
        FinetuneConfig(steps=0)
    with pytest.raises(ValueError, match="lr=0 is not allowed"):
        FinetuneConfig(lr=0)
    with pytest.raises(ValueError, match="the model's head has 10 classes, num_classes=5"):
        FinetuneTask(create_model("ViT-C/4", depth=1), 5)


def test_sgd_momentum_no_weight_decay_warmup_then_cosine():
    cfg = FinetuneConfig(steps=100, warmup_steps=10)
    assert cfg.trainer_kwargs() == {"gradient_clip_val": 1.0, "gradient_clip_algorithm": "norm", "max_steps": 100}
    task = FinetuneTask(load_pretrained("ViT-C/4", None, 10, None, depth=1), 10, cfg)
    conf = task.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.SGD) and conf["lr_scheduler"]["interval"] == "step"
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 0.0 and not g["nesterov"] for g in opt.param_groups)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(task.model.parameters()))
    lrs = []
    for _ in range(101):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.03 / 10) and lrs[9] == pytest.approx(0.03)  # linear warmup
    assert lrs[55] == pytest.approx(0.03 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))  # cosine
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert FinetuneConfig().lr == 0.03 and FinetuneConfig().warmup_steps == 500


def test_a_few_steps_at_a_higher_resolution_change_the_weights(runner_checkpoint, tmp_path):
    path, _ = runner_checkpoint
    cfg = FinetuneConfig(steps=3, warmup_steps=1, img_size=48)
    task = FinetuneTask.from_pretrained("ViT-C/4", path, 10, cfg, depth=1)
    assert task.model.cfg.img_size == 48
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    dm = ImageClassificationDataModule(root=None, img_size=48, batch_size=16, eval_batch_size=64)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, limit_val_batches=1, limit_test_batches=1,
                        val_check_interval=3,
                        default_root_dir=tmp_path, **cfg.trainer_kwargs(), **TRAINER)
    trainer.fit(task, datamodule=dm)
    after = task.model.state_dict()
    assert trainer.global_step == 3
    assert after["head.weight"].abs().sum() > 0  # the zero head learned
    assert not torch.equal(after["embedding.weight"], before["embedding.weight"])  # and the encoder too
    assert 0.0 <= trainer.callback_metrics["val/top1"].item() <= 1.0
    trainer.test(task, datamodule=dm, verbose=False)
    assert 0.0 <= trainer.callback_metrics["test/top1"].item() <= 1.0


def test_fewshot_callback_logs_accuracies_after_one_epoch(tmp_path):
    L.seed_everything(0, verbose=False)
    dm = ImageClassificationDataModule(root=None, batch_size=64)
    task = ClassificationTask(create_model("ViT-C/4", depth=1), dm.num_classes, OptimConfig(warmup_steps=1))
    cb = FewShotCallback(every_n_epochs=1, shots=(1, 5, 10), seeds=(0, 1))
    trainer = L.Trainer(max_epochs=1, logger=CSVLogger(tmp_path, name="logs", version=""), limit_val_batches=0,
                        enable_checkpointing=False, callbacks=[cb], default_root_dir=tmp_path, **TRAINER)
    trainer.fit(task, datamodule=dm)
    assert set(cb.last) == {f"fewshot_{k}{s}" for k in (1, 5, 10) for s in ("", "_std")}
    assert all(0.0 <= cb.last[f"fewshot_{k}"] <= 1.0 for k in (1, 5, 10))
    assert [step for step, _ in cb.history] == [trainer.global_step]  # not again at train end
    import pandas as pd

    logged = pd.read_csv(tmp_path / "logs" / "metrics.csv")
    for k in (1, 5, 10):
        col = logged[f"fewshot/{k}shot"].dropna()
        assert len(col) == 1 and 0.0 <= col.iloc[0] <= 1.0
        assert col.iloc[0] == pytest.approx(cb.last[f"fewshot_{k}"])
    assert np.isfinite(logged["fewshot/5shot_std"].dropna()).all()
