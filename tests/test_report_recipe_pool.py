"""The reports of the from-scratch recipe comparison and of class token vs GAP (Figure 9): seeds of one
configuration averaged with n, other configurations apart, curves read from the runs' logs."""
from pathlib import Path

import pandas as pd
import pytest

from vitrepro.report import pool_curves, recipe


def _write_runs(folder: Path, rows: list[dict]) -> Path:
    base = {"scale": "cpu", "status": "finished", "model": "ViT-C/4", "hardware": "cpu", "data": "cifar10 x",
            "variant": "", "error": None, "steps": 100, "epochs": 2, "wall_s": 60.0}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "runs.csv", index=False)
    return folder / "runs.csv"


def test_the_recipe_report_averages_seeds_of_one_recipe_and_gives_the_difference(tmp_path):
    mix = {"randaugment": 2, "mixing": "0.8_1.0", "drop_path_rate": 0.1, "ema": 0.998}
    csv = _write_runs(tmp_path / "cifar10_from_scratch", [
        {"run_id": "0-0-aaaa", "config_id": "base", "seed": 0, "randaugment": 0, "top1": 0.50, "fewshot_5": 0.30},
        {"run_id": "0-1-bbbb", "config_id": "base", "seed": 1, "randaugment": 0, "top1": 0.52, "fewshot_5": 0.32},
        {"run_id": "2-0-cccc", "config_id": "deit", "seed": 0, **mix, "top1": 0.60, "fewshot_5": 0.35},
        {"run_id": "2-1-dddd", "config_id": "deit", "seed": 1, **mix, "top1": 0.62, "fewshot_5": 0.37},
        {"run_id": "2-2-eeee", "config_id": "deit", "seed": 2, **mix, "status": "failed", "top1": None,
         "error": "NonFiniteLossError: at step 3"}])
    md, png = recipe.write_report(csv, None, csv.parent, "cpu")
    text = md.read_text()
    assert "| paper's recipe | ViT-C/4 | 2 (0,1) | 51.00 ± 1.41 |" in text
    assert "| RandAugment N=2 + Mixup/CutMix 0.8_1.0 + stochastic depth 0.1 + EMA 0.998 | ViT-C/4 | 2 (0,1) | 61.00 ± 1.41" in text
    assert "test top-1 +10.00, 5-shot +5.00 (n = 2 vs 2" in text
    assert "`2-2-eeee`" in text and "NonFiniteLossError" in text and png.stat().st_size > 0
    assert "93.58%" in text  # the literature beside ours


def test_figure_9_curves_come_from_the_runs_logs_and_settings_stay_apart(tmp_path):
    folder = tmp_path / "class_token_vs_gap"
    rows = []
    for pool, lr, cid in (("token", 0.0008, "t8"), ("gap", 0.0008, "g8"), ("gap", 0.0003, "g3")):
        for seed in (0, 1):
            run_id = f"{pool}-{lr}-{seed}-x"
            rows.append({"run_id": run_id, "config_id": cid, "pool": pool, "lr": lr, "seed": seed,
                         "top1": 0.4 + seed / 100, "fewshot_5": 0.3})
            log = folder / "runs" / run_id / "logs"
            log.mkdir(parents=True)
            pd.DataFrame({"step": [50, 100], "fewshot/5shot": [0.2 + seed / 10, 0.3], "epoch": [None, None]}).to_csv(
                log / "metrics.csv", index=False)
    csv = _write_runs(folder, rows)
    md, png = pool_curves.write_report(csv, None, folder, "cpu")
    text = md.read_text()
    assert text.index("| class token, lr 0.0008 | 2 (0,1) |") < text.index("| GAP, lr 0.0008 | 2 (0,1) |") \
        < text.index("| GAP, lr 0.0003 | 2 (0,1) |")
    assert "| 40.50 ± 0.71 |" in text
    assert "| class token, lr 0.0008 | 25.00 ± 7.07 | 30.00 ± 0.00 |" in text  # epochs 1 and 2 of both seeds
    assert "require different learning-rates" in text and png.stat().st_size > 0


def test_figure_9_needs_its_cell_columns(tmp_path):
    csv = _write_runs(tmp_path / "x", [{"run_id": "a", "seed": 0, "top1": 0.1}])
    with pytest.raises(ValueError, match="missing column"):
        pool_curves.write_report(csv, None, tmp_path, "cpu")


