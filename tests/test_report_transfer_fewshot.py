"""The reports of transfer and of the few-shot curves: the training seeds of one configuration averaged
with n (seed s probes or fine-tunes the pre-training run of seed s), other configurations apart."""
import json
from pathlib import Path

import pandas as pd

from vitrepro.report import few_shot, transfer


def _write_runs(folder: Path, rows: list[dict]) -> Path:
    base = {"scale": "cpu", "status": "finished", "model": "ViT-C/4", "hardware": "cpu", "data": "cifar10 x",
            "variant": "", "error": None, "wall_s": 60.0}
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{**base, **r} for r in rows]).to_csv(folder / "runs.csv", index=False)
    return folder / "runs.csv"


def test_the_transfer_report_pairs_seeds_by_data_content_and_keeps_lr_protocols_apart(tmp_path):
    shapes = "imagefolder ImageFolder tree at {} (train 1200, test 400, fingerprint ebab0d13a826)"
    grid = "0.003: 0.2750; 0.01: 0.2667; 0.03: 0.2750"
    ckpt = "results/data_size_scaling/runs/{}/checkpoints/last.ckpt"
    common = {"ft_dataset": "imagefolder", "ft_steps": 200}
    csv = _write_runs(tmp_path / "transfer", [  # seed 1 ran from another checkout: same data, another path
        {"run_id": "aaaa", "seed": 0, "data": shapes.format("/a/data/shapes"), "ft_sweep": grid, "ft_lr": 0.003,
         "init": ckpt.format("ViT_C_4-49000-5c4c"), "fewshot_5": 0.23, "ft_top1": 0.25, **common},
        {"run_id": "bbbb", "seed": 1, "data": shapes.format("/b/data/shapes"), "ft_sweep": grid, "ft_lr": 0.01,
         "init": ckpt.format("ViT_C_4-49000-1-7693"), "fewshot_5": 0.25, "ft_top1": 0.27, **common},
        {"run_id": "cccc", "seed": 0, "model": "R50x1", "data": shapes.format("/a/data/shapes"), "ft_sweep": None,
         "ft_lr": 0.03, "init": ckpt.format("R50x1-49000-6e64"), "fewshot_5": 0.24, "ft_top1": 0.38, **common},
        {"run_id": "dddd", "seed": 1, "data": "cifar10 tree (fingerprint 5994497ca2b4)", "ft_sweep": grid,
         "ft_lr": 0.003, "init": ckpt.format("ViT_C_4-49000-1-7693"), "fewshot_5": 0.5, "ft_top1": 0.9, **common}])
    md, png = transfer.write_report(csv, None, csv.parent, "cpu")
    text = md.read_text()
    assert ("| ViT-C/4 | imagefolder (ebab0d13a826) | 200, grid 0.003, 0.01, 0.03 | 2 (0,1) | 24.00 ± 1.41 | "
            "26.00 ± 1.41 | 0.003, 0.01 | 1.0 | `ViT_C_4-49000-5c4c`, `ViT_C_4-49000-1-7693` |") in text
    assert "| R50x1 | imagefolder (ebab0d13a826) | 200, fixed 0.03 | 1 (0) | 24.00 | 38.00 | 0.03 |" in text
    assert "| ViT-C/4 | imagefolder (5994497ca2b4) | 200, grid 0.003, 0.01, 0.03 | 1 (1) | 50.00 | 90.00 |" in text
    assert "99.00" in text and png.stat().st_size > 0  # the paper's CIFAR-10 number, in words


def test_the_few_shot_report_averages_the_training_seeds_of_one_pretraining_cell(tmp_path):
    results = tmp_path / "results"
    for run_id, cell in (("ViT_C_4-1000-aaaaaaaa", {"model": {"name": "ViT-C/4"}, "train_size": 1000}),
                         ("ViT_C_4-1000-1-bbbbbbbb", {"model": {"name": "ViT-C/4"}, "train_size": 1000, "seed": 1}),
                         ("ViT_C_4-49000-cccccccc", {"model": {"name": "ViT-C/4"}, "train_size": 49000})):
        (results / "data_size_scaling" / "runs" / run_id).mkdir(parents=True)
        (results / "data_size_scaling" / "runs" / run_id / "record.json").write_text(
            json.dumps({"experiment": "data_size_scaling", "cell": cell, "status": "finished"}))
    probe = {"fewshot_1": 0.2, "fewshot_1_std": 0.05}
    csv = _write_runs(results / "few_shot", [
        {"run_id": "a", "seed": 0, "checkpoint": "results/data_size_scaling/runs/ViT_C_4-1000-aaaaaaaa",
         **probe, "fewshot_5": 0.30},
        {"run_id": "b", "seed": 1, "checkpoint": "results/data_size_scaling/runs/ViT_C_4-1000-1-bbbbbbbb",
         **probe, "fewshot_5": 0.32},
        {"run_id": "c", "seed": 0, "checkpoint": "results/data_size_scaling/runs/ViT_C_4-49000-cccccccc",
         **probe, "fewshot_5": 0.40},
        {"run_id": "d", "seed": 0, "checkpoint": None, "init": "/weights/ViT-B_16.npz", **probe, "fewshot_5": 0.9}])
    md, png = few_shot.write_report(csv, None, csv.parent, "cpu")
    text = md.read_text()
    assert "| ViT-C/4 from data_size_scaling: train_size=1000 | 2 (0,1) | 20.00 ± 0.00 | 31.00 ± 1.41 |" in text
    assert "| ViT-C/4 from data_size_scaling: train_size=49000 | 1 (0) | 20.00 | 40.00 |" in text
    assert "| ViT-C/4 from ViT-B_16.npz | 1 (0) | 20.00 | 90.00 |" in text  # a file: its own configuration
    assert "`ViT_C_4-1000-1-bbbbbbbb` (seed 1)" in text and png.stat().st_size > 0
