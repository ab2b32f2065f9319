"""Masked patch prediction: the paper's self-supervised pre-training (Sec. 4.6, App. B.1.2).

"We employ the masked patch prediction objective for preliminary self-supervision experiments. To do
so we corrupt 50% of patch embeddings by either replacing their embeddings with a learnable [mask]
embedding (80%), a random other patch embedding (10%) or just keeping them as is (10%). [...] Finally
we predict the 3-bit, mean color (i.e., 512 colors in total) of every corrupted patch using their
respective patch representations." Pre-training: Adam, base learning rate 2e-4, 10k warmup steps,
cosine decay (1M steps at batch 4096 on JFT in the paper). The paper's code for it is not public
(vit_jax has none); the choices left open are stated where they are made:

- quantization: each channel's patch mean, mapped from [-1, 1] to [0, 1], falls in one of 8 equal bins
  ``[i/8, (i+1)/8)`` (1.0 in the last); colour code ``r * 64 + g * 8 + b``;
- exactly ``round(0.5 * N)`` patches of each image are corrupted, chosen uniformly; each chosen patch
  independently gets the mask token (p = 0.8), another patch's embedding (0.1) or stays (0.1), as BERT;
- "random other patch": the (uncorrupted) embedding of a uniformly chosen other position of the same image;
- the mask token is a learnable D-vector (normal(0.02) init), replacing the patch embedding before the
  position embedding is added, so the encoder still knows where the masked patch is;
- the head: one linear D x 512 layer (zero-initialized, as the paper's heads) on each output token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy
from torch import nn

from ..models.hybrid import HybridVisionTransformer
from ..models.vit import VisionTransformer
from .classification import record_model
from .optim import SCHEDULES, build_optimizer

NUM_COLORS = 512  # 3 bits per channel


def mpp_targets(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The 3-bit mean colour of every patch: class indices in [0, 512).

    images: (B, 3, H, W) in [-1, 1] (the pipeline's ``(x - 127.5) / 127.5``); H, W multiples of
    ``patch_size`` (pixels). Returns int64 (B, N), N = HW / P^2, patches in row-major order (the order
    of the patch embedding's tokens). Code: each channel's patch mean mapped to [0, 1] and quantized to
    ``min(7, floor(8 v))``, then ``r * 64 + g * 8 + b``: black 0, white 511, pure red 448.
    Raises ``ValueError`` for another shape or a size that the patches do not tile.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    H, W = images.shape[-2:]
    if H % patch_size or W % patch_size:
        raise ValueError(f"image size {H}x{W} is not a multiple of patch_size={patch_size}")
    mean = F.avg_pool2d(images.float(), patch_size)  # (B, 3, gh, gw)
    level = ((mean + 1.0) / 2.0 * 8.0).floor().clamp(0, 7).long()
    code = level[:, 0] * 64 + level[:, 1] * 8 + level[:, 2]
    return code.flatten(1)


def corrupt_patch_embeddings(tokens: torch.Tensor, mask_token: torch.Tensor, generator: torch.Generator | None = None,
                             mask_ratio: float = 0.5, probs: tuple[float, float, float] = (0.8, 0.1, 0.1),
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt patch embeddings as App. B.1.2 / Sec. 4.6.

    tokens: (B, N, D) patch embeddings (no class token), N >= 2; mask_token: (D,); generator: the RNG
    (None: torch's global one). Per image, ``round(mask_ratio * N)`` (at least 1) positions are chosen
    uniformly; each chosen one is replaced by ``mask_token`` with probability ``probs[0]``, by the
    original embedding of a uniformly drawn other position of the same image with ``probs[1]``, or kept
    with ``probs[2]``.

    Returns ``(corrupted (B, N, D), corrupted_mask (B, N) bool)``: the mask marks every chosen position
    (kept ones included), the ones whose colour is predicted. Gradients flow to ``tokens`` and
    ``mask_token``. Raises ``ValueError`` for N < 2, a ratio outside (0, 1] or probabilities that are
    negative or do not sum to 1.
    """
    B, N, D = tokens.shape
    if N < 2:
        raise ValueError(f"corrupt_patch_embeddings needs at least 2 patches, got N={N}")
    if not 0.0 < mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio={mask_ratio} is not in (0, 1]")
    if len(probs) != 3 or min(probs) < 0 or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
        raise ValueError(f"probs={probs} must be 3 non-negative probabilities (mask, other, keep) summing to 1")
    if mask_token.shape != (D,):
        raise ValueError(f"mask_token must be ({D},), got {tuple(mask_token.shape)}")
    dev = generator.device if generator is not None else tokens.device
    n_corrupt = max(1, int(round(mask_ratio * N)))
    rank = torch.rand(B, N, generator=generator, device=dev).argsort(dim=1).argsort(dim=1)
    chosen = rank < n_corrupt
    u = torch.rand(B, N, generator=generator, device=dev)
    use_mask = chosen & (u < probs[0])
    use_other = chosen & (u >= probs[0]) & (u < probs[0] + probs[1])
    offset = torch.randint(1, N, (B, N), generator=generator, device=dev)  # never 0: another position
    source = (torch.arange(N, device=dev) + offset) % N
    chosen, use_mask, use_other, source = (t.to(tokens.device) for t in (chosen, use_mask, use_other, source))
    other = tokens.gather(1, source.unsqueeze(-1).expand(B, N, D))
    out = torch.where(use_mask.unsqueeze(-1), mask_token.to(tokens.dtype).expand(B, N, D), tokens)
    out = torch.where(use_other.unsqueeze(-1), other, out)
    return out, chosen


