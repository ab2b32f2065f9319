"""The benchmark scripts run and record their figures with provenance (no timing is asserted)."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,args,csv,figure", [
    ("train_throughput.py", ["--models", "ViT-C/4", "--batch", "4", "--steps", "1", "--warmup", "0"],
     "train_throughput.csv", "images_per_s"),
    ("vit_vs_timm.py", ["--model", "ViT-C/4", "--batch", "2", "--steps", "1", "--warmup", "0", "--devices", "cpu"],
     "vit_vs_timm.csv", "images_per_s"),
    ("cli_startup.py", ["--repeats", "1"], "cli_startup.csv", "seconds"),
    ("gpu_throughput.py", ["--device", "cpu", "--models", "ViT-C/4@32", "--batch", "4", "--steps", "1", "--warmup", "1",
                           "--no-compile", "--fp32", "--input-batches", "3", "--workers", "0"], "gpu_throughput.csv",
     "images_per_s"),
    ("inference_scaling.py", ["--device", "cpu", "--models", "ViT-C/4", "--sizes", "32", "--seconds-per-point", "2",
                              "--max-batch", "8"], "inference_scaling.csv", "images_per_s"),
])
@pytest.mark.slow  # each script starts torch and timm in a subprocess
def test_benchmark_script_records_its_figures(script, args, csv, figure, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_csv(tmp_path / csv)
    assert len(rows) >= 1 and (rows[figure] > 0).all()
    assert rows["command"].str.startswith(f"python benchmarks/{script}").all()
    assert rows[["hardware", "torch", "measured_at", "data"]].notna().all().all()


@pytest.mark.parametrize("csv", sorted((ROOT / "results" / "benchmarks").glob("*.csv")), ids=lambda p: p.name)
def test_committed_benchmark_figures_name_their_command_hardware_time_and_data(csv):
    rows = pd.read_csv(csv)
    assert rows[["command", "hardware", "seconds", "data", "measured_at"]].notna().all().all()


@pytest.mark.slow  # the whole suite in its CPU mode: pytest -m gpu, the throughput smoke, a 6-step training run
def test_the_gpu_suite_runs_in_its_tiny_cpu_mode_so_it_never_rots(tmp_path):
    out = tmp_path / "suite"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), str(out), "--tiny",
                           "--budget-minutes", "5"], capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = (out / "summary.md").read_text()
    for step in ("pytest -m gpu", "gpu_throughput.py", "inference_scaling.py", "training"):
        assert f"| {step} | ok |" in summary
    assert "RandAugment 2/9 + Mixup/CutMix" in summary and "test top-1" in summary
    assert (out / "training_curve.png").stat().st_size > 0 and (out / "environment.json").exists()
    assert "Mixup/CutMix" in pd.read_csv(out / "benchmarks" / "gpu_throughput.csv")["model"].str.cat()
    record = next((out / "runs").glob("cifar10_from_scratch/runs/*/record.json")).read_text()
    assert '"mixing"' in record or "mixing." in record  # the recipe cell, not the paper's
