"""Execute the runs of an experiment: schedule, skip or resume, call each run's protocol, write its record.

The runner knows nothing of what a run does: ``protocols.PROTOCOLS[run.task]`` trains and evaluates. It
owns the run's directory and record (``records.py``), the failure policy and the locks:

Layout under ``<results_dir>/<experiment>/``:
  ``runs/<run_id>/record.json``   the run's record: status (finished/failed), metrics, provenance, error
  ``runs/<run_id>/config.yaml``   the resolved config, the task and the command
  ``runs/<run_id>/logs/metrics.csv``  Lightning's CSV log, kept across resumed attempts
  ``runs/<run_id>/attempts.json`` one entry per attempt (start, step it resumed from, seconds)
  ``runs/<run_id>/checkpoints/last.ckpt``  written every interval (``checkpoint`` section), not committed
  ``runs/<run_id>/error.log``     the traceback of a failed run
  ``runs.csv``                    derived from the records (``records.write_table``), never edited
  ``failed/<run_id>.<n>/``        a failed run's directory, moved aside when the run is retried

Policy, decided for each run when it starts, under ``runs/<run_id>/.lock`` (single process; under DDP the
ranks read the records before any of them writes, so all agree, and the lock is not taken): a run whose
record says ``finished`` is skipped; one that holds the lock in another process is skipped (exit 0); a
``failed`` run is retried according to its record's ``failure`` kind:

  ``diverged``        the loss turned NaN or infinite: retried from scratch (its directory moved to
                      ``failed/``; never resumed from a checkpoint of the diverging weights);
  ``infrastructure``  the machine failed the run (a full or read-only disk, an I/O error): resumed from
                      the newest good checkpoint;
  ``error``           anything else the run raised (an unreadable image, a bug): resumed from the newest
                      good checkpoint once the cause is fixed.

An interruption (Ctrl-C, ``SIGTERM``, a lost DDP peer) writes no failed record: the run resumes from its
newest checkpoint. Configuration errors are refused before any run folder is written (``vitrepro.cli``).
``run_experiment`` returns the failed (and interrupted) records.
"""
from __future__ import annotations

import errno
import os
import platform
import shlex
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from filelock import FileLock, Timeout
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .. import __version__
from .protocols import PROTOCOLS, RunContext, is_global_zero
from .records import read_record, write_record, write_table
from ..report import write_experiment_report
from .experiment import RunSpec
from .plan import RunPlan
from .trainer import NonFiniteLossError, find_resume_checkpoint


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


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text[:400]}"


#: ``OSError`` numbers that say the machine, not the run, failed.
_INFRA_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.ESTALE, errno.ENOMEM}
#: What a collective raises when a DDP peer is gone (gloo, NCCL, torch.distributed).
_LOST_PEER = ("connection reset by peer", "connection closed by peer", "broken pipe", "nccl", "gloo",
              "process group", "watchdog", "timed out", "distbackenderror")
FAILURE_KINDS = ("diverged", "infrastructure", "error")


def failure_kind(err: BaseException) -> str:
    """``diverged`` (a non-finite loss), ``interrupted`` (a lost DDP peer: the run resumes, unrecorded),
    ``infrastructure`` (disk full or read-only, I/O error, out of host memory) or ``error`` (anything else)."""
    for e in (err, err.__cause__, err.__context__):
        if isinstance(e, NonFiniteLossError):
            return "diverged"
        if isinstance(e, OSError) and e.errno in _INFRA_ERRNOS:
            return "infrastructure"
    text = f"{type(err).__name__} {err}".lower()
    distributed = _world_size() > 1
    if isinstance(err, ConnectionError) or (distributed and any(t in text for t in _LOST_PEER)):
        return "interrupted"
    return "error"


def _write_quietly(path: Path, text: str) -> None:
    """Best effort for a failure's side files (``error.log``): a full or read-only disk must not turn the
    failure being recorded into a traceback."""
    try:
        path.write_text(text)
    except OSError:
        pass


