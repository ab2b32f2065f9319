"""Scaling one dimension of a ViT at a time (Figure 8, App. D.2): ``experiments/model_scaling.yaml``.

Reads the experiment's ``runs.csv`` (``model`` holds the variant's label, e.g. ``ViT-C/4 depth=12``) and writes,
per scale, ``model_scaling_<scale>.md`` (one row per model: the dimension it scales, training compute relative
to the base, 5-shot linear and fine-tuned top-1 in percent, mean ± std over training seeds) and
``model_scaling_<scale>.png`` (accuracy against relative compute, log axis, one line per dimension through the
base). Only runs of one configuration are averaged. The paper draws Figure 8 without numbers: its finding is
printed in words.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .runs import failed_runs_markdown, load_scale, mean_std_text, provenance, seed_stats, source_name, split_failed, write_md_png

FINDING = ("The paper (Figure 8, App. D.2; ViT-B/16 base on JFT-300M, 5-shot linear): depth brings the largest "
           "improvements, with diminishing returns after 16 layers; width the smallest; a smaller patch (a longer "
           "sequence, no extra parameters) improves robustly.")
MEASURES = {"fewshot_5": "5-shot linear", "ft_top1": "fine-tuned top-1"}
#: The dimension a variant scales, by the model fields its label sets (first match).
DIMENSIONS = (("patch_size", "patch size"), ("depth", "depth"), ("width", "width"), ("mlp_dim", "MLP ratio"))


def fields_of(model_label: str) -> dict[str, str]:
    """``"ViT-C/4 width=64 mlp_dim=256"`` -> ``{"width": "64", "mlp_dim": "256"}``."""
    return dict(re.findall(r"(\w+)=(\S+)", model_label))


def dimension(model_label: str, base_label: str) -> str:
    """What ``model_label`` scales relative to ``base_label``: the first of ``DIMENSIONS`` whose field
    differs (``"ViT-C/4 width=64 mlp_dim=256"`` -> ``"width"``), ``"base"`` for none."""
    mine, base = fields_of(model_label), fields_of(base_label)
    changed = {k for k in set(mine) | set(base) if mine.get(k) != base.get(k)}
    return next((name for key, name in DIMENSIONS if key in changed), "base")


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model (``config_id``): model, dimension, relative compute (its mean ``pretrain_flops``
    over the base's), n, seeds, mean and std (ddof 1; 0 for n = 1) of each measure, in percent. The base
    is the model whose label sets the fewest fields (the grid's first of them)."""
    base_label = min(runs["model"], key=lambda label: len(fields_of(label)))
    runs = runs.assign(dimension=runs["model"].map(lambda label: dimension(label, base_label)))
    base = runs[runs["dimension"] == "base"]
    base_flops = base["pretrain_flops"].mean()
    key = "config_id" if "config_id" in runs else "model"
    rows = []
    for _, g in runs.groupby(key, sort=False):
        row = {"model": g["model"].iloc[0], "dimension": g["dimension"].iloc[0],
               "compute": g["pretrain_flops"].mean() / base_flops, "n": len(g),
               "seeds": ",".join(map(str, sorted(g["seed"])))}
        rows.append({**row, **seed_stats(g, MEASURES)})
    return pd.DataFrame(rows).sort_values(["dimension", "compute"], kind="stable").reset_index(drop=True)


def scaling_markdown(table: pd.DataFrame, runs: pd.DataFrame, failed: pd.DataFrame, scale: str, runs_csv: Path) -> str:
    measures = [m for m in MEASURES if m in table]
    lines = [f"# Scaling one dimension of a ViT at a time (Figure 8), scale `{scale}`", "",
             f"Source runs: `{source_name(runs_csv)}` (in the results folder). {provenance(runs)}.", "",
             "Percent on the test split; mean ± std over training seeds (n = 1: the one run's value); compute "
             "relative to the base model's (the same steps and batch).", "",
             "| model | scales | compute | n (seeds) | " + " | ".join(MEASURES[m] for m in measures) + " |",
             "|---|---|---|---|" + "---|" * len(measures)]
    for r in table.itertuples():
        lines.append(f"| {r.model} | {r.dimension} | {r.compute:.2f}x | {r.n} ({r.seeds}) | "
                     + " | ".join(mean_std_text(getattr(r, m), getattr(r, m + "_std"), r.n) for m in measures) + " |")
    lines += ["", FINDING]
    return "\n".join(lines) + "\n" + failed_runs_markdown(failed, lambda r: r.model)


def plot_scaling(table: pd.DataFrame, scale: str):
    """Per measure: accuracy (%) against relative compute (log), one line per dimension through the base,
    error bars the std over seeds."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    measures = [m for m in MEASURES if m in table and table[m].notna().any()]
    fig = Figure(figsize=(3.2 * len(measures) + 0.4, 3.0), layout="constrained")
    FigureCanvasAgg(fig)
    base = table[table["dimension"] == "base"]
    dims = [name for _, name in DIMENSIONS if (table["dimension"] == name).any()] or ["base"]  # base alone: a point
    colors = dict(zip(dims, sns.color_palette("deep", len(dims))))
    lo, hi = np.log2(table["compute"].min()), np.log2(table["compute"].max())
    ticks = [2.0 ** k for k in range(int(np.floor(lo)), int(np.ceil(hi)) + 1)]  # powers of 2, one label each
    for ax, m in zip(fig.subplots(1, len(measures), squeeze=False)[0], measures):
        for d in dims:
            pts = pd.concat([table[table["dimension"] == d], base]).drop_duplicates("model").sort_values("compute")
            ax.errorbar(pts["compute"], pts[m], yerr=pts[f"{m}_std"], marker="o", ms=3, lw=1.2, capsize=2,
                        color=colors[d], label=d)
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}x" for t in ticks], minor=False)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("relative training compute", fontsize=8)
        ax.set_ylabel(f"{MEASURES[m]} (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"Scaling one dimension of {base['model'].iloc[0]} (Figure 8), scale {scale}", fontsize=8)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``model_scaling_<scale>.md`` and ``.png`` into ``out_dir``; return their paths (``paper_csv``
    unused). Raises as ``load_scale`` and ``summarize``, and ``ValueError`` when no run of ``scale`` finished."""
    runs, failed = split_failed(load_scale(runs_csv, scale, ("model", "seed", "pretrain_flops")))
    if runs.empty:
        raise ValueError(f"{runs_csv}: no finished run with scale={scale!r}")
    table = summarize(runs)
    return write_md_png(out_dir, f"model_scaling_{scale}", scaling_markdown(table, runs, failed, scale, runs_csv),
                        plot_scaling(table, scale))


__all__ = ["FINDING", "MEASURES", "DIMENSIONS", "dimension", "summarize", "scaling_markdown", "plot_scaling",
           "write_report"]
