"""Supervised image classification from scratch: the paper's pre-training recipe as a LightningModule.

Recipe (Sec. 4.1 "Training & Fine-tuning", App. B.1, Table 3): Adam with beta1 0.9, beta2 0.999,
decoupled weight decay (flax ``optim.Adam(weight_decay=...)`` scales it by the learning rate, as
``torch.optim.AdamW`` does), linear warmup then linear or cosine decay to zero, stepped every
optimizer step; gradient clipping at global norm 1 is a Trainer option (``gradient_clip_val: 1.0``).
Loss: softmax cross-entropy with optional label smoothing, or sigmoid cross-entropy (the paper's
choice for multi-label JFT). Top-1 accuracy via torchmetrics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics

SCHEDULES = ("linear", "cosine", "constant")
LOSSES = ("softmax_xent", "sigmoid_xent")


@dataclass
class OptimConfig:
    """Optimizer and schedule. ``warmup_steps`` counts optimizer steps; ``warmup_fraction`` (of all
    steps) is used instead when ``warmup_steps`` is None, so one setting fits every scale."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    schedule: str = "cosine"
    warmup_steps: int | None = None
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.0
    loss: str = "softmax_xent"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not one of {', '.join(LOSSES)}")


def warmup_decay(step: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate multiplier in [0, 1] at optimizer step ``step`` of ``total``: linear warmup over
    ``warmup`` steps, then linear or cosine decay to 0 (big_vision ``utils.create_learning_rate_schedule``)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


def kernel_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups: dense and conv kernels with ``weight_decay``; biases, norms, the class token
    and position embeddings without (big_vision's default decays ``.*/kernel$`` only)."""
    kernels = {id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) in kernels], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in kernels], "weight_decay": 0.0}]


class SupervisedTask(L.LightningModule):
    """Shared steps of the supervised tasks: ``model`` (any family with the uniform API) on (images
    (B, C, H, W), labels (B,)) batches; top-1 via torchmetrics. Logs ``train/loss``, ``train/top1``,
    ``lr``, ``val/loss``, ``val/top1``, ``test/loss``, ``test/top1``. Subclasses give ``loss`` and
    ``configure_optimizers``."""

    def __init__(self, model: torch.nn.Module, num_classes: int):
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        metric = lambda: torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)  # noqa: E731
        self.train_top1, self.val_top1, self.test_top1 = metric(), metric(), metric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.train_top1(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def _eval_step(self, batch, stage: str, metric: torchmetrics.Metric):
        x, y = batch
        logits = self(x)
        metric(logits, y)
        self.log(f"{stage}/loss", self.loss(logits, y), sync_dist=True)
        self.log(f"{stage}/top1", metric, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val", self.val_top1)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test", self.test_top1)


class ClassificationTask(SupervisedTask):
    """Supervised training from scratch with the paper's pre-training recipe (module docstring)."""

    def __init__(self, model: torch.nn.Module, num_classes: int, optim: OptimConfig | None = None):
        super().__init__(model, num_classes)
        self.optim = optim or OptimConfig()

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.optim.loss == "sigmoid_xent":
            return F.binary_cross_entropy_with_logits(
                logits, F.one_hot(y, self.num_classes).to(logits.dtype), reduction="sum") / y.shape[0]
        return F.cross_entropy(logits, y, label_smoothing=self.optim.label_smoothing)

    def configure_optimizers(self):
        o = self.optim
        opt = torch.optim.AdamW(kernel_param_groups(self.model, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = o.warmup_steps if o.warmup_steps is not None else int(o.warmup_fraction * total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_decay(s, total, warmup, o.schedule))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
