"""Figure 5 and Table 6 (Sec. 4.4) of Dosovitskiy et al. 2021: transfer accuracy versus pre-training compute.

Reads the ``runs.csv`` of ``experiments/compute_transfer.yaml`` (one row per model x budget x training seed;
accuracies as fractions; ``pretrain_flops`` = 3 x forward FLOPs x images seen, ``vitrepro.cost``) and writes,
per scale,

- ``compute_<scale>.md``: one row per model x budget (family, model, steps, n seeds, GFLOPs a forward pass,
  pre-training petaFLOPs, mean wall time and images/s, 5-shot linear and fine-tuned top-1 as mean ± std over
  the seeds), then the comparison the paper makes, on the means:
  each ViT (and hybrid) point against the BiT frontier at the same compute (the best BiT accuracy reached
  with at most that compute, interpolated on log compute), in percentage points, and the compute BiT needs
  to reach each ViT point's accuracy, as a ratio ("ViT uses approximately 2-4x less compute");
- ``compute_<scale>.png``: Figure 5's panels: the paper's Table 6 points (fine-tuned, average of 5 data sets
  and CIFAR-10, against exaFLOPs) beside ours (5-shot linear and fine-tuned top-1 against petaFLOPs, the mean
  over seeds with the std as an error bar), a log compute axis, one colour per family.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import save_figure, write_text
from .runs import failed_runs_markdown, load_scale, mean_std_text, seed_stats, source_name, split_failed

FAMILIES = ("ViT", "BiT", "hybrid")
MEASURES = {"fewshot_5": "5-shot linear", "ft_top1": "fine-tuned top-1"}
PALETTE = {"ViT": "#1f77b4", "BiT": "#d62728", "hybrid": "#2ca02c"}  # Figure 5's blue, red, green-ish


def family_of(label: str) -> str:
    """The family of a model label as ``runs.csv`` shows it (``"ViT-C/4 depth=3"`` -> ``"ViT"``)."""
    from ..models import model_family

    return model_family(str(label).split(" ")[0])


def load_compute_runs(runs_csv: Path, scale: str) -> pd.DataFrame:
    """The rows of ``scale`` with a ``family`` and ``pretrain_pflops`` column. Raises as
    ``report.runs.load_scale``."""
    runs = load_scale(runs_csv, scale, ("model", "pretrain_flops"))
    runs["family"] = runs["model"].map(family_of)
    runs["pretrain_pflops"] = runs["pretrain_flops"] / 1e15
    return runs.reset_index(drop=True)


def by_configuration(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model x budget (family, model, steps) of ``runs`` (one per training seed): ``n`` and
    ``seeds``; the compute columns (the same for every seed); the mean wall times and images/s; and each
    accuracy (fractions) as the mean over the seeds with ``<measure>_std`` beside it (``report.runs.seed_stats``;
    0 for one seed)."""
    keys, rows = ["family", "model", "steps"], []
    for key, g in runs.groupby(keys, sort=False):
        row = dict(zip(keys, key), n=len(g),
                   seeds=",".join(str(int(v)) for v in sorted(g["seed"])) if "seed" in g else "")
        row.update({c: g[c].iloc[0] for c in ("gflops", "pretrain_flops", "pretrain_pflops") if c in g})
        row.update({c: g[c].mean() for c in ("pretrain_wall_s", "wall_s", "images_per_s") if c in g})
        row.update({k: v / 100 for k, v in seed_stats(g, ("fewshot_5", "top1", "ft_top1")).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def frontier(points: pd.DataFrame, measure: str, x: str = "pretrain_flops") -> pd.DataFrame:
    """The Pareto frontier of ``points``: sorted by compute, the best ``measure`` reached with at most that
    compute (a running maximum), one row per compute value."""
    pts = points[[x, measure]].dropna().sort_values(x)
    pts = pts.groupby(x, as_index=False)[measure].max()
    pts[measure] = pts[measure].cummax()
    return pts.reset_index(drop=True)


def accuracy_at(front: pd.DataFrame, measure: str, compute: float, x: str = "pretrain_flops") -> float:
    """The frontier's accuracy at ``compute``, linear in log compute between its points; NaN outside its
    compute range."""
    if front.empty or not front[x].min() <= compute <= front[x].max():
        return float("nan")
    return float(np.interp(np.log(compute), np.log(front[x]), front[measure]))


def compute_to_reach(front: pd.DataFrame, measure: str, accuracy: float, x: str = "pretrain_flops") -> float:
    """The least compute at which the frontier reaches ``accuracy`` (log-linear between its points); NaN
    when it never does or already exceeds it at its cheapest point."""
    xs, ys = np.log(front[x].to_numpy()), front[measure].to_numpy()
    if len(ys) == 0 or accuracy > ys.max() or accuracy < ys[0]:
        return float("nan")
    i = int(np.argmax(ys >= accuracy))
    if i == 0:
        return float(front[x].iloc[0])
    t = (accuracy - ys[i - 1]) / (ys[i] - ys[i - 1])
    return float(np.exp(xs[i - 1] + t * (xs[i] - xs[i - 1])))


def versus(runs: pd.DataFrame, family: str, reference: str, measure: str) -> pd.DataFrame:
    """Each run of ``family`` against the ``reference`` family's frontier: the difference in points at the
    same compute and the ratio (reference compute to reach the run's accuracy) / (the run's compute)."""
    front = frontier(runs[runs["family"] == reference], measure)
    rows = []
    for r in runs[runs["family"] == family].sort_values("pretrain_flops").itertuples():
        acc = getattr(r, measure)
        ref = accuracy_at(front, measure, r.pretrain_flops)
        need = compute_to_reach(front, measure, acc)
        rows.append({"model": r.model, "steps": r.steps, "pflops": r.pretrain_flops / 1e15, "acc": 100 * acc,
                     "ref_acc": 100 * ref, "diff": 100 * (acc - ref), "ratio": need / r.pretrain_flops})
    return pd.DataFrame(rows)


def _f(v: float, fmt: str = ".2f") -> str:
    return "–" if pd.isna(v) else format(v, fmt)


def downstream_classes(runs: pd.DataFrame, runs_csv: Path) -> str | None:
    """``"5-9"``: the classes of the data copy the runs transfer to, probed and fine-tuned (``eval.on:
    downstream`` with ``finetune.data.classes``; read from the first run's ``config.yaml``); None when the
    probe reads the pre-training data or the config is not at hand."""
    import yaml

    from ..data.class_subset import spans

    path = Path(runs_csv).parent / "runs" / str(runs["run_id"].iloc[0]) / "config.yaml"
    cfg = yaml.safe_load(path.read_text()).get("config", {}) if path.is_file() else {}
    classes = ((cfg.get("finetune") or {}).get("data") or {}).get("classes")
    on = (cfg.get("eval") or {}).get("on", "upstream")
    return spans(tuple(classes)) if classes and on == "downstream" else None


def _pct_cell(r, m: str) -> str:
    mean = getattr(r, m, float("nan"))
    return "–" if pd.isna(mean) else mean_std_text(100 * mean, 100 * getattr(r, f"{m}_std", float("nan")), r.n)


def compute_markdown(runs: pd.DataFrame, scale: str, runs_csv: Path, downstream: str | None = None) -> str:
    """The markdown report (see the module docstring) of ``runs`` (one row per training seed);
    ``downstream``: the classes transferred to (``downstream_classes``), named in its first paragraph."""
    configs = by_configuration(runs)
    hw = ", ".join(sorted(set(runs["hardware"].astype(str)))) if "hardware" in runs else "?"
    data = ", ".join(sorted(set(runs["data"].astype(str)))) if "data" in runs else "?"
    wall = runs["wall_s"].sum() / 60 if "wall_s" in runs else float("nan")
    lines = [f"# Compute vs transfer (Figure 5, Table 6), scale `{scale}`", "", f"Source runs: `{source_name(runs_csv)}` (in the results folder)", "",
             f"{len(runs)} runs ({len(configs)} model x budget configurations); hardware {hw}; total wall time {wall:.1f} min; data {data}. Pre-training compute "
             "= 3 x forward FLOPs of one image x images seen (petaFLOPs, 1e15). Accuracies in percent (test split), "
             "mean ± std over a configuration's training seeds (n); wall time and images/s their mean"
             + (f"; the 5-shot probe and the fine-tuning on classes {downstream} of the same copy, none of them seen "
                "in pre-training (the transfer task), the pre-training top-1 on the pre-training classes."
                if downstream else "."),
             "", "| family | model | steps | n (seeds) | GFLOPs/image | pre-training PFLOPs | pre-training min | images/s | "
             "5-shot linear | pre-training top-1 | fine-tuned top-1 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {f: i for i, f in enumerate(FAMILIES)}
    for r in configs.sort_values(["family", "pretrain_flops"], key=lambda s: s.map(order) if s.name == "family" else s).itertuples():
        pre_min = getattr(r, "pretrain_wall_s", float("nan")) / 60
        lines.append(f"| {r.family} | {r.model} | {int(r.steps)} | {r.n} ({r.seeds}) | {_f(r.gflops, '.3f')} | "
                     f"{_f(r.pretrain_pflops, '.3g')} | {_f(pre_min, '.1f')} | "
                     f"{_f(getattr(r, 'images_per_s', float('nan')), '.0f')} | {_pct_cell(r, 'fewshot_5')} | "
                     f"{_pct_cell(r, 'top1')} | {_pct_cell(r, 'ft_top1')} |")
    for fam in ("ViT", "hybrid"):
        if not ((configs["family"] == fam).any() and (configs["family"] == "BiT").any()):
            continue
        for m in [m for m in MEASURES if m in configs and configs[m].notna().any()]:
            v = versus(configs, fam, "BiT", m)
            lines += ["", f"**{fam} against the BiT frontier, {MEASURES[m]}** (means over seeds; BiT's best accuracy with at most the same "
                      "compute, log-linear between its runs; ratio = compute BiT needs for the same accuracy / "
                      f"{fam}'s compute; – outside BiT's range):", "",
                      f"| {fam} run | PFLOPs | {fam} % | BiT % at same compute | difference (pp) | BiT compute ratio |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {r.model} ({int(r.steps)} steps) | {r.pflops:.3g} | {r.acc:.2f} | {_f(r.ref_acc)} | "
                      f"{_f(r.diff, '+.2f')} | {_f(r.ratio, '.2f')} |" for r in v.itertuples()]
            d = v["diff"].dropna()
            if len(d):
                lines += ["", f"Mean difference {d.mean():+.2f} pp over {len(d)} {fam} configuration(s) within BiT's compute range: "
                              + (f"{fam} ahead at equal compute." if d.mean() > 0 else "BiT ahead at equal compute.")]
    return "\n".join(lines) + "\n"


def label_points(ax, points: list[tuple[float, float, str, str]], size: float = 5.0) -> None:
    """Write each point's label beside it without two labels overlapping and none past the axis: a label
    goes right of its point, or left of it in the right third of the axis, and moves down (then up) in
    steps of its height until it overlaps no label placed before it. ``points``: (x, y, text, colour) in
    data coordinates."""
    fig = ax.figure
    fig.canvas.draw()  # the axis limits and scales final: the data-to-pixel transform holds
    renderer = fig.canvas.get_renderer()
    x0, x1 = ax.get_window_extent().x0, ax.get_window_extent().x1
    placed = []
    step = size * fig.dpi / 72 * 1.3  # one line, in pixels
    for x, y, text, color in sorted(points, key=lambda p: -p[1]):
        px, py = ax.transData.transform((x, y))
        left = px > x0 + 2 * (x1 - x0) / 3
        for k in (0, -1, 1, -2, 2, -3, 3, -4, 4):
            offset = (-3 if left else 3, 2 + k * step * 72 / fig.dpi)
            t = ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", fontsize=size, color=color,
                            ha="right" if left else "left")
            box = t.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                break
            t.remove()
        else:
            t = ax.annotate(text, (x, y), xytext=(-3 if left else 3, 2), textcoords="offset points", fontsize=size,
                            color=color, ha="right" if left else "left")
            box = t.get_window_extent(renderer)
        placed.append(box)


def plot_compute(runs: pd.DataFrame, scale: str, paper: pd.DataFrame | None = None, downstream: str | None = None):
    """Figure 5 beside ours: the paper's Table 6 (fine-tuned average-5 and CIFAR-10 top-1 against
    exaFLOPs, from ``paper``) and our 5-shot linear and fine-tuned top-1 against petaFLOPs, ``runs`` one row
    per training seed drawn as the mean of each model x budget with the std as an error bar; log compute
    axes, one colour per family, each family's frontier (of the means) drawn as a line, each point labelled;
    ``downstream``: the classes transferred to (``downstream_classes``), named in our panels' titles.
    A matplotlib Figure on the Agg canvas (7 in wide, 8-point text)."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .pos_emb_figure import data_set_name

    data = ", ".join(sorted({data_set_name(d) for d in runs["data"]})) if "data" in runs else "?"
    runs = by_configuration(runs)
    measures = [m for m in MEASURES if m in runs.columns and runs[m].notna().any()]
    panels = (1 if paper is not None else 0) + len(measures)
    fig = Figure(figsize=(7.0, 2.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(1, panels, squeeze=False)[0])
    handles = {}
    markers = {"ViT": "o", "BiT": "s", "hybrid": "^"}
    with sns.plotting_context("paper", font_scale=0.8):
        if paper is not None:
            ax = axes.pop(0)
            for fam, pts in paper.groupby("family"):
                for col, fill, what in (("avg5_ft_top1", True, "avg. 5"), ("cifar10_ft_top1", False, "CIFAR-10")):
                    color = PALETTE.get(fam, "grey")
                    sc = ax.scatter(pts["pretrain_exaflops"], 100 * pts[col], marker=markers.get(fam, "o"), s=12,
                                    color=color if fill else "none", edgecolors=color, label=f"paper {fam} ({what})")
                    front = frontier(pts, col, "pretrain_exaflops")
                    ax.plot(front["pretrain_exaflops"], 100 * front[col], lw=1, ls="-" if fill else ":", color=color)
                    handles[sc.get_label()] = sc
            ax.set_xscale("log")
            ax.set_title("Paper, Fig. 5 / Table 6: JFT-300M,\nfine-tuned top-1 (avg. 5, CIFAR-10)", fontsize=7)
            ax.set_xlabel("pre-training exaFLOPs", fontsize=8)
            ax.set_ylabel("accuracy (%)", fontsize=8)
        for ax, m in zip(axes, measures):
            for fam in [f for f in FAMILIES if (runs["family"] == f).any()]:
                pts = runs[runs["family"] == fam]
                sc = ax.scatter(pts["pretrain_pflops"], 100 * pts[m], marker=markers[fam], s=16,
                                color=PALETTE[fam], label=f"ours {fam}", zorder=3)
                ax.errorbar(pts["pretrain_pflops"], 100 * pts[m], yerr=100 * pts[f"{m}_std"].fillna(0), fmt="none",
                            ecolor=PALETTE[fam], elinewidth=0.8, capsize=2, zorder=2)
                front = frontier(pts, m, "pretrain_pflops")
                ax.plot(front["pretrain_pflops"], 100 * front[m], lw=1, color=PALETTE[fam], alpha=0.7)
                handles[f"ours {fam}"] = sc
            ax.set_xscale("log")
            label_points(ax, [(r.pretrain_pflops, 100 * getattr(r, m), f"{r.model.replace('depth=', 'd')} {int(r.steps)}",
                               PALETTE[r.family]) for r in runs.itertuples()])
            ax.set_title(f"Ours ({scale}): {MEASURES[m]}\n" + (f"{data.split(' (')[0]} -> classes {downstream}"
                                                                 if downstream else data), fontsize=7)
            ax.set_xlabel("pre-training petaFLOPs", fontsize=8)
            ax.set_ylabel("accuracy (%)", fontsize=8)
        for ax in fig.axes:
            ax.tick_params(labelsize=7)
        for ax in axes:  # ours: less than a decade wide, so ticks at 1, 2 and 5
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 5),
               fontsize=6.5, frameon=False)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Write ``compute_<scale>.md`` and ``.png`` into ``out_dir``; return their paths. ``paper_csv``: Table 6
    (``results/paper/table6_compute.csv``), drawn beside ours. Raises as ``load_compute_runs``."""
    runs = load_compute_runs(runs_csv, scale)
    runs, failed = split_failed(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / f"compute_{scale}.md", out_dir / f"compute_{scale}.png"
    downstream = downstream_classes(runs, runs_csv) if len(runs) else None
    text = compute_markdown(runs, scale, runs_csv, downstream) if len(runs) else f"# Compute vs transfer, scale `{scale}`\n\nNo finished run.\n"
    text += failed_runs_markdown(failed, lambda r: r.model)
    write_text(md, text)
    if not len(runs):
        return [md]
    paper = pd.read_csv(paper_csv) if paper_csv else None
    save_figure(plot_compute(runs, scale, paper, downstream), png)
    return [md, png]


__all__ = ["FAMILIES", "MEASURES", "family_of", "load_compute_runs", "frontier", "accuracy_at", "compute_to_reach",
           "by_configuration", "versus", "compute_markdown", "plot_compute", "write_report"]