def _single_process(cfg: dict[str, Any]) -> bool:
    """True when the run is one process (the per-run lock applies; under DDP it does not)."""
    trainer = cfg["trainer"]
    one_device = trainer.get("devices", 1) in (1, "1") and trainer.get("num_nodes", 1) in (1, "1")
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    return one_device and not launched


class RunInterrupted(Exception):
    """Training stopped on Ctrl-C (``code`` 130) or ``SIGTERM`` (143); ``str()`` is the one line to print:
    the run, the step of the checkpoint it resumes from and where that is, and how to resume."""

    def __init__(self, run_dir: Path, cause: BaseException):
        self.code = 143 if isinstance(cause, SIGTERMException) else 130
        found = find_resume_checkpoint(run_dir, warn=lambda m: None, set_aside=False)
        where = f"at step {found[1]}, checkpoint {found[0]}" if found else "before its first checkpoint"
        super().__init__(f"interrupted ({'SIGTERM' if self.code == 143 else 'Ctrl-C'}): {run_dir.name} stopped "
                         f"{where}; run the same command to resume")


def _status(run_dir: Path) -> tuple[str | None, str | None]:
    """``(status, failure kind)`` of a run's record; ``(None, None)`` without one. A record of before
    failure kinds has kind None (retried from scratch, as then)."""
    record = read_record(run_dir) or {}
    return record.get("status"), record.get("failure")


def _write_table_quietly(exp_dir: Path, log: Callable[[str], None]) -> None:
    """``write_table``, but a full or read-only disk costs a one-line warning, not the experiment."""
    try:
        write_table(exp_dir)
    except OSError as e:
        log(f"warning: {exp_dir / 'runs.csv'} not rebuilt: {_one_line(e)}")


def _set_aside_failed(exp_dir: Path, run_dir: Path) -> Path:
    """Move a failed run's directory to ``failed/<run_id>.<n>`` (kept for inspection)."""
    dest_root = exp_dir / "failed"
    dest_root.mkdir(parents=True, exist_ok=True)
    n = 1 + sum(1 for p in dest_root.glob(f"{run_dir.name}.*"))
    dest = dest_root / f"{run_dir.name}.{n}"
    os.replace(run_dir, dest)
    return dest


def execute_run(run: RunSpec, exp_dir: Path, command: str, log: Callable[[str], None] = print,
                tensorboard: bool = False) -> dict[str, Any] | None:
    """Run ``run`` through its protocol and, on global rank 0, write and return its record (status
    ``finished``, or ``failed`` with the error and its ``failure`` kind when the protocol raised). A lost
    DDP peer returns an ``interrupted`` record that is not written (the run resumes next time); a record
    that cannot be written (full or read-only disk) is returned all the same, with ``record_written``
    False. Other ranks return None. ``KeyboardInterrupt``/``SystemExit`` propagate (the run stays
    unrecorded and resumes next time)."""
    run_dir = exp_dir / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(run.config["seed"], workers=True, verbose=False)
    t0 = time.time()
    head = {"run_id": run.run_id, "experiment": run.experiment, "task": run.task, "scale": run.scale,
            "cell": run.cell, "variant": run.variant, "config_id": run.config_id}
    base = {"model": run.config["model"]["name"], "seed": run.config["seed"]}
    try:
        outcome = PROTOCOLS[run.task].run(RunContext(run, run_dir, command, log, tensorboard))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of one run is recorded; the experiment goes on
        kind = failure_kind(e)
        if _world_size() > 1 and kind != "diverged":  # (a divergence is agreed by all ranks: they go on together)
            _end_distributed_job(run, run_dir, e, kind, {**head, "metrics": base}, command, time.time() - t0)
        if not is_global_zero():  # rank 0 records the run; this rank leaves its traceback beside it
            rank = rank_zero_only.rank
            _write_quietly(run_dir / f"error.rank{rank}.log", traceback.format_exc())
            print(f"rank {rank}: {run.run_id}: {_one_line(e)}", file=sys.stderr)
            return None
        _write_quietly(run_dir / "error.log", traceback.format_exc())
        if kind == "diverged":
            log(f"  stopped: {e}")
        provenance = _provenance(command, time.time() - t0, "", 1, str(run.config["trainer"].get("precision", "")))
        if kind == "interrupted":
            return {**head, "status": "interrupted", "metrics": base, "provenance": provenance,
                    "error": f"{_one_line(e)} (a lost peer: the same command resumes the run)", "failure": kind}
        record = _failed_record({**head, "metrics": base}, provenance, _one_line(e), kind)
        try:
            write_record(run_dir, record)
        except OSError as w:
            record["error"] += f" (no record written: {_one_line(w)})"
            record["record_written"] = False
        return record
    if outcome is None:
        return None
    wall = outcome.earlier_wall_s + time.time() - t0
    provenance = _provenance(command, wall, outcome.data, outcome.devices, outcome.precision)
    provenance["resumed"] = outcome.resumed
    record = {**head, "status": "finished", "metrics": {**base, **outcome.metrics}, "provenance": provenance,
              "error": None}
    write_record(run_dir, record)
    return record


