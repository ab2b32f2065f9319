"""The from-scratch recipe comparison of ``experiments/cifar10_from_scratch.yaml``: the paper's recipe against
RandAugment + Mixup/CutMix + stochastic depth + EMA (DeiT; Lee et al. 2021), the same ViT and budget.

Reads the experiment's ``runs.csv`` and writes, per scale, ``recipe_<scale>.md`` (one row per configuration:
test top-1 and 5-shot accuracy in percent, mean ± std over training seeds with n, the runs' wall time, then
the difference of each recipe from the paper's) and ``recipe_<scale>.png`` (test top-1 per recipe, one dot a
seed, the mean marked). Only runs of one configuration (``config_id``) are averaged. The paper has no such
table (it does not train on CIFAR-10 from scratch): the reference numbers of the literature are printed
beside ours instead.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .runs import (bars_with_seeds, failed_runs_markdown, load_scale, provenance, seed_stats, source_name, split_failed,
                   write_md_png)

#: From-scratch ViTs on CIFAR-10 in the literature (test top-1 %), printed beside ours.
LITERATURE = [("ViT 7 layers, D 384, 200 epochs, AutoAugment + label smoothing (omihub777/ViT-CIFAR)", 90.9),
              ("ViT 9 layers, D 192, 100 epochs, AutoAugment + Mixup/CutMix + repeated augmentation + random erasing "
               "+ label smoothing + stochastic depth (Lee et al. 2021, arXiv 2112.13492)", 93.58)]


def recipe_of(row) -> str:
    """The recipe of a runs.csv row in words, from its grid cell's columns: ``paper's recipe`` or the parts
    it adds, e.g. ``RandAugment N=2 + Mixup/CutMix 0.8_1.0 + stochastic depth 0.1 + EMA 0.998``."""
    def given(name):
        value = getattr(row, name, None)
        return None if value is None or (isinstance(value, float) and pd.isna(value)) else value

    parts = []
    if given("randaugment"):
        parts.append(f"RandAugment N={int(given('randaugment'))}")
    if given("mixing"):
        parts.append(f"Mixup/CutMix {given('mixing')}")
    if given("drop_path_rate"):
        parts.append(f"stochastic depth {given('drop_path_rate')}")
    if given("ema"):
        parts.append(f"EMA {given('ema')}")
    return " + ".join(parts) if parts else "paper's recipe"


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (``config_id``, else the recipe): recipe, model, n, mean and std (over
    training seeds, ddof 1; 0 for n = 1) of ``top1`` and ``fewshot_5`` in percent, seeds, mean wall s."""
    runs = runs.assign(recipe=[recipe_of(r) for r in runs.itertuples()])
    key = "config_id" if "config_id" in runs.columns else "recipe"
    rows = []
    for _, g in runs.groupby(key, sort=False):
        row = {"recipe": g["recipe"].iloc[0], "model": g["model"].iloc[0], "n": len(g),
               "seeds": ",".join(map(str, sorted(g["seed"]))), "wall_s": g["wall_s"].mean()}
        stats = seed_stats(g, ("top1", "fewshot_5", "top1_online"))
        rows.append({**row, "top1_online": float("nan"), "top1_online_std": float("nan"), **stats})
    table = pd.DataFrame(rows)
    paper_first = table["recipe"] != "paper's recipe"
    return table.assign(_o=paper_first).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)


def recipe_markdown(table: pd.DataFrame, runs: pd.DataFrame, failed: pd.DataFrame, scale: str, runs_csv: Path) -> str:
    steps = ", ".join(map(str, sorted(set(runs["steps"])))) if "steps" in runs else "?"
    lines = [f"# From-scratch ViT on CIFAR-10: the paper's recipe against the small-data recipe, scale `{scale}`",
             "", f"Source runs: `{source_name(runs_csv)}` (in the results folder). {steps} steps. {provenance(runs)}.", "", "Percent on the test split; mean ± std over training seeds (n runs, seeds listed); "
             "only runs of one configuration are averaged.", "",
             "| recipe | model | n (seeds) | test top-1 | 5-shot linear | wall min / run |", "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.recipe} | {r.model} | {r.n} ({r.seeds}) | {r.top1:.2f} ± {r.top1_std:.2f} | "
                     f"{r.fewshot_5:.2f} ± {r.fewshot_5_std:.2f} | {r.wall_s / 60:.1f} |")
    online = table.dropna(subset=["top1_online"])
    if len(online):
        lines += ["", "With a weight EMA the runs are evaluated on the averaged weights; the online weights' test top-1: "
                  + "; ".join(f"{r.recipe}: {r.top1_online:.2f} ± {r.top1_online_std:.2f}" for r in online.itertuples())]
    base = table[table["recipe"] == "paper's recipe"]
    if len(base):
        b = base.iloc[0]
        lines += ["", "Difference from the paper's recipe (percentage points, means):", ""]
        for r in table[table["recipe"] != "paper's recipe"].itertuples():
            lines.append(f"- {r.recipe}: test top-1 {r.top1 - b.top1:+.2f}, 5-shot {r.fewshot_5 - b.fewshot_5:+.2f} "
                         f"(n = {r.n} vs {b.n}; seed std {r.top1_std:.2f} vs {b.top1_std:.2f})")
    lines += ["", "The literature (not trained here; other models, budgets and all 50,000 images):", ""]
    lines += [f"- {name}: {value:g}%" for name, value in LITERATURE]
    text = "\n".join(lines) + "\n"
    return text + failed_runs_markdown(failed, recipe_of)


def plot_recipes(runs: pd.DataFrame, table: pd.DataFrame, scale: str):
    """Test top-1 (%) per recipe: one dot a training seed, the mean as a bar. A matplotlib Figure (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = runs.assign(recipe=[recipe_of(r).replace(" + ", "\n+ ") for r in runs.itertuples()], top1_pct=100 * runs["top1"])
    order = [r.replace(" + ", "\n+ ") for r in table["recipe"]]
    fig = Figure(figsize=(4.6, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    bars_with_seeds(ax, runs, "recipe", "top1_pct", order, "test top-1 (%)")
    low = runs["top1_pct"].min()
    ax.set_ylim(max(0, low - 10), min(100, runs["top1_pct"].max() + 5))
    ax.set_title(f"From-scratch {runs['model'].iloc[0]} on CIFAR-10, scale {scale}\n(dots: training seeds)", fontsize=8)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``recipe_<scale>.md`` and ``.png`` into ``out_dir``; return their paths (``paper_csv`` is unused:
    the paper has no such table). Raises ``FileNotFoundError`` / ``ValueError`` as ``load_scale``, and
    ``ValueError`` when no run of ``scale`` finished."""
    runs, failed = split_failed(load_scale(runs_csv, scale, ("model", "top1", "seed")))
    if runs.empty:
        raise ValueError(f"{runs_csv}: no finished run with scale={scale!r}")
    table = summarize(runs)
    return write_md_png(out_dir, f"recipe_{scale}", recipe_markdown(table, runs, failed, scale, runs_csv),
                        plot_recipes(runs, table, scale))


__all__ = ["LITERATURE", "recipe_of", "summarize", "recipe_markdown", "plot_recipes", "write_report"]
