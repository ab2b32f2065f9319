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
