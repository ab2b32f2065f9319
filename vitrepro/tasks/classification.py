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

from ..models.checkpoint import MODEL_KEY, model_spec
from .optim import SCHEDULES, build_optimizer
from .recipe import Mixer, MixConfig, step_seed

LOSSES = ("softmax_xent", "sigmoid_xent")
#: Pre-training optimizers: the paper's Adam (decoupled weight decay), or SGD with momentum (Table 7).
PRETRAIN_OPTIMIZERS = ("adamw", "sgd")


@dataclass
class OptimConfig:
    """Optimizer and schedule. ``warmup_steps`` counts optimizer steps; ``warmup_fraction`` (of all
    steps) is used instead when ``warmup_steps`` is None, so one setting fits every scale. ``optimizer``:
    ``adamw`` (the paper's pre-training, Sec. 4.1: ``beta1``, ``beta2``) or ``sgd`` with ``momentum``
    (App. D.1, Table 7: ResNets pre-trained with SGD, the BiT recipe)."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    schedule: str = "cosine"
    warmup_steps: int | None = None
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.0
    loss: str = "softmax_xent"
    optimizer: str = "adamw"
    momentum: float = 0.9

    def __post_init__(self):
        if self.optimizer not in PRETRAIN_OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is not one of {', '.join(PRETRAIN_OPTIMIZERS)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum!r} is not allowed: expected a number in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not one of {', '.join(LOSSES)}")
        checks = [("lr", 0 < self.lr < math.inf, "a finite number > 0"),
                  ("weight_decay", 0 <= self.weight_decay < math.inf, "a finite number >= 0"),
                  ("beta1", 0 <= self.beta1 < 1, "a number in [0, 1)"), ("beta2", 0 <= self.beta2 < 1, "a number in [0, 1)"),
                  ("warmup_fraction", 0 <= self.warmup_fraction < 1, "a number in [0, 1)"),
                  ("warmup_steps", self.warmup_steps is None or self.warmup_steps >= 0, "null or an integer >= 0"),
                  ("label_smoothing", 0 <= self.label_smoothing < 1, "a number in [0, 1)")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: expected {allowed}")


def record_model(model: torch.nn.Module, checkpoint: dict) -> None:
    """Put the model's description (registry name and architecture fields) into a Lightning checkpoint,
    so that the checkpoint alone rebuilds it (``vitrepro.models.model_from_checkpoint``)."""
    spec = model_spec(model)
    if spec is not None:
        checkpoint[MODEL_KEY] = spec


def _accuracy(num_classes: int) -> torchmetrics.Accuracy:
    """Top-1 accuracy whose running state is saved in checkpoints (an epoch resumed mid-way reports the
    accuracy of the whole epoch)."""
    metric = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
    metric.persistent(True)
    return metric


class SupervisedTask(L.LightningModule):
    """Shared steps of the supervised tasks: ``model`` (any family with the uniform API) on (images
    (B, C, H, W), labels (B,)) batches; top-1 via torchmetrics. Logs ``train/loss``, ``train/top1``,
    ``val/loss``, ``val/top1``, ``test/loss``, ``test/top1``. Subclasses give ``loss`` and
    ``configure_optimizers``. (The learning rate is logged by Lightning's ``LearningRateMonitor``.)"""

    def __init__(self, model: torch.nn.Module, num_classes: int):
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.train_top1, self.val_top1, self.test_top1 = (_accuracy(num_classes) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        record_model(self.model, checkpoint)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def targets(self, x: torch.Tensor, y: torch.Tensor, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training inputs and targets of a batch: ``(x, y)`` as they are (a subclass may mix them)."""
        return x, y

    def training_step(self, batch, batch_idx):
        x, y = batch
        inputs, target = self.targets(x, y, batch_idx)
        logits = self(inputs)
        loss = self.loss(logits, target)
        self.train_top1(logits, y)  # against the (dominant) label of each image
        # on a GPU the loss goes to the logger every log_every_n_steps only: the progress bar would read it
        # (a host-device sync) every step
        self.log("train/loss", loss, prog_bar=loss.device.type != "cuda")
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True)
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
    """Supervised training from scratch with the paper's pre-training recipe (module docstring).
    ``mixing``: Mixup/CutMix of the training batches (``recipe.MixConfig``; None, the paper: none), each
    optimizer step's draw seeded by ``seed`` and the step."""

    def __init__(self, model: torch.nn.Module, num_classes: int, optim: OptimConfig | None = None,
                 mixing: MixConfig | None = None, seed: int = 0):
        super().__init__(model, num_classes)
        self.optim = optim or OptimConfig()
        self.seed = seed
        self.mixer = Mixer(mixing, num_classes, self.optim.label_smoothing) if mixing is not None else None

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss of logits (B, K) against labels (B,) int64 or soft targets (B, K) (mixed batches)."""
        if y.ndim == 2:
            if self.optim.loss == "sigmoid_xent":
                return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum") / y.shape[0]
            return torch.sum(-y * F.log_softmax(logits, dim=-1), dim=-1).mean()  # timm SoftTargetCrossEntropy
        if self.optim.loss == "sigmoid_xent":
            return F.binary_cross_entropy_with_logits(
                logits, F.one_hot(y, self.num_classes).to(logits.dtype), reduction="sum") / y.shape[0]
        return F.cross_entropy(logits, y, label_smoothing=self.optim.label_smoothing)

    def targets(self, x: torch.Tensor, y: torch.Tensor, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mixer is None:
            return x, y
        micro = batch_idx % self.trainer.accumulate_grad_batches
        return self.mixer(x, y, step_seed(self.seed, self.trainer.global_step, self.global_rank, micro))

    def configure_optimizers(self):
        o = self.optim
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = o.warmup_steps if o.warmup_steps is not None else int(o.warmup_fraction * total)
        return build_optimizer(self.model, o.optimizer, o.lr, o.weight_decay, total, warmup, o.schedule,
                               betas=(o.beta1, o.beta2), momentum=o.momentum,
                               fused=getattr(self, "fused_optimizer", False))
