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

Policy: a run whose record says ``finished`` is skipped; ``failed`` is retried from scratch (its
directory moved to ``failed/``); a run without a record resumes from its newest usable checkpoint. A run
that raises (a non-finite loss included) gets a ``failed`` record with the error's one-line summary and
the experiment goes on; ``run_experiment`` returns the failed records. A single-process run holds
``runs/<run_id>/.lock`` while it trains: a second job on the same cell skips it. Under DDP every rank
executes the same runs; global rank 0 alone writes records and tables.
"""
from __future__ import annotations

import os
import platform
import shlex
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

from .. import __version__
from .protocols import PROTOCOLS, RunContext, is_global_zero
from .records import read_record, write_record, write_table
from .spec import Experiment, RunSpec
from .training import NonFiniteLossError


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


def _single_process(cfg: dict[str, Any]) -> bool:
    """True when the run is one process (the per-run lock applies; under DDP it does not)."""
    trainer = cfg["trainer"]
    one_device = trainer.get("devices", 1) in (1, "1") and trainer.get("num_nodes", 1) in (1, "1")
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    return one_device and not launched


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
    ``finished``, or ``failed`` with the error when the protocol raised). Other ranks return None.
    ``KeyboardInterrupt``/``SystemExit`` propagate (the run stays unrecorded and resumes next time)."""
    run_dir = exp_dir / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(run.config["seed"], workers=True, verbose=False)
    t0 = time.time()
    head = {"run_id": run.run_id, "experiment": run.experiment, "task": run.task, "scale": run.scale,
            "cell": run.cell}
    base = {"model": run.config["model"]["name"], "seed": run.config["seed"]}
    try:
        outcome = PROTOCOLS[run.task].run(RunContext(run, run_dir, command, log, tensorboard))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of one run is recorded; the experiment goes on
        if not is_global_zero():  # rank 0 records the run; this rank leaves its traceback beside it
            rank = rank_zero_only.rank
            (run_dir / f"error.rank{rank}.log").write_text(traceback.format_exc())
            print(f"rank {rank}: {run.run_id}: {_one_line(e)}", file=sys.stderr)
            return None
        (run_dir / "error.log").write_text(traceback.format_exc())
        if isinstance(e, NonFiniteLossError):
            log(f"  stopped: {e}")
        provenance = _provenance(command, time.time() - t0, "", 1, str(run.config["trainer"].get("precision", "")))
        record = {**head, "status": "failed", "metrics": base, "provenance": provenance, "error": _one_line(e)}
        write_record(run_dir, record)
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


def _provenance(command: str, wall_s: float, data: str, devices: int, precision: str) -> dict[str, Any]:
    return {"wall_s": round(wall_s, 1), "hardware": hardware_description(), "devices": devices,
            "precision": precision, "data": data, "command": command, "vitrepro": __version__,
            "torch": torch.__version__, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


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
                   log: Callable[[str], None] = print, tensorboard: bool = False) -> tuple[Path, list[dict]]:
    """Execute ``runs`` of ``exp`` (each run id once; finished ones skipped, failed ones retried), rebuild
    ``runs.csv`` from the records and write the report. Returns ``(runs.csv path, failed records)``."""
    exp_dir = Path(results_dir) / exp.name
    command = "vitrepro " + shlex.join(argv if argv is not None else sys.argv[1:])
    unique = list({r.run_id: r for r in runs}.values())
    # read once, before any rank writes, so all ranks agree on what to run
    status = {r.run_id: (read_record(exp_dir / "runs" / r.run_id) or {}).get("status") for r in unique}
    failed: list[dict] = []
    for i, run in enumerate(unique, 1):
        where = f"[{i}/{len(unique)}] {run.run_id}"
        if status[run.run_id] == "finished":
            log(f"{where}: finished earlier, skipped")
            continue
        run_dir = exp_dir / "runs" / run.run_id
        if status[run.run_id] == "failed" and is_global_zero():
            log(f"{where}: failed earlier; retrying from scratch (the failed attempt: "
                f"{_set_aside_failed(exp_dir, run_dir).relative_to(exp_dir)})")
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(run_dir / ".lock")) if _single_process(run.config) else None
        try:
            if lock is not None:
                lock.acquire(timeout=0)
        except Timeout:
            log(f"{where}: running in another process, skipped")
            continue
        try:
            log(f"{where}: {run.task}")
            record = execute_run(run, exp_dir, command, log, tensorboard)
        finally:
            if lock is not None:
                lock.release()
        if record is None:
            continue
        write_table(exp_dir)  # runs.csv follows the records as they land
        if record["status"] == "failed":
            failed.append(record)
            log(f"{where}: FAILED: {record['error']}")
        else:
            shown = {k: record["metrics"][k] for k in ("top1", "fewshot_5", "ft_top1") if k in record["metrics"]}
            log(f"{where}: {shown}, {record['provenance']['wall_s']} s")
    table = exp_dir / "runs.csv"
    if is_global_zero() and exp_dir.exists():
        table = write_table(exp_dir)
        for p in write_experiment_report(exp, table, unique[0].scale if unique else exp.default_scale):
            log(f"wrote {p}")
    return table, failed


__all__ = ["execute_run", "run_experiment", "write_experiment_report", "hardware_description"]
