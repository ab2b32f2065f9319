"""``vitrepro figures``: every figure and table of the suite redrawn from results, without training.

For each experiment file that names a report (``report.kind``), its report for every scale with finished
runs in ``<results>/<experiment>/runs.csv`` (Table 8, Figures 3/4, Figure 5 with Table 6, the few-shot
curves), written beside the runs; then each inspection figure (Figures 6/7) from the numbers saved beside
it (``<results>/analysis/*.npz``, ``vitrepro analyze``). The paper's numbers come from ``results/paper/``
through each experiment's ``report.paper``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd


def regenerate(experiments_dir: Path, results_dir: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Redraw every report and inspection figure under ``results_dir``; return the written paths. An
    experiment without runs is named in the log and skipped. Raises ``FileNotFoundError`` when
    ``experiments_dir`` holds no experiment file."""
    from ..experiments import Experiment
    from ..experiments.runner import write_experiment_report
    from .inspection import redraw

    files = sorted(Path(experiments_dir).glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"figures: no experiment file (*.yaml) in {experiments_dir}")
    written: list[Path] = []
    for path in files:
        exp = Experiment(path)
        if not exp.report:
            continue
        runs_csv = Path(results_dir) / exp.name / "runs.csv"
        if not runs_csv.is_file():
            log(f"skipped {exp.name}: no {runs_csv} (run `vitrepro run {path}` first)")
            continue
        runs = pd.read_csv(runs_csv)
        finished = runs[runs["status"] == "finished"] if "status" in runs else runs
        for scale in sorted(set(finished["scale"].astype(str))):
            written += write_experiment_report(exp, runs_csv, scale)
    for npz in sorted((Path(results_dir) / "analysis").glob("*.npz")):
        written.append(redraw(npz))
    return written


__all__ = ["regenerate"]
