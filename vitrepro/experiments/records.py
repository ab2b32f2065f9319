"""Per-run records, and ``runs.csv`` as a table derived from them.

Every run owns ``<results>/<experiment>/runs/<run_id>/`` and writes one ``record.json`` there, atomically
(a temporary file renamed into place), when it finishes or fails::

    {"run_id": ..., "experiment": ..., "task": "pretrain", "status": "finished" | "failed",
     "scale": ..., "cell": {...grid values...}, "metrics": {...}, "provenance": {...}, "error": null | "...",
     "failure": "diverged" | "infrastructure" | "error" (failed runs only: how the runner retries them)}

A process only ever writes its own run's record, so concurrent jobs of an array never lose or duplicate
one. ``runs.csv`` is rebuilt from all the records (``write_table``: at the end of every ``vitrepro run``,
by ``vitrepro report`` and ``vitrepro collect``) under a file lock, sorted and de-duplicated by run id,
with one schema for every protocol: ``run_id, experiment, task, status, scale``, the grid cell's values,
then the metrics and the provenance (``command``, ``hardware``, ``wall_s``, ``data``, ...), and ``error``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from ..atomic import write_text

RECORD = "record.json"
STATUSES = ("finished", "failed")
LEAD_COLUMNS = ("run_id", "experiment", "task", "status", "scale")


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (see the module docstring) as ``run_dir/record.json``; return the path.
    Raises ``ValueError`` for a record without the lead fields or with an unknown status."""
    missing = [k for k in LEAD_COLUMNS if k not in record]
    if missing or record["status"] not in STATUSES:
        raise ValueError(f"a run record needs {', '.join(LEAD_COLUMNS)} and a status in {STATUSES}; "
                         f"missing {missing}, status {record.get('status')!r}")
    path = Path(run_dir) / RECORD
    write_text(path, json.dumps(record, indent=1, default=_plain) + "\n")
    return path


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and paths."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's record, or None when it has none yet (never finished nor failed)."""
    path = Path(run_dir) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def section_label(section: dict[str, Any]) -> str:
    """The label of a cell value that is a whole section, as tables, figures and run ids show it: its
    ``name`` and every other key, ``{name: ViT-C/4, depth: 3}`` -> ``"ViT-C/4 depth=3"`` (a section without
    a name: its values joined by ``_``)."""
    if "name" not in section:
        return "_".join(map(str, section.values()))
    fields = [f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
              for k, v in section.items() if k != "name"]
    return " ".join([str(section["name"]), *fields])


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One ``runs.csv`` row of a record. A cell value that is a whole section (``{model: {name: R50x1}}``)
    is shown by its ``section_label``, as in the run id."""
    row = {k: record[k] for k in LEAD_COLUMNS}
    cell = record.get("cell") or {}
    row.update({k: section_label(v) if isinstance(v, dict) else v for k, v in cell.items()})
    row.update(record.get("metrics") or {})
    row.update({k: section_label(v) for k, v in cell.items() if isinstance(v, dict)})  # over the bare model name
    row.update(record.get("provenance") or {})
    row["error"] = record.get("error")
    for key in ("variant", "config_id"):  # what the command line changed; replicates share a config id
        if key in record:
            row[key] = record[key]
    if record.get("failure"):  # diverged | infrastructure | error (runner.FAILURE_KINDS)
        row["failure"] = record["failure"]
    return row


def collect(exp_dir: Path) -> pd.DataFrame:
    """Every record under ``exp_dir/runs/*/record.json`` as one table, sorted by run id, one row per run
    id (a record whose folder is not named by its run id is ignored)."""
    rows = []
    for path in sorted(Path(exp_dir).glob(f"runs/*/{RECORD}")):
        record = json.loads(path.read_text())
        if record.get("run_id") == path.parent.name:
            rows.append(flatten(record))
    if not rows:
        return pd.DataFrame(columns=[*LEAD_COLUMNS, "error"])
    df = pd.DataFrame(rows).drop_duplicates("run_id", keep="last").sort_values("run_id", kind="stable")
    rest = [c for c in df.columns if c not in LEAD_COLUMNS and c != "error"]
    return df[[*LEAD_COLUMNS, *rest, "error"]].reset_index(drop=True)


def write_table(exp_dir: Path) -> Path:
    """Rebuild ``exp_dir/runs.csv`` from the records, under ``exp_dir/.runs.lock`` so that the last of
    several concurrent writers has seen every record written before it; return the path."""
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(exp_dir / ".runs.lock")):
        table = collect(exp_dir)
        write_text(exp_dir / "runs.csv", table.to_csv(index=False))
    return exp_dir / "runs.csv"


def find_runs(exp_dir: Path, label: str, scale: str | None = None) -> list[Path]:
    """The finished runs of ``exp_dir`` named ``label``: a whole run id, or its cell label (the run id less
    its 8-digit hash: ``R50x1-1000`` finds ``R50x1-1000-ffb16ae2``), of ``scale`` when given."""
    found = []
    for path in sorted(Path(exp_dir).glob(f"runs/*/{RECORD}")):
        name = path.parent.name
        if name != label and not re.fullmatch(re.escape(label) + r"-[0-9a-f]{8}", name):
            continue
        record = json.loads(path.read_text())
        if record.get("status") == "finished" and (scale is None or record.get("scale") == scale):
            found.append(path.parent)
    return found


__all__ = ["RECORD", "STATUSES", "LEAD_COLUMNS", "write_record", "read_record", "flatten",
           "collect", "write_table", "find_runs"]
