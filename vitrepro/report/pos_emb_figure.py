"""The Table 8 figure (Appendix D.4): the paper's 5-shot accuracies beside ours, on one scale.

Both panels show each cell minus its own panel's "no position embedding" cell, in points, on a shared
y axis: a 0.3-point spread in the paper and a 3.9-point spread in ours look as different as they are.
Bars per position-embedding kind, coloured by placement; our bars are means over training seeds with
the std as error bars; each bar is labelled with its difference (2 decimals, as the table) above its
error bar and with n, the number of seeds. Cells we have not run are marked "not run". Drawn with
seaborn on matplotlib's Agg canvas (pyplot's global state is never touched).
"""
from __future__ import annotations

import math
import re

import pandas as pd

from .pos_emb import (METRIC_LABELS, NONE_CELL, PAPER_METRIC, PLACEMENT_NAMES, PLACEMENT_ORDER, POSEMB_NAMES,
                      POSEMB_ORDER, _display)

__all__ = ["plot_table8", "data_set_name"]

#: Full names of the data sets a ``data`` provenance string starts with.
DATA_SET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet", "imagenet21k": "ImageNet-21k",
                  "pets": "Oxford-IIIT Pets", "flowers": "Oxford Flowers-102", "imagefolder": "ImageFolder tree"}


def data_set_name(description: str) -> str:
    """``"CIFAR-10 (train 49,000 / test 10,000)"`` from a run's ``data`` provenance string (``"cifar10
    ImageFolder JPEG tree at ... (train 50000, test 10000, ...); split train 49000 / dev 1000 ..."``);
    ``"CIFAR-10 classes 0-4 (train 24,500 / test 5,000)"`` when it keeps some classes (``data.classes``)."""
    text = str(description)
    name = DATA_SET_NAMES.get(text.split(" ", 1)[0], text.split(" ", 1)[0])
    kept = re.search(r"; classes (\S+) of \d+", text)
    name += f" classes {kept[1]}" if kept else ""
    train = re.search(r"split train (\d+)", text) or re.search(r"train (\d+)", text)
    tests = re.findall(r"test (\d+)", text)  # the last: after a class subset, its own test split
    sizes = [f"{k} {int(n):,}" for k, n in (("train", train and train[1]), ("test", tests and tests[-1])) if n]
    return f"{name} ({' / '.join(sizes)})" if sizes else name


def _differences(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``frame`` with ``diff``: each row's ``100 * column`` minus the mean of the None/stem cell's rows
    (points; NaN without a None cell)."""
    none = frame[(frame["posemb"] == NONE_CELL[0]) & (frame["posemb_placement"] == NONE_CELL[1])]
    base = 100 * none[column].mean() if len(none) else math.nan
    return frame.assign(diff=100 * frame[column] - base)


def plot_table8(runs: pd.DataFrame, paper: pd.DataFrame, metric: str = "fewshot_5", scale: str | None = None):
    """Draw the paper's Table 8 (left) beside ours (right) as grouped bars of differences from each
    panel's None cell, in points, on a shared y axis.

    x = position embedding (None, 1-D, 2-D, Relative), hue = placement. Our bars are means over seeds
    with the std as error bars (n > 1); labels give the difference and n.

    Returns:
        A ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot state is touched).
    """
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    label = METRIC_LABELS.get(metric, metric)
    ours = runs.copy()
    ours[metric] = pd.to_numeric(ours[metric], errors="coerce") if metric in ours.columns else math.nan
    ours = _differences(ours[ours[metric].notna()].copy(), metric)
    pap = _differences(paper.copy(), PAPER_METRIC)
    for frame in (ours, pap):
        frame["pos_emb"] = frame["posemb"].map(lambda v: _display(v, POSEMB_NAMES))
        frame["placement"] = frame["posemb_placement"].map(lambda v: _display(v, PLACEMENT_NAMES))

    x_order = [POSEMB_NAMES[p] for p in POSEMB_ORDER] + sorted(set(ours["pos_emb"]) - set(POSEMB_NAMES.values()))
    hue_order = [PLACEMENT_NAMES[p] for p in PLACEMENT_ORDER]
    hue_order += sorted(set(ours["placement"]) - set(hue_order))
    palette = dict(zip(hue_order, sns.color_palette("deep", len(hue_order))))
    n_hue = len(hue_order)

    def slot(pe: str, pl: str) -> float:
        return x_order.index(pe) - 0.4 + (hue_order.index(pl) + 0.5) * 0.8 / n_hue

    models = ", ".join(sorted({str(v) for v in runs.get("model", pd.Series()).dropna()})) or "unknown model"
    data = "; ".join(sorted({data_set_name(v) for v in runs.get("data", pd.Series()).dropna()})) or "unknown data"
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_p, ax_o = fig.subplots(1, 2, sharey=True)
    panels = [(ax_p, pap, "Paper (Table 8, App. D.4): ViT-B/16,\nImageNet 5-shot linear", False),
              (ax_o, ours, f"Ours, scale {scale or 'all'}: {models},\n{data}, {label} linear", True)]
    ends = [0.0]  # where each bar's error bar ends, and the zero line
    labels = []
    for ax, frame, title, with_n in panels:
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("position embedding")
        ax.axhline(0, color="0.3", lw=1, ls="--")
        if frame.empty:
            ax.text(0.5, 0.5, f"no runs with {label}", ha="center", va="center", transform=ax.transAxes)
            continue
        sns.barplot(data=frame, x="pos_emb", y="diff", hue="placement", order=x_order, hue_order=hue_order,
                    palette=palette, errorbar="sd", capsize=0.15, err_kws={"linewidth": 1}, ax=ax, legend=False,
                    dodge=True)
        cells = frame.groupby(["pos_emb", "placement"])["diff"].agg(["mean", "std", "count"]).fillna({"std": 0.0})
        for (pe, pl), c in cells.iterrows():
            up = c["mean"] >= 0
            end = c["mean"] + (c["std"] if up else -c["std"])
            ends.append(end)
            text = f"{c['mean']:+.2f}" + (f"\nn={int(c['count'])}" if with_n else "")
            labels.append((ax, slot(pe, pl), end, up, text))
        if frame is ours:  # the paper's cells we have not run: no bar, a note
            have = set(zip(ours["posemb"], ours["posemb_placement"]))
            for pe, pl in sorted(set(zip(paper["posemb"], paper["posemb_placement"])) - have):
                labels.append((ax, slot(_display(pe, POSEMB_NAMES), _display(pl, PLACEMENT_NAMES)), 0.0, True,
                               "not run"))
    span = max(ends) - min(ends) or 1.0
    for ax, x, end, up, text in labels:  # clear of the error bar's end, in the bar's direction
        ax.annotate(text, (x, end), xytext=(0, 3 if up else -3), textcoords="offset points", ha="center",
                    va="bottom" if up else "top", fontsize=7)
    ax_p.set_ylim(min(ends) - 0.22 * span, max(ends) + 0.22 * span)
    ax_p.set_ylabel(f"{label} accuracy minus the None cell (points)")
    handles = [Patch(color=palette[h], label=h) for h in hue_order]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9, title="placement",
               title_fontsize=9, frameon=False)
    return fig
