"""Provenance and storage shared by the benchmark scripts: every figure is kept with the command that
measured it, the versions and the time, appended to a CSV under ``results/benchmarks/``."""
from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import timm
import torch


#: ``data`` of a measurement that used no data set: the model steps time random tensors held in memory.
RANDOM_BATCH = "in-memory random batch (no data set)"


def append_results(df: pd.DataFrame, script: str, argv: list[str] | None, out_csv: Path) -> Path:
    """Add ``torch``, ``timm``, ``command`` (``python benchmarks/<script> <args>``) and ``measured_at``
    columns to ``df`` and append it to ``out_csv``, matching columns by name (a new column is added to the
    file, empty in its older rows). ``df`` should carry ``data``: the data copy measured (or that none
    was). Returns the path."""
    df["torch"] = torch.__version__
    df["timm"] = timm.__version__
    df["command"] = f"python benchmarks/{script} " + shlex.join(sys.argv[1:] if argv is None else argv)
    df["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    if out_csv.exists():
        df = pd.concat([pd.read_csv(out_csv), df], ignore_index=True)
    df.to_csv(out_csv, index=False)
    print(f"appended to {out_csv}")
    return out_csv
