"""Figures 3 and 4 (Sec. 4.3) of Dosovitskiy et al. 2021: transfer accuracy versus pre-training data size.

Reads the ``runs.csv`` of ``experiments/data_size_scaling.yaml`` (one row per model x subset; accuracies
as fractions) and writes, per scale,

- ``data_size_<scale>.md``: a table, one row per pre-training subset size, per model family the few-shot
  linear accuracies (Fig. 4's measure: 5-shot), the pre-training run's own test top-1 and the fine-tuned
  test top-1 (Fig. 3's measure), in percent; then the ViT-minus-BiT differences per size and whether the
  difference grows with data, the paper's finding ("ResNets perform better with smaller pre-training
  datasets but plateau sooner than ViT");
- ``data_size_<scale>.png``: accuracy versus subset size (log axis), one line per model, a panel per measure.

Only rows present in ``runs.csv`` are shown; a missing run is "–". Nothing is filled in from the paper,
whose Fig. 4 points are not tabulated.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import save_figure, write_text

MEASURES = {"fewshot_5": "5-shot linear", "fewshot_25": "25-shot linear", "top1": "pre-training top-1",
            "ft_top1": "fine-tuned top-1"}


def load_scaling_runs(runs_csv: Path, scale: str) -> pd.DataFrame:
    """The rows of ``scale`` with ``train_size`` numeric. Raises ``FileNotFoundError`` for a missing file,
    ``ValueError`` naming the scales present when none has ``scale`` or the columns the report needs."""
    runs_csv = Path(runs_csv)
    if not runs_csv.is_file():
        raise FileNotFoundError(f"runs file not found: {runs_csv}")
    runs = pd.read_csv(runs_csv)
    missing = [c for c in ("scale", "model", "train_size") if c not in runs.columns]
    if missing:
        raise ValueError(f"{runs_csv}: missing column(s) {missing}; columns are {list(runs.columns)}")
    present = sorted(set(runs["scale"].astype(str)))
    runs = runs[runs["scale"] == scale].copy()
    if runs.empty:
        raise ValueError(f"{runs_csv}: no rows with scale={scale!r}; scales present: {', '.join(present) or 'none'}")
    runs["train_size"] = pd.to_numeric(runs["train_size"])
    return runs.reset_index(drop=True)


def scaling_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds, in percent: index ``train_size``, columns (measure, model)."""
    measures = [m for m in MEASURES if m in runs.columns]
    table = runs.groupby(["train_size", "model"])[measures].mean().mul(100).unstack("model")
    return table.sort_index()


def _fmt(v: float) -> str:
    return "–" if pd.isna(v) else f"{v:.2f}"


def scaling_markdown(runs: pd.DataFrame, scale: str, runs_csv: Path) -> str:
    """The markdown report (see the module docstring)."""
    table = scaling_table(runs)
    models = list(dict.fromkeys(runs["model"]))
    measures = [m for m in MEASURES if m in table.columns.get_level_values(0)]
    lines = [f"# Data-size scaling (Figures 3 and 4), scale `{scale}`", "", f"Source runs: `{runs_csv}`", ""]
    hw = ", ".join(sorted(set(runs["hardware"].astype(str)))) if "hardware" in runs else "?"
    wall = runs["wall_s"].sum() / 60 if "wall_s" in runs else float("nan")
    steps = ", ".join(str(int(s)) for s in sorted(set(runs["steps"]))) if "steps" in runs else "?"
    lines += [f"{len(runs)} runs; models {', '.join(models)}; {steps} pre-training steps each; hardware {hw}; "
              f"total wall time {wall:.1f} min. Accuracies in percent (test split).", ""]
    header = ["pre-training images"] + [f"{m} {MEASURES[k]}" for k in measures for m in models]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size, row in table.iterrows():
        lines.append("| " + " | ".join([f"{int(size):,}"] + [_fmt(row.get((k, m))) for k in measures for m in models])
                     + " |")
    vit = [m for m in models if str(m).startswith(("ViT", "R50+ViT"))]
    bit = [m for m in models if m not in vit]
    if len(vit) == 1 and len(bit) == 1:
        lines += ["", f"ViT minus BiT ({vit[0]} - {bit[0]}), percentage points:", "",
                  "| pre-training images | " + " | ".join(MEASURES[k] for k in measures) + " |",
                  "|---|" + "---|" * len(measures)]
        diff = {k: table[(k, vit[0])] - table[(k, bit[0])] for k in measures}
        for size in table.index:
            lines.append(f"| {int(size):,} | " + " | ".join(
                "–" if pd.isna(diff[k][size]) else f"{diff[k][size]:+.2f}" for k in measures) + " |")
        d5 = diff["fewshot_5"].dropna()
        if len(d5) >= 2:
            trend = "grows" if d5.iloc[-1] > d5.iloc[0] else "does not grow"
            cross = "ViT overtakes BiT" if (d5.iloc[0] < 0 < d5.iloc[-1]) else (
                "no crossover: BiT ahead at every size" if (d5 < 0).all() else
                "no crossover: ViT ahead at every size" if (d5 > 0).all() else "the sign changes more than once")
            lines += ["", f"5-shot: ViT's advantage {trend} with data ({d5.iloc[0]:+.2f} pp at "
                          f"{int(d5.index[0]):,} images, {d5.iloc[-1]:+.2f} pp at {int(d5.index[-1]):,}); {cross}."]
    return "\n".join(lines) + "\n"


def plot_scaling(runs: pd.DataFrame, scale: str):
    """Accuracy versus pre-training images (log x), hue = model, one panel per measure; a matplotlib Figure
    on the Agg canvas (pyplot's global state untouched)."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    measures = [m for m in MEASURES if m in runs.columns and runs[m].notna().any()]
    long = runs.melt(id_vars=["train_size", "model"], value_vars=measures, var_name="measure", value_name="acc")
    long["acc"] = long["acc"] * 100
    fig = Figure(figsize=(4 * len(measures), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    for ax, m in zip(axes, measures):
        sns.lineplot(data=long[long["measure"] == m], x="train_size", y="acc", hue="model", marker="o", ax=ax,
                     errorbar=None)
        ax.set_xscale("log")
        ax.set_title(MEASURES[m])
        ax.set_xlabel("pre-training images")
        ax.set_ylabel("accuracy (%)")
    fig.suptitle(f"Data-size scaling, scale {scale} (cf. Figures 3 and 4)")
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``data_size_<scale>.md`` and ``.png`` into ``out_dir``; return their paths. ``paper_csv`` is
    unused (Fig. 4's points are not tabulated). Raises as ``load_scaling_runs``."""
    runs = load_scaling_runs(runs_csv, scale)
    status = runs["status"] if "status" in runs.columns else pd.Series("finished", index=runs.index)
    failed, runs = runs[status == "failed"], runs[status == "finished"].reset_index(drop=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / f"data_size_{scale}.md", out_dir / f"data_size_{scale}.png"
    text = scaling_markdown(runs, scale, runs_csv) if len(runs) else f"# Data-size scaling, scale `{scale}`\n\nNo finished run.\n"
    if len(failed):  # shown as failed, never as numbers
        text += "\n## Failed runs (retried from scratch by the same command)\n\n" + "\n".join(
            f"- `{r.run_id}` ({r.model}, {int(r.train_size)} images): {r.error}" for r in failed.itertuples()) + "\n"
    write_text(md, text)
    if not len(runs):
        return [md]
    save_figure(plot_scaling(runs, scale), png)
    return [md, png]


__all__ = ["MEASURES", "load_scaling_runs", "scaling_table", "scaling_markdown", "plot_scaling", "write_report"]
