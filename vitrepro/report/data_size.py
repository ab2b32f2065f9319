"""Figures 3 and 4 (Sec. 4.3) of Dosovitskiy et al. 2021: transfer accuracy versus pre-training data size.

Reads the ``runs.csv`` of ``experiments/data_size_scaling.yaml`` (one row per model x subset; accuracies
as fractions) and writes, per scale,

- ``data_size_<scale>.md``: a table, one row per pre-training subset size, per model family the few-shot
  linear accuracies (Fig. 4's measure: 5-shot), the pre-training run's own test top-1 and the fine-tuned
  test top-1 (Fig. 3's measure), in percent, mean ± std over training seeds with n; then the ViT-minus-BiT differences per size and whether the
  difference grows with data, the paper's finding ("ResNets perform better with smaller pre-training
  datasets but plateau sooner than ViT");
- ``data_size_<scale>.png``: the paper's Figure 3 points (Table 5, ``results/paper/fig3_data_size.csv``)
  beside ours: 5-shot linear and fine-tuned top-1 versus subset size (log axis), one line per model, error
  bars over training seeds.

Only rows present in ``runs.csv`` are shown; a missing run is "–". Fig. 4's points are not tabulated in
the paper, so none are drawn.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import save_figure, write_text
from .runs import failed_runs_markdown, load_scale, mean_std_text, source_name, split_failed

MEASURES = {"fewshot_5": "5-shot linear", "fewshot_25": "25-shot linear", "top1": "pre-training top-1",
            "ft_top1": "fine-tuned top-1"}


def load_scaling_runs(runs_csv: Path, scale: str) -> pd.DataFrame:
    """The rows of ``scale`` with ``train_size`` numeric. Raises ``FileNotFoundError`` for a missing file,
    ``ValueError`` naming the scales present when none has ``scale`` or the columns the report needs."""
    runs = load_scale(runs_csv, scale, ("model", "train_size"))
    runs["train_size"] = pd.to_numeric(runs["train_size"])
    return runs.reset_index(drop=True)


def scaling_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds, in percent: index ``train_size``, columns (measure, model)."""
    measures = [m for m in MEASURES if m in runs.columns]
    table = runs.groupby(["train_size", "model"])[measures].mean().mul(100).unstack("model")
    return table.sort_index()


def _cell(mean: float, std: float, n: float) -> str:
    return "–" if pd.isna(mean) else mean_std_text(mean, std, int(n))


def seeds_per_cell(runs: pd.DataFrame) -> str:
    """The training seeds a (model, train_size) cell has: ``"2"``, or ``"1-2"`` where cells differ."""
    seeds = runs.groupby(["model", "train_size"]).size()
    return str(seeds.min()) if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"


