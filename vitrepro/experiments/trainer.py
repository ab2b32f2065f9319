"""Preemption-safe training: the checkpoint policy, exact mid-epoch resume, the non-finite-loss guard.

Built from Lightning's own machinery:

- checkpoints: ``ModelCheckpoint(save_last=True)`` every ``checkpoint.every_n_steps`` optimizer steps and
  every ``checkpoint.every_minutes`` minutes (rank 0's clock, broadcast), and ``epoch-end.ckpt`` at every
  epoch end, written atomically by ``AtomicCheckpointIO`` (a temporary file beside the target, then
  ``os.replace``: atomic on the target's own file system, wherever ``$TMPDIR`` is), so a ``kill -9`` or a
  full disk loses at most one interval and never leaves a torn checkpoint;
- SLURM: ``SLURMEnvironment(auto_requeue=True)`` (signal ``SIGUSR1``, acted on at the next batch end:
  ``RequeueAtBatchEnd``): Lightning writes ``hpc_ckpt_<n>.ckpt`` into the run directory and calls
  ``scontrol requeue``; the re-queued job runs the
  same command and resumes from the newest readable checkpoint;
- exact resume: ``ResumeState`` stores the epoch, the batches done and torch's generator states in each
  checkpoint; the data module's ``ResumableSampler`` restarts the epoch at that batch, with the same
  per-item augmentation seeds, so a resumed run ends with the weights of the uninterrupted one (CPU);
- ``ResumableCSVLogger`` keeps ``logs/metrics.csv`` across attempts: the rows of the steps before the
  checkpoint stay, later ones are logged again by the resumed attempt; ``attempts.json`` sums the wall
  time of every attempt;
- ``StopOnNonFiniteLoss`` stops training at the first NaN/inf loss (all ranks agree) with
  ``NonFiniteLossError``; the runner records the run as failed and goes on.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
import torchmetrics
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..atomic import replace_into, write_text
from ..rundir import RunDir

EPOCH_END = "epoch-end"  # checkpoints/epoch-end.ckpt
ATTEMPTS = "attempts.json"


@dataclass
class CheckpointConfig:
    """The ``checkpoint`` section of a run config: when ``checkpoints/last.ckpt`` is written during
    training (it is always written at every epoch end and when training ends).

    every_n_steps: every this many optimizer steps (None: not by steps).
    every_minutes: every this many minutes of training (None: not by time). The default, 10, bounds the
        work a ``kill -9`` or a preemption loses at any scale.

    Raises ``ValueError`` for a value that is not None or > 0.
    """

    every_n_steps: int | None = None
    every_minutes: float | None = 10.0

    def __post_init__(self):
        if self.every_n_steps is not None and (isinstance(self.every_n_steps, bool) or int(self.every_n_steps) < 1
                                               or int(self.every_n_steps) != self.every_n_steps):
            raise ValueError(f"every_n_steps={self.every_n_steps!r} is not allowed: expected null or an integer >= 1")
        if self.every_minutes is not None and not (isinstance(self.every_minutes, (int, float))
                                                   and self.every_minutes > 0):
            raise ValueError(f"every_minutes={self.every_minutes!r} is not allowed: expected null or a number > 0")

    def callbacks(self, dirpath: Path) -> list[ModelCheckpoint]:
        """One ``ModelCheckpoint`` per trigger (Lightning takes one trigger per instance): steps and time
        write ``last.ckpt``; epoch ends write ``epoch-end.ckpt`` (a top-1 checkpoint without a monitor,
        overwritten every epoch: with ``save_top_k=0`` Lightning skips ``save_last`` at epoch ends)."""
        common = dict(dirpath=dirpath, save_last=True, save_top_k=0, enable_version_counter=False)
        out = [ModelCheckpoint(dirpath=dirpath, filename=EPOCH_END, every_n_epochs=1, save_top_k=1, monitor=None,
                               save_last=False, enable_version_counter=False)]
        if self.every_n_steps:
            out.append(ModelCheckpoint(every_n_train_steps=int(self.every_n_steps), **common))
        if self.every_minutes:
            out.append(ModelCheckpoint(train_time_interval=timedelta(minutes=self.every_minutes), **common))
        return out


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` whose writes are atomic on the checkpoint's own file system: the
    bytes go to a temporary file beside the target, which is then moved onto it (``atomic.replace_into``).
    (Lightning's ``_atomic_save`` stages the file in ``$TMPDIR``; when that is another file system the
    final move is a copy, and a full disk or a kill during it leaves a torn checkpoint.) A failed write
    removes its temporary file and leaves the previous checkpoint as it was."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:  # closed even when the disk fills, so removing it frees the space
                try:
                    torch.save(checkpoint, f)
                except RuntimeError as e:  # torch's zip writer hides the OSError (ENOSPC) that stopped it
                    if isinstance(e.__context__, OSError):
                        raise OSError(e.__context__.errno, f"{e.__context__.strerror}: writing {path}") from e
                    raise

        replace_into(Path(path), write)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message says at which step."""