def mpp_loss(logits: torch.Tensor, targets: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy over the corrupted patches only: logits (B, N, 512), targets (B, N)
    int64, corrupted (B, N) bool -> scalar. Other patches contribute neither loss nor gradient."""
    return F.cross_entropy(logits[corrupted].float(), targets[corrupted])


@dataclass
class MPPConfig:
    """Masked-patch-prediction pre-training (App. B.1.2): Adam (decoupled weight decay on dense and conv
    kernels when ``weight_decay`` > 0; the paper states none), ``lr`` 2e-4, ``warmup_steps`` 10k then
    ``schedule`` decay over ``steps`` (None: the Trainer's estimate); corruption ``mask_ratio`` 0.5 and
    ``probs`` (mask, other patch, keep) = (0.8, 0.1, 0.1). Raises ``ValueError`` naming a bad field."""

    lr: float = 2e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    schedule: str = "cosine"
    warmup_steps: int = 10_000
    steps: int | None = None
    mask_ratio: float = 0.5
    probs: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} is not allowed: expected a number > 0")
        if self.warmup_steps < 0 or (self.steps is not None and self.steps < 1):
            raise ValueError(f"warmup_steps={self.warmup_steps!r} must be >= 0 and steps={self.steps!r} None or >= 1")
        if not 0.0 < self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio={self.mask_ratio} is not in (0, 1]")
        self.probs = tuple(float(p) for p in self.probs)
        if len(self.probs) != 3 or min(self.probs) < 0 or not math.isclose(sum(self.probs), 1.0, abs_tol=1e-6):
            raise ValueError(f"probs={self.probs} must be 3 non-negative probabilities summing to 1")


class MaskedPatchPredictionTask(L.LightningModule):
    """Self-supervised pre-training of a ViT by masked patch prediction (Sec. 4.6, App. B.1.2).

    ``model``: a ``VisionTransformer`` with any position embedding, placement and pool (not a hybrid:
    its tokens see beyond their patch). Composed from the model's parts, which are not changed:
    ``model.embed`` (patch embeddings, class token prepended when ``pool="token"``), the patch part
    corrupted by ``corrupt_patch_embeddings``, ``model.transformer`` (position embeddings, blocks, final
    LayerNorm), then ``mpp_head`` (Linear D -> 512) on each patch's output token; ``mpp_loss`` over the
    corrupted patches against ``mpp_targets``. The model's own head and pre-logits are unused (build it
    with ``num_classes=0`` to have none, e.g. under DDP). After training, ``task.model`` is a plain ViT
    to fine-tune (``load_pretrained`` reads this task's checkpoints, ignoring ``mask_token``/``mpp_head``)
    or probe (``evaluate_fewshot``).

    Batches: (images (B, 3, H, W) in [-1, 1], labels) with labels ignored. Logs ``train/loss``,
    ``train/acc`` (colour accuracy on corrupted patches), ``val/loss``, ``val/acc`` (validation
    corruption seeded by the batch index, so it is the same every epoch). Raises ``ValueError`` for
    another model type.
    """

    def __init__(self, model: nn.Module, config: MPPConfig | None = None):
        super().__init__()
        if not isinstance(model, VisionTransformer) or isinstance(model, HybridVisionTransformer):
            raise ValueError(f"MaskedPatchPredictionTask needs a VisionTransformer (not a hybrid), got "
                             f"{type(model).__name__}")
        self.model = model
        self.config = config or MPPConfig()
        width = model.cfg.width
        self.mask_token = nn.Parameter(torch.empty(width).normal_(std=0.02))
        self.mpp_head = nn.Linear(width, NUM_COLORS)
        nn.init.zeros_(self.mpp_head.weight)
        nn.init.zeros_(self.mpp_head.bias)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """images (B, 3, H, W) -> (logits (B, N, 512), targets (B, N) int64, corrupted (B, N) bool)."""
        m = self.model
        tokens = m.embed(images)  # (B, L, D), before position embeddings
        p = m.cfg.num_prefix_tokens
        patches, corrupted = corrupt_patch_embeddings(tokens[:, p:], self.mask_token, generator,
                                                      self.config.mask_ratio, self.config.probs)
        out, _ = m.transformer(torch.cat([tokens[:, :p], patches], dim=1))
        logits = self.mpp_head(out[:, p:])
        return logits, mpp_targets(images, m.cfg.patch_size), corrupted

    def _step(self, images: torch.Tensor, stage: str, generator: torch.Generator | None):
        logits, targets, corrupted = self(images, generator)
        loss = mpp_loss(logits, targets, corrupted)
        acc = multiclass_accuracy(logits[corrupted], targets[corrupted], num_classes=NUM_COLORS, average="micro")
        sync = stage != "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=sync)
        self.log(f"{stage}/acc", acc, sync_dist=sync)
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        record_model(self.model, checkpoint)

    def training_step(self, batch, batch_idx):
        return self._step(batch[0], "train", None)

    def validation_step(self, batch, batch_idx):
        gen = torch.Generator(device=batch[0].device).manual_seed(batch_idx)
        self._step(batch[0], "val", gen)

    def configure_optimizers(self):
        c = self.config
        total = c.steps if c.steps is not None else max(1, int(self.trainer.estimated_stepping_batches))
        return build_optimizer(self, "adamw", c.lr, c.weight_decay, total, c.warmup_steps, c.schedule,
                               betas=(c.beta1, c.beta2), fused=getattr(self, "fused_optimizer", False))


__all__ = ["MaskedPatchPredictionTask", "MPPConfig", "mpp_targets", "corrupt_patch_embeddings", "mpp_loss",
           "NUM_COLORS"]
