"""Table 8 (Appendix D.4) of Dosovitskiy et al. 2021: the position-embedding ablation.

The paper trains ViT-B/16 with four kinds of position embedding (none, learned 1-D, learned 2-D,
relative) added in up to three places (only to the patch embeddings at the stem ("Default/Stem"),
a new embedding at every layer ("Every layer"), one embedding shared by every layer ("Every
layer-shared")) and reports ImageNet 5-shot linear accuracy for the 8 combinations it ran::

    | Pos. emb. | Default/Stem | Every layer | Every layer-shared |
    | None      | 0.61382      | N/A         | N/A                |
    | 1-D       | 0.64206      | 0.63964     | 0.64292            |
    | 2-D       | 0.64001      | 0.64046     | 0.64022            |
    | Relative  | 0.64032      | N/A         | N/A                |

Those numbers live in ``results/paper/table8_pos_emb.csv`` (fractions, as printed in the paper).
This module reads our ``runs.csv`` (one row per finished training run, accuracies as fractions in
[0, 1]), averages the seeds of each cell and writes the reproduction beside the paper's numbers as
markdown (percent, 2 decimals) and as a seaborn figure.

Honesty rules kept here: a cell is filled only from rows of ``runs.csv``; a cell with no row (or
whose rows lack the metric) is shown as "–"; cells the paper marks N/A stay "N/A" unless we
actually have runs there, in which case our number is shown with "(N/A)" for the paper.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..atomic import save_figure, write_text
from .runs import failed_runs_markdown, mean_std_text, one_configuration, source_name

__all__ = [
    "POSEMB_ORDER",
    "PLACEMENT_ORDER",
    "POSEMB_NAMES",
    "PLACEMENT_NAMES",
    "describe_runs",
    "load_paper",
    "load_runs",
    "summarize",
    "table8_markdown",
    "write_report",
]

#: Axis values as our code (and runs.csv) names them, in the paper's row/column order.
POSEMB_ORDER = ("none", "learned_1d", "learned_2d", "relative")
PLACEMENT_ORDER = ("stem", "every_layer", "every_layer_shared")
#: Display names as printed in Table 8.
POSEMB_NAMES = {"none": "None", "learned_1d": "1-D", "learned_2d": "2-D", "relative": "Relative"}
PLACEMENT_NAMES = {
    "stem": "Default/Stem",
    "every_layer": "Every layer",
    "every_layer_shared": "Every layer-shared",
}
#: Accuracy columns of runs.csv (fractions in [0, 1]) that the report averages per cell.
ACCURACY_COLUMNS = ("fewshot_1", "fewshot_5", "fewshot_10", "fewshot_25", "top1")
METRIC_LABELS = {
    "fewshot_1": "1-shot",
    "fewshot_5": "5-shot",
    "fewshot_10": "10-shot",
    "fewshot_25": "25-shot",
    "top1": "top-1",
}
#: The paper's metric for Table 8; the paper CSV's value column.
PAPER_METRIC = "fewshot_5"
PAPER_SOURCE = "Dosovitskiy et al. 2021, Table 8 (App. D.4)"
NONE_CELL = ("none", "stem")
DASH = "\u2013"  # en dash: a cell we have not run (yet)

_TEXT_COLUMNS = ("posemb", "posemb_placement", "scale", "model", "data", "hardware", "experiment")
_NUMERIC_COLUMNS = ACCURACY_COLUMNS + tuple(f"{c}_std" for c in ACCURACY_COLUMNS) + (
    "seed",
    "wall_s",
    "params",
    "gflops",
    "epochs",
    "steps",
    "train_images",
)


# --------------------------------------------------------------------------------------- loading
def _clean_text(series: pd.Series) -> pd.Series:
    """Strip whitespace from a text column, keeping missing values missing (not the string 'nan')."""
    return series.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", pd.NA)


def load_runs(runs_csv: Path, scale: str | None = None) -> pd.DataFrame:
    """Read ``runs.csv`` and keep the rows of one scale.

    Args:
        runs_csv: the runs file (columns as written by the experiment runner; at least ``posemb``,
            ``posemb_placement``, ``scale``; accuracy columns ``fewshot_{1,5,10,25}`` and ``top1``
            are fractions in [0, 1] and may be empty when not evaluated).
        scale: keep only rows whose ``scale`` equals this (e.g. ``"cpu"``); ``None`` keeps all rows.

    Returns:
        The rows as a DataFrame with the file's columns; text columns stripped, accuracy, ``seed``
        and ``wall_s`` columns numeric (NaN where empty). Accuracies stay fractions. Index reset.

    Raises:
        FileNotFoundError: ``runs_csv`` does not exist.
        ValueError: a required column is missing, or ``scale`` is given and no row has it (the
            message names the file and the scales present in it).
    """
    runs_csv = Path(runs_csv)
    if not runs_csv.is_file():
        raise FileNotFoundError(f"runs file not found: {runs_csv}")
    # keep_default_na=False: a literal "None"/"NA" in a text column stays text; only empty is missing
    runs = pd.read_csv(runs_csv, keep_default_na=False, na_values=[""])
    missing = [c for c in ("posemb", "posemb_placement", "scale") if c not in runs.columns]
    if missing:
        raise ValueError(f"{runs_csv}: missing column(s) {missing}; columns are {list(runs.columns)}")
    for col in _TEXT_COLUMNS:
        if col in runs.columns:
            runs[col] = _clean_text(runs[col].astype(object))
    for col in _NUMERIC_COLUMNS:
        if col in runs.columns:
            runs[col] = pd.to_numeric(runs[col], errors="coerce")
    if scale is not None:
        present = sorted({str(s) for s in runs["scale"].dropna()})
        runs = runs[runs["scale"] == scale]
        if runs.empty:
            raise ValueError(
                f"{runs_csv}: no rows with scale={scale!r}; scales present: "
                f"{', '.join(present) if present else 'none (the file has no rows)'}"
            )
        runs = one_configuration(runs, runs_csv)
    return runs.reset_index(drop=True)


def load_paper(paper_csv: Path) -> pd.DataFrame:
    """Read the paper's Table 8 CSV (``results/paper/table8_pos_emb.csv``).

    Returns:
        One row per cell the paper reports (8 rows): columns ``posemb``, ``posemb_placement``,
        ``fewshot_5`` (ImageNet 5-shot linear accuracy of ViT-B/16 as a fraction, e.g. 0.64206),
        ``model``, ``dataset``, ``metric``, ``source``. Cells absent here are the paper's "N/A".

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a required column is missing or a cell appears twice.
    """
    paper_csv = Path(paper_csv)
    if not paper_csv.is_file():
        raise FileNotFoundError(f"paper table not found: {paper_csv}")
    paper = pd.read_csv(paper_csv, keep_default_na=False, na_values=[""])
    missing = [c for c in ("posemb", "posemb_placement", PAPER_METRIC) if c not in paper.columns]
    if missing:
        raise ValueError(f"{paper_csv}: missing column(s) {missing}")
    for col in ("posemb", "posemb_placement"):
        paper[col] = _clean_text(paper[col].astype(object))
    paper[PAPER_METRIC] = pd.to_numeric(paper[PAPER_METRIC], errors="raise")
    if paper.duplicated(["posemb", "posemb_placement"]).any():
        raise ValueError(f"{paper_csv}: a (posemb, posemb_placement) cell appears more than once")
    return paper.reset_index(drop=True)


# ------------------------------------------------------------------------------------ summarize
def _order_key(values: pd.Series, order: tuple[str, ...]) -> pd.Series:
    return values.map(lambda v: order.index(v) if v in order else len(order))


def summarize(runs: pd.DataFrame, metric: str = "fewshot_5") -> pd.DataFrame:
    """Average the seeds of each (posemb, posemb_placement) cell.

    Args:
        runs: rows from :func:`load_runs` (normally one scale; mixing scales would average them).
        metric: the accuracy column to summarise with mean/std/n (default ``fewshot_5``, the
            paper's Table 8 metric).

    Returns:
        One row per cell that has at least one run, in the paper's order (unknown axis values
        last), with columns (accuracies are fractions in [0, 1]):

        - ``posemb``, ``posemb_placement``: axis values as runs.csv names them;
        - ``mean``: mean of ``metric`` over the cell's runs that have it (NaN if none has);
        - ``std``: sample standard deviation (ddof=1) of ``metric`` over seeds; NaN when n < 2;
        - ``n``: number of runs with a value for ``metric``; ``n_runs``: number of rows;
        - ``top1``, ``fewshot_1``, ``fewshot_5``, ``fewshot_10``, ``fewshot_25``: means over the
          cell's runs (NaN where the column is absent or empty);
        - ``seeds``: the seeds as a comma-separated string.

    Raises:
        ValueError: ``metric`` is not a column of ``runs``.
    """
    if metric not in runs.columns:
        raise ValueError(f"metric {metric!r} is not a column of runs; columns: {list(runs.columns)}")
    runs = runs.copy()
    for col in ACCURACY_COLUMNS + (metric,):
        runs[col] = pd.to_numeric(runs[col], errors="coerce") if col in runs.columns else math.nan
    if "seed" not in runs.columns:
        runs["seed"] = math.nan
    rows = []
    for (posemb, placement), cell in runs.groupby(["posemb", "posemb_placement"], dropna=False, sort=False):
        vals = cell[metric].dropna()
        row = {
            "posemb": posemb,
            "posemb_placement": placement,
            "mean": vals.mean() if len(vals) else math.nan,
            "std": vals.std(ddof=1) if len(vals) > 1 else math.nan,
            "n": int(len(vals)),
            "n_runs": int(len(cell)),
        }
        for col in ACCURACY_COLUMNS:
            col_vals = cell[col].dropna()
            row[col] = col_vals.mean() if len(col_vals) else math.nan
        row["seeds"] = ",".join(
            str(int(s)) if float(s).is_integer() else str(s) for s in cell["seed"].dropna().tolist()
        )
        rows.append(row)
    columns = ["posemb", "posemb_placement", "mean", "std", "n", "n_runs", *ACCURACY_COLUMNS, "seeds"]
    summary = pd.DataFrame(rows, columns=columns)
    if summary.empty:
        return summary
    summary = (
        summary.assign(
            _p=_order_key(summary["posemb"], POSEMB_ORDER),
            _q=_order_key(summary["posemb_placement"], PLACEMENT_ORDER),
        )
        .sort_values(["_p", "_q", "posemb", "posemb_placement"], kind="stable", na_position="last")
        .drop(columns=["_p", "_q"])
        .reset_index(drop=True)
    )
    return summary


def describe_runs(runs: pd.DataFrame, scale: str | None = None) -> str:
    """One markdown line saying where the numbers come from.

    Returns:
        e.g. ``"**Ours:** scale `cpu` · model(s): vit_tiny · data: cifar10 (50000 train) ·
        hardware: 2 CPU · total wall time 1.50 h (5400 s) over 9 runs"``. Missing columns or
        values are reported as "unknown".
    """

    def distinct(col: str) -> str:
        if col not in runs.columns:
            return "unknown"
        vals = sorted({str(v) for v in runs[col].dropna()})
        return ", ".join(vals) if vals else "unknown"

    if scale is None:
        scale = distinct("scale")
    wall = pd.to_numeric(runs["wall_s"], errors="coerce") if "wall_s" in runs.columns else None
    if wall is None or wall.notna().sum() == 0:
        wall_txt = "total wall time unknown"
    else:
        total = float(wall.sum())
        known = int(wall.notna().sum())
        wall_txt = f"total wall time {_fmt_duration(total)}"
        if known < len(runs):
            wall_txt += f" (known for {known} of {len(runs)} runs)"
    return (
        f"**Ours:** scale `{scale}` · model(s): {distinct('model')} · data: {distinct('data')} · "
        f"hardware: {distinct('hardware')} · {wall_txt} over {len(runs)} run(s)"
    )


def _fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min ({seconds:.0f} s)"
    return f"{seconds / 3600:.2f} h ({seconds:.0f} s)"


# ------------------------------------------------------------------------------------- markdown
def _pct(x: float) -> str:
    return DASH if x is None or pd.isna(x) else f"{100 * x:.2f}"


def _signed_pp(x: float) -> str:
    return DASH if x is None or pd.isna(x) else f"{100 * x:+.2f}"


def _display(value, names: dict[str, str]) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "?"
    return names.get(value, str(value))


def _cell_lookup(frame: pd.DataFrame) -> dict[tuple, pd.Series]:
    return {(r["posemb"], r["posemb_placement"]): r for _, r in frame.iterrows()}


def _md_table(header: list[str], rows: list[list[str]], align: list[str]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _ours_txt(row: pd.Series | None) -> str:
    if row is None or row["n"] == 0 or pd.isna(row["mean"]):
        return DASH
    return mean_std_text(100 * row["mean"], 100 * row["std"], row["n"])


# --------------------------------------------------------------------------------------- figure


def table8_markdown(
    summary: pd.DataFrame, paper: pd.DataFrame, metric: str = "fewshot_5", caption: str = "",
    failed: pd.DataFrame | None = None,
) -> str:
    """Render our Table 8 beside the paper's as markdown.

    Args:
        summary: output of :func:`summarize` (fractions).
        paper: output of :func:`load_paper` (fractions; the paper's metric is ``fewshot_5``).
        metric: the metric ``summary`` was built with; used for labels. The paper column is
            always the paper's 5-shot linear accuracy.
        caption: a line printed under the title (``write_report`` passes :func:`describe_runs`).
        failed: the rows of failed runs (status ``failed``): a cell with no finished run but a failed
            one reads ``failed``, never a number; each is listed with its error under the tables.

    Returns:
        Markdown text with, in percent (2 decimals):

        (a) the 4x3 grid in the paper's layout, each cell ``"ours ± std (paper)"`` (``± std``
            only when n > 1); ``"N/A"`` where the paper has no value and we have no run;
            ``"– (paper)"`` where the paper has a value but we have no run (or no value for
            ``metric``) -- a cell is never filled without a row;
        (b) a long table, one row per cell we ran: n, ours ``metric`` mean ± std, ours 1/10/25-shot
            and top-1 means, paper 5-shot, ours minus our None/Stem cell and paper minus the
            paper's None/Stem cell (percentage points).
    """
    label = METRIC_LABELS.get(metric, metric)
    ours = _cell_lookup(summary)
    failed = failed if failed is not None else pd.DataFrame(columns=["posemb", "posemb_placement"])
    failed_cells = set(zip(failed["posemb"], failed["posemb_placement"]))
    theirs = {k: r[PAPER_METRIC] for k, r in _cell_lookup(paper).items()}

    lines = ["## Position-embedding ablation (ViT paper Table 8, App. D.4)", ""]
    if caption:
        lines += [caption, ""]
    lines += [
        f"**Paper:** ViT-B/16, ImageNet 5-shot linear accuracy; {PAPER_SOURCE}.",
        "",
        f"### Grid: ours {label} (%) mean ± std over seeds (paper 5-shot %)",
        "",
    ]
    grid_rows = []
    for pe in POSEMB_ORDER:
        cells = [POSEMB_NAMES[pe]]
        for pl in PLACEMENT_ORDER:
            row = ours.get((pe, pl))
            has_ours = row is not None and row["n"] > 0
            missing = "failed" if (pe, pl) in failed_cells else DASH
            if (pe, pl) not in theirs:
                cells.append(f"{_ours_txt(row)} (N/A)" if has_ours else ("failed" if missing == "failed" else "N/A"))
            else:
                paper_txt = _pct(theirs[(pe, pl)])
                cells.append(f"{_ours_txt(row) if has_ours else missing} ({paper_txt})")
        grid_rows.append(cells)
    lines += _md_table(
        ["Pos. emb.", *(PLACEMENT_NAMES[p] for p in PLACEMENT_ORDER)],
        grid_rows,
        [":---", *([":---:"] * len(PLACEMENT_ORDER))],
    )
    lines += [
        "",
        f"{DASH} = not run (no row in runs.csv, or no {label} value); N/A = not reported in the paper. "
        "± is the sample std over seeds, shown only when n > 1 (n per cell below).",
        "",
    ]

    # (b) long table
    none_ours = ours.get(NONE_CELL)
    none_ours_val = none_ours["mean"] if none_ours is not None else math.nan
    none_paper_val = theirs.get(NONE_CELL, math.nan)
    extras = [c for c in ACCURACY_COLUMNS if c != metric]
    header = [
        "Pos. emb.",
        "Placement",
        "n",
        f"ours {label} (%)",
        *(f"ours {METRIC_LABELS[c]} (%)" for c in extras),
        "paper 5-shot (%)",
        f"ours {label} − ours None (pp)",
        "paper − paper None (pp)",
    ]
    rows = []
    for _, r in summary.iterrows():
        key = (r["posemb"], r["posemb_placement"])
        paper_val = theirs.get(key, math.nan)
        rows.append(
            [
                _display(r["posemb"], POSEMB_NAMES),
                _display(r["posemb_placement"], PLACEMENT_NAMES),
                str(int(r["n"])) if r["n"] == r["n_runs"] else f"{int(r['n'])} (of {int(r['n_runs'])} runs)",
                _ours_txt(r) if r["n"] > 0 else DASH,
                *(_pct(r[c]) for c in extras),
                _pct(paper_val) if key in theirs else "N/A",
                _signed_pp(r["mean"] - none_ours_val),
                _signed_pp(paper_val - none_paper_val),
            ]
        )
    lines += ["### Per cell (our runs; accuracies in %, differences in percentage points)", ""]
    if rows:
        lines += _md_table(header, rows, [":---", ":---", "---:", *(["---:"] * (len(header) - 3))])
    else:
        lines.append("_No runs._")
    lines += [
        "",
        "Where our model, data or schedule differ from the paper's (see the lines above), absolute "
        "accuracies are not comparable; compare the differences to the None cell.",
    ]
    if metric != PAPER_METRIC:
        lines += ["", f"Note: our column is {label}; the paper column is 5-shot linear accuracy."]
    return "\n".join(lines) + "\n"


def write_report(runs_csv: Path, paper_csv: Path, out_dir: Path, scale: str) -> list[Path]:
    """Write the Table 8 reproduction for one scale.

    Reads ``runs_csv`` (our runs, fractions) and ``paper_csv`` (the paper's Table 8, fractions),
    averages seeds per cell on ``fewshot_5`` and writes:

    - ``out_dir/table8_<scale>.md``: header line (scale, models, data, hardware, total wall
      time), the 4x3 grid and the per-cell table (percent), see :func:`table8_markdown`;
    - ``out_dir/table8_<scale>.png``: paper (left) vs ours (right) bars, dpi 120, see
      :func:`plot_table8`.

    Returns:
        ``[markdown_path, png_path]``.

    Raises:
        FileNotFoundError: either CSV is missing.
        ValueError: ``runs_csv`` has no row with this ``scale`` (message names the file and the
            scales present), or a required column is missing.
    """
    runs = load_runs(runs_csv, scale=scale)
    paper = load_paper(paper_csv)
    metric = PAPER_METRIC
    status = runs["status"] if "status" in runs.columns else pd.Series("finished", index=runs.index)
    failed, runs = runs[status == "failed"], runs[status == "finished"].reset_index(drop=True)
    for col in ACCURACY_COLUMNS:  # a scale whose runs all failed has no accuracy column
        if col not in runs.columns:
            runs[col] = math.nan
    summary = summarize(runs, metric=metric)
    md = table8_markdown(summary, paper, metric=metric, caption=describe_runs(runs, scale), failed=failed)
    md += failed_runs_markdown(failed, lambda r: f"{r.posemb}, {r.posemb_placement}", level="###")
    md = f"# Table 8 reproduction, scale `{scale}`\n\nSource runs: `{source_name(runs_csv)}` (in the results folder)\n\n" + md

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / f"table8_{scale}.md"
    png_path = out_dir / f"table8_{scale}.png"
    write_text(md_path, md)
    from .pos_emb_figure import plot_table8  # the figure module imports this one's constants

    fig = plot_table8(runs, paper, metric=metric, scale=scale)
    save_figure(fig, png_path)
    return [md_path, png_path]
