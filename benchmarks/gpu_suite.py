"""One command that checks and measures a GPU within a time budget, with no network: for an hour on a new GPU
or a GPU CI runner.

    python benchmarks/gpu_suite.py OUT_DIR [--budget-minutes 9] [--data-root /path/to/cifar10]
    python benchmarks/gpu_suite.py OUT_DIR --tiny        # the CPU smoke of the slow test tier (~1-2 min)

In order, each given what is left of the budget:
1. the environment (GPU, driver, torch, CUDA, cuDNN, Python, Lightning, timm): ``OUT/environment.json``;
2. the GPU tests, ``pytest -m gpu``: ``OUT/pytest_gpu.log``;
3. ``benchmarks/gpu_throughput.py``: images/s and MFU of ViT-S/4@32, ViT-B/16@224, R50x1@224 and
   R50+ViT-B/16@224, ours against timm's same model, compiled, bf16, and the input path alone (with and
   without the from-scratch recipe); its rows are appended to ``--results`` (default ``results/benchmarks``)
   with the GPU's name, and copied to ``OUT/gpu_throughput.csv``;
4. ``benchmarks/inference_scaling.py`` (Figure 12): inference images/s and the largest batch that fits,
   ViT-B/16, ViT-B/32, R50x1 and R50+ViT-B/16 at 64-512 px, within a tenth of what is left (at most 2
   minutes): its rows appended beside the throughput's, its figure copied to ``OUT/inference_scaling.png``;
5. timed training of the local from-scratch recipe (``experiments/cifar10_from_scratch.yaml --scale local
   --cell 2``, ViT-S/4, seed 0) for the time left (Lightning's ``max_time``), then its test top-1:
   ``OUT/runs/`` (the run; re-running the suite resumes it), ``OUT/training_curve.csv`` and ``.png`` (dev
   top-1 against training time: the step of each validation times the run's mean seconds a step).
Then ``OUT/summary.md``, also printed. A step that fails or runs out of its time is reported as such; the
suite goes on and exits 1 if any step failed.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What ``--tiny`` runs instead (CPU, seconds): the throughput smoke and the smoke scale of the recipe.
TINY_THROUGHPUT = ["--device", "cpu", "--models", "ViT-C/4@32", "--batch", "4", "--steps", "1", "--warmup", "1",
                   "--no-compile", "--fp32", "--input-batches", "3", "--workers", "0"]
#: What ``--tiny`` runs of the Figure 12 benchmark.
TINY_INFERENCE = ["--device", "cpu", "--models", "ViT-C/4", "--sizes", "32", "--seconds-per-point", "2", "--max-batch", "8"]
#: Seconds kept back at the end of the budget for the final evaluation and the summary.
RESERVE_S = 60


def environment() -> dict:
    """The GPU, its driver and the software stack (no network)."""
    import lightning
    import timm
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "lightning": lightning.__version__, "timm": timm.__version__, "gpu": None, "driver": None,
           "gpu_memory_gib": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}")
        if shutil.which("nvidia-smi"):
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            env["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    return env


def run_step(cmd: list[str], log: Path, timeout: float) -> tuple[str, float]:
    """Run ``cmd`` in the checkout with its output in ``log``; ``("ok" | "failed (exit N)" | "timed out", s)``."""
    t0 = time.time()
    with log.open("w") as f:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=max(1.0, timeout)).returncode
        except subprocess.TimeoutExpired:
            return "timed out", time.time() - t0
    return ("ok" if rc == 0 else f"failed (exit {rc})"), time.time() - t0


def training_curve(results: Path, out: Path) -> dict:
    """Dev top-1 against training seconds of the suite's run (``OUT/training_curve.csv`` / ``.png``) and its
    record's figures; {} when the run left no record."""
    import pandas as pd

    records = sorted(results.glob("cifar10_from_scratch/runs/*/record.json"))
    if not records:
        return {}
    record = json.loads(records[-1].read_text())
    metrics = record.get("metrics") or {}
    log = records[-1].parent / "logs" / "metrics.csv"
    rows = pd.read_csv(log) if log.exists() else pd.DataFrame()
    steps = metrics.get("steps") or 0
    per_step = (record["provenance"].get("wall_s") or 0) / steps if steps else None
    if "val/top1" in rows and per_step:
        curve = rows.dropna(subset=["val/top1"])[["step", "val/top1"]].assign(train_s=lambda d: d["step"] * per_step)
        curve.to_csv(out / "training_curve.csv", index=False)
        _plot_curve(curve, metrics.get("top1"), out / "training_curve.png", record["provenance"].get("hardware"))
    return {"status": record.get("status"), "steps": steps, "top1": metrics.get("top1"), "images_per_s": metrics.get("images_per_s"),
            "wall_s": record["provenance"].get("wall_s"), "run_id": record.get("run_id"), "error": record.get("error")}


