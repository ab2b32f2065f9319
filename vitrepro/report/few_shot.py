"""Few-shot linear accuracy against the number of shots (Sec. 4.1 "Metrics", App. B.2): the curves of
``experiments/few_shot.yaml``.

Reads its ``runs.csv`` (one row per probed checkpoint; ``fewshot_<k>`` and ``fewshot_<k>_std`` as fractions,
mean and std over the few-shot draws) and writes, per scale, ``few_shot_<scale>.md`` (one row per pre-training
configuration, its training seeds averaged: n and mean ± std for each number of shots, in percent) and
``few_shot_<scale>.png`` (accuracy against shots on a log axis, one line per configuration, error bars the std
over training seeds, chance drawn). A checkpoint's configuration is its run's grid cell less the seed, read from
the run's record in the same results folder. The paper tabulates no few-shot curve (Figure 4's points are not
given as numbers), so none is drawn beside ours.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ..atomic import save_figure, write_text
from ..experiments.records import read_record, section_label
from .runs import checkpoint_run, load_scale, mean_std_text, provenance, seed_stats, source_name, split_failed


def shots_of(runs: pd.DataFrame) -> list[int]:
    """The numbers of shots with a column in ``runs``, ascending."""
    return sorted(int(m[1]) for c in runs.columns if (m := re.fullmatch(r"fewshot_(\d+)", c)))


def probed_checkpoint(row) -> str | None:
    """The checkpoint a row probed: its grid cell's ``checkpoint``, else the file the run loaded (``init``);
    None for a random initialization."""
    ckpt = getattr(row, "checkpoint", None)
    ckpt = ckpt if isinstance(ckpt, str) and ckpt else getattr(row, "init", None)
    return ckpt if isinstance(ckpt, str) and ckpt and ckpt != "None" else None


def curve_label(row) -> str:
    """``<model> from <checkpoint's run id or file>`` (``random init`` without one)."""
    return f"{row.model} from {checkpoint_run(probed_checkpoint(row))}"


def load_few_shot_runs(runs_csv: Path, scale: str) -> pd.DataFrame:
    """The finished rows of ``scale``. Raises ``FileNotFoundError`` for a missing file, ``ValueError`` naming
    the scales present when none is ``scale``, or when no ``fewshot_<k>`` column exists."""
    runs, _ = split_failed(load_scale(runs_csv, scale, ("model",)))
    if not shots_of(runs):
        raise ValueError(f"{runs_csv}: no fewshot_<k> column; columns are {list(runs.columns)}")
    if runs.empty:
        raise ValueError(f"{runs_csv}: no finished run with scale={scale!r}")
    return runs


def pretraining(row, results_dir: Path) -> tuple[str, str]:
    """``(key, label)`` of the pre-training configuration of the checkpoint ``row`` probed, from the record
    of its run (``<results_dir>/<experiment>/runs/<run id>/record.json``): the run's grid cell without its
    training seed, so the seeds of one configuration share a key; label ``R50x1 from data_size_scaling:
    train_size=1000``. A checkpoint that is no run there (a file, a run elsewhere) is its own configuration,
    labelled as ``curve_label``."""
    ckpt = probed_checkpoint(row)
    path = Path(ckpt) if ckpt else None
    if path is not None and path.parent.name == "checkpoints":
        path = path.parents[1]
    record = (read_record(Path(results_dir) / path.parents[1].name / "runs" / path.name)
              if path is not None and path.parent.name == "runs" else None)
    if not record or record.get("cell") is None:
        return curve_label(row), curve_label(row)
    cell = {k: v for k, v in record["cell"].items() if k != "seed"}
    fields = ", ".join(f"{k}={section_label(v) if isinstance(v, dict) else v}" for k, v in cell.items() if k != "model")
    experiment = record.get("experiment", path.parents[1].name)
    return (f"{row.model} | {experiment} | {json.dumps(cell, sort_keys=True)}",
            f"{row.model} from {experiment}" + (f": {fields}" if fields else ""))


