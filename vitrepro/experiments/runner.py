"""Execute the runs of an experiment: train, evaluate, record one row per run, resume after interruption.

Per task (``spec.py``): ``pretrain`` (and ``mpp``, self-supervised) trains, evaluates test top-1 (not
``mpp``) and few-shot linear accuracy and, with a ``finetune`` section, fine-tunes the trained network
(``stages.finetune_stage``: Table 4 sweep on the dev split, final fine-tune on the whole training split,
test top-1); ``finetune`` probes and fine-tunes ``init.checkpoint``; ``fewshot`` probes it.

Layout under ``<results_dir>/<experiment>/``:
  ``runs.csv``                  one row per finished run (all scales), written atomically
  ``runs/<run_id>/config.yaml`` the resolved config, the task and the command
  ``runs/<run_id>/logs/metrics.csv``  Lightning's CSVLogger (loss, top-1, lr per step/epoch)
  ``runs/<run_id>/finetune/<sweep_lr..|final_lr..>/metrics.csv``  each fine-tuning fit
  ``runs/<run_id>/finetune_sweep.db``  the sweep's Optuna study (not committed)
  ``runs/<run_id>/checkpoints/last.ckpt``  the final weights, for resuming and transfer (not committed)

Resume: a run whose ``run_id`` is in ``runs.csv`` is skipped; an unfinished run with a ``last.ckpt``
(written at every checkpoint interval, at the end of training, and on an interrupt or error) continues
from it, and its sweep skips the learning rates already complete. An interrupted run is never recorded:
Lightning exits on Ctrl-C and re-raises any other error. Under DDP every rank executes the same sequence
of runs and fine-tuning fits; rank 0 alone evaluates and writes rows, so nothing is written twice.
"""
from __future__ import annotations

import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import lightning as L
import pandas as pd
import torch
import torchmetrics.functional as TMF
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from .. import __version__
from ..data import ImageClassificationDataModule
from ..evaluation import FewShotCallback, evaluate_fewshot, extract_features
from ..models import create_model
from ..tasks import ClassificationTask, MaskedPatchPredictionTask, MPPConfig, OptimConfig
from .spec import Experiment, RunSpec
from .stages import finetune_stage, init_checkpoint, model_factory, pretrained_model


def hardware_description() -> str:
    """E.g. ``"cpu: AMD EPYC 7B13 x2 threads"`` or ``"2x NVIDIA H100 80GB HBM3"``."""
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"{n}x {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model} x{torch.get_num_threads()} threads"


def count_flops(model: torch.nn.Module, img_size: int, in_chans: int = 3) -> float:
    """Forward GFLOPs for one image (torch ``FlopCounterMode``; a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_chans, img_size, img_size, device=device))
    model.train(was_training)
    return counter.get_total_flops() / 1e9


class SaveOnInterrupt(Callback):
    """Write ``last.ckpt`` when training stops on Ctrl-C or an error, so the same command resumes mid-run.
    (Lightning's ``OnExceptionCheckpoint`` does this too, but its presence makes every fresh ``fit`` ask
    for ``ckpt_path='last'`` and warn.)"""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        trainer.save_checkpoint(self.path)


class RunsTable:
    """``runs.csv``: read the finished run ids, append a row atomically (write a temp file, rename)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> pd.DataFrame:
        return pd.read_csv(self.path) if self.path.exists() else pd.DataFrame()

    def finished_ids(self) -> set[str]:
        df = self.read()
        return set(df["run_id"].astype(str)) if "run_id" in df else set()

    def append(self, row: dict[str, Any]) -> None:
        df = pd.concat([self.read(), pd.DataFrame([row])], ignore_index=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".runs-", suffix=".csv")
        with os.fdopen(fd, "w") as f:
            df.to_csv(f, index=False)
        os.replace(tmp, self.path)


