"""The Table 8 figure (Appendix D.4): the paper's 5-shot accuracies beside ours, one panel each.

Drawn with seaborn on matplotlib's Agg canvas (pyplot's global state is never touched). Bars per
position-embedding kind, coloured by placement; a dashed line at the "no position embedding" cell;
our bars carry the seed std as error bars. Cells we have not run are marked "not run".
"""
from __future__ import annotations

import math
import textwrap

import pandas as pd

from .pos_emb import (METRIC_LABELS, NONE_CELL, PAPER_METRIC, PLACEMENT_NAMES, PLACEMENT_ORDER, POSEMB_NAMES,
                      POSEMB_ORDER, _display)

__all__ = ["plot_table8"]


def _zoom(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if not pd.isna(v)]
    if not vals:
        return 0.0, 100.0
    lo, hi = min(vals), max(vals)
    span = max(hi - lo, 1.0)
    return max(0.0, lo - 0.6 * span), min(100.0, hi + 0.35 * span)


def plot_table8(runs: pd.DataFrame, paper: pd.DataFrame, metric: str = "fewshot_5", scale: str | None = None):
    """Draw the paper's Table 8 (left) beside ours (right) as grouped bars.

    x = position embedding (None, 1-D, 2-D, Relative), hue = placement, y = accuracy in %;
    a dashed line marks each panel's None/Stem value. Our bars are means over seeds with the
    sample std as error bars (where n > 1). The y axes are zoomed (they do not start at 0) and
    not shared, since our small-scale runs sit far below the paper's accuracy.

    Returns:
        A ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot state is touched).
    """
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    label = METRIC_LABELS.get(metric, metric)
    ours = runs.copy()
    ours[metric] = pd.to_numeric(ours[metric], errors="coerce") if metric in ours.columns else math.nan
    ours = ours[ours[metric].notna()].copy()
    ours["pos_emb"] = ours["posemb"].map(lambda v: _display(v, POSEMB_NAMES))
    ours["placement"] = ours["posemb_placement"].map(lambda v: _display(v, PLACEMENT_NAMES))
    ours["acc"] = 100 * ours[metric]
    pap = paper.copy()
    pap["pos_emb"] = pap["posemb"].map(lambda v: _display(v, POSEMB_NAMES))
    pap["placement"] = pap["posemb_placement"].map(lambda v: _display(v, PLACEMENT_NAMES))
    pap["acc"] = 100 * pap[PAPER_METRIC]

    x_order = [POSEMB_NAMES[p] for p in POSEMB_ORDER]
    x_order += sorted(set(ours["pos_emb"]) - set(x_order))
    hue_order = [PLACEMENT_NAMES[p] for p in PLACEMENT_ORDER]
    hue_order += sorted(set(ours["placement"]) - set(hue_order))
    palette = dict(zip(hue_order, sns.color_palette("deep", len(hue_order))))

    fig = Figure(figsize=(13, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_p, ax_o = fig.subplots(1, 2)

    def model_data(col_model: str, col_data: str) -> tuple[str, str]:
        m = sorted({str(v) for v in runs[col_model].dropna()}) if col_model in runs.columns else []
        d = sorted({str(v) for v in runs[col_data].dropna()}) if col_data in runs.columns else []
        return ", ".join(m) or "unknown model", ", ".join(d) or "unknown data"

    panels = [
        (ax_p, pap, "Paper: ViT-B/16, ImageNet 5-shot linear\n(Table 8, App. D.4)", "5-shot linear accuracy (%)"),
    ]
    models, data = model_data("model", "data")
    title = f"Ours (scale {scale or 'all'}): {textwrap.shorten(models, 50)}\n{textwrap.shorten(data, 60)}"
    panels.append((ax_o, ours, title, f"{label} accuracy (%), mean ± std over seeds"))

    paper_cells = set(zip(paper["posemb"], paper["posemb_placement"]))
    ours_cells = set(zip(ours["posemb"], ours["posemb_placement"]))
    run_cells = set(zip(runs["posemb"], runs["posemb_placement"]))  # incl. rows lacking the metric
    n_hue = len(hue_order)
    for ax, frame, ttl, ylab in panels:
        ax.set_title(ttl, fontsize=10)
        ax.set_xlabel("position embedding")
        if frame.empty:
            ax.text(0.5, 0.5, f"no runs with {label}", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_ylabel(ylab, fontsize=9)
            continue
        sns.barplot(
            data=frame, x="pos_emb", y="acc", hue="placement", order=x_order, hue_order=hue_order,
            palette=palette, errorbar="sd", capsize=0.15, err_kws={"linewidth": 1}, ax=ax, legend=False,
            dodge=True,  # same slot per placement in both panels even when only one is run
        )
        cell = frame.groupby(["posemb", "posemb_placement"], dropna=False)["acc"]
        spread = cell.std().fillna(0)
        lo, hi = _zoom(list(cell.mean() - spread) + list(cell.mean() + spread))
        ax.set_ylim(lo, hi)
        ax.set_ylabel(ylab + ("\n(y axis starts above 0)" if lo > 0 else ""), fontsize=9)
        # value labels above the bar or its error bar, whichever is higher
        err_top: dict[float, float] = {}
        for line in ax.lines:  # seaborn draws each error bar (with caps) as one NaN-separated line
            xs = pd.to_numeric(pd.Series(line.get_xdata()), errors="coerce").dropna()
            ys = pd.to_numeric(pd.Series(line.get_ydata()), errors="coerce").dropna()
            if len(xs) and len(ys):
                key = round(float(xs.mean()), 3)
                err_top[key] = max(float(ys.max()), err_top.get(key, float("-inf")))
        for bar in ax.patches:
            height = bar.get_height()
            if pd.isna(height) or bar.get_width() == 0:
                continue
            x = bar.get_x() + bar.get_width() / 2
            top = max(height, err_top.get(round(x, 3), height))
            ax.annotate(f"{height:.2f}", (x, top), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, rotation=90)
        if frame is ours:  # mark the paper's cells that we have not run: never draw a bar for them
            for pe, pl in sorted(paper_cells - ours_cells):
                xi = x_order.index(_display(pe, POSEMB_NAMES))
                hi_ = hue_order.index(_display(pl, PLACEMENT_NAMES))
                x = xi - 0.4 + (hi_ + 0.5) * 0.8 / n_hue
                note = f"no {label}" if (pe, pl) in run_cells else "not run"
                ax.text(x, lo + 0.02 * (hi - lo), note, rotation=90, ha="center", va="bottom",
                        fontsize=8, color="0.4")
        none_rows = frame[(frame["posemb"] == NONE_CELL[0]) & (frame["posemb_placement"] == NONE_CELL[1])]
        if not none_rows.empty:
            ax.axhline(none_rows["acc"].mean(), ls="--", color="0.3", lw=1)

    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=palette[h], label=h) for h in hue_order]
    handles.append(Line2D([], [], ls="--", color="0.3", lw=1, label="None (no pos. emb.) level"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9,
               title="placement", title_fontsize=9, frameon=False)
    return fig


# --------------------------------------------------------------------------------------- report