def test_table_7_report_puts_adam_beside_sgd_per_model(tmp_path):
    from vitrepro.report import optimizer

    rows = [{"run_id": f"{o}-{s}", "config_id": o, "optimizer": o, "seed": s, "model": "R50x1",
             "fewshot_5": f5 + s / 100, "ft_top1": ft + s / 100}
            for o, f5, ft in (("adamw", 0.40, 0.50), ("sgd", 0.35, 0.48)) for s in (0, 1)]
    csv = _write_runs(tmp_path / "optimizer_table7", rows)
    md, png = optimizer.write_report(csv, None, csv.parent, "cpu")
    text = md.read_text()
    assert "| R50x1 | Adam | 2 (0,1) | 40.50 ± 0.71 | 50.50 ± 0.71 |" in text
    assert "| R50x1 | SGD + momentum | 2 (0,1) | 35.50 ± 0.71 | 48.50 ± 0.71 |" in text
    assert "- R50x1: 5-shot linear +5.00, fine-tuned top-1 +2.00" in text and png.stat().st_size > 0


@pytest.mark.parametrize("override, allowed", [("--optim.optimizer=lamb", "is not one of adamw, sgd"),
                                               ("--optim.momentum=1.5", "momentum=1.5 is not allowed")])
def test_the_pretraining_optimizer_is_checked_before_training(override, allowed, capsys):
    from vitrepro.cli import main

    exp = Path(__file__).resolve().parents[1] / "experiments" / "optimizer_table7.yaml"
    assert main(["run", str(exp), "--cell", "0", "--dry-run", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optimizer_table7.yaml" in err and allowed in err


def test_figure_8_report_tells_each_variants_dimension_and_relative_compute(tmp_path):
    from vitrepro.report import model_scaling

    models = {"ViT-C/4": 1.0, "ViT-C/4 depth=12": 2.0, "ViT-C/4 width=64 mlp_dim=256": 0.3,
              "ViT-C/4 mlp_dim=1024": 1.6, "ViT-C/4 patch_size=2": 4.9}
    rows = [{"run_id": f"{m}-{s}", "config_id": m, "model": m, "seed": s, "pretrain_flops": 1e12 * c,
             "fewshot_5": 0.3 + c / 100 + s / 1000, "ft_top1": 0.4} for m, c in models.items() for s in (0, 1)]
    csv = _write_runs(tmp_path / "model_scaling", rows)
    md, png = model_scaling.write_report(csv, None, csv.parent, "cpu")
    text = md.read_text()
    for line in ("| ViT-C/4 | base | 1.00x | 2 (0,1) | 31.05 ± 0.07 |", "| ViT-C/4 depth=12 | depth | 2.00x |",
                 "| ViT-C/4 width=64 mlp_dim=256 | width | 0.30x |", "| ViT-C/4 mlp_dim=1024 | MLP ratio | 1.60x |",
                 "| ViT-C/4 patch_size=2 | patch size | 4.90x |"):
        assert line in text, line
    assert "diminishing returns" in text and png.stat().st_size > 0


def test_figure_8_report_of_the_base_alone_draws_its_point_with_a_legend(tmp_path, recwarn):
    from vitrepro.report import model_scaling

    rows = [{"run_id": "b-0", "config_id": "b", "model": "ViT-C/4", "seed": 0, "pretrain_flops": 1e12,
             "fewshot_5": 0.3, "ft_top1": 0.4}]
    md, png = model_scaling.write_report(_write_runs(tmp_path / "model_scaling", rows), None, tmp_path, "cpu")
    assert "| ViT-C/4 | base | 1.00x | 1 (0) | 30.00 | 40.00 |" in md.read_text()
    assert png.stat().st_size > 0 and not [w for w in recwarn if "legend" in str(w.message)]


def test_a_cell_gives_its_spread_only_when_it_has_one():
    from vitrepro.report.runs import mean_std_text

    assert mean_std_text(41.0, 0.97, 2) == "41.00 ± 0.97"
    assert mean_std_text(41.0, 0.0, 1) == "41.00"            # one run: no spread to give
    assert mean_std_text(41.0, float("nan"), 3) == "41.00"


def test_the_same_runs_draw_the_same_figure_byte_for_byte(tmp_path):
    csv = _write_runs(tmp_path / "cifar10_from_scratch", [
        {"run_id": f"0-{s}-aaa{s}", "config_id": "base", "seed": s, "randaugment": 0, "top1": 0.5 + s / 100,
         "fewshot_5": 0.3 + s / 100}
        for s in range(3)])
    first = recipe.write_report(csv, None, tmp_path / "a", "cpu")[1].read_bytes()
    second = recipe.write_report(csv, None, tmp_path / "b", "cpu")[1].read_bytes()
    assert first == second  # the dots of the seeds are placed, not randomly jittered
