"""Masked patch prediction (Sec. 4.6, App. B.1.2): colour targets, the 50% / 80-10-10 corruption, the loss
over corrupted patches only, and a short pre-training whose encoder then loads for fine-tuning."""
import lightning as L
import pytest
import torch

from vitrepro.data import ImageClassificationDataModule
from vitrepro.models import create_model
from vitrepro.tasks import (MaskedPatchPredictionTask, MPPConfig, corrupt_patch_embeddings, load_pretrained,
                            mpp_loss, mpp_targets)


def solid(rgb, p=4):
    """A p x p patch of one colour, channels in [-1, 1]."""
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, p, p)


def test_targets_of_solid_colour_patches():
    red, white, black, grey = solid((1, -1, -1)), solid((1, 1, 1)), solid((-1, -1, -1)), solid((0, 0, 0))
    blue = solid((-1, -1, 1))
    # a 2 x 3 grid of patches, row-major: red, white, black / grey, blue, dark teal
    teal = solid((-1, -0.5, -0.5))  # (0, 0.25, 0.25) -> levels (0, 2, 2)
    img = torch.cat([torch.cat([red, white, black], 2), torch.cat([grey, blue, teal], 2)], 1)[None]
    codes = mpp_targets(img, 4)
    assert codes.dtype == torch.int64 and codes.shape == (1, 6)
    assert codes.tolist() == [[7 * 64, 511, 0, 4 * 64 + 4 * 8 + 4, 7, 2 * 8 + 2]]


def test_targets_match_a_per_patch_loop():
    x = torch.rand(2, 3, 8, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    codes = mpp_targets(x, 4)
    expect = []
    for b in range(2):
        for i in range(2):
            for j in range(3):
                m = (x[b, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4].mean(dim=(1, 2)) + 1) / 2
                r, g, bl = (min(7, int(v * 8)) for v in m.tolist())
                expect.append(r * 64 + g * 8 + bl)
    assert codes.flatten().tolist() == expect and int(codes.max()) < 512
    with pytest.raises(ValueError, match="not a multiple of patch_size=5"):
        mpp_targets(x, 5)


def test_corruption_proportions_and_random_other_patch_of_the_same_image():
    B, N, D = 64, 64, 3
    ids = torch.arange(B * N, dtype=torch.float32).view(B, N, 1) + 1  # a unique id per (image, patch)
    tokens = ids.expand(B, N, D).clone()
    mask_token = torch.full((D,), -1.0)
    out, chosen = corrupt_patch_embeddings(tokens, mask_token, torch.Generator().manual_seed(0))
    assert chosen.dtype == torch.bool and (chosen.sum(1) == N // 2).all()  # exactly 50% of each image
    assert torch.equal(out[~chosen], tokens[~chosen])  # the others untouched
    v = out[..., 0]
    is_mask = chosen & (v == -1)
    is_kept = chosen & (v == ids[..., 0])
    is_other = chosen & ~is_mask & ~is_kept
    n = chosen.sum().item()
    assert is_mask.sum().item() / n == pytest.approx(0.8, abs=0.04)
    assert is_other.sum().item() / n == pytest.approx(0.1, abs=0.03)
    assert is_kept.sum().item() / n == pytest.approx(0.1, abs=0.03)
    src = v[is_other].long() - 1
    b, pos = torch.nonzero(is_other, as_tuple=True)
    assert torch.equal(src // N, b)  # from the same image
    assert (src % N != pos).all()  # and another patch
    assert (out[is_mask] == mask_token).all()
    # seeded: the same generator seed gives the same corruption
    again, chosen2 = corrupt_patch_embeddings(tokens, mask_token, torch.Generator().manual_seed(0))
    assert torch.equal(again, out) and torch.equal(chosen2, chosen)
    with pytest.raises(ValueError, match="probs=.* summing to 1"):
        corrupt_patch_embeddings(tokens, mask_token, probs=(0.8, 0.1, 0.2))


def test_loss_only_over_corrupted_patches():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 8, 512, generator=g, requires_grad=True)
    targets = torch.randint(0, 512, (2, 8), generator=g)
    corrupted = torch.zeros(2, 8, dtype=torch.bool)
    corrupted[0, [1, 5]] = corrupted[1, [0, 2, 7]] = True
    loss = mpp_loss(logits, targets, corrupted)
    manual = torch.stack([torch.nn.functional.cross_entropy(logits[b, i][None], targets[b, i][None])
                          for b, i in corrupted.nonzero().tolist()]).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    loss.backward()
    assert not logits.grad[~corrupted].any() and logits.grad[corrupted].abs().sum() > 0


@pytest.mark.parametrize("overrides", [dict(), dict(pool="gap", posemb="learned_2d"), dict(posemb="relative"),
                                       dict(posemb="learned_1d", posemb_placement="every_layer")])
def test_task_composes_any_vit_and_trains_the_mask_token(overrides):
    task = MaskedPatchPredictionTask(create_model("ViT-C/4", depth=1, num_classes=0, **overrides))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    logits, targets, corrupted = task(images, torch.Generator().manual_seed(0))
    assert logits.shape == (2, 64, 512) and targets.shape == (2, 64) and corrupted.sum() == 64
    with torch.no_grad():
        task.mpp_head.weight.normal_()  # the zero-initialized head would block gradients to the encoder
    logits, targets, corrupted = task(images, torch.Generator().manual_seed(0))
    mpp_loss(logits, targets, corrupted).backward()
    assert task.mask_token.grad.abs().sum() > 0 and task.model.embedding.weight.grad.abs().sum() > 0


def test_bad_model_and_config():
    with pytest.raises(ValueError, match="needs a VisionTransformer"):
        MaskedPatchPredictionTask(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="schedule='step' is not one of"):
        MPPConfig(schedule="step")
    cfg = MPPConfig()
    assert (cfg.lr, cfg.warmup_steps, cfg.schedule, cfg.mask_ratio, cfg.probs) == (2e-4, 10_000, "cosine", 0.5,
                                                                                 (0.8, 0.1, 0.1))


def test_two_step_fit_then_the_encoder_loads_for_fine_tuning(tmp_path):
    L.seed_everything(0, verbose=False)
    dm = ImageClassificationDataModule(root=None, batch_size=16, eval_batch_size=32)
    task = MaskedPatchPredictionTask(create_model("ViT-C/4", depth=1, num_classes=0),
                                     MPPConfig(warmup_steps=1, steps=2))
    before = task.model.embedding.weight.detach().clone()
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1,
                        val_check_interval=2, default_root_dir=tmp_path)
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 2
    assert not torch.equal(task.model.embedding.weight, before)
    assert 0 < trainer.callback_metrics["val/loss"].item() and 0 <= trainer.callback_metrics["val/acc"].item() <= 1
    assert isinstance(trainer.optimizers[0], torch.optim.AdamW) and trainer.optimizers[0].defaults["lr"] == 2e-4
    trainer.save_checkpoint(tmp_path / "mpp.ckpt")
    model = load_pretrained("ViT-C/4", tmp_path / "mpp.ckpt", 10, None, depth=1)  # mask token, head ignored
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.eval().forward_features(x), task.model.eval().forward_features(x))