class StopOnNonFiniteLoss(Callback):
    """Raise ``NonFiniteLossError`` after the first optimizer step whose loss is not finite. Under DDP
    the ranks agree first (``reduce_boolean_decision``), so every rank stops at the same step."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(f"non-finite training loss ({float(loss.detach().float()):g}) at step "
                                     f"{trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx})")


class RequeueAtBatchEnd(Callback):
    """SLURM's requeue signal (``SIGUSR1``) acted on at the next batch end instead of at once. Lightning's
    handler writes ``hpc_ckpt_<n>.ckpt`` wherever the signal lands, e.g. between a batch's metric update and
    its end, so the resumed run counted that batch twice (the interrupted epoch's ``train/top1`` differed).
    At train start this wraps the handler Lightning installed; the signal then only sets a flag, and the
    handler runs after ``ResumeState`` has recorded the finished batch (under DDP, on every rank at the same
    batch end, once any rank has had the signal)."""

    def __init__(self):
        self._pending: int | None = None
        self._signal = None
        self._handler = None

    def on_train_start(self, trainer, pl_module) -> None:
        env = trainer._accelerator_connector.cluster_environment
        if not (isinstance(env, SLURMEnvironment) and env.auto_requeue) or not hasattr(signal, "SIGUSR1"):
            return
        signum = env.requeue_signal or signal.SIGUSR1
        handler = signal.getsignal(signum)
        if callable(handler):
            self._signal, self._handler = signum, handler
            signal.signal(signum, lambda num, frame: setattr(self, "_pending", num))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._signal is None:
            return
        pending = self._pending is not None
        if trainer.world_size > 1:  # the ranks act at the same batch end (the save is collective)
            pending = trainer.strategy.reduce_boolean_decision(pending, all=False)
        if pending:
            self._pending = None
            self._handler(self._signal, None)


class SayWhatStopsTraining(Callback):
    """One line at the start of training when ``max_epochs`` ends it before ``max_steps`` (e.g.
    ``--trainer.max_steps=30`` on a 1-epoch scale of 18 batches trains 18 steps, not 30)."""

    def on_train_start(self, trainer, pl_module) -> None:
        epochs, steps = trainer.max_epochs, trainer.max_steps
        batches = trainer.num_training_batches
        if not (trainer.is_global_zero and epochs and epochs > 0 and steps and steps > 0) or batches == float("inf"):
            return
        by_epochs = epochs * -(-int(batches) // trainer.accumulate_grad_batches)
        if by_epochs < steps:
            print(f"  note: trainer.max_epochs={epochs} ends training at step {by_epochs}, before "
                  f"trainer.max_steps={steps} ({int(batches)} batches an epoch); raise max_epochs to train "
                  f"{steps} steps")


class SaveOnInterrupt(Callback):
    """Write ``last.ckpt`` when training stops on Ctrl-C or ``SIGTERM`` (Lightning's ``SIGTERMException``,
    raised at a batch end on every rank), so the same command resumes mid-run. (Not on other errors: they
    resume from the newest periodic checkpoint. Lightning's ``OnExceptionCheckpoint`` would make every fresh
    ``fit`` ask for ``ckpt_path='last'`` and warn.)"""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            trainer.save_checkpoint(self.path)


def _complete(row: dict) -> bool:
    """A CSV row with every field of the header and no extra one (not torn by a kill mid-append)."""
    return None not in row and None not in row.values()


def _step(row: dict) -> float | None:
    try:
        return float(row.get("step") or "")
    except ValueError:
        return None


def _write_rows(path: Path, fieldnames: list[str], rows: list[dict]) -> None:
    """``path`` as a CSV file of ``rows`` under ``fieldnames``, written atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    replace_into(path, write)


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing ``metrics.csv`` is kept (rows with ``step < keep_below``)
    instead of deleted, and appended to; when new columns appear the file is rewritten atomically (a
    temporary file beside it, then ``os.replace``), where Lightning truncates it in place, so that a kill
    at any moment leaves every row saved before it. A row torn by a kill during an append (fields missing)
    is dropped when a resumed run reads the log back."""

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if _complete(r)]
        _write_rows(Path(self.metrics_file_path), fieldnames, rows)

    def __init__(self, log_dir: str, keep_below: int | None):
        self._keep_below = keep_below
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = self.metrics_file_path
        if not os.path.isfile(path):
            return
        if self._keep_below is None:  # a fresh start: the old log belongs to nothing
            os.remove(path)
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if _complete(r) and _step(r) is not None and _step(r) < self._keep_below]
        _write_rows(Path(path), header, rows)
        self.metrics_keys = header


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger(run_dir, name="logs", version="")`` that continues the log of a resumed run: rows of
    steps before ``resume_step`` are kept, later ones (redone after the checkpoint) are dropped."""

    def __init__(self, save_dir: Path, resume_step: int | None):
        super().__init__(save_dir, name="logs", version="")
        self._resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(self.log_dir, self._resume_step)
        return self._experiment


def _metrics(module: torch.nn.Module) -> list[torchmetrics.Metric]:
    """The module's torchmetrics metrics, in module order (the same on every rank)."""
    return [m for m in module.modules() if isinstance(m, torchmetrics.Metric)]


class ResumeState(Callback):
    """Saved in every checkpoint: the epoch and batches done (for ``ResumableSampler``), torch's CPU and
    CUDA generator states, and the wall time of earlier attempts. Also keeps ``attempts.json`` in the run
    directory: one entry per attempt (start time, step it started from, seconds), updated at every
    checkpoint and at the end.

    ``datamodule`` must have ``resume_at(epoch, batches)`` (``ImageClassificationDataModule``)."""

    def __init__(self, datamodule, run_dir: Path, resumed_from_step: int | None):
        self.dm = datamodule
        self.path = Path(run_dir) / ATTEMPTS
        self.position = (0, 0)
        self._restored = False
        self._module = None
        self._rank_metrics: list | None = None
        self._t0 = time.time()
        earlier = json.loads(self.path.read_text()) if resumed_from_step is not None and self.path.exists() else []
        self.attempts = earlier + [{"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    "from_step": resumed_from_step or 0, "seconds": 0.0, "end": "running"}]
        self._write()

    @property
    def state_key(self) -> str:
        return "ResumeState"

    def earlier_seconds(self) -> float:
        """Wall seconds of the attempts before this one."""
        return sum(a["seconds"] for a in self.attempts[:-1])

    def finish(self, end: str) -> None:
        """Close this attempt's entry (``finished``, ``failed``, ``interrupted``)."""
        self.attempts[-1].update(seconds=round(time.time() - self._t0, 1), end=end)
        self._write()

    def _write(self) -> None:
        if rank_zero_only.rank == 0:  # one writer under DDP
            write_text(self.path, json.dumps(self.attempts, indent=1))

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._module = pl_module
        self.dm.epoch_source = lambda: trainer.current_epoch  # the sampler's epoch is the Trainer's
        if getattr(self.dm, "train_sampler", None) is not None:
            self.dm.train_sampler.epoch_source = self.dm.epoch_source

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._restored:  # Lightning workaround, see load_state_dict
            self._restored = False
            loop = trainer.fit_loop.epoch_loop
            if hasattr(loop, "_batches_that_stepped") and trainer.accumulate_grad_batches == 1:
                loop._batches_that_stepped = trainer.global_step
            if self.position[1] == 0:  # an epoch-end checkpoint: its metric states belong to the last epoch
                for m in pl_module.modules():
                    if isinstance(m, torchmetrics.Metric):
                        m.reset()
            elif self._rank_metrics and len(self._rank_metrics) == trainer.world_size:
                # mid-epoch under DDP: this rank's own partial sums (the checkpoint's state_dict is rank 0's)
                for m, state in zip(_metrics(pl_module), self._rank_metrics[trainer.global_rank]):
                    for name, value in state.items():
                        setattr(m, name, [v.to(pl_module.device) for v in value] if isinstance(value, list)
                                else value.to(pl_module.device))
            self._rank_metrics = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        done = batch_idx + 1
        # after the epoch's last batch the next batch to train is the next epoch's first (epoch-end
        # checkpoints are taken after validation, before on_train_epoch_end)
        self.position = ((trainer.current_epoch + 1, 0) if done >= trainer.num_training_batches
                         else (trainer.current_epoch, done))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.position = (trainer.current_epoch + 1, 0)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        for logger in trainer.loggers:  # every step logged before this checkpoint is on disk with it
            logger.save()
        self.attempts[-1]["seconds"] = round(time.time() - self._t0, 1)
        self._write()

    def state_dict(self) -> dict[str, Any]:
        """Called on every rank when a checkpoint is taken. Under DDP it also gathers every rank's metric
        states (``rank_metrics``) and generator states (``rank_rng``): the file holds rank 0's alone, and a
        rank that resumed from them would count rank 0's batches as its own and draw rank 0's dropout."""
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        out = {"epoch": self.position[0], "batches": self.position[1], "torch_rng": torch.get_rng_state(),
               "cuda_rng": cuda}
        if self._module is not None and torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            local = [{k: ([t.detach().cpu() for t in v] if isinstance(v, list) else v.detach().cpu())
                      for k, v in m.metric_state.items()} for m in _metrics(self._module)]
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (local, out["torch_rng"], cuda))
            out["rank_metrics"] = [g[0] for g in gathered]
            out["rank_rng"] = [(g[1], g[2]) for g in gathered]  # each rank's generators (dropout, ...)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the sampler position and the generators. Also re-aligns, at the first batch, the step
        Lightning logs at (``_batches_that_stepped``) with ``global_step``: on a restart Lightning adds 1
        to it to make up for checkpoints taken in ``on_train_batch_end``, one too many for checkpoints
        taken at validation end (epoch-end checkpoints), which would shift every later log row."""
        self._restored = True
        self._rank_metrics = state.get("rank_metrics")
        self.position = (int(state["epoch"]), int(state["batches"]))
        self.dm.resume_at(*self.position)
        rng, cuda = state["torch_rng"], state["cuda_rng"]
        ranks = state.get("rank_rng") or []
        if len(ranks) > 1 and torch.distributed.is_initialized() and len(ranks) == torch.distributed.get_world_size():
            rng, cuda = ranks[torch.distributed.get_rank()]  # under DDP: this rank's own generators
        torch.set_rng_state(rng)
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)


def _check_checkpoint(path: Path) -> tuple[int | None, str | None]:
    """``(global step, None)`` if ``path`` is a complete Lightning checkpoint with finite weights, else
    ``(None, what is wrong)``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a checkpoint, ...
        return None, f"unreadable ({' '.join(str(e).split())[:120]})"
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "loops" not in ckpt:
        return None, "not a training checkpoint of Lightning (no state_dict or loop state)"
    bad = [k for k, v in ckpt["state_dict"].items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        return None, f"holds non-finite weights ({bad[0]})"
    return int(ckpt["global_step"]), None


def find_resume_checkpoint(run_dir: Path, warn: Callable[[str], None] = print,
                           set_aside: bool = True) -> tuple[Path, int] | None:
    """The newest usable checkpoint of a run and its global step: ``checkpoints/last.ckpt`` (steps, time,
    end of training), ``checkpoints/epoch-end.ckpt`` or a SLURM ``hpc_ckpt_<n>.ckpt``. A truncated,
    unreadable or non-finite one is renamed ``<name>.corrupt`` (with ``set_aside``: global rank 0 only) and
    ``warn`` says so, naming the file; the next is tried. None when none is left (a fresh start)."""
    folder = RunDir(run_dir)
    candidates = [folder.last, folder.checkpoints / f"{EPOCH_END}.ckpt",
                  *run_dir.glob("hpc_ckpt_*.ckpt")]
    for path in sorted((p for p in candidates if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True):
        step, problem = _check_checkpoint(path)
        if problem is None:
            return path, step
        if set_aside:
            # a SLURM checkpoint loses its "hpc_ckpt_" name: Lightning would still resume from any file named so
            aside = path.with_name(path.name.replace("hpc_ckpt_", "hpc-ckpt-") + ".corrupt")
            os.replace(path, aside)
            warn(f"warning: checkpoint {path} {problem}; set aside as {aside.name}; the run restarts from an "
                 f"older checkpoint or from scratch")
    return None


def build_trainer(trainer_kwargs: dict[str, Any], run_dir: Path, datamodule, checkpoint: CheckpointConfig,
                  resumed_from_step: int | None, extra_callbacks: list[Callback] = (),
                  tensorboard: bool = False) -> tuple[L.Trainer, ResumeState]:
    """A Trainer for a run directory with the policy of the module docstring; returns it and its
    ``ResumeState``. ``trainer_kwargs`` are the run's ``trainer`` section. ``tensorboard`` adds
    Lightning's TensorBoard logger (``logs/tensorboard``) beside the CSV one."""
    state = ResumeState(datamodule, run_dir, resumed_from_step)
    loggers = [ResumableCSVLogger(run_dir, resumed_from_step)]
    if tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir / "logs", name="tensorboard", version=""))
    plugins = [AtomicCheckpointIO(), *([SLURMEnvironment(auto_requeue=True)] if SLURMEnvironment.detect() else [])]
    kwargs = dict(trainer_kwargs)
    kwargs.setdefault("enable_progress_bar", interactive())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")
        trainer = L.Trainer(default_root_dir=run_dir, logger=loggers, plugins=plugins,
                            callbacks=[*checkpoint.callbacks(RunDir(run_dir).checkpoints), state, RequeueAtBatchEnd(),
                                       StopOnNonFiniteLoss(), SayWhatStopsTraining(),
                                       LearningRateMonitor(logging_interval="step"), *extra_callbacks],
                            **kwargs)
    return trainer, state


def interactive() -> bool:
    """Lightning's progress bar only on a terminal, never in CI."""
    import sys

    return sys.stderr.isatty() and not os.environ.get("CI")


__all__ = ["AtomicCheckpointIO", "RequeueAtBatchEnd", "SayWhatStopsTraining", "CheckpointConfig", "NonFiniteLossError",
           "StopOnNonFiniteLoss", "ResumableCSVLogger", "ResumeState",
           "find_resume_checkpoint", "SaveOnInterrupt", "interactive", "build_trainer", "ATTEMPTS"]
