"""The from-scratch small-data recipe beyond the paper's (DeiT, Touvron et al. 2021; Lee et al. 2021,
arXiv 2112.13492): batch mixing and a weight EMA, from the libraries that have them. The paper used
neither; both are off unless a run config has their section. (RandAugment is the data section's,
``data.randaugment``; stochastic depth the model's, ``model.drop_path_rate``.)

- ``mixing``: Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) with timm's ``Mixup`` (one mixing
  coefficient per batch, ``mode="batch"``: batched on the batch's device) and soft-target cross-entropy;
  each optimizer step's draw is seeded by (run seed, step, rank), so a resumed run mixes as the
  uninterrupted one.
- ``ema``: an exponential moving average of the weights (Lightning's ``EMAWeightAveraging``): validated
  and evaluated with, saved in the checkpoints in place of the online weights (which travel beside them
  and are restored on resume), and the weights the run ends with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class MixConfig:
    """The ``mixing`` section. ``mixup_alpha`` / ``cutmix_alpha``: the Beta(alpha, alpha) of each (0: off;
    DeiT 0.8 / 1.0); ``prob``: the probability a batch is mixed; ``switch_prob``: the probability a mixed
    batch uses CutMix when both are on. The targets are smoothed by ``optim.label_smoothing``.
    Raises ``ValueError`` for a negative or infinite alpha, both alphas 0, or a probability outside [0, 1]."""

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5

    def __post_init__(self):
        for name in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise ValueError(f"{name}={value!r} is not allowed: expected a finite number >= 0 (0: off)")
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("mixup_alpha=0 and cutmix_alpha=0: no mixing; leave the 'mixing' section out instead")
        for name in ("prob", "switch_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: expected a number in [0, 1]")


@dataclass
class EMAConfig:
    """The ``ema`` section: ``decay`` of the average per update (DeiT 0.99996 over 300 ImageNet epochs;
    ~1 - 10/steps suits a short run), updated every ``every_n_steps`` optimizer steps from step
    ``start_step``. Raises ``ValueError`` for a decay outside (0, 1) or a count < 1 / step < 0."""

    decay: float = 0.999
    every_n_steps: int = 1
    start_step: int = 0

    def __post_init__(self):
        if not 0 < self.decay < 1:
            raise ValueError(f"decay={self.decay!r} is not allowed: expected a number in (0, 1)")
        if self.every_n_steps < 1 or self.start_step < 0:
            raise ValueError(f"every_n_steps={self.every_n_steps!r}, start_step={self.start_step!r} are not allowed: "
                             f"expected every_n_steps >= 1 and start_step >= 0")

    def callback(self):
        """Lightning's ``EMAWeightAveraging`` for this section, keeping the online weights it replaces at the
        end of training (``online_state``: the LightningModule's state_dict, for ``top1_online``)."""
        from lightning.pytorch.callbacks import EMAWeightAveraging

        class KeepOnline(EMAWeightAveraging):
            online_state: dict | None = None

            def on_train_end(self, trainer, pl_module):
                self.online_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
                super().on_train_end(trainer, pl_module)

        return KeepOnline(decay=self.decay, update_every_n_steps=self.every_n_steps,
                          update_starting_at_step=self.start_step)


class Mixer:
    """Mixup/CutMix of a batch: ``(x (B, C, H, W), y (B,) int64, seed int) -> (mixed x, soft targets (B,
    num_classes))``, timm's ``Mixup`` with its numpy draws seeded by ``seed`` (the global numpy state is
    restored). An odd batch keeps its last image unmixed with a one-hot target (timm mixes even batches)."""

    def __init__(self, cfg: MixConfig, num_classes: int, label_smoothing: float = 0.0):
        from timm.data import Mixup

        self.mixup = Mixup(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha, prob=cfg.prob,
                           switch_prob=cfg.switch_prob, mode="batch", label_smoothing=label_smoothing,
                           num_classes=num_classes)
        self.num_classes, self.label_smoothing = num_classes, label_smoothing

    def __call__(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        state = np.random.get_state()
        try:
            np.random.seed(seed % 2**32)
            n = x.shape[0] - x.shape[0] % 2
            if n == 0:
                return x, self._smooth(y)
            mixed, soft = self.mixup(x[:n].clone(), y[:n])
        finally:
            np.random.set_state(state)
        if n < x.shape[0]:
            mixed, soft = torch.cat([mixed, x[n:]]), torch.cat([soft, self._smooth(y[n:])])
        return mixed, soft

    def _smooth(self, y: torch.Tensor) -> torch.Tensor:
        off = self.label_smoothing / self.num_classes
        return torch.full((y.shape[0], self.num_classes), off, device=y.device).scatter_(1, y[:, None], 1 - self.label_smoothing + off)


def step_seed(seed: int, step: int, rank: int, micro: int = 0) -> int:
    """The mixing seed of one micro-batch: a function of the run seed, the optimizer step, the process
    rank and the micro-batch index within the step (gradient accumulation)."""
    return ((seed * 1_000_003 + step) * 1_009 + rank) * 101 + micro


__all__ = ["MixConfig", "EMAConfig", "Mixer", "step_seed"]
