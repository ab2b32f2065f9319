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
    return runs.reset_index(drop=True)


def split_failed(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(finished, failed)`` rows (a table without a status column: all finished)."""
    status = runs["status"] if "status" in runs.columns else pd.Series("finished", index=runs.index)
    return runs[status == "finished"].reset_index(drop=True), runs[status == "failed"].reset_index(drop=True)


__all__ = ["load_scale", "split_failed"]
