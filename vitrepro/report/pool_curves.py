"""Class token against global average pooling (Figure 9, App. D.3): few-shot accuracy against training
epochs for each (pool, learning rate) of ``experiments/class_token_vs_gap.yaml``.

Reads the experiment's ``runs.csv`` and each run's ``logs/metrics.csv`` (the few-shot callback's
``fewshot/<k>shot`` at the step of every epoch end) and writes, per scale, ``pool_curves_<scale>.md`` (one row
per setting: n, final test top-1 and few-shot accuracy in percent, mean ± std over training seeds; then the
curve, epoch by epoch) and ``pool_curves_<scale>.png`` (the curves, the band the std over seeds). Only runs
of one configuration are averaged. The paper draws Figure 9 without numbers: its finding is printed in words.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .runs import failed_runs_markdown, load_scale, mean_std_text, provenance, seed_stats, source_name, split_failed, write_md_png

FINDING = ("The paper (Figure 9, ViT-B/16 on ImageNet, 5-shot linear): class token and GAP \"work similarly well, "
           "but require different learning-rates\": GAP at the class token's 8e-4 is clearly worse, GAP at 3e-4 "
           "matches the class token at 8e-4.")


def setting(row) -> str:
    """``class token, lr 0.0008`` / ``GAP, lr 0.0003``."""
    return f"{'class token' if row.pool == 'token' else 'GAP'}, lr {row.lr:g}"


def curves(runs: pd.DataFrame, runs_dir: Path, shots: int) -> pd.DataFrame:
    """Long table ``setting, seed, epoch, accuracy`` (percent) of every run's ``fewshot/<shots>shot`` log;
    the epoch of a step is step / (the run's steps / its epochs)."""
    rows = []
    for r in runs.itertuples():
        log = runs_dir / r.run_id / "logs" / "metrics.csv"
        if not log.exists() or not r.epochs:
            continue
        metrics = pd.read_csv(log)
        col = f"fewshot/{shots}shot"
        if col not in metrics:
            continue
        per_epoch = r.steps / r.epochs
        logged = metrics.dropna(subset=[col])
        for step, accuracy in zip(logged["step"], logged[col]):
            rows.append({"setting": setting(r), "seed": r.seed, "epoch": round(step / per_epoch, 2),
                         "accuracy": 100 * accuracy})
    return pd.DataFrame(rows, columns=["setting", "seed", "epoch", "accuracy"])


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (``config_id``): n, seeds, mean and std (ddof 1; 0 for n = 1) of top-1 and the
    few-shot accuracies the runs have, in percent."""
    metrics = [c for c in ("top1", "fewshot_1", "fewshot_5", "fewshot_10") if c in runs]
    key = "config_id" if "config_id" in runs else "setting"
    runs = runs.assign(setting=[setting(r) for r in runs.itertuples()])
    out = []
    for _, g in runs.groupby(key, sort=False):
        out.append({"setting": g["setting"].iloc[0], "n": len(g), "seeds": ",".join(map(str, sorted(g["seed"]))),
                    **seed_stats(g, metrics)})
    table = pd.DataFrame(out)
    order = table["setting"].map(lambda s: (not s.startswith("class token"), -float(s.rsplit(" ", 1)[1])))
    return table.iloc[sorted(range(len(table)), key=lambda i: order.iloc[i])].reset_index(drop=True)


def pool_markdown(table: pd.DataFrame, curve: pd.DataFrame, runs: pd.DataFrame, failed: pd.DataFrame, scale: str,
                  runs_csv: Path, shots: int) -> str:
    metrics = [c for c in ("top1", "fewshot_1", "fewshot_5", "fewshot_10") if c in table]
    lines = [f"# Class token vs global average pooling (Figure 9), scale `{scale}`", "",
             f"Source runs: `{source_name(runs_csv)}` (in the results folder). {runs['model'].iloc[0]}; "
             f"{provenance(runs)}.", "", "Percent on the test split at the end of training; mean ± std over training seeds.", "",
             "| setting | n (seeds) | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for r in table.itertuples():
        lines.append(f"| {r.setting} | {r.n} ({r.seeds}) | "
                     + " | ".join(mean_std_text(getattr(r, m), getattr(r, m + "_std"), r.n) for m in metrics) + " |")
    if len(curve):
        wide = curve.groupby(["setting", "epoch"])["accuracy"].agg(["mean", "std", "count"]).reset_index()
        epochs = sorted(wide["epoch"].unique())
        lines += ["", f"{shots}-shot linear accuracy during training (the few-shot callback), mean ± std over seeds:", "",
                  "| setting | " + " | ".join(f"epoch {e:g}" for e in epochs) + " |", "|---|" + "---|" * len(epochs)]
        for name, g in wide.groupby("setting", sort=False):
            cells = {e: f"{m:.2f} ± {0 if pd.isna(s) else s:.2f}" for e, m, s in zip(g["epoch"], g["mean"], g["std"])}
            lines.append(f"| {name} | " + " | ".join(cells.get(e, "") for e in epochs) + " |")
    lines += ["", FINDING]
    return "\n".join(lines) + "\n" + failed_runs_markdown(failed, setting)


def plot_pool_curves(curve: pd.DataFrame, scale: str, model: str, shots: int):
    """Few-shot accuracy (%) against epochs, one line per setting, the band its std over seeds."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    sns.lineplot(data=curve, x="epoch", y="accuracy", hue="setting", errorbar="sd", marker="o", ax=ax)
    ax.set_xlabel("training epoch", fontsize=8)
    ax.set_ylabel(f"{shots}-shot linear top-1 (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"Class token vs GAP (Figure 9), {model}, scale {scale}\n(band: std over training seeds)", fontsize=8)
    return fig


def write_report(runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str, shots: int = 5) -> list[Path]:
    """Write ``pool_curves_<scale>.md`` and ``.png`` into ``out_dir``; return their paths (``paper_csv`` is
    unused: the paper gives no numbers). Raises as ``load_scale``, and ``ValueError`` when no run of ``scale``
    finished."""
    runs, failed = split_failed(load_scale(runs_csv, scale, ("model", "pool", "lr", "seed", "top1")))
    if runs.empty:
        raise ValueError(f"{runs_csv}: no finished run with scale={scale!r}")
    curve = curves(runs, Path(runs_csv).parent / "runs", shots)
    figure = plot_pool_curves(curve, scale, runs["model"].iloc[0], shots) if len(curve) else None
    return write_md_png(out_dir, f"pool_curves_{scale}", pool_markdown(summary(runs), curve, runs, failed, scale,
                                                                       runs_csv, shots), figure)


__all__ = ["FINDING", "setting", "curves", "summary", "pool_markdown", "plot_pool_curves", "write_report"]
