"""Migrate a results folder written before per-run records (one appended ``runs.csv``) to the current layout.

``python -m vitrepro.experiments.migrate results/data_size_scaling [--rename OLD=NEW ...]``
``python -m vitrepro.experiments.migrate --reidentify results/data_size_scaling [--rename OLD=NEW ...]``
(a folder of records whose run ids changed with the code: see ``reidentify``)

For each row of the legacy ``runs.csv`` the row's own command is expanded again with the current code
(its data opened, so the run id names the data by content); the row is matched to the run of its grid
cell, its directory renamed to the new run id, a ``record.json`` written (status ``finished``; the row's
metrics and provenance as they were measured) and ``config.yaml`` rewritten with the resolved config.
Paths of renamed run directories in a command (``--init.checkpoint=.../runs/OLD``) are rewritten, with
the renames this migration made and those given by ``--rename`` (from migrating another experiment
first). ``runs.csv`` is then rebuilt from the records. Prints ``OLD -> NEW`` per run. Nothing is
trained. Raises ``ValueError`` naming a row that matches no run of its command.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import pandas as pd

from .protocols import write_run_config
from .records import LEAD_COLUMNS, RECORD, read_record, section_label, write_record, write_table

PROVENANCE = ("wall_s", "hardware", "devices", "precision", "data", "command", "vitrepro", "torch", "finished_at",
              "resumed")


def _expand(command: str, results_dir: Path | None = None):
    """The runs a row's command stands for, with their data opened (non-strict); ``init.run`` looked up in
    ``results_dir`` when given."""
    from ..cli import _build_parser, _open_data, expand_command

    argv = shlex.split(command)[1:] + (["--results-dir", str(results_dir)] if results_dir else [])
    args, extra = _build_parser().parse_known_args(argv)
    args.dry_run = True
    exp, runs = expand_command(args, extra)
    _open_data(runs, exp, strict=False)
    return runs


def _matches(run, row: pd.Series, renames: dict[str, str]) -> bool:
    for k, v in run.cell.items():
        have = row.get(k)
        if isinstance(v, dict):
            v = section_label(v)
        elif k.endswith(("checkpoint", "root")) and v:
            v, have = Path(str(v)).name, renames.get(Path(str(have)).name, Path(str(have)).name)
        if str(v) != str(have):
            return False
    return int(row["seed"]) == int(run.config["seed"])


def _move_to_its_run(exp_dir: Path, what: str, old_id: str, match: list, command: str):
    """``(run, its directory)``: the one run ``match`` holds, with ``runs/<old_id>`` renamed to its run id.
    Raises ``ValueError`` naming ``what`` when ``match`` holds none or several."""
    if len(match) != 1:
        raise ValueError(f"{exp_dir}: {what} matches {len(match)} runs of `{command}`")
    run = match[0]
    new_dir = exp_dir / "runs" / run.run_id
    if exp_dir / "runs" / old_id != new_dir:
        os.replace(exp_dir / "runs" / old_id, new_dir)
    return run, new_dir


def _replace_all(text: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        text = text.replace(old, new)
    return text


def migrate(exp_dir: Path, renames: dict[str, str] | None = None, log=print) -> dict[str, str]:
    """Migrate ``exp_dir`` (see the module docstring); return ``{old run id: new run id}``."""
    exp_dir = Path(exp_dir)
    legacy = pd.read_csv(exp_dir / "runs.csv", keep_default_na=False, na_values=[""])
    if "status" in legacy.columns:
        raise ValueError(f"{exp_dir / 'runs.csv'} is already derived from run records; nothing to migrate")
    renames = dict(renames or {})
    done: dict[str, str] = {}
    for command, rows in legacy.groupby("command", sort=False):
        command = _replace_all(command, renames)
        runs = _expand(command)
        for _, row in rows.iterrows():
            run, new_dir = _move_to_its_run(exp_dir, f"row {row['run_id']}", row["run_id"],
                                            [r for r in runs if _matches(r, row, renames)], command)
            cell_keys = set(run.cell)
            values = {k: (None if pd.isna(v) else v) for k, v in row.items()}
            provenance = {k: values[k] for k in PROVENANCE if k in values}
            provenance["command"] = command
            metrics = {k: (_replace_all(v, renames) if isinstance(v, str) else v) for k, v in values.items()
                       if k not in cell_keys and k not in PROVENANCE and k not in LEAD_COLUMNS}
            write_record(new_dir, {"run_id": run.run_id, "experiment": run.experiment, "task": run.task,
                                   "status": "finished", "scale": run.scale, "cell": run.cell, "metrics": metrics,
                                   "provenance": provenance, "error": None})
            write_run_config(run, new_dir, command)
            done[row["run_id"]] = run.run_id
            log(f"{row['run_id']} -> {run.run_id}")
    write_table(exp_dir)
    return done


def _plain_json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def reidentify(exp_dir: Path, renames: dict[str, str] | None = None, log=print) -> dict[str, str]:
    """Rename the run directories of a records folder whose run ids changed with the code (a change to what
    a run id covers): each record's own command is expanded again (``init.run`` looked up beside
    ``exp_dir``), the record matched to the run of its grid cell and seed, its directory renamed, and its
    ``run_id``, command, cell and path-valued metrics rewritten with the renames (those of this folder and
    ``renames``, from another experiment reidentified first); ``config.yaml`` is rewritten and ``runs.csv``
    rebuilt. The measured values are kept as they are. Returns ``{old run id: new run id}``; raises
    ``ValueError`` naming a record that matches no run of its command."""
    exp_dir = Path(exp_dir)
    renames = dict(renames or {})
    records = [read_record(d) for d in sorted((exp_dir / "runs").iterdir()) if (d / RECORD).is_file()]
    done: dict[str, str] = {}
    commands = dict.fromkeys(r["provenance"]["command"] for r in records)
    for command in commands:
        new_command = _replace_all(command, renames)
        runs = _expand(new_command, exp_dir.parent)
        for rec in (r for r in records if r["provenance"]["command"] == command):
            cell = _replace_all(_plain_json(rec["cell"]), renames)
            seed = int(rec["metrics"].get("seed", 0))
            old_id = rec["run_id"]
            run, new_dir = _move_to_its_run(exp_dir, f"record {old_id}", old_id, [
                r for r in runs if _plain_json(r.cell) == cell and int(r.config["seed"]) == seed], new_command)
            rec.update(run_id=run.run_id, cell=run.cell)
            rec["provenance"]["command"] = new_command
            rec["metrics"] = {k: (_replace_all(v, renames) if isinstance(v, str) else v)
                              for k, v in rec["metrics"].items()}
            write_record(new_dir, rec)
            write_run_config(run, new_dir, new_command)
            done[old_id] = run.run_id
            log(f"{old_id} -> {run.run_id}")
    write_table(exp_dir)
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vitrepro.experiments.migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("exp_dir", help="an experiment's results folder holding a legacy runs.csv")
    p.add_argument("--rename", action="append", default=[], help="OLD=NEW run-directory renames to apply to commands")
    p.add_argument("--reidentify", action="store_true", help="a records folder: rename its runs to the run ids the "
                   "current code gives them")
    args = p.parse_args(argv)
    renames = dict(r.split("=", 1) for r in args.rename)
    (reidentify if args.reidentify else migrate)(Path(args.exp_dir), renames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