def _plot_curve(curve, final_top1, path: Path, hardware: str | None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.4, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(curve["train_s"] / 60, 100 * curve["val/top1"], marker="o", ms=3, label="dev top-1 (2% held out)")
    if final_top1 is not None:
        ax.axhline(100 * final_top1, ls="--", lw=0.8, color="grey", label=f"test top-1 at the end: {100 * final_top1:.2f}%")
    ax.set_xlabel("training time (min; steps x mean s a step)", fontsize=8)
    ax.set_ylabel("top-1 (%)", fontsize=8)
    ax.set_title(f"From-scratch recipe, local scale, on {hardware or '?'}", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    fig.savefig(path, dpi=150)


def summary_markdown(env: dict, steps: dict, bench_rows, train: dict) -> str:
    lines = ["# GPU suite", "", f"GPU {env.get('gpu') or 'none'} (driver {env.get('driver')}, "
             f"{env.get('gpu_memory_gib')} GiB); torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
             f"Python {env['python']}, Lightning {env['lightning']}, timm {env['timm']}.", "",
             "| step | result | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {status} | {seconds:.0f} |" for name, (status, seconds) in steps.items()]
    if bench_rows is not None and len(bench_rows):
        cols = [c for c in ("model", "impl", "img_size", "batch", "images_per_s", "mfu", "ours_over_timm",
                            "input_over_train_step") if c in bench_rows]
        table = bench_rows[cols].astype(object).where(bench_rows[cols].notna(), "")
        lines += ["", "Throughput (this run's rows of gpu_throughput.csv):", "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    if train:
        top1 = f"{100 * train['top1']:.2f}%" if train.get("top1") is not None else "none"
        lines += ["", f"Training: run {train['run_id']} {train['status']}, {train['steps']} steps in {train['wall_s']} s "
                  f"({train['images_per_s']} images/s); test top-1 {top1}"
                  + (f"; error: {train['error']}" if train.get("error") else "")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder the suite writes into (created)")
    p.add_argument("--budget-minutes", type=float, default=9.0)
    p.add_argument("--data-root", help="CIFAR-10 (any layout vitrepro reads); default $VITREPRO_DATA, else the "
                                       "bundled sample")
    p.add_argument("--results", default="results/benchmarks", help="where the throughput rows are appended")
    p.add_argument("--tiny", action="store_true", help="CPU smoke: tiny throughput run, the recipe's smoke scale")
    args = p.parse_args(argv)
    t_end = time.time() + 60 * args.budget_minutes
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    left = lambda: t_end - time.time()  # noqa: E731

    env = environment()
    (out / "environment.json").write_text(json.dumps(env, indent=1))
    print(f"environment: {env}", flush=True)
    if env["gpu"] is None and not args.tiny:
        print("error: no CUDA GPU here; the suite measures a GPU (use --tiny for the CPU smoke)", file=sys.stderr)
        return 2
    steps: dict[str, tuple[str, float]] = {}
    py = sys.executable
    steps["pytest -m gpu"] = run_step([py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-n", "0",
                                       "tests/test_gpu.py"], out / "pytest_gpu.log", min(180, 0.25 * left()))
    print(f"pytest -m gpu: {steps['pytest -m gpu'][0]}; tail: "
          f"{(out / 'pytest_gpu.log').read_text().strip().splitlines()[-1:] }", flush=True)

    results = Path(args.results) if not args.tiny else out / "benchmarks"
    results = results if results.is_absolute() else ROOT / results
    bench_csv = results / "gpu_throughput.csv"
    before = 0
    if bench_csv.exists():
        import pandas as pd

        before = len(pd.read_csv(bench_csv))
    bench_args = TINY_THROUGHPUT if args.tiny else []
    data = ["--data-root", args.data_root] if args.data_root else []
    steps["gpu_throughput.py"] = run_step([py, "benchmarks/gpu_throughput.py", *bench_args, *data, "--out", str(results)],
                                          out / "gpu_throughput.log", min(300, 0.5 * (left() - RESERVE_S)))
    bench_rows = None
    if bench_csv.exists():
        import pandas as pd

        bench_rows = pd.read_csv(bench_csv).iloc[before:]
        bench_rows.to_csv(out / "gpu_throughput.csv", index=False)
    print(f"gpu_throughput.py: {steps['gpu_throughput.py'][0]}", flush=True)

    figure12_s = min(120.0, 0.1 * (left() - RESERVE_S))
    inference_args = TINY_INFERENCE if args.tiny else ["--seconds-per-point", f"{max(1.0, (figure12_s - 20) / 20):.1f}"]
    steps["inference_scaling.py"] = run_step([py, "benchmarks/inference_scaling.py", *inference_args, "--out", str(results)],
                                             out / "inference_scaling.log", figure12_s + 60)
    if (results / "inference_scaling.png").exists():
        shutil.copy(results / "inference_scaling.png", out / "inference_scaling.png")
    print(f"inference_scaling.py: {steps['inference_scaling.py'][0]}", flush=True)

    train_s = int(left() - RESERVE_S)
    train = {}
    if train_s < 30:
        steps["training"] = ("skipped (no time left)", 0.0)
    else:
        hms = time.strftime("%H:%M:%S", time.gmtime(train_s))
        scale = ["--scale", "smoke"] if args.tiny else ["--scale", "local"]
        cmd = [py, "-m", "vitrepro", "run", "experiments/cifar10_from_scratch.yaml", *scale, "--cell", "2",
               "--results-dir", str(out / "runs"), f"--trainer.max_time=00:{hms}", *data]
        if args.tiny:
            cmd += ["--trainer.max_steps=6"]
        steps["training"] = run_step(cmd, out / "training.log", train_s + RESERVE_S - 5)
        train = training_curve(out / "runs", out)
    text = summary_markdown(env, steps, bench_rows, train)
    (out / "summary.md").write_text(text)
    print(text)
    return 0 if all(s == "ok" or s.startswith("skipped") for s, _ in steps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
