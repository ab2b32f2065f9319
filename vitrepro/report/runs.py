"""Reading a report's rows: one scale of an experiment's ``runs.csv``, finished runs apart from failed ones."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def load_scale(runs_csv: Path, scale: str, columns: tuple[str, ...] = ("scale",)) -> pd.DataFrame:
    """The rows of ``scale`` (all statuses). Raises ``FileNotFoundError`` for a missing file, ``ValueError``
    naming the missing ``columns`` (with the columns present), or the scales present when none is ``scale``."""
    runs_csv = Path(runs_csv)
    if not runs_csv.is_file():
        raise FileNotFoundError(f"runs file not found: {runs_csv}")
    runs = pd.read_csv(runs_csv)
    missing = [c for c in ("scale", *columns) if c not in runs.columns]
    if missing:
        raise ValueError(f"{runs_csv}: missing column(s) {sorted(set(missing))}; columns are {list(runs.columns)}")
    present = sorted(set(runs["scale"].astype(str)))
    runs = runs[runs["scale"] == scale].copy()
    if runs.empty:
        raise ValueError(f"{runs_csv}: no rows with scale={scale!r}; scales present: {', '.join(present) or 'none'}")
    return one_configuration(runs, runs_csv).reset_index(drop=True)


def one_configuration(runs: pd.DataFrame, where: Path | str = "runs.csv") -> pd.DataFrame:
    """The rows of one configuration: a report averages its cells over seeds, so runs whose command line
    changed anything else (``variant``, e.g. ``trainer.max_steps=3``) are not replicates of the others. Keeps
    the experiment file's own configuration (variant "") when present, else the variant with the most rows;
    prints one line naming what it left out. Rows of before the ``variant`` column count as variant ""."""
    if "variant" not in runs.columns:
        return runs
    variant = runs["variant"].astype(object).fillna("").astype(str)
    kinds = variant.value_counts()
    if len(kinds) < 2:
        return runs
    keep = "" if "" in kinds.index else kinds.index[0]
    left = {v: int(n) for v, n in kinds.items() if v != keep}
    print(f"note: {where}: the report shows the runs of {'the experiment file' if keep == '' else repr(keep)}; left "
          f"out, as not replicates of those: " + "; ".join(f"{n} run(s) with {v or 'no override'}" for v, n in left.items()))
    return runs[variant == keep]


def source_name(runs_csv: Path | str) -> str:
    """A runs table named relative to its results folder (``pos_emb_ablation/runs.csv``): a report names no
    absolute path of the machine it was drawn on."""
    return f"{Path(runs_csv).parent.name}/{Path(runs_csv).name}"


def split_failed(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(finished, failed)`` rows (a table without a status column: all finished)."""
    status = runs["status"] if "status" in runs.columns else pd.Series("finished", index=runs.index)
    return runs[status == "finished"].reset_index(drop=True), runs[status == "failed"].reset_index(drop=True)


__all__ = ["load_scale", "one_configuration", "source_name", "split_failed"]
