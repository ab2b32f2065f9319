"""The optimizer and learning-rate schedule of every LightningModule (pre-training, fine-tuning, MPP).

Optimizers (Sec. 4.1, App. B.1): ``adamw`` (the paper's Adam with decoupled weight decay; flax's
``optim.Adam(weight_decay=...)`` scales it by the learning rate as ``torch.optim.AdamW`` does) for
pre-training and MPP, ``sgd`` (momentum 0.9, no weight decay by default) for fine-tuning. Weight decay
applies to dense and conv kernels only (big_vision's ``.*/kernel$``). The schedule is linear warmup then
linear or cosine decay to zero (or constant), stepped every optimizer step (big_vision
``utils.create_learning_rate_schedule``).
"""
from __future__ import annotations

import math

import torch

SCHEDULES = ("linear", "cosine", "constant")
OPTIMIZERS = ("adamw", "sgd")


def warmup_decay(step: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate multiplier in [0, 1] at optimizer step ``step`` of ``total``: linear warmup over
    ``warmup`` steps, then linear or cosine decay to 0, or constant."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


def kernel_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups of the trainable parameters: dense and conv kernels with ``weight_decay``;
    biases, norms, the class token and position embeddings without."""
    kernels = {id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) in kernels], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in kernels], "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float, total_steps: int,
                    warmup_steps: int, schedule: str, betas: tuple[float, float] = (0.9, 0.999),
                    momentum: float = 0.9, fused: bool = False) -> dict:
    """``configure_optimizers``' return value: the optimizer over ``kernel_param_groups(model, weight_decay)``
    and a per-step ``LambdaLR`` of ``warmup_decay``. Raises ``ValueError`` for an unknown optimizer or
    schedule (naming the allowed ones). ``fused``: the fused kernel (``speed.fused_optimizer``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is not one of {', '.join(SCHEDULES)}")
    groups = kernel_param_groups(model, weight_decay)
    if name == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, betas=betas, **({"fused": True} if fused else {}))
    elif name == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, **({"fused": True} if fused else {}))
    else:
        raise ValueError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")
    total = max(1, int(total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_decay(s, total, warmup_steps, schedule))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


__all__ = ["SCHEDULES", "OPTIMIZERS", "warmup_decay", "kernel_param_groups", "build_optimizer"]
