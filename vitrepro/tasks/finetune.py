"""Fine-tuning a pre-trained model: the paper's transfer protocol as a LightningModule.

Protocol (Sec. 3.2 "Fine-tuning and higher resolution", Sec. 4.1, App. B.1.1, vit_jax ``train.py`` and
``checkpoint.py``):

- the pre-trained prediction head is removed and a zero-initialized D x K layer is attached
  (``reset_classifier``); a pre-logits layer is dropped too unless the caller builds the model with
  ``representation_size`` (vit_jax ``load_pretrained``: "drop-head variant");
- at a higher resolution the patch size stays, so the sequence grows; the pre-trained position
  embeddings are interpolated in 2-D by their place in the image, the class token's kept
  (``set_input_size``: bilinear with corners aligned = vit_jax's ``scipy.ndimage.zoom(order=1)``);
- SGD with momentum 0.9, no weight decay, batch 512, linear warmup (500 steps in the code) then cosine
  decay, stepped every optimizer step; gradient clipping at global norm 1 (a Trainer option:
  ``Trainer(gradient_clip_val=1.0, gradient_clip_algorithm="norm")``, see ``FinetuneConfig.trainer_kwargs``);
- learning rate and steps from the Table 4 sweep (``vitrepro.experiments.sweep``), picked on a held-out dev split.

``load_pretrained`` (in ``vitrepro.models.checkpoint``, re-exported here) reads every checkpoint kind the
suite meets: a Lightning checkpoint written by our
runner (``runs/<id>/checkpoints/last.ckpt``, keys ``model.<our keys>``), a state_dict in our names, a timm
state_dict (``.pth``/``.pt``/``.bin``/``.safetensors``) and Google's ``.npz`` (vit_jax, big_vision,
big_transfer layouts).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.checkpoint import CheckpointMismatchError, describe_state_dict, load_pretrained  # noqa: F401
from .classification import SupervisedTask
from .optim import SCHEDULES, build_optimizer

GRAD_CLIP_NORM = 1.0  # global gradient norm clipped during fine-tuning (App. B.1.1)


@dataclass
class FinetuneConfig:
    """Fine-tuning hyper-parameters (Sec. 4.1, App. B.1.1, Table 4).

    lr: base learning rate of SGD (0.03: vit_jax's default; Table 4 sweeps it). momentum: 0.9.
    steps: total optimizer steps of the schedule; None takes ``trainer.estimated_stepping_batches``
    (set the Trainer's ``max_steps`` to the same value, e.g. with ``trainer_kwargs()``).
    warmup_steps: linear warmup, in optimizer steps (500 in vit_jax). schedule: decay after warmup,
    ``cosine`` (the paper), ``linear`` or ``constant``. weight_decay: 0 (the paper uses none); when set,
    coupled L2 on dense and conv kernels only. img_size: fine-tuning resolution in pixels (None keeps
    the model's; the paper fine-tunes at 384). label_smoothing: of the softmax cross-entropy.

    Raises ``ValueError`` naming the field and its allowed values.
    """

    lr: float = 0.03
    momentum: float = 0.9
    steps: int | None = None
    warmup_steps: int = 500
    schedule: str = "cosine"
    weight_decay: float = 0.0
    img_size: int | None = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        checks = [
            ("lr", self.lr, isinstance(self.lr, (int, float)) and self.lr > 0, "a number > 0"),
            ("momentum", self.momentum, isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1,
             "a number in [0, 1)"),
            ("steps", self.steps, self.steps is None or (_is_int(self.steps) and self.steps >= 1),
             "None or an integer >= 1"),
            ("warmup_steps", self.warmup_steps, _is_int(self.warmup_steps) and self.warmup_steps >= 0,
             "an integer >= 0"),
            ("weight_decay", self.weight_decay, isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0,
             "a number >= 0"),
            ("img_size", self.img_size, self.img_size is None or (_is_int(self.img_size) and self.img_size >= 1),
             "None or an integer >= 1"),
            ("label_smoothing", self.label_smoothing,
             isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1, "a number in [0, 1)"),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name}={value!r} is not allowed: expected {allowed}")

    def trainer_kwargs(self) -> dict[str, Any]:
        """The Trainer options the protocol needs: gradient clipping at global norm 1 and, when ``steps``
        is set, ``max_steps``. E.g. ``L.Trainer(**cfg.trainer_kwargs(), precision="bf16-mixed")``."""
        out: dict[str, Any] = {"gradient_clip_val": GRAD_CLIP_NORM, "gradient_clip_algorithm": "norm"}
        if self.steps is not None:
            out["max_steps"] = self.steps
        return out


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------------------------
# The LightningModule
# ---------------------------------------------------------------------------------------------------------

class FinetuneTask(SupervisedTask):
    """Fine-tune ``model`` (any family with the uniform API, head already K-way, e.g. from
    ``load_pretrained``) on (images (B, C, H, W) in [-1, 1], labels (B,) int64) batches.

    SGD momentum 0.9 without weight decay; the learning rate is ``lr * warmup_decay(step, steps, warmup,
    schedule)`` per optimizer step (``interval="step"``); softmax cross-entropy (optionally smoothed).
    Clip gradients with the Trainer: ``L.Trainer(**config.trainer_kwargs())``. Logs ``train/loss``,
    ``train/top1``, ``val/loss``, ``val/top1``, ``test/loss``, ``test/top1`` (torchmetrics, fractions).

    ``config.img_size``, when it differs from the model's, is applied here with ``set_input_size``.
    Raises ``ValueError`` when the model's head is not ``num_classes``-way.
    """

    def __init__(self, model: nn.Module, num_classes: int, config: FinetuneConfig | None = None):
        config = config or FinetuneConfig()
        if config.img_size is not None and config.img_size != model.cfg.img_size:
            model.set_input_size(config.img_size)
        have = getattr(model, "num_classes", None)
        if have != num_classes:
            raise ValueError(f"the model's head has {have} classes, num_classes={num_classes}: build it with "
                             f"load_pretrained(..., num_classes={num_classes}) or call reset_classifier")
        super().__init__(model, num_classes)
        self.config = config

    @classmethod
    def from_pretrained(cls, model_name_or_module: str | nn.Module, checkpoint: str | Path | None, num_classes: int,
                        config: FinetuneConfig | None = None, **model_overrides: Any) -> "FinetuneTask":
        """``FinetuneTask(load_pretrained(..., img_size=config.img_size, **model_overrides), num_classes,
        config)``; raises as ``load_pretrained``."""
        config = config or FinetuneConfig()
        model = load_pretrained(model_name_or_module, checkpoint, num_classes, config.img_size, **model_overrides)
        return cls(model, num_classes, config)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)

    def total_steps(self) -> int:
        """Optimizer steps of the schedule: ``config.steps``, else the Trainer's estimate."""
        if self.config.steps is not None:
            max_steps = getattr(self._trainer, "max_steps", -1)  # no Trainer attached: nothing to compare
            if max_steps not in (-1, None) and max_steps != self.config.steps:
                warnings.warn(f"FinetuneConfig.steps={self.config.steps} but Trainer max_steps={max_steps}: the "
                              f"schedule decays over {self.config.steps} steps", stacklevel=2)
            return self.config.steps
        est = self.trainer.estimated_stepping_batches
        if not math.isfinite(est):
            raise ValueError("FinetuneConfig.steps=None needs a Trainer with max_steps or max_epochs")
        return max(1, int(est))

    def configure_optimizers(self):
        c = self.config
        return build_optimizer(self.model, "sgd", c.lr, c.weight_decay, self.total_steps(), c.warmup_steps,
                               c.schedule, momentum=c.momentum, fused=getattr(self, "fused_optimizer", False))


__all__ = ["FinetuneConfig", "FinetuneTask", "load_pretrained", "CheckpointMismatchError", "describe_state_dict",
           "GRAD_CLIP_NORM"]