def _evaluate(model: torch.nn.Module, dm: ImageClassificationDataModule, eval_cfg: dict,
              top1: bool = True) -> dict[str, float]:
    """Few-shot linear accuracies of ``model``'s pre-logits and, with ``top1``, the test top-1 of its own
    head, in one pass over the test set."""
    feats, labels, *logits = extract_features(model, dm.test_set, batch_size=eval_cfg["batch_size"], with_logits=top1)
    out = {"top1": TMF.accuracy(logits[0], labels, task="multiclass", num_classes=dm.num_classes).item()} if top1 else {}
    out.update(evaluate_fewshot(model, dm.fewshot_pool(), dm.fewshot_pool_labels(), feats, labels, dm.num_classes,
                                shots=eval_cfg["shots"], seeds=eval_cfg["seeds"], l2_reg=eval_cfg["l2_reg"],
                                batch_size=eval_cfg["batch_size"]))
    return out


def _provenance(command: str, world_size: int, precision: str, data: str) -> dict[str, Any]:
    return {"hardware": hardware_description(), "devices": world_size, "precision": precision, "data": data,
            "command": command, "vitrepro": __version__, "torch": torch.__version__,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _write_config(run: RunSpec, run_dir: Path, command: str) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"run_id": run.run_id, "task": run.task, "command": command, "scale": run.scale, "cell": run.cell,
         "config": run.config}, sort_keys=False))


def _is_global_zero() -> bool:
    """Global rank 0, also before the first fit has started DDP (Lightning reads the rank from the
    launcher's environment: LOCAL_RANK, RANK, SLURM_PROCID)."""
    return rank_zero_only.rank == 0


def execute_run(run: RunSpec, exp_dir: Path, command: str,
                log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Execute one run of its task; return its result row on global rank 0, None on other ranks."""
    cfg = run.config
    run_dir = exp_dir / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    if run.task in ("pretrain", "mpp"):
        return _pretrain(run, run_dir, command, log)
    t0 = time.time()
    head = {"run_id": run.run_id, "experiment": run.experiment, "task": run.task, "scale": run.scale, **run.cell,
            "model": cfg["model"]["name"], "seed": cfg["seed"], "init": str(init_checkpoint(cfg))}
    if run.task == "fewshot":  # one process: no training, nothing to distribute
        if _is_global_zero():
            _write_config(run, run_dir, command)
        dm = ImageClassificationDataModule(**cfg["data"])
        dm.setup()
        model = pretrained_model(cfg, dm.num_classes, cfg["data"]["img_size"])
        metrics = _evaluate(model, dm, cfg["eval"], top1=False)
        return {**head, "params": sum(p.numel() for p in model.parameters()),
                **{k: round(v, 5) for k, v in metrics.items()}, "wall_s": round(time.time() - t0, 1),
                **_provenance(command, 1, "32-true", dm.describe())}
    # finetune: every rank fine-tunes (DDP starts at the first fit); rank 0 writes
    make = lambda k, img_size: pretrained_model(cfg, k, img_size)  # noqa: E731
    init_checkpoint(cfg)  # a missing checkpoint fails here, before any training
    if _is_global_zero():
        _write_config(run, run_dir, command)
    ft = finetune_stage(make, cfg, run_dir, run.run_id, is_writer=_is_global_zero(), log=log)
    if not _is_global_zero():
        return None
    ws = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    target = ImageClassificationDataModule(**{**cfg["data"], **cfg["finetune"]["data"]})
    target.setup()
    model = make(target.num_classes, target.img_size)  # the checkpoint, probed before fine-tuning
    probe = _evaluate(model, target, cfg["eval"], top1=False)
    return {**head, "params": sum(p.numel() for p in model.parameters()),
            **{k: round(v, 5) for k, v in probe.items()}, **ft, "wall_s": round(time.time() - t0, 1),
            **_provenance(command, ws, str(cfg["trainer"].get("precision", "32-true")), target.describe())}


def _pretrain(run: RunSpec, run_dir: Path, command: str, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Train (resuming from ``last.ckpt``), fine-tune when the config says so, then evaluate on rank 0."""
    cfg = run.config
    dm = ImageClassificationDataModule(**cfg["data"])
    model_kwargs = dict(cfg["model"])
    mpp = run.task == "mpp"  # self-supervised: no classifier until fine-tuning
    model = create_model(model_kwargs.pop("name"), num_classes=0 if mpp else dm.num_classes,
                         img_size=cfg["data"]["img_size"], **model_kwargs)
    task = (MaskedPatchPredictionTask(model, MPPConfig(**{**cfg["mpp"], "probs": tuple(cfg["mpp"]["probs"])}))
            if mpp else ClassificationTask(model, dm.num_classes, OptimConfig(**cfg["optim"])))
    ckpt_dir = run_dir / "checkpoints"
    trainer = L.Trainer(default_root_dir=run_dir, logger=CSVLogger(run_dir, name="logs", version=""),
                        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0),
                                   SaveOnInterrupt(ckpt_dir / "last.ckpt"),
                                   *([FewShotCallback(**cfg["fewshot_callback"])] if "fewshot_callback" in cfg else [])],
                        **cfg["trainer"])
    if trainer.is_global_zero:
        _write_config(run, run_dir, command)
    last = ckpt_dir / "last.ckpt"
    resumed = last.exists()
    t0 = time.time()
    trainer.fit(task, datamodule=dm, ckpt_path=str(last) if resumed else None)
    trainer.save_checkpoint(last)  # the final weights, whatever the checkpoint interval (few_shot/transfer read it)
    pretrain_wall = time.time() - t0
    ft = {}
    if "finetune" in cfg:  # every rank: the fine-tuning fits are distributed like the pre-training
        ft = finetune_stage(model_factory(model, cfg, model.num_classes), cfg, run_dir, run.run_id,
                            is_writer=trainer.is_global_zero, log=log if trainer.is_global_zero else (lambda m: None))
    if not trainer.is_global_zero:
        return None
    metrics = _evaluate(task.model, dm, cfg["eval"], top1=not mpp)
    return {
        "run_id": run.run_id, "experiment": run.experiment, **({"task": run.task} if mpp else {}),
        "scale": run.scale, **run.cell,
        "model": cfg["model"]["name"], "seed": cfg["seed"],
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": round(count_flops(model, cfg["data"]["img_size"]), 4),
        "train_images": len(dm.train_set), "epochs": trainer.current_epoch, "steps": trainer.global_step,
        **{k: round(v, 5) for k, v in metrics.items()}, **ft,
        "wall_s": round(time.time() - t0, 1), **({"pretrain_wall_s": round(pretrain_wall, 1)} if ft else {}),
        "resumed": resumed, **_provenance(command, trainer.world_size, str(trainer.precision), dm.describe()),
    }


