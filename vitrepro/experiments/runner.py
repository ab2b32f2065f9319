"""Execute the runs of an experiment: train, evaluate, record one row per run, resume after interruption.

Layout under ``<results_dir>/<experiment>/``:
  ``runs.csv``                  one row per finished run (all scales), written atomically
  ``runs/<run_id>/config.yaml`` the resolved config and the command
  ``runs/<run_id>/logs/metrics.csv``  Lightning's CSVLogger (loss, top-1, lr per step/epoch)
  ``runs/<run_id>/checkpoints/last.ckpt``  for resuming (not committed)

Resume: a run whose ``run_id`` is in ``runs.csv`` is skipped; an unfinished run with a ``last.ckpt``
(written at every epoch end, and on an interrupt or error) continues from it. An interrupted run is
never recorded: Lightning exits on Ctrl-C and re-raises any other error. Under DDP every rank executes the same sequence of runs; rank 0 alone evaluates and
writes rows, so nothing is written twice.
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

from .. import __version__
from ..data import ImageClassificationDataModule
from ..evaluation import evaluate_fewshot, extract_features
from ..models import create_model
from ..tasks import ClassificationTask, OptimConfig
from .spec import Experiment, RunSpec


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


def _evaluate(task: ClassificationTask, dm: ImageClassificationDataModule, eval_cfg: dict) -> dict[str, float]:
    """Test top-1 of the trained classifier and few-shot linear accuracies, in one pass over the test set."""
    model = task.model
    feats, labels, logits = extract_features(model, dm.test_set, batch_size=eval_cfg["batch_size"], with_logits=True)
    out = {"top1": TMF.accuracy(logits, labels, task="multiclass", num_classes=dm.num_classes).item()}
    out.update(evaluate_fewshot(model, dm.fewshot_pool(), dm.fewshot_pool_labels(), feats, labels, dm.num_classes,
                                shots=eval_cfg["shots"], seeds=eval_cfg["seeds"], l2_reg=eval_cfg["l2_reg"],
                                batch_size=eval_cfg["batch_size"]))
    return out


def execute_run(run: RunSpec, exp_dir: Path, command: str) -> dict[str, Any] | None:
    """Train and evaluate one run; return its result row on global rank 0, None on other ranks."""
    cfg = run.config
    run_dir = exp_dir / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    dm = ImageClassificationDataModule(**cfg["data"])
    model_kwargs = dict(cfg["model"])
    model = create_model(model_kwargs.pop("name"), num_classes=dm.num_classes,
                         img_size=cfg["data"]["img_size"], **model_kwargs)
    task = ClassificationTask(model, dm.num_classes, OptimConfig(**cfg["optim"]))
    ckpt_dir = run_dir / "checkpoints"
    trainer = L.Trainer(default_root_dir=run_dir, logger=CSVLogger(run_dir, name="logs", version=""),
                        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0),
                                   SaveOnInterrupt(ckpt_dir / "last.ckpt")],
                        **cfg["trainer"])
    if trainer.is_global_zero:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(
            {"run_id": run.run_id, "command": command, "scale": run.scale, "cell": run.cell, "config": cfg},
            sort_keys=False))
    last = ckpt_dir / "last.ckpt"
    resumed = last.exists()
    t0 = time.time()
    trainer.fit(task, datamodule=dm, ckpt_path=str(last) if resumed else None)
    if not trainer.is_global_zero:
        return None
    metrics = _evaluate(task, dm, cfg["eval"])
    wall = time.time() - t0
    return {
        "run_id": run.run_id, "experiment": run.experiment, "scale": run.scale, **run.cell,
        "model": cfg["model"]["name"], "seed": cfg["seed"],
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": round(count_flops(model, cfg["data"]["img_size"]), 4),
        "train_images": len(dm.train_set), "epochs": trainer.current_epoch, "steps": trainer.global_step,
        **{k: round(v, 5) for k, v in metrics.items()},
        "wall_s": round(wall, 1), "resumed": resumed, "hardware": hardware_description(),
        "devices": trainer.world_size, "precision": str(trainer.precision), "data": dm.describe(),
        "command": command, "vitrepro": __version__, "torch": torch.__version__,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
        log(f"[{i}/{len(runs)}] {run.run_id}: training")
        row = execute_run(run, exp_dir, command)
        rank_zero = row is not None
        if rank_zero:
            table.append(row)
            shown = {k: row.get(k) for k in ("top1", "fewshot_5", "wall_s")}
            log(f"[{i}/{len(runs)}] {run.run_id}: {shown}")
    if rank_zero and table.path.exists():
        for p in write_experiment_report(exp, table.path, runs[0].scale if runs else exp.default_scale):
            log(f"wrote {p}")
    return table.path
