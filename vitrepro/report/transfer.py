"""Transfer of a pre-trained checkpoint to another data set (Sec. 3.2, App. B.1.1): ``experiments/transfer.yaml``.

Reads the experiment's ``runs.csv`` and writes, per scale, ``transfer_<scale>.md`` (one row per fine-tuning
configuration: n, the checkpoint's 5-shot linear probe and the fine-tuned test top-1 in percent, mean ± std
over training seeds, the learning rate each seed used, the pre-training run each started from) and
``transfer_<scale>.png`` (both measures per configuration, one dot a seed). A configuration is the model, the
downstream data (by content fingerprint, not path), the fine-tuning steps and its learning-rate protocol (the
dev-picked grid, or one fixed rate); its seeds are replicates of the whole pipeline: seed s fine-tunes the
pre-training run of seed s. The paper transfers ViT-B/16 from JFT-300M (Table 6); its numbers are printed for
the data sets it used, in words.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .runs import (bars_with_seeds, checkpoint_run, failed_runs_markdown, load_scale, mean_std_text, provenance, seed_stats,
                   source_name, split_failed, write_md_png)

FINDING = ("The paper (Table 6; ViT-B/16 pre-trained 7 epochs on JFT-300M, fine-tuned at 384 px): CIFAR-10 99.00, "
           "CIFAR-100 91.87, Oxford-IIIT Pets 95.80, Oxford Flowers-102 99.56 top-1 (%). A data set the paper did "
           "not use has no paper number.")
#: The accuracies compared: the checkpoint's few-shot probe before fine-tuning, test top-1 after it.
MEASURES = {"fewshot_5": "5-shot linear probe", "ft_top1": "fine-tuned top-1"}


def fingerprint(data: str) -> str:
    """The content fingerprint in a run's ``data`` description (``... fingerprint ebab0d13a826 ...``), else
    the description itself: the same data under another path is the same data."""
    found = re.search(r"fingerprint (\w+)", str(data))
    return found.group(1) if found else str(data)


def lr_protocol(row) -> str:
    """``grid 0.003, 0.01, 0.03`` for a dev-picked sweep (from ``ft_sweep``, ``"lr: dev; ..."``), else
    ``fixed 0.03``."""
    sweep = row.get("ft_sweep")
    if isinstance(sweep, str) and sweep.strip():
        return "grid " + ", ".join(part.split(":")[0].strip() for part in sweep.split(";"))
    return f"fixed {row['ft_lr']:g}"


def configurations(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``downstream`` (data fingerprint) and ``lrs`` (``lr_protocol``) columns and ``key``, the
    configuration a run belongs to: model, ``ft_dataset``, fingerprint, ``ft_steps``, learning-rate protocol."""
    runs = runs.assign(downstream=runs["data"].map(fingerprint), lrs=[lr_protocol(r) for _, r in runs.iterrows()])
    key = runs[["model", "ft_dataset", "downstream", "ft_steps", "lrs"]].astype(str).agg(" | ".join, axis=1)
    return runs.assign(key=key)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (``configurations``): model, data set, steps, lrs, n, seeds, the lr each seed
    used and its pre-training run, mean wall time (min), and mean and std of each of ``MEASURES`` in percent."""
    rows = []
    for _, g in configurations(runs).groupby("key", sort=False):
        g = g.sort_values("seed")
        r = g.iloc[0]
        rows.append({"model": r["model"], "ft_dataset": r["ft_dataset"], "downstream": r["downstream"],
                     "ft_steps": int(r["ft_steps"]), "lrs": r["lrs"], "n": len(g),
                     "seeds": ",".join(str(int(s)) for s in g["seed"]),
                     "lr_used": ", ".join(f"{lr:g}" for lr in g["ft_lr"]),
                     "pretrained": ", ".join(f"`{checkpoint_run(i)}`" for i in g["init"]),
                     "wall_min": g["wall_s"].mean() / 60, **seed_stats(g, MEASURES)})
    return pd.DataFrame(rows)


def transfer_markdown(table: pd.DataFrame, runs: pd.DataFrame, failed: pd.DataFrame, scale: str, runs_csv: Path) -> str:
    measures = [m for m in MEASURES if m in table]
    lines = [f"# Transfer to another data set, scale `{scale}`", "",
             f"Source runs: `{source_name(runs_csv)}` (in the results folder). {provenance(runs)}.", "",
             "Percent on the downstream test split; mean ± std over training seeds (seed s fine-tunes the "
             "pre-training run of seed s).", "",
             "| model | downstream data (fingerprint) | fine-tuning steps, lr | n (seeds) | "
             + " | ".join(MEASURES[m] for m in measures) + " | lr used, per seed | wall time (min, mean) | pre-trained run, per seed |",
             "|---|---|---|---|" + "---|" * len(measures) + "---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.model} | {r.ft_dataset} ({r.downstream}) | {r.ft_steps}, {r.lrs} | {r.n} ({r.seeds}) | "
                     + " | ".join(mean_std_text(getattr(r, m), getattr(r, m + "_std"), r.n) for m in measures)
                     + f" | {r.lr_used} | {r.wall_min:.1f} | {r.pretrained} |")
    lines += ["", FINDING]
    return "\n".join(lines) + "\n" + failed_runs_markdown(failed, lambda r: f"{r.model}, seed {r.seed}")


def plot_transfer(runs: pd.DataFrame, scale: str):
    """Per measure, accuracy (%) by configuration, one dot a seed, the mean a bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = configurations(runs)
    runs = runs.assign(configuration=runs["model"] + "\n" + runs["lrs"])
    order = list(dict.fromkeys(runs["configuration"]))
    measures = [m for m in MEASURES if m in runs and runs[m].notna().any()]
    fig = Figure(figsize=(1.2 * len(order) * len(measures) + 1.4, 3.0), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, m in zip(fig.subplots(1, len(measures), squeeze=False)[0], measures):
        bars_with_seeds(ax, runs.assign(acc=runs[m] * 100), "configuration", "acc", order, f"{MEASURES[m]} (%)")
    fig.suptitle(f"Transfer, scale {scale}; dots: training seeds", fontsize=8)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``transfer_<scale>.md`` and ``.png`` into ``out_dir``; return their paths (``paper_csv`` unused).
    Raises as ``load_scale``, and ``ValueError`` when no run of ``scale`` finished."""
    columns = ("model", "seed", "init", "data", "ft_dataset", "ft_steps", "ft_lr", "wall_s")
    runs, failed = split_failed(load_scale(runs_csv, scale, columns))
    if runs.empty:
        raise ValueError(f"{runs_csv}: no finished run with scale={scale!r}")
    return write_md_png(out_dir, f"transfer_{scale}", transfer_markdown(summarize(runs), runs, failed, scale, runs_csv),
                        plot_transfer(runs, scale))


__all__ = ["FINDING", "MEASURES", "configurations", "fingerprint", "lr_protocol", "plot_transfer",
           "summarize", "transfer_markdown", "write_report"]
