"""ResNets pre-trained with Adam or SGD (Table 7, App. D.1): ``experiments/optimizer_table7.yaml``.

Reads the experiment's ``runs.csv`` and writes, per scale, ``optimizer_<scale>.md`` (one row per model and
pre-training optimizer: n, 5-shot linear and fine-tuned top-1 in percent, mean ± std over training seeds;
then Adam minus SGD per model) and ``optimizer_<scale>.png`` (both measures per model, one dot a seed).
Only runs of one configuration (``config_id``) are averaged. The paper's numbers are not in the suite's
paper-facts file: its finding is printed in words.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .runs import failed_runs_markdown, load_scale, mean_std_text, provenance, seed_stats, source_name, split_failed, write_md_png

FINDING = ("The paper (App. D.1, Table 7: ResNet-50 and ResNet-152x2 pre-trained on JFT-300M, fine-tuned on ImageNet, "
           "CIFAR-10/100, Pets and Flowers): Adam pre-training is ahead of SGD on most data sets and on average, "
           "which is why the paper pre-trains its ResNets with Adam.")
#: The accuracies compared: few-shot linear after pre-training, test top-1 after fine-tuning.
MEASURES = {"fewshot_5": "5-shot linear", "ft_top1": "fine-tuned top-1"}


def label(row) -> str:
    """``R50x1, Adam`` / ``R50x1, SGD``."""
    return f"{row.model}, {'Adam' if row.optimizer == 'adamw' else 'SGD'}"


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (``config_id``): model, optimizer, n, seeds, mean and std (ddof 1; 0 for
    n = 1) of each measure of ``MEASURES`` the runs have, in percent."""
    key = "config_id" if "config_id" in runs else ["model", "optimizer"]
    rows = []
    for _, g in runs.groupby(key, sort=False):
        r = g.iloc[0]
        row = {"model": r["model"], "optimizer": r["optimizer"], "n": len(g), "seeds": ",".join(map(str, sorted(g["seed"])))}
        rows.append({**row, **seed_stats(g, MEASURES)})
    return pd.DataFrame(rows).sort_values(["model", "optimizer"], kind="stable").reset_index(drop=True)


def optimizer_markdown(table: pd.DataFrame, runs: pd.DataFrame, failed: pd.DataFrame, scale: str, runs_csv: Path) -> str:
    measures = [m for m in MEASURES if m in table]
    lines = [f"# ResNets pre-trained with Adam vs SGD (Table 7), scale `{scale}`", "",
             f"Source runs: `{source_name(runs_csv)}` (in the results folder). {provenance(runs)}.", "",
             "Percent on the test split; mean ± std over training seeds.", "",
             "| model | pre-training optimizer | n (seeds) | " + " | ".join(MEASURES[m] for m in measures) + " |",
             "|---|---|---|" + "---|" * len(measures)]
    for r in table.itertuples():
        lines.append(f"| {r.model} | {'Adam' if r.optimizer == 'adamw' else 'SGD + momentum'} | {r.n} ({r.seeds}) | "
                     + " | ".join(mean_std_text(getattr(r, m), getattr(r, m + "_std"), r.n) for m in measures) + " |")
    diffs = []
    for model, g in table.groupby("model", sort=False):
        by = g.set_index("optimizer")
        if {"adamw", "sgd"} <= set(by.index):
            diffs.append(f"- {model}: " + ", ".join(f"{MEASURES[m]} {by.loc['adamw', m] - by.loc['sgd', m]:+.2f}"
                                                   for m in measures))
    if diffs:
        lines += ["", "Adam minus SGD (percentage points, means):", "", *diffs]
    lines += ["", FINDING]
    return "\n".join(lines) + "\n" + failed_runs_markdown(failed, label)


def plot_optimizers(runs: pd.DataFrame, scale: str):
    """Per measure, accuracy (%) by model, Adam and SGD side by side, one dot a seed, the mean a bar."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    measures = [m for m in MEASURES if m in runs and runs[m].notna().any()]
    long = runs.melt(id_vars=["model", "optimizer", "seed"], value_vars=measures, var_name="measure", value_name="acc")
    long["acc"] *= 100
    long["optimizer"] = long["optimizer"].map({"adamw": "Adam", "sgd": "SGD"})
    fig = Figure(figsize=(2.6 * len(measures) + 0.4, 3.0), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, m in zip(fig.subplots(1, len(measures), squeeze=False)[0], measures):
        part = long[long["measure"] == m]
        sns.barplot(data=part, x="model", y="acc", hue="optimizer", hue_order=["Adam", "SGD"], errorbar=None, ax=ax,
                    alpha=0.5)
        sns.stripplot(data=part, x="model", y="acc", hue="optimizer", hue_order=["Adam", "SGD"], dodge=True, jitter=False, ax=ax,
                      legend=False, size=4)
        ax.set_title(MEASURES[m], fontsize=8)
        ax.set_xlabel("")
        ax.set_ylabel("top-1 (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False, title="pre-training", title_fontsize=7)
    fig.suptitle(f"ResNets pre-trained with Adam vs SGD (Table 7), scale {scale}; dots: training seeds", fontsize=8)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``optimizer_<scale>.md`` and ``.png`` into ``out_dir``; return their paths (``paper_csv`` unused).
    Raises as ``load_scale``, and ``ValueError`` when no run of ``scale`` finished."""
    runs, failed = split_failed(load_scale(runs_csv, scale, ("model", "optimizer", "seed")))
    if runs.empty:
        raise ValueError(f"{runs_csv}: no finished run with scale={scale!r}")
    return write_md_png(out_dir, f"optimizer_{scale}", optimizer_markdown(summarize(runs), runs, failed, scale, runs_csv),
                        plot_optimizers(runs, scale))


__all__ = ["FINDING", "MEASURES", "label", "summarize", "optimizer_markdown", "plot_optimizers", "write_report"]
