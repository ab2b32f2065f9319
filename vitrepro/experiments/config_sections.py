"""The sections of a run config and the classes that validate them (jsonargparse reads their signatures).

``data``: ``ImageClassificationDataModule``; ``optim``: ``OptimConfig``; ``mpp``: ``MPPConfig``; ``eval``:
``EvalConfig``; ``init``: ``InitConfig``; ``finetune``: ``FinetuneConfig`` fields + ``FinetuneSection``;
``fewshot_callback``: ``FewShotCallback``; ``checkpoint``: ``CheckpointConfig``; ``mixing``: ``MixConfig`` and
``ema``: ``EMAConfig`` (the from-scratch recipe beyond the paper's, ``tasks/recipe.py``); ``speed``: ``SpeedConfig``
(bf16, compile, fused optimizer, channels-last; not part of the run id); ``trainer``:
``lightning.Trainer`` (less the arguments the runner owns). Which sections a run takes is its protocol's
(``protocols.py``).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from typing import Any

from ..data import ImageClassificationDataModule
from ..evaluation.fewshot_callback import FewShotCallback
from ..tasks import FinetuneConfig, MPPConfig, OptimConfig
from ..tasks.recipe import EMAConfig, MixConfig
from .speed import SpeedConfig
from .trainer import CheckpointConfig


#: Where the few-shot probe runs (``EvalConfig.on``).
EVAL_ON = ("upstream", "downstream")


@dataclass
class EvalConfig:
    """Few-shot linear evaluation after training (big_vision ``fewshot_lsr`` defaults).

    ``on``: the data the few-shot probe is fitted and scored on: ``upstream`` (the run's ``data``, the
    pre-training task) or ``downstream`` (``data`` with ``finetune.data`` over it: the transfer task, as the
    paper's few-shot numbers are, Sec. 4.1 "Metrics"; needs a ``finetune`` section)."""

    shots: list[int] = field(default_factory=lambda: [1, 5, 10, 25])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    l2_reg: float = 1024.0
    batch_size: int = 256
    on: str = "upstream"

    def __post_init__(self):
        """Raises ``ValueError`` for no shots or seeds, a shot count < 1, an ``l2_reg`` that is not a finite
        number >= 0, a ``batch_size`` < 1, or an ``on`` not in ``EVAL_ON``."""
        if not self.shots or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.shots):
            raise ValueError(f"shots={self.shots!r} is not allowed: expected a non-empty list of integers >= 1")
        if not self.seeds:
            raise ValueError("seeds=[] is not allowed: expected a non-empty list of integers (e.g. [0, 1, 2])")
        if not (isinstance(self.l2_reg, (int, float)) and 0 <= self.l2_reg < float("inf")):
            raise ValueError(f"l2_reg={self.l2_reg!r} is not allowed: expected a finite number >= 0")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} is not allowed: expected an integer >= 1")
        if self.on not in EVAL_ON:
            raise ValueError(f"on={self.on!r} is not allowed: expected one of {', '.join(EVAL_ON)}")


@dataclass
class InitConfig:
    """Where ``finetune`` and ``fewshot`` runs start. ``checkpoint``: any file ``load_pretrained`` reads
    (our ``.ckpt``, a timm state_dict, a Google ``.npz``) or a run directory of ``vitrepro run``
    (its ``checkpoints/last.ckpt``); relative paths are taken from the working directory. None: a random
    initialization (the smoke scales, which check the pipeline without a checkpoint).

    ``run``: the run of another experiment to start from, when ``checkpoint`` is not set:
    ``<experiment name>/<run id or cell label>``, e.g. ``data_size_scaling/ViT_C_4-49000``: the finished run
    of that label at the same scale in ``--results-dir`` (else in the committed ``results/``, whose run
    directories name the command that trains them). The run is then identified and labelled by that run
    directory, as if ``checkpoint`` had named it."""

    checkpoint: str | None = None
    run: str | None = None


@dataclass
class FinetuneSection:
    """The ``finetune`` section: ``FinetuneConfig`` fields (``lr``, ``steps``, ``warmup_steps``, ...; the
    resolution is the target data's ``img_size``) plus

    lrs: the learning-rate grid of the Table 4 sweep, each fine-tuned on the dev split and scored by dev
        top-1; the best is fine-tuned again on the whole training split and scored on the test split
        (App. B.1.1). None: no sweep, ``lr`` alone.
    data: overrides of the run's ``data`` section for the fine-tuning target (e.g. ``{dataset: pets,
        train_size: null, img_size: 384}``).
    trainer: ``lightning.Trainer`` arguments for fine-tuning; the run's device settings (accelerator,
        devices, strategy, precision, ...) carry over, its epoch and step limits do not.
    storage: Optuna storage URL of the sweep (None: ``sqlite:///<run dir>/finetune_sweep.db``); a
        finished learning rate is never fine-tuned again.
    """

    lrs: list[float] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    storage: str | None = None


#: Trainer arguments of a run that carry over to its fine-tuning stage (devices and numerics, not limits).
FINETUNE_TRAINER_CARRY = ("accelerator", "devices", "strategy", "num_nodes", "precision", "enable_progress_bar",
                          "enable_model_summary", "log_every_n_steps", "num_sanity_val_steps", "deterministic",
                          "benchmark")


#: Trainer arguments the runner sets itself (a run config that names one is refused).
RUNNER_OWNED_TRAINER_KEYS = ("logger", "callbacks", "default_root_dir", "enable_checkpointing", "plugins")

FINETUNE_FIELDS = [n for n in inspect.signature(FinetuneConfig.__init__).parameters if n not in ("self", "img_size")]
FINETUNE_KEYS = FINETUNE_FIELDS + [f.name for f in fields(FinetuneSection)]
CALLBACK_SKIP = {"datamodule"}  # FewShotCallback arguments the runner sets

#: Section name -> the class whose signature validates it (``finetune`` is handled apart: two classes).
SECTION_CLASSES = {"data": ImageClassificationDataModule, "optim": OptimConfig, "eval": EvalConfig,
                   "init": InitConfig, "mpp": MPPConfig, "checkpoint": CheckpointConfig, "speed": SpeedConfig,
                   "mixing": MixConfig, "ema": EMAConfig}


def allowed_keys(cls) -> list[str]:
    """The keyword arguments of ``cls``."""
    return [n for n in inspect.signature(cls.__init__).parameters if n != "self"]


__all__ = ["EVAL_ON", "EvalConfig", "InitConfig", "FinetuneSection", "CheckpointConfig", "FINETUNE_TRAINER_CARRY",
           "FINETUNE_FIELDS", "FINETUNE_KEYS", "RUNNER_OWNED_TRAINER_KEYS", "SECTION_CLASSES", "CALLBACK_SKIP",
           "allowed_keys", "FewShotCallback"]
