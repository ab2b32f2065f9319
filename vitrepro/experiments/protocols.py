"""Protocols: what one run does, looked up by the experiment's ``task`` (as big_vision looks up evaluators
by name and timm models), so the runner never switches on a task.

A ``Protocol`` names the run-config sections it requires and those it accepts (``config_sections.py`` has the
class that validates each; ``model``, ``trainer`` and ``seed`` are common to all) and has a
``run(ctx) -> Outcome`` that trains and/or evaluates and returns the metrics (None on ranks other than
global rank 0). The runner turns an outcome into the run's record.

Registered here:
  pretrain  train from scratch (the paper's recipe, ``optim``; ``mixing`` and ``ema`` add DeiT's), test top-1
            and few-shot linear accuracy (``eval``); with a ``finetune`` section, fine-tune the trained
            network (Table 4 sweep);
  mpp       the same, self-supervised by masked patch prediction (Sec. 4.6; ``mpp`` replaces ``optim``);
  finetune  load ``init.checkpoint``, probe it (few-shot), fine-tune it (``finetune``);
  fewshot   load ``init.checkpoint``; few-shot linear accuracy (``eval``).
Add one with ``@register_protocol(name, required=..., optional=...)`` on a function of a ``RunContext``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torchmetrics.functional as TMF
import yaml
from lightning.pytorch.utilities import rank_zero_only

from ..data import ImageClassificationDataModule
from ..evaluation import FewShotCallback, evaluate_fewshot, extract_features
from ..cost import forward_flops, training_flops
from ..models import create_model
from ..tasks import ClassificationTask, MaskedPatchPredictionTask
from .config_sections import EvalConfig
from .speed import speed_callback
from .finetune_stage import finetune_stage, init_checkpoint, model_factory, pretrained_model
from ..rundir import RunDir
from .trainer import CheckpointConfig, SaveOnInterrupt, build_trainer, find_resume_checkpoint

if TYPE_CHECKING:
    from .spec import RunSpec

COMMON_SECTIONS = ("model", "trainer", "seed")


@dataclass
class RunContext:
    """What a protocol gets: the expanded run, its directory, the command that started it, a logger of
    one-line messages, and run options that do not change the result (``tensorboard``)."""

    run: "RunSpec"
    run_dir: Path
    command: str
    log: Callable[[str], None] = print
    tensorboard: bool = False

    @property
    def cfg(self) -> dict[str, Any]:
        return self.run.config

    @property
    def sections(self) -> dict[str, Any]:
        """The typed sections the validation built (``RunSpec.sections``)."""
        return self.run.sections


@dataclass
class Outcome:
    """A protocol's result on global rank 0: ``metrics`` (flat, numbers or short strings), the data copy
    it used (``describe()``), the processes and numerics it ran with, the wall seconds of earlier
    attempts (resumed runs) and whether it resumed from a checkpoint."""

    metrics: dict[str, Any]
    data: str
    devices: int = 1
    precision: str = "32-true"
    earlier_wall_s: float = 0.0
    resumed: bool = False


@dataclass(frozen=True)
class Protocol:
    name: str
    run: Callable[[RunContext], Outcome | None]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    description: str = ""

    @property
    def sections(self) -> tuple[str, ...]:
        """Every top-level key a run config of this protocol may have."""
        return COMMON_SECTIONS + self.required + self.optional


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(name: str, required: tuple[str, ...], optional: tuple[str, ...] = (), description: str = ""):
    """Decorator: register ``fn(ctx) -> Outcome | None`` as the protocol ``name``."""
    def deco(fn: Callable[[RunContext], Outcome | None]):
        PROTOCOLS[name] = Protocol(name, fn, tuple(required), tuple(optional), description)
        return fn
    return deco


def is_global_zero() -> bool:
    """Global rank 0, also before the first fit has started DDP (Lightning reads the rank from the
    launcher's environment: LOCAL_RANK, RANK, SLURM_PROCID)."""
    return rank_zero_only.rank == 0


def write_run_config(run: "RunSpec", run_dir: Path, command: str) -> None:
    """``run_dir/config.yaml``: the run id, task, command, scale, cell and the resolved config."""
    RunDir(run_dir).config_file.write_text(yaml.safe_dump(
        {"run_id": run.run_id, "task": run.task, "command": command, "scale": run.scale, "cell": run.cell,
         "config": run.config}, sort_keys=False))


def evaluate(model: torch.nn.Module, dm: ImageClassificationDataModule, eval_cfg: EvalConfig, top1: bool = True) -> dict:
    """Few-shot linear accuracies of ``model``'s pre-logits and, with ``top1``, the test top-1 of its own
    head (torchmetrics), in one pass over the test set; fractions rounded to 5 digits."""
    feats, labels, *logits = extract_features(model, dm.test_set, batch_size=eval_cfg.batch_size, with_logits=top1)
    out = {"top1": TMF.accuracy(logits[0], labels, task="multiclass", num_classes=dm.num_classes).item()} if top1 else {}
    out.update(evaluate_fewshot(model, dm.fewshot_pool(), dm.fewshot_pool_labels(), feats, labels, dm.num_classes,
                                shots=eval_cfg.shots, seeds=eval_cfg.seeds, l2_reg=eval_cfg.l2_reg,
                                batch_size=eval_cfg.batch_size))
    return {k: round(v, 5) for k, v in out.items()}


def downstream_data(cfg: dict) -> ImageClassificationDataModule:
    """The fine-tuning (transfer) data of a run, set up: ``data`` with ``finetune.data`` over it."""
    target = ImageClassificationDataModule(**{**cfg["data"], **cfg["finetune"]["data"]})
    target.setup()
    return target


def probe(model: torch.nn.Module, dm: ImageClassificationDataModule, cfg: dict, eval_cfg: EvalConfig,
          top1: bool = True) -> dict:
    """``evaluate`` after training: on the run's own data (``eval.on: upstream``), or the test top-1 of its
    own head there and the few-shot probe on the fine-tuning data (``downstream``: ``data`` with
    ``finetune.data`` over it, the transfer task)."""
    if eval_cfg.on == "upstream":
        return evaluate(model, dm, eval_cfg, top1=top1)
    target = downstream_data(cfg)
    return {**({"top1": evaluate_top1(model, dm, eval_cfg)} if top1 else {}),
            **evaluate(model, target, eval_cfg, top1=False)}


def evaluate_top1(model: torch.nn.Module, dm: ImageClassificationDataModule, eval_cfg: EvalConfig) -> float:
    """Test top-1 of ``model``'s own head (torchmetrics), a fraction rounded to 5 digits."""
    _, labels, logits = extract_features(model, dm.test_set, batch_size=eval_cfg.batch_size, with_logits=True)
    return round(TMF.accuracy(logits, labels, task="multiclass", num_classes=dm.num_classes).item(), 5)


def _train_from_scratch(ctx: RunContext, mpp: bool) -> Outcome | None:
    """pretrain / mpp: fit (resuming from the newest usable checkpoint), save the final weights,
    fine-tune when the config says so, evaluate on rank 0."""
    cfg = ctx.cfg
    dm = ImageClassificationDataModule(**cfg["data"])
    fields = dict(cfg["model"])
    model = create_model(fields.pop("name"), num_classes=0 if mpp else dm.num_classes,
                         img_size=cfg["data"]["img_size"], **fields)
    task = (MaskedPatchPredictionTask(model, ctx.sections["mpp"]) if mpp
            else ClassificationTask(model, dm.num_classes, ctx.sections["optim"], ctx.sections.get("mixing"), cfg["seed"]))
    found = find_resume_checkpoint(ctx.run_dir, ctx.log, set_aside=is_global_zero())
    ckpt, step = found if found else (None, None)
    extra = [SaveOnInterrupt(RunDir(ctx.run_dir).last), speed_callback(cfg)]
    if "fewshot_callback" in cfg:
        extra.append(FewShotCallback(**cfg["fewshot_callback"]))
    ema = ctx.sections["ema"].callback() if "ema" in ctx.sections else None
    if ema is not None:  # the averaged weights are validated, checkpointed and the run's final weights
        extra.append(ema)
    trainer, state = build_trainer(cfg["trainer"], ctx.run_dir, dm, ctx.sections.get("checkpoint") or CheckpointConfig(),
                                   step, extra, tensorboard=ctx.tensorboard)
    if trainer.is_global_zero:
        write_run_config(ctx.run, ctx.run_dir, ctx.command)
        if ckpt is not None:
            ctx.log(f"  resuming from {ckpt.relative_to(ctx.run_dir)} at step {step}")
    t0 = time.time()
    try:
        trainer.fit(task, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
    except BaseException as e:
        state.finish("interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "failed")
        raise
    trainer.save_checkpoint(RunDir(ctx.run_dir).last)  # the final weights, whatever the interval
    state.finish("finished")
    pretrain_wall = time.time() - t0
    ft = {}
    if "finetune" in cfg:  # every rank: the fine-tuning fits are distributed like the pre-training
        ft = finetune_stage(model_factory(model, cfg, model.num_classes), cfg, ctx.sections["finetune"], ctx.run_dir,
                            ctx.run.run_id,
                            is_writer=trainer.is_global_zero,
                            log=ctx.log if trainer.is_global_zero else (lambda m: None))
    if not trainer.is_global_zero:
        return None
    fwd = forward_flops(model, cfg["data"]["img_size"])
    seen = trainer.global_step * cfg["data"]["batch_size"] * trainer.accumulate_grad_batches
    seconds = pretrain_wall + state.earlier_seconds()
    metrics = {"params": sum(p.numel() for p in model.parameters()), "gflops": round(fwd / 1e9, 4),
               "train_images": len(dm.train_set), "epochs": trainer.current_epoch, "steps": trainer.global_step,
               "images_seen": seen, "pretrain_flops": training_flops(fwd, seen),
               "pretrain_petaflops": round(training_flops(fwd, seen) / 1e15, 4),
               "images_per_s": round(seen / seconds, 1) if seconds > 0 else None,
               **probe(task.model, dm, cfg, ctx.sections["eval"], top1=not mpp), **ft}
    if ema is not None and ema.online_state is not None and not mpp:  # what the EMA added: the online weights' top-1
        online = copy.deepcopy(task)
        online.load_state_dict(ema.online_state)
        metrics["top1_online"] = evaluate_top1(online.model, dm, ctx.sections["eval"])
    if ft:
        metrics["pretrain_wall_s"] = round(pretrain_wall + state.earlier_seconds(), 1)
    return Outcome(metrics, dm.describe(), trainer.world_size, str(trainer.precision), state.earlier_seconds(),
                   resumed=ckpt is not None)


@register_protocol("pretrain", required=("data", "optim", "eval"),
                   optional=("checkpoint", "finetune", "fewshot_callback", "speed", "mixing", "ema"),
                   description="train from scratch; test top-1 and few-shot; optionally fine-tune")
def pretrain(ctx: RunContext) -> Outcome | None:
    return _train_from_scratch(ctx, mpp=False)


@register_protocol("mpp", required=("data", "mpp", "eval"),
                   optional=("checkpoint", "finetune", "fewshot_callback", "speed", "ema"),
                   description="masked patch prediction pre-training (Sec. 4.6); few-shot; optionally fine-tune")
def mpp(ctx: RunContext) -> Outcome | None:
    return _train_from_scratch(ctx, mpp=True)


@register_protocol("finetune", required=("data", "eval", "init", "finetune"), optional=("speed",),
                   description="load init.checkpoint; few-shot probe; fine-tune (Table 4 sweep)")
def finetune(ctx: RunContext) -> Outcome | None:
    cfg = ctx.cfg
    make = lambda k, img_size: pretrained_model(cfg, k, img_size)  # noqa: E731
    init_checkpoint(cfg)  # a missing checkpoint fails here, before any training
    if is_global_zero():
        write_run_config(ctx.run, ctx.run_dir, ctx.command)
    ft = finetune_stage(make, cfg, ctx.sections["finetune"], ctx.run_dir, ctx.run.run_id, is_writer=is_global_zero(),
                        log=ctx.log)
    if not is_global_zero():
        return None
    ws = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    target = downstream_data(cfg)
    model = make(target.num_classes, target.img_size)  # the checkpoint, probed before fine-tuning
    metrics = {"params": sum(p.numel() for p in model.parameters()), "init": str(init_checkpoint(cfg)),
               **evaluate(model, target, ctx.sections["eval"], top1=False), **ft}
    return Outcome(metrics, target.describe(), ws, str(cfg["trainer"].get("precision", "32-true")))


@register_protocol("fewshot", required=("data", "eval", "init"),
                   description="load init.checkpoint; few-shot linear accuracy")
def fewshot(ctx: RunContext) -> Outcome | None:
    if not is_global_zero():  # one process: no training, nothing to distribute
        return None
    cfg = ctx.cfg
    write_run_config(ctx.run, ctx.run_dir, ctx.command)
    dm = ImageClassificationDataModule(**cfg["data"])
    dm.setup()
    model = pretrained_model(cfg, dm.num_classes, cfg["data"]["img_size"])
    metrics = {"params": sum(p.numel() for p in model.parameters()), "init": str(init_checkpoint(cfg)),
               **evaluate(model, dm, ctx.sections["eval"], top1=False)}
    return Outcome(metrics, dm.describe())


__all__ = ["PROTOCOLS", "Protocol", "RunContext", "Outcome", "register_protocol", "is_global_zero", "evaluate",
           "write_run_config", "COMMON_SECTIONS"]