def write_experiment_report(exp: Experiment, runs_csv: Path, scale: str) -> list[Path]:
    """Write the report the experiment file names (``report.kind``) for ``scale`` beside ``runs_csv``;
    return the written paths (none when the file names no report)."""
    if not exp.report:
        return []
    from ..report import REPORTS

    kind = exp.report["kind"]
    paper = (exp.path.parent / exp.report["paper"]).resolve() if exp.report.get("paper") else None
    return REPORTS[kind](runs_csv, paper, runs_csv.parent, scale)


def run_experiment(exp: Experiment, runs: list[RunSpec], results_dir: Path, argv: list[str] | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """Execute ``runs`` of ``exp`` (skipping finished ones), append rows to ``runs.csv``, write the
    report; return the path of ``runs.csv``."""
    exp_dir = Path(results_dir) / exp.name
    table = RunsTable(exp_dir / "runs.csv")
    finished = table.finished_ids()  # read once, before any rank writes, so all ranks agree
    command = "vitrepro " + shlex.join(argv if argv is not None else sys.argv[1:])
    rank_zero = True
    for i, run in enumerate(runs, 1):
        if run.run_id in finished:
            log(f"[{i}/{len(runs)}] {run.run_id}: finished earlier, skipped")
            continue
        log(f"[{i}/{len(runs)}] {run.run_id}: {run.task}")
        row = execute_run(run, exp_dir, command, log)
        rank_zero = row is not None
        if rank_zero:
            table.append(row)
            shown = {k: row[k] for k in ("top1", "fewshot_5", "ft_top1", "wall_s") if k in row}
            log(f"[{i}/{len(runs)}] {run.run_id}: {shown}")
    if rank_zero and table.path.exists():
        for p in write_experiment_report(exp, table.path, runs[0].scale if runs else exp.default_scale):
            log(f"wrote {p}")
    return table.path