def summarize(runs: pd.DataFrame, results_dir: Path) -> pd.DataFrame:
    """One row per pre-training configuration (``pretraining``), in first-seen order: label, n, seeds, the
    probed runs, and for every number of shots k the mean and std over training seeds of ``fewshot_<k>``
    (each run's own value the mean over its few-shot draws), in percent."""
    shots = shots_of(runs)
    keys = [pretraining(r, results_dir) for r in runs.itertuples()]
    runs = runs.assign(key=[k for k, _ in keys], label=[label for _, label in keys])
    rows = []
    for _, g in runs.groupby("key", sort=False):
        g = g.sort_values("seed") if "seed" in g else g
        seeds = [int(s) for s in g["seed"]] if "seed" in g else [0] * len(g)
        probed = [checkpoint_run(probed_checkpoint(r)) for r in g.itertuples()]
        rows.append({"label": g["label"].iloc[0], "n": len(g), "seeds": ",".join(map(str, seeds)),
                     "runs": ", ".join(f"`{p}` (seed {s})" for p, s in zip(probed, seeds)),
                     **seed_stats(g, [f"fewshot_{k}" for k in shots])})
    return pd.DataFrame(rows)


def few_shot_markdown(table: pd.DataFrame, runs: pd.DataFrame, scale: str, runs_csv: Path) -> str:
    """The markdown report of ``table`` (``summarize`` of ``runs``)."""
    shots = shots_of(runs)
    lines = [f"# Few-shot linear accuracy against shots, scale `{scale}`", "", f"Source runs: `{source_name(runs_csv)}` (in the results folder)", "",
             f"{len(runs)} probed checkpoints. {provenance(runs)}. Percent on the test split: a run's accuracy is the "
             "mean over its few-shot draws (their std is in runs.csv); a row gives the mean ± std over the training "
             "seeds of one pre-training configuration, with n.", "",
             "| checkpoint (pre-training) | n (training seeds) | " + " | ".join(f"{k}-shot" for k in shots) + " |",
             "|---|---|" + "---|" * len(shots)]
    for r in table.itertuples():
        lines.append(f"| {r.label} | {r.n} ({r.seeds}) | " + " | ".join(
            mean_std_text(getattr(r, f"fewshot_{k}"), getattr(r, f"fewshot_{k}_std"), r.n) for k in shots) + " |")
    lines += ["", "Probed runs: " + "; ".join(f"{r.label}: {r.runs}" for r in table.itertuples()) + "."]
    return "\n".join(lines) + "\n"


def plot_few_shot(table: pd.DataFrame, runs: pd.DataFrame, scale: str):
    """Accuracy (%) against shots per class (log axis), one line per pre-training configuration of ``table``
    (``summarize`` of ``runs``: the mean over its training seeds; error bars their std, none for n = 1),
    chance as a dashed line. A matplotlib Figure on the Agg canvas."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shots = shots_of(runs)
    fig = Figure(figsize=(5.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colors = sns.color_palette("deep", len(table))
    for color, r in zip(colors, table.itertuples()):
        ax.errorbar(shots, [getattr(r, f"fewshot_{k}") for k in shots],
                    yerr=[getattr(r, f"fewshot_{k}_std") if r.n > 1 else 0 for k in shots], marker="o", ms=3, lw=1.2,
                    capsize=2, color=color, label=f"{r.label} (n={r.n})")
    classes = re.search(r"^(cifar10|cifar100)", str(runs["data"].iloc[0])) if "data" in runs else None
    if classes:
        ax.axhline(100 / (10 if classes[1] == "cifar10" else 100), ls="--", lw=0.8, color="grey", label="chance")
    ax.set_xscale("log")
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.minorticks_off()
    from .pos_emb_figure import data_set_name

    data = data_set_name(runs["data"].iloc[0]) if "data" in runs else "?"
    ax.set_title(f"Few-shot linear probe of frozen pre-logits (Sec. 4.1, App. B.2), scale {scale}\n{data}, test split; "
                 "error bars: std over training seeds", fontsize=7)
    ax.set_xlabel("shots per class", fontsize=8)
    ax.set_ylabel("top-1 accuracy (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=1, fontsize=6, frameon=False)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``few_shot_<scale>.md`` and ``.png`` into ``out_dir``; return their paths (``paper_csv`` is
    unused: the paper tabulates no curve). Raises as ``load_few_shot_runs``."""
    runs = load_few_shot_runs(runs_csv, scale)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / f"few_shot_{scale}.md", out_dir / f"few_shot_{scale}.png"
    table = summarize(runs, Path(runs_csv).parent.parent)  # the records beside runs_csv's folder
    write_text(md, few_shot_markdown(table, runs, scale, runs_csv))
    save_figure(plot_few_shot(table, runs, scale), png)
    return [md, png]


__all__ = ["shots_of", "curve_label", "pretraining", "probed_checkpoint", "summarize", "load_few_shot_runs", "few_shot_markdown",
           "plot_few_shot", "write_report"]
