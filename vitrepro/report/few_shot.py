"""Few-shot linear accuracy against the number of shots (Sec. 4.1 "Metrics", App. B.2): the curves of
``experiments/few_shot.yaml``.

Reads its ``runs.csv`` (one row per checkpoint; ``fewshot_<k>`` and ``fewshot_<k>_std`` as fractions, mean
and std over the few-shot seeds) and writes, per scale, ``few_shot_<scale>.md`` (a table: one row per
checkpoint, one column per number of shots, in percent) and ``few_shot_<scale>.png`` (accuracy against
shots on a log axis, one line per checkpoint, error bars the std over seeds, chance drawn). The paper
tabulates no few-shot curve (Figure 4's points are not given as numbers), so none is drawn beside ours.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..atomic import save_figure, write_text
from .runs import load_scale, source_name, split_failed


def shots_of(runs: pd.DataFrame) -> list[int]:
    """The numbers of shots with a column in ``runs``, ascending."""
    return sorted(int(m[1]) for c in runs.columns if (m := re.fullmatch(r"fewshot_(\d+)", c)))


def curve_label(row) -> str:
    """``<model> from <checkpoint's run id or file>`` (``random init`` without one)."""
    ckpt = getattr(row, "checkpoint", None)  # a grid cell's checkpoint, else the file the run loaded
    ckpt = ckpt if isinstance(ckpt, str) and ckpt else getattr(row, "init", None)
    if isinstance(ckpt, str) and ckpt and ckpt != "None":
        path = Path(ckpt)
        source = path.parents[1].name if path.parent.name == "checkpoints" and len(path.parents) > 1 else path.name
    else:
        source = "random init"
    return f"{row.model} from {source}"


def load_few_shot_runs(runs_csv: Path, scale: str) -> pd.DataFrame:
    """The finished rows of ``scale``. Raises ``FileNotFoundError`` for a missing file, ``ValueError`` naming
    the scales present when none is ``scale``, or when no ``fewshot_<k>`` column exists."""
    runs, _ = split_failed(load_scale(runs_csv, scale, ("model",)))
    if not shots_of(runs):
        raise ValueError(f"{runs_csv}: no fewshot_<k> column; columns are {list(runs.columns)}")
    if runs.empty:
        raise ValueError(f"{runs_csv}: no finished run with scale={scale!r}")
    return runs


def few_shot_markdown(runs: pd.DataFrame, scale: str, runs_csv: Path) -> str:
    shots = shots_of(runs)
    hw = ", ".join(sorted(set(runs["hardware"].astype(str)))) if "hardware" in runs else "?"
    data = ", ".join(sorted(set(runs["data"].astype(str)))) if "data" in runs else "?"
    seeds = int(runs["seed"].nunique()) if "seed" in runs else 1
    lines = [f"# Few-shot linear accuracy against shots, scale `{scale}`", "", f"Source runs: `{source_name(runs_csv)}` (in the results folder)", "",
             f"{len(runs)} checkpoints; hardware {hw}; data {data}. Percent on the test split, mean ± std over the "
             f"few-shot draws (training seed {', '.join(map(str, sorted(set(runs['seed']))))}"
             f"{'' if seeds == 1 else 's'}).", "",
             "| checkpoint | " + " | ".join(f"{k}-shot" for k in shots) + " |", "|---|" + "---|" * len(shots)]
    for r in runs.itertuples():
        lines.append(f"| {curve_label(r)} | " + " | ".join(
            f"{100 * getattr(r, f'fewshot_{k}'):.2f} ± {100 * getattr(r, f'fewshot_{k}_std', 0):.2f}" for k in shots) + " |")
    return "\n".join(lines) + "\n"


def plot_few_shot(runs: pd.DataFrame, scale: str):
    """Accuracy (%) against shots per class (log axis), one line per checkpoint, std over draws as error
    bars, chance as a dashed line. A matplotlib Figure on the Agg canvas."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shots = shots_of(runs)
    fig = Figure(figsize=(4.6, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colors = sns.color_palette("deep", len(runs))
    for color, r in zip(colors, runs.itertuples()):
        ax.errorbar(shots, [100 * getattr(r, f"fewshot_{k}") for k in shots],
                    yerr=[100 * getattr(r, f"fewshot_{k}_std", 0) for k in shots], marker="o", ms=3, lw=1.2,
                    capsize=2, color=color, label=curve_label(r))
    classes = re.search(r"^(cifar10|cifar100)", str(runs["data"].iloc[0])) if "data" in runs else None
    if classes:
        ax.axhline(100 / (10 if classes[1] == "cifar10" else 100), ls="--", lw=0.8, color="grey", label="chance")
    ax.set_xscale("log")
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.minorticks_off()
    from .pos_emb_figure import data_set_name

    data = data_set_name(runs["data"].iloc[0]) if "data" in runs else "?"
    ax.set_title(f"Few-shot linear probe of frozen pre-logits (Sec. 4.1, App. B.2), scale {scale}\n{data}, test split", fontsize=7)
    ax.set_xlabel("shots per class", fontsize=8)
    ax.set_ylabel("top-1 accuracy (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=6, frameon=False)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``few_shot_<scale>.md`` and ``.png`` into ``out_dir``; return their paths (``paper_csv`` is
    unused: the paper tabulates no curve). Raises as ``load_few_shot_runs``."""
    runs = load_few_shot_runs(runs_csv, scale)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / f"few_shot_{scale}.md", out_dir / f"few_shot_{scale}.png"
    write_text(md, few_shot_markdown(runs, scale, runs_csv))
    save_figure(plot_few_shot(runs, scale), png)
    return [md, png]


__all__ = ["shots_of", "curve_label", "load_few_shot_runs", "few_shot_markdown", "plot_few_shot", "write_report"]