def scaling_markdown(runs: pd.DataFrame, scale: str, runs_csv: Path) -> str:
    """The markdown report (see the module docstring)."""
    table = scaling_table(runs)
    groups = runs.groupby(["train_size", "model"])[[m for m in MEASURES if m in runs.columns]]
    std, count = groups.std().mul(100).unstack("model"), groups.count().unstack("model")
    n_text = seeds_per_cell(runs)
    models = list(dict.fromkeys(runs["model"]))
    measures = [m for m in MEASURES if m in table.columns.get_level_values(0)]
    lines = [f"# Data-size scaling (Figures 3 and 4), scale `{scale}`", "", f"Source runs: `{source_name(runs_csv)}` (in the results folder)", ""]
    hw = ", ".join(sorted(set(runs["hardware"].astype(str)))) if "hardware" in runs else "?"
    wall = runs["wall_s"].sum() / 60 if "wall_s" in runs else float("nan")
    steps = ", ".join(str(int(s)) for s in sorted(set(runs["steps"]))) if "steps" in runs else "?"
    lines += [f"{len(runs)} runs; models {', '.join(models)}; {steps} pre-training steps each; hardware {hw}; "
              f"total wall time {wall:.1f} min. Accuracies in percent (test split), mean ± std over the training "
              f"seeds of a cell (n = {n_text} a cell; a seed draws its own dev split, subsets, order and init).", ""]
    header = ["pre-training images"] + [f"{m} {MEASURES[k]}" for k in measures for m in models]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size, row in table.iterrows():
        lines.append("| " + " | ".join([f"{int(size):,}"] + [_cell(row.get((k, m)), std.at[size, (k, m)], count.at[size, (k, m)])
                                                       for k in measures for m in models])
                     + " |")
    vit = [m for m in models if str(m).startswith(("ViT", "R50+ViT"))]
    bit = [m for m in models if m not in vit]
    if len(vit) == 1 and len(bit) == 1:
        lines += ["", f"ViT minus BiT ({vit[0]} - {bit[0]}), percentage points, of the means:", "",
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


def plot_scaling(runs: pd.DataFrame, scale: str, paper: pd.DataFrame | None = None):
    """The paper's Figure 3 points (ImageNet top-1 after fine-tuning vs pre-training images, from
    ``paper``, Table 5) beside ours: 5-shot linear and fine-tuned top-1 vs pre-training images, mean over
    training seeds with the std as error bars, a tick at every subset size, one legend. Sized for a
    paper's full text width (7 in) with 8-point text. A matplotlib Figure on the Agg canvas."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ours = runs
    measures = [m for m in ("fewshot_5", "ft_top1") if m in ours.columns and ours[m].notna().any()]
    panels = (1 if paper is not None else 0) + len(measures)
    fig = Figure(figsize=(7.0, 2.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(1, panels, squeeze=False)[0])
    handles = {}
    with sns.plotting_context("paper", font_scale=0.8):
        if paper is not None:
            ax = axes.pop(0)
            greys = dict(zip(sorted(paper["model"].unique()), sns.color_palette("Greys_r", paper["model"].nunique() + 2)))
            for (model, pts), marker in zip(paper.groupby("model"), "s^Dvp"):
                pts = pts.sort_values("pretrain_images")
                (line,) = ax.plot(pts["pretrain_images"], 100 * pts["imagenet_ft_top1"], marker=marker, ms=3.5,
                                  lw=1, color=greys[model], label=f"paper {model}")
                handles[line.get_label()] = line
            ax.set_xscale("log")
            ax.set_xticks(sorted(paper["pretrain_images"].unique()),
                          [f"{d}\n{n / 1e6:g}M" for n, d in sorted(set(zip(paper["pretrain_images"],
                                                                             paper["pretrain_dataset"])))])
            ax.minorticks_off()
            ax.set_title("Paper, Fig. 3 (Table 5):\nImageNet top-1, fine-tuned", fontsize=8)
            ax.set_xlabel("pre-training images", fontsize=8)
            ax.set_ylabel("accuracy (%)", fontsize=8)
        colors = dict(zip(sorted(ours["model"].unique()), sns.color_palette("deep", ours["model"].nunique())))
        sizes = sorted(ours["train_size"].unique())
        n_text = seeds_per_cell(ours)
        n_text += " seed" if n_text == "1" else " seeds"
        for ax, m in zip(axes, measures):
            stats = ours.groupby(["model", "train_size"])[m].agg(["mean", "std"]).mul(100).reset_index()
            for model, pts in stats.groupby("model"):
                line = ax.errorbar(pts["train_size"], pts["mean"], yerr=pts["std"].fillna(0), marker="o", ms=3.5,
                                   lw=1.2, capsize=2, color=colors[model], label=f"ours {model}")
                handles[f"ours {model}"] = line
            ax.set_xscale("log")
            ax.set_xticks(sizes, [f"{int(s) // 1000}k" if s >= 1000 else str(int(s)) for s in sizes])
            ax.minorticks_off()
            ax.set_title(f"Ours ({scale}): {MEASURES[m]}\nCIFAR-10 subsets, {n_text}", fontsize=8)
            ax.set_xlabel("pre-training images", fontsize=8)
            ax.set_ylabel("accuracy (%)", fontsize=8)
        for ax in fig.axes:
            ax.tick_params(labelsize=7)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 5),
               fontsize=7, frameon=False)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``data_size_<scale>.md`` and ``.png`` into ``out_dir``; return their paths. ``paper_csv``: the
    paper's Figure 3 points (``results/paper/fig3_data_size.csv``), drawn beside ours (Fig. 4's are not
    tabulated). Raises as ``load_scaling_runs``."""
    runs = load_scaling_runs(runs_csv, scale)
    runs, failed = split_failed(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / f"data_size_{scale}.md", out_dir / f"data_size_{scale}.png"
    text = scaling_markdown(runs, scale, runs_csv) if len(runs) else f"# Data-size scaling, scale `{scale}`\n\nNo finished run.\n"
    text += failed_runs_markdown(failed, lambda r: f"{r.model}, {int(r.train_size)} images")
    write_text(md, text)
    if not len(runs):
        return [md]
    paper = pd.read_csv(paper_csv) if paper_csv else None
    save_figure(plot_scaling(runs, scale, paper), png)
    return [md, png]


__all__ = ["MEASURES", "load_scaling_runs", "scaling_table", "scaling_markdown", "plot_scaling", "seeds_per_cell", "write_report"]
