"""The runner's transfer stages: fine-tuning with the Table 4 sweep, and loading a run's starting weights.

``finetune_stage`` is the paper's protocol (Sec. 3.2, App. B.1.1): for each learning rate of the grid,
fine-tune on the training split minus a dev hold-out (``val_fraction``: 2% CIFAR, 10% Pets/Flowers, 1%
ImageNet) and score dev top-1; fine-tune again with the best on the whole training split; report test
top-1. The sweep is an Optuna study (``sweep_in_lockstep``) in ``finetune_sweep.db`` of the run directory
(or ``finetune.storage``), so an interrupted sweep resumes without repeating a finished learning rate.
Under DDP every rank runs the same fits in the same order; scores are synchronized torchmetrics values.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from ..data import ImageClassificationDataModule
from ..models import create_model
from ..models.checkpoint import resolve_weights
from ..rundir import RunDir
from ..tasks import FinetuneConfig, FinetuneTask, load_pretrained
from .speed import speed_callback
from .sweep import sweep_in_lockstep
from .config_sections import FINETUNE_TRAINER_CARRY
from .trainer import interactive


def init_checkpoint(cfg: dict[str, Any]) -> Path | None:
    """The checkpoint file of ``init.checkpoint`` (``resolve_weights``: a file, or a run folder's
    checkpoint); None for a random initialization. Raises ``FileNotFoundError`` naming the path and what
    was expected, ``ValueError`` for an unreadable file or one that names no model."""
    ckpt = (cfg.get("init") or {}).get("checkpoint")
    return None if ckpt is None else resolve_weights(ckpt, cfg["model"]).checkpoint


def pretrained_model(cfg: dict[str, Any], num_classes: int, img_size: int) -> nn.Module:
    """``model`` of ``cfg`` with the weights of ``init.checkpoint`` (random when None), a zero
    ``num_classes``-way head, at ``img_size`` (position embeddings resampled in 2-D). The model section
    describes the checkpoint's architecture (its ``img_size`` when not the registry's). Raises what
    ``load_pretrained`` raises for a checkpoint of the wrong family or size."""
    fields = dict(cfg["model"])
    return load_pretrained(fields.pop("name"), init_checkpoint(cfg), num_classes, img_size, **fields)


def model_factory(trained: nn.Module, cfg: dict[str, Any], num_classes: int) -> Callable[[int, int], nn.Module]:
    """``make(k, img_size)``: a fresh copy of the pre-trained network ``trained`` (CPU weights captured
    now; ``num_classes``: its own head's classes, 0 for none) with a zero ``k``-way head at ``img_size``."""
    state = {k: v.detach().cpu().clone() for k, v in trained.state_dict().items()}
    fields = dict(cfg["model"])
    name = fields.pop("name")

    def make(k: int, img_size: int) -> nn.Module:
        net = create_model(name, num_classes=num_classes, img_size=cfg["data"]["img_size"], **fields)
        net.load_state_dict(state)
        return load_pretrained(net, None, k, img_size)

    return make


def _keep_finetuned(trainer: L.Trainer, path: Path, is_writer: bool) -> None:
    """Save the fine-tuned network (weights and ``model_spec``, no optimizer state) as ``path``, atomically
    (a temporary file renamed into place): ``vitrepro fewshot`` and ``analyze`` take it, as any checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=True)  # every rank calls it; global rank 0 writes
    if is_writer:
        os.replace(tmp, path)


def finetune_trainer_kwargs(cfg: dict[str, Any], ft: dict[str, Any], config: FinetuneConfig) -> dict[str, Any]:
    """The run's device settings, then ``finetune.trainer``, then the protocol's clipping and ``max_steps``."""
    kw = {k: v for k, v in cfg["trainer"].items() if k in FINETUNE_TRAINER_CARRY}
    kw.update(ft["trainer"])
    kw.update(config.trainer_kwargs())
    kw.setdefault("enable_progress_bar", interactive())
    return kw


def finetune_stage(make: Callable[[int, int], nn.Module], cfg: dict[str, Any], config: FinetuneConfig, run_dir: Path,
                   study_name: str, is_writer: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune as App. B.1.1 and return the row's ``ft_*`` entries: ``ft_dataset``, ``ft_img_size``,
    ``ft_steps``, ``ft_lr`` (picked), ``ft_dev_top1`` (its dev score, when swept), ``ft_sweep`` (lr: dev
    top-1 for each), ``ft_dev_images`` (how many dev images picked it), ``ft_train_images``, ``ft_top1``
    (test top-1 of the final fine-tune, a fraction) and
    ``ft_wall_s``.

    ``make(num_classes, img_size)`` builds the starting network; ``config``: the run's typed ``finetune``
    section (``RunSpec.sections``); ``cfg``: the resolved run config (data, trainer, seed). Logs go to
    ``run_dir/finetune/``.
    Raises ``ValueError`` when the target data set has no dev split to sweep on (``val_fraction`` 0).
    """
    ft = cfg["finetune"]
    data = {**cfg["data"], **ft["data"]}
    t0 = time.time()
    base = dataclasses.replace(config, img_size=data["img_size"])  # the validated section, at the target's resolution

    def fit(lr: float, dm: ImageClassificationDataModule, name: str) -> tuple[FinetuneTask, L.Trainer]:
        L.seed_everything(cfg["seed"], workers=True, verbose=False)
        config = dataclasses.replace(base, lr=lr)
        task = FinetuneTask(make(dm.num_classes, data["img_size"]), dm.num_classes, config)
        trainer = L.Trainer(default_root_dir=run_dir, logger=CSVLogger(run_dir / "finetune", name=name, version=""),
                            callbacks=[speed_callback(cfg)],
                            enable_checkpointing=False, **finetune_trainer_kwargs(cfg, ft, config))
        trainer.fit(task, datamodule=dm)
        return task, trainer

    sweep: dict[float, float] = {}
    lr = base.lr
    if ft["lrs"]:
        dev_dm = ImageClassificationDataModule(**data)
        if dev_dm.val_fraction == 0:
            raise ValueError("finetune.lrs needs a dev split to pick the learning rate: finetune.data.val_fraction "
                             "is 0 (allowed: a fraction in (0, 1), e.g. 0.02 for CIFAR)")

        def objective(lr: float) -> float:
            log(f"  fine-tune lr={lr:g}, scored on the dev split")
            task, trainer = fit(lr, dev_dm, f"sweep_lr{lr:g}")
            return float(trainer.validate(task, datamodule=dev_dm, verbose=False)[0]["val/top1"])

        storage = ft["storage"] or f"sqlite:///{(run_dir / 'finetune_sweep.db').resolve()}"
        lr, sweep = sweep_in_lockstep(objective, ft["lrs"], storage, study_name, is_writer)
        log(f"  dev top-1 per lr: {', '.join(f'{k:g}: {v:.4f}' for k, v in sweep.items())}; picked lr={lr:g}")
    final_dm = ImageClassificationDataModule(**{**data, "val_fraction": 0.0})
    task, trainer = fit(lr, final_dm, f"final_lr{lr:g}")
    test = trainer.test(task, datamodule=final_dm, verbose=False)[0]["test/top1"]
    _keep_finetuned(trainer, RunDir(run_dir).finetuned, is_writer)
    return {
        "ft_dataset": data["dataset"], "ft_img_size": data["img_size"], "ft_steps": trainer.global_step,
        "ft_lr": lr, "ft_dev_top1": round(sweep[lr], 5) if sweep else None,
        "ft_sweep": "; ".join(f"{k:g}: {v:.4f}" for k, v in sweep.items()) or None,
        "ft_dev_images": len(dev_dm.val_set) if sweep else None,  # the images that chose ft_lr
        "ft_train_images": len(final_dm.train_set), "ft_top1": round(float(test), 5),
        "ft_wall_s": round(time.time() - t0, 1),
    }


__all__ = ["finetune_stage", "model_factory", "pretrained_model", "init_checkpoint", "finetune_trainer_kwargs"]
