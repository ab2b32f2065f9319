"""New runs beside the committed reference runs and the paper's numbers, cell by cell (``vitrepro compare``).

A run is matched to a reference run by its run id: the same id means the same config on the same data
(named by content), so a reproduction run on a fresh clone meets the committed run it reproduces. The
paper's numbers come from the experiment's ``report.paper`` CSV, joined on the cell columns both tables
share (e.g. ``posemb, posemb_placement`` for Table 8) for the metrics it lists (e.g. ``fewshot_5``).
Accuracies are shown in percent and differences in points.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..atomic import write_text
from ..experiments.records import collect

#: The accuracies compared (those a run has): few-shot linear, test top-1, fine-tuned test top-1.
METRICS = ("fewshot_1", "fewshot_2", "fewshot_5", "fewshot_10", "fewshot_25", "top1", "ft_top1")


def _finished(exp_dir: Path, scale: str) -> pd.DataFrame:
    df = collect(exp_dir)
    if df.empty:
        return df
    return df[(df["status"] == "finished") & (df["scale"] == scale)].reset_index(drop=True)


def _cell_keys(exp_dir: Path) -> set[str]:
    return {k for path in Path(exp_dir).glob("runs/*/record.json") for k in (json.loads(path.read_text()).get("cell") or {})}


def compare_runs(mine: pd.DataFrame, reference: pd.DataFrame, paper: pd.DataFrame | None = None,
                 cell_keys: list[str] = ()) -> pd.DataFrame:
    """One row per run id and metric found in ``mine`` or ``reference`` (``runs.csv`` tables): ``run_id``,
    ``metric``, ``ours``, ``reference``, ``diff`` (ours - reference), ``paper``, ``diff_paper`` (ours -
    paper); fractions as in the tables, NaN where a side lacks the run or the metric. A run meets the
    ``paper`` row whose ``cell_keys`` columns hold its values (e.g. ``posemb, posemb_placement``)."""
    rows = []
    ids = list(dict.fromkeys([*mine.get("run_id", []), *reference.get("run_id", [])]))
    by_id = {name: df.set_index("run_id") if len(df) else None for name, df in (("ours", mine), ("ref", reference))}
    cell_keys = [c for c in cell_keys if paper is not None and c in paper.columns]
    for run_id in sorted(ids):
        sides = {name: (df.loc[run_id] if df is not None and run_id in df.index else None) for name, df in by_id.items()}
        row_any = sides["ours"] if sides["ours"] is not None else sides["ref"]
        paper_row = None
        if paper is not None and cell_keys:
            hit = paper
            for k in cell_keys:
                hit = hit[hit[k].astype(str) == str(row_any.get(k))]
            paper_row = hit.iloc[0] if len(hit) == 1 else None
        for metric in METRICS:
            ours = sides["ours"].get(metric) if sides["ours"] is not None else None
            ref = sides["ref"].get(metric) if sides["ref"] is not None else None
            if pd.isna(ours) and pd.isna(ref):
                continue
            pap = paper_row.get(metric) if paper_row is not None and metric in paper_row else None
            rows.append({"run_id": run_id, "metric": metric, "ours": ours, "reference": ref, "paper": pap})
    out = pd.DataFrame(rows, columns=["run_id", "metric", "ours", "reference", "paper"])
    out[["ours", "reference", "paper"]] = out[["ours", "reference", "paper"]].astype(float)
    out["diff"] = out["ours"] - out["reference"]
    out["diff_paper"] = out["ours"] - out["paper"]
    return out


def _pct(x: float) -> str:
    return "" if pd.isna(x) else f"{100 * x:.2f}"


def _pts(x: float) -> str:
    return "" if pd.isna(x) else f"{100 * x:+.2f}"


def compare_markdown(table: pd.DataFrame, title: str, ours_dir: Path, reference_dir: Path) -> str:
    """The comparison as a markdown table with a one-line summary of the runs matched."""
    both = table.dropna(subset=["ours", "reference"])
    runs_ours = table.dropna(subset=["ours"])["run_id"].nunique()
    runs_ref = table.dropna(subset=["reference"])["run_id"].nunique()
    lines = [f"# {title}", "",
             f"Ours: {ours_dir} ({runs_ours} runs). Reference: {reference_dir} ({runs_ref} runs). "
             f"{both['run_id'].nunique()} runs in both (same run id: same config, same data)"
             + (f"; mean |ours - reference| {100 * both['diff'].abs().mean():.2f} points, largest "
                f"{100 * both['diff'].abs().max():.2f}." if len(both) else "."),
             "Accuracies in %, differences in points; the paper's numbers where it gives the cell.", "",
             "| run | metric | ours | reference | ours - reference | paper | ours - paper |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        lines.append(f"| {r.run_id} | {r.metric} | {_pct(r.ours)} | {_pct(r.reference)} | {_pts(r.diff)} | "
                     f"{_pct(r.paper)} | {_pts(r.diff_paper)} |")
    return "\n".join(lines) + "\n"


def write_comparison(name: str, scale: str, ours_dir: Path, reference_dir: Path, paper_csv: Path | None) -> Path:
    """Compare ``<ours_dir>/<name>`` with ``<reference_dir>/<name>`` at ``scale``; write
    ``<ours_dir>/<name>/compare_<scale>.md`` and return its path. Raises ``FileNotFoundError`` when
    neither folder has a finished run of that scale."""
    mine, ref = _finished(Path(ours_dir) / name, scale), _finished(Path(reference_dir) / name, scale)
    if mine.empty and ref.empty:
        raise FileNotFoundError(f"no finished runs of {name} at scale {scale} in {ours_dir} or {reference_dir}")
    paper = pd.read_csv(paper_csv) if paper_csv else None
    keys = sorted(_cell_keys(Path(ours_dir) / name) | _cell_keys(Path(reference_dir) / name))
    table = compare_runs(mine, ref, paper, keys)
    out = Path(ours_dir) / name / f"compare_{scale}.md"
    write_text(out, compare_markdown(table, f"{name}, scale {scale}: ours beside the reference and the paper",
                                     Path(ours_dir) / name, Path(reference_dir) / name))
    return out


__all__ = ["METRICS", "compare_runs", "compare_markdown", "write_comparison"]
