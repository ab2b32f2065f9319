"""Figure 5's report: the frontier comparison's semantics and the written table and figure."""
import math

import pandas as pd
import pytest

from vitrepro.report import compute_transfer as compute

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def runs_table(**acc) -> pd.DataFrame:
    """BiT at 1, 2, 4 PFLOPs with 40, 50, 60 %; ViT and a hybrid at the given (PFLOPs, accuracy)."""
    rows = [("R26x1", 1, 0.40), ("R50x1", 2, 0.50), ("R101x1", 4, 0.60)] + list(acc.values())
    return pd.DataFrame([{"run_id": f"r{i}", "status": "finished", "scale": "cpu", "model": m, "steps": 500,
                          "gflops": 0.1, "pretrain_flops": p * 1e15, "fewshot_5": a, "top1": a, "ft_top1": a,
                          "wall_s": 60.0, "pretrain_wall_s": 50.0, "images_per_s": 100.0, "hardware": "cpu",
                          "data": "cifar10 test"} for i, (m, p, a) in enumerate(rows)])


def test_frontier_is_the_best_accuracy_reached_with_at_most_that_compute():
    pts = pd.DataFrame({"pretrain_flops": [1, 2, 4, 8], "fewshot_5": [0.4, 0.3, 0.6, 0.5]})
    front = compute.frontier(pts, "fewshot_5")
    assert front["fewshot_5"].tolist() == [0.4, 0.4, 0.6, 0.6]


def test_accuracy_at_and_compute_to_reach_interpolate_on_log_compute():
    runs = runs_table()
    runs["family"] = runs["model"].map(compute.family_of)
    front = compute.frontier(runs, "fewshot_5")
    assert compute.accuracy_at(front, "fewshot_5", 2e15) == pytest.approx(0.50)
    assert compute.accuracy_at(front, "fewshot_5", 2 ** 0.5 * 1e15) == pytest.approx(0.45)  # halfway in log
    assert math.isnan(compute.accuracy_at(front, "fewshot_5", 8e15))  # outside BiT's range
    assert compute.compute_to_reach(front, "fewshot_5", 0.55) == pytest.approx(8 ** 0.5 * 1e15)
    assert math.isnan(compute.compute_to_reach(front, "fewshot_5", 0.65))


def test_versus_gives_the_difference_and_the_compute_ratio():
    runs = runs_table(vit=("ViT-C/4 depth=3", 2, 0.60))
    runs["family"] = runs["model"].map(compute.family_of)
    v = compute.versus(runs, "ViT", "BiT", "fewshot_5").iloc[0]
    assert v["diff"] == pytest.approx(10.0)  # 60 % against BiT's 50 % at 2 PFLOPs
    assert v["ratio"] == pytest.approx(2.0)  # BiT needs 4 PFLOPs for 60 %: 2x the ViT's compute


def test_family_of_reads_labels_with_overrides():
    assert [compute.family_of(m) for m in ("ViT-C/4 depth=12", "R101x1", "R50+ViT-C/8")] == ["ViT", "BiT", "hybrid"]


def test_report_writes_the_table_the_comparison_and_figure_5(tmp_path):
    csv = tmp_path / "runs.csv"
    runs_table(vit=("ViT-C/4", 2, 0.45), hyb=("R50+ViT-C/8", 3, 0.58)).to_csv(csv, index=False)
    md, png = compute.write_report(csv, ROOT / "results" / "paper" / "table6_compute.csv", tmp_path, "cpu")
    text = md.read_text()
    assert "| ViT | ViT-C/4 | 500 |" in text and "| hybrid | R50+ViT-C/8 |" in text
    assert "| ViT-C/4 (500 steps) | 2 | 45.00 | 50.00 | -5.00 |" in text
    assert "BiT ahead at equal compute" in text and png.stat().st_size > 10_000
    with pytest.raises(ValueError, match="scales present: cpu"):
        compute.write_report(csv, None, tmp_path, "local")


def test_the_report_names_the_transfer_task_its_runs_probed_and_fine_tuned_on(tmp_path):
    import yaml

    csv = tmp_path / "runs.csv"
    runs = runs_table(vit=("ViT-C/4", 2, 0.45))
    runs.to_csv(csv, index=False)
    assert compute.downstream_classes(runs, csv) is None  # no config at hand: nothing claimed
    (tmp_path / "runs" / "r0").mkdir(parents=True)
    config = {"config": {"eval": {"on": "downstream"}, "finetune": {"data": {"classes": [5, 6, 7, 9]}}}}
    (tmp_path / "runs" / "r0" / "config.yaml").write_text(yaml.safe_dump(config))
    assert compute.downstream_classes(runs, csv) == "5-7,9"
    md, _ = compute.write_report(csv, None, tmp_path, "cpu")
    assert "the 5-shot probe and the fine-tuning on classes 5-7,9 of the same copy" in md.read_text()
    config["config"]["eval"]["on"] = "upstream"  # probed on the pre-training data: not a transfer task
    (tmp_path / "runs" / "r0" / "config.yaml").write_text(yaml.safe_dump(config))
    assert compute.downstream_classes(runs, csv) is None


def test_seeds_of_one_model_and_budget_are_one_point_mean_and_std_with_n(tmp_path):
    runs = runs_table(a=("ViT-C/4", 2, 0.44), b=("ViT-C/4", 2, 0.46))
    runs["seed"] = [0, 0, 0, 0, 1]
    csv = tmp_path / "runs.csv"
    runs.to_csv(csv, index=False)
    md, png = compute.write_report(csv, None, tmp_path, "cpu")
    text = md.read_text()
    assert "5 runs (4 model x budget configurations)" in text
    assert "| ViT | ViT-C/4 | 500 | 2 (0,1) | 0.100 | 2 |" in text and "| 45.00 ± 1.41 |" in text
    assert "| R50x1 | 500 | 1 (0) |" in text and "| 50.00 |" in text  # one seed: its value, no spread
    assert "| ViT-C/4 (500 steps) | 2 | 45.00 | 50.00 | -5.00 |" in text  # the frontier compares the means
