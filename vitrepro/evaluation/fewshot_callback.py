"""Few-shot linear accuracy during training, as a Lightning callback (Sec. 4.1 "Metrics"; the paper
tracks it during pre-training because fine-tuning is too costly to run often; big_vision runs its
``fewshot_lsr`` evaluator every ``log_steps``)."""
from __future__ import annotations

from typing import Iterable

import lightning as L
import torch

from .fewshot import DEFAULT_L2_REG, DEFAULT_SEEDS, DEFAULT_SHOTS, evaluate_fewshot, extract_features


class FewShotCallback(L.Callback):
    """Every ``every_n_epochs`` training epochs (0: never) and at the end of training, on global rank 0,
    run ``evaluate_fewshot`` on the LightningModule's ``.model`` (any model with the uniform API).

    Data: ``datamodule`` or the Trainer's, which must have ``fewshot_pool()``, ``fewshot_pool_labels()``,
    ``test_set`` (after ``setup``) and ``num_classes`` (``ImageClassificationDataModule`` has them).
    The test features are extracted again at each evaluation (the model changes).

    Logs ``fewshot/{k}shot`` (mean accuracy over seeds, a fraction in [0, 1]) and ``fewshot/{k}shot_std``
    for every k of ``shots`` at ``trainer.global_step`` through every ``trainer.loggers`` entry's
    ``log_metrics`` (not ``pl_module.log``, which the epoch-end and train-end hooks restrict). Keeps the
    last ``evaluate_fewshot`` result in ``.last`` (``{"fewshot_{k}": mean, "fewshot_{k}_std": std}``) and all
    of them in ``.history`` as ``(global_step, result)``. Under DDP the other ranks wait at a barrier.

    The final evaluation runs in ``on_train_end`` (the model is still on its device; ``on_fit_end``
    comes after the strategy's teardown), unless the last epoch's evaluation was at the same step.
    Raises ``ValueError`` (when it runs) if the datamodule lacks the few-shot methods.
    """

    def __init__(self, every_n_epochs: int = 1, shots: Iterable[int] = DEFAULT_SHOTS,
                 seeds: Iterable[int] = DEFAULT_SEEDS, l2_reg: float = DEFAULT_L2_REG, batch_size: int = 256,
                 datamodule: L.LightningDataModule | None = None, at_train_end: bool = True):
        if every_n_epochs < 0:
            raise ValueError(f"every_n_epochs={every_n_epochs} must be >= 0 (0: only at the end of training)")
        self.every_n_epochs = every_n_epochs
        self.shots, self.seeds = tuple(shots), tuple(seeds)
        self.l2_reg, self.batch_size = l2_reg, batch_size
        self.datamodule = datamodule
        self.at_train_end = at_train_end
        self.last: dict[str, float] | None = None
        self.history: list[tuple[int, dict[str, float]]] = []
        self._last_step: int | None = None

    def _data(self, trainer: L.Trainer):
        dm = self.datamodule if self.datamodule is not None else trainer.datamodule
        needed = ("fewshot_pool", "fewshot_pool_labels", "num_classes")
        if dm is None or not all(hasattr(dm, n) for n in needed):
            raise ValueError(f"FewShotCallback needs a datamodule with {', '.join(needed)} and test_set; got "
                             f"{type(dm).__name__}")
        if getattr(dm, "test_set", None) is None:
            dm.setup("test")
        return dm

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float] | None:
        """Run the probe now (rank 0 only; other ranks return None) and log it."""
        if trainer.is_global_zero:
            dm = self._data(trainer)
            model = pl_module.model
            feats, labels = extract_features(model, dm.test_set, batch_size=self.batch_size)
            result = evaluate_fewshot(model, dm.fewshot_pool(), dm.fewshot_pool_labels(), feats, labels,
                                      dm.num_classes, shots=self.shots, seeds=self.seeds, l2_reg=self.l2_reg,
                                      batch_size=self.batch_size)
            metrics = {}
            for k in self.shots:
                metrics[f"fewshot/{k}shot"] = result[f"fewshot_{k}"]
                metrics[f"fewshot/{k}shot_std"] = result[f"fewshot_{k}_std"]
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
            self.last = result
            self.history.append((trainer.global_step, result))
        self._last_step = trainer.global_step
        trainer.strategy.barrier("fewshot")
        return self.last if trainer.is_global_zero else None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_train_end and self._last_step != trainer.global_step:
            self.evaluate(trainer, pl_module)


__all__ = ["FewShotCallback"]
