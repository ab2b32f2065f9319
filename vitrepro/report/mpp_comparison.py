"""Masked patch prediction against supervised pre-training and training from scratch (Sec. 4.6):
``experiments/mpp_comparison.yaml``.

Reads the experiment's ``runs.csv`` (one row per run: ``task`` mpp, pretrain or finetune from random init)
and writes, per scale, ``mpp_comparison_<scale>.md`` (per arm: n, the fine-tuned top-1 on the downstream
task in percent, mean ± std over training seeds, and the learning rates the dev sweep picked; then the two
differences the paper states, ours beside its) and ``mpp_comparison_<scale>.png`` (one dot a seed). Only
runs of one configuration (``config_id``) are averaged.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .runs import (bars_with_seeds, failed_runs_markdown, load_scale, mean_std_text, provenance, seed_stats, source_name, split_failed,
                   write_md_png)

#: The arms by protocol, in the paper's order.
ARMS = {"finetune": "from scratch", "mpp": "masked patch prediction", "pretrain": "supervised pre-training"}
#: Sec. 4.6: ViT-B/16 with MPP on JFT reaches 79.9% on ImageNet, "a significant improvement of 2% to training
#: from scratch, but still 4% behind supervised pre-training" (percentage points).
PAPER = {"mpp - from scratch": 2.0, "mpp - supervised": -4.0}
FINDING = ("The paper (Sec. 4.6; ViT-B/16, 1M MPP steps on JFT, fine-tuned on ImageNet): 79.9% top-1, 2 points "
           "above training from scratch and 4 points below supervised pre-training.")
MEASURES = {"ft_top1": "fine-tuned top-1"}


def label(row) -> str:
    return ARMS.get(row.task, row.task)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: arm, n, seeds, fine-tuned top-1 mean and std (percent), the picked lrs."""
    key = "config_id" if "config_id" in runs else "task"
    rows = []
    for _, g in runs.groupby(key, sort=False):
        r = g.iloc[0]
        lrs = ",".join(f"{v:g}" for v in g["ft_lr"]) if "ft_lr" in g else ""
        rows.append({"task": r["task"], "arm": label(r), "n": len(g), "seeds": ",".join(map(str, sorted(g["seed"]))),
                     "ft_lrs": lrs, **seed_stats(g, MEASURES)})
    order = {t: i for i, t in enumerate(ARMS)}
    return pd.DataFrame(rows).sort_values("task", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def mpp_markdown(table: pd.DataFrame, runs: pd.DataFrame, failed: pd.DataFrame, scale: str, runs_csv: Path) -> str:
    lines = [f"# Masked patch prediction vs supervised vs from scratch (Sec. 4.6), scale `{scale}`", "",
             f"Source runs: `{source_name(runs_csv)}` (in the results folder). {provenance(runs)}.", ""]
    for what, tasks in (("Upstream (pre-training)", ("mpp", "pretrain")), ("Downstream (fine-tuning)", ("finetune",))):
        data = runs.loc[runs["task"].isin(tasks), "data"] if "data" in runs else pd.Series(dtype=str)
        if not data.empty:
            lines += [f"{what} data: {data.iloc[0]}.", ""]
    lines += ["Percent on the downstream test split; mean ± std over training seeds.", "",
              "| arm | n (seeds) | fine-tuned top-1 | learning rates picked |", "|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.arm} | {r.n} ({r.seeds}) | {mean_std_text(r.ft_top1, r.ft_top1_std, r.n)} | {r.ft_lrs} |")
    means = table.set_index("task")["ft_top1"]
    diffs = []
    for name, (a, b) in {"mpp - from scratch": ("mpp", "finetune"), "mpp - supervised": ("mpp", "pretrain")}.items():
        if a in means and b in means:
            diffs.append(f"| {name.replace('mpp', 'MPP')} | {means[a] - means[b]:+.2f} | {PAPER[name]:+.1f} |")
    if diffs:
        lines += ["", "| difference (points) | ours | paper |", "|---|---|---|", *diffs]
    lines += ["", FINDING]
    return "\n".join(lines) + "\n" + failed_runs_markdown(failed, label)


def plot_arms(runs: pd.DataFrame, scale: str):
    """Fine-tuned top-1 (%) per arm, one dot a seed, the mean a bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    part = runs.assign(arm=[label(r) for r in runs.itertuples()], acc=runs["ft_top1"] * 100)
    order = [a for t, a in ARMS.items() if t in set(runs["task"])]
    fig = Figure(figsize=(4.6, 3.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    bars_with_seeds(ax, part, "arm", "acc", order, "fine-tuned top-1, downstream (%)")
    fig.suptitle(f"Sec. 4.6 at scale {scale}; dots: training seeds", fontsize=8)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``mpp_comparison_<scale>.md`` and ``.png`` into ``out_dir``; return their paths (``paper_csv``
    unused). Raises as ``load_scale``, and ``ValueError`` when no run of ``scale`` finished."""
    runs, failed = split_failed(load_scale(runs_csv, scale, ("task", "seed")))
    if runs.empty:
        raise ValueError(f"{runs_csv}: no finished run with scale={scale!r}")
    return write_md_png(out_dir, f"mpp_comparison_{scale}", mpp_markdown(summarize(runs), runs, failed, scale, runs_csv),
                        plot_arms(runs, scale))


__all__ = ["ARMS", "PAPER", "FINDING", "summarize", "mpp_markdown", "plot_arms", "write_report"]
