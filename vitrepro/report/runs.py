"""Reading a report's rows: one scale of an experiment's ``runs.csv``, finished runs apart from failed ones."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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
    """The rows a report may average: in each grid cell (runs whose run ids share the cell label), the
    runs of one configuration. Runs whose command line changed anything but the seed (``variant``, e.g.
    ``trainer.max_steps=3``) are not replicates of the others; where a cell holds several variants, the
    experiment file's own (variant "") is kept if present, else the most frequent, and one line names what
    was left out. Rows of before the ``variant`` column count as variant ""."""
    if "variant" not in runs.columns or "run_id" not in runs.columns:
        return runs
    variant = runs["variant"].astype(object).fillna("").astype(str)
    cell = runs["run_id"].astype(str).str.rsplit("-", n=1).str[0]
    keep = pd.Series(True, index=runs.index)
    left: dict[str, int] = {}
    for _, rows in variant.groupby(cell):
        kinds = rows.value_counts()
        if len(kinds) < 2:
            continue
        chosen = "" if "" in kinds.index else kinds.index[0]
        keep[rows.index[rows != chosen]] = False
        for v, n in kinds.items():
            if v != chosen:
                left[v] = left.get(v, 0) + int(n)
    if left:
        print(f"note: {where}: left out of the report, as not replicates of the other runs of their cell: "
              + "; ".join(f"{n} run(s) with {v or 'no override'}" for v, n in left.items()))
    return runs[keep]


def source_name(runs_csv: Path | str) -> str:
    """A runs table named relative to its results folder (``pos_emb_ablation/runs.csv``): a report names no
    absolute path of the machine it was drawn on."""
    return f"{Path(runs_csv).parent.name}/{Path(runs_csv).name}"


def failed_runs_markdown(failed: pd.DataFrame, what, level: str = "##") -> str:
    """The report's section of failed runs ("" for none): one line per run, ``what(row)`` naming its cell,
    and its error; never numbers. How the same command retries each is the runner's failure policy."""
    if not len(failed):
        return ""
    return (f"\n{level} Failed runs (the same command retries them: a diverged run from scratch, any other from "
            f"its newest good checkpoint)\n\n" + "\n".join(f"- `{r.run_id}` ({what(r)}): {r.error}"
                                                           for r in failed.itertuples()) + "\n")


def seed_stats(runs: pd.DataFrame, metrics) -> dict[str, float]:
    """Mean and std over the rows (training seeds of one configuration) of each of ``metrics`` the rows have,
    in percent: ``{m: mean, m + "_std": std}`` (ddof 1; 0 for one row; NaN rows left out)."""
    out = {}
    for m in metrics:
        if m in runs:
            values = 100 * runs[m].dropna()
            out[m], out[f"{m}_std"] = values.mean(), (values.std(ddof=1) if len(values) > 1 else 0.0)
    return out


def mean_std_text(mean: float, std: float, n: int) -> str:
    """A table cell of ``n`` training seeds, in the units given: ``"41.02 ± 0.97"``; the mean alone when
    ``n`` is 1 (one run has no spread) or the std is NaN."""
    return f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 and not pd.isna(std) else "")


def checkpoint_run(checkpoint) -> str:
    """The run a checkpoint path names, as reports show it: the folder above ``checkpoints/``
    (``.../R50x1-1000-e504ab50/checkpoints/last.ckpt``), else the last path part (a run folder, a file);
    ``random init`` for none (NaN, empty, ``"None"``)."""
    if not isinstance(checkpoint, str) or not checkpoint.strip() or checkpoint == "None":
        return "random init"
    path = Path(checkpoint)
    return path.parents[1].name if path.parent.name == "checkpoints" and len(path.parents) > 1 else path.name


def provenance(runs: pd.DataFrame) -> str:
    """``Hardware <...>; data <...>`` of a report's runs (each distinct value once)."""
    hw = ", ".join(sorted(set(runs["hardware"].astype(str)))) if "hardware" in runs else "?"
    data = ", ".join(sorted(set(runs["data"].astype(str)))) if "data" in runs else "?"
    return f"Hardware {hw}; data {data}"


def write_md_png(out_dir: Path, stem: str, text: str, figure) -> list[Path]:
    """Write ``<stem>.md`` (``text``) and ``<stem>.png`` (``figure``, when not None) into ``out_dir``
    (created), atomically; return the written paths."""
    from ..atomic import save_figure, write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / f"{stem}.md", out_dir / f"{stem}.png"
    write_text(md, text)
    if figure is None:
        return [md]
    save_figure(figure, png)
    return [md, png]


def bars_with_seeds(ax, data: pd.DataFrame, x: str, y: str, order: list[str], ylabel: str) -> None:
    """On ``ax``: one bar a category of ``x`` (the mean of ``y``), one dot a run (a training seed), the dots
    of a category spread evenly over +-0.1 (no random jitter: the same runs draw the same figure)."""
    import seaborn as sns

    sns.barplot(data=data, x=x, y=y, order=order, errorbar=None, ax=ax, color="#c8d3e6")
    for i, category in enumerate(order):
        ys = data.loc[data[x] == category, y].dropna().to_numpy()
        offsets = np.linspace(-0.1, 0.1, len(ys)) if len(ys) > 1 else np.zeros(len(ys))
        ax.scatter(i + offsets, ys, s=25, color="#1f3b73", zorder=3)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def split_failed(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(finished, failed)`` rows (a table without a status column: all finished)."""
    status = runs["status"] if "status" in runs.columns else pd.Series("finished", index=runs.index)
    return runs[status == "finished"].reset_index(drop=True), runs[status == "failed"].reset_index(drop=True)


__all__ = ["bars_with_seeds", "checkpoint_run", "failed_runs_markdown", "load_scale", "mean_std_text", "one_configuration", "provenance", "seed_stats", "source_name",
           "split_failed", "write_md_png"]