def _failed_record(head: dict, provenance: dict, error: str, kind: str) -> dict[str, Any]:
    """A ``failed`` record: ``head`` (run id, experiment, task, scale, cell, metrics) with its error and kind."""
    return {**head, "status": "failed", "provenance": provenance, "error": error, "failure": kind}


def _world_size() -> int:
    """The processes of the DDP job this process is in (1 outside one, or after its process group ended)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def _child_pids() -> list[int]:
    """This process's children (the DDP ranks Lightning launched, data loader workers), from ``/proc``."""
    me, pids = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            pids.append(int(stat.parent.name))
    return pids


def _end_distributed_job(run: RunSpec, run_dir: Path, err: BaseException, kind: str, head: dict, command: str,
                         seconds: float) -> None:
    """Under DDP, an error on one rank ends every rank within seconds (the others would wait in a collective
    forever). This rank leaves its traceback and, for an error of its own (not a lost peer), the run's
    ``failed`` record (rank 0 may be stopped before it could write one), prints one line and exits with
    status 1: Lightning's launcher then stops the other ranks (a child's non-zero exit; rank 0 stops the
    ranks it launched itself), as srun or torchrun do. A lost peer writes no record: the run resumes."""
    rank = rank_zero_only.rank
    _write_quietly(run_dir / ("error.log" if rank == 0 else f"error.rank{rank}.log"), traceback.format_exc())
    if kind == "interrupted":
        line = (f"error: {run.run_id}: rank {rank} lost a DDP peer ({_one_line(err)}); every rank stops; the same "
                f"command resumes the run from its newest checkpoint")
    else:
        provenance = _provenance(command, seconds, "", _world_size(), str(run.config["trainer"].get("precision", "")))
        record = _failed_record(head, provenance, f"rank {rank}: {_one_line(err)}", kind)
        try:
            write_record(run_dir, record)
        except OSError:
            pass
        line = (f"error: {run.run_id} failed on rank {rank} ({kind}): {_one_line(err)}; every rank of the DDP job "
                f"stops; the same command resumes the run from its newest good checkpoint")
    print(line, file=sys.stderr, flush=True)
    sys.stdout.flush()
    if rank == 0:
        for pid in _child_pids():
            try:
                os.kill(pid, signal.SIGKILL)  # SIGTERM does not end a process waiting in a collective
            except OSError:
                pass
    os._exit(1)


def _provenance(command: str, wall_s: float, data: str, devices: int, precision: str) -> dict[str, Any]:
    return {"wall_s": round(wall_s, 1), "hardware": hardware_description(), "devices": devices,
            "precision": precision, "data": data, "command": command, "vitrepro": __version__,
            "torch": torch.__version__, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def run_experiment(plan: RunPlan, argv: list[str] | None = None, log: Callable[[str], None] = print,
                   tensorboard: bool = False) -> tuple[Path, list[dict]]:
    """Execute the runs of ``plan`` (each run id once; finished ones skipped, failed ones retried), rebuild
    ``runs.csv`` from the records and write the report. Returns ``(runs.csv path, failed records)``."""
    exp, runs = plan.experiment, plan.runs
    exp_dir = plan.results_dir / exp.name
    command = "vitrepro " + shlex.join(argv if argv is not None else sys.argv[1:])
    unique = list({r.run_id: r for r in runs}.values())
    # under DDP every rank reads the records before any rank writes, so all agree on what to run; a single
    # process decides each run when it starts, under the run's lock (job arrays sharing the folder)
    early = {r.run_id: _status(exp_dir / "runs" / r.run_id) for r in unique if not _single_process(r.config)}
    failed: list[dict] = []
    for i, run in enumerate(unique, 1):
        where = f"[{i}/{len(unique)}] {run.run_id}"
        run_dir = exp_dir / "runs" / run.run_id
        lock = None
        if run.run_id not in early:
            if _status(run_dir)[0] == "finished":  # without the lock: a finished run is never touched
                log(f"{where}: finished earlier, skipped")
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(run_dir / ".lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                log(f"{where}: running in another process, skipped")
                continue
        try:
            status, kind = early.get(run.run_id) or _status(run_dir)
            if status == "finished":
                log(f"{where}: finished earlier, skipped")
                continue
            if status == "failed" and kind in ("diverged", None) and is_global_zero():
                log(f"{where}: failed earlier ({kind or 'before failure kinds were recorded'}); retrying from "
                    f"scratch (the failed attempt: {_set_aside_failed(exp_dir, run_dir).relative_to(exp_dir)})")
            elif status == "failed":
                log(f"{where}: failed earlier ({kind}); resuming from its newest good checkpoint")
            run_dir.mkdir(parents=True, exist_ok=True)
            log(f"{where}: {run.task}")
            record = execute_run(run, exp_dir, command, log, tensorboard)
        except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C (Lightning exits 1 after it), SIGTERM
            if not is_global_zero():
                raise
            raise RunInterrupted(run_dir, e) from None
        finally:
            if lock is not None:
                lock.release()
        if record is None:
            continue
        if record["status"] != "finished":
            failed.append(record)
            log(f"{where}: {record['status'].upper()}: {record['error']}")
            if not record.get("record_written", record["status"] == "failed"):
                continue
        _write_table_quietly(exp_dir, log)  # runs.csv follows the records as they land
        if record["status"] == "finished":
            shown = {k: record["metrics"][k] for k in ("top1", "fewshot_5", "ft_top1") if k in record["metrics"]}
            log(f"{where}: {shown}, {record['provenance']['wall_s']} s")
    table = exp_dir / "runs.csv"
    if is_global_zero() and exp_dir.exists():
        try:
            table = write_table(exp_dir)
            if any((exp_dir / "runs" / r.run_id / "record.json").is_file() for r in unique):  # else nothing to draw
                for p in write_experiment_report(exp, table, unique[0].scale if unique else exp.default_scale):
                    log(f"wrote {p}")
        except OSError as e:  # a full or read-only disk: the records say what happened
            log(f"warning: {exp_dir}: runs.csv and the report not rewritten: {_one_line(e)}")
        except ValueError as e:  # the runs are recorded; `vitrepro report` draws the report later
            log(f"warning: the report of {exp.name} was not drawn: {_one_line(e)}")
    return table, failed


__all__ = ["execute_run", "run_experiment", "RunInterrupted", "hardware_description", "failure_kind",
           "FAILURE_KINDS"]
