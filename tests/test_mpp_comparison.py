"""Sec. 4.6 in one experiment (experiments/mpp_comparison.yaml): grid cells with their own protocol, each
reading only its sections; the report sets the arms' differences beside the paper's."""
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vitrepro.experiments import Experiment, ExperimentError
from vitrepro.report import mpp_comparison

EXP = Path(__file__).resolve().parents[1] / "experiments" / "mpp_comparison.yaml"


def test_each_cell_runs_its_own_protocol_with_the_sections_it_reads():
    runs = Experiment(EXP).expand("cpu")
    assert [r.task for r in runs] == ["mpp", "mpp", "pretrain", "pretrain", "finetune", "finetune"]
    by_task = {r.task: r for r in runs}
    assert "mpp" in by_task["mpp"].config and "optim" not in by_task["mpp"].config
    assert "optim" in by_task["pretrain"].config and "mpp" not in by_task["pretrain"].config
    assert by_task["finetune"].config["init"]["checkpoint"] is None and "optim" not in by_task["finetune"].config
    assert all(r.config["finetune"]["data"]["classes"] == [5, 6, 7, 8, 9] for r in runs)
    assert all(r.config["data"]["classes"] == [0, 1, 2, 3, 4] for r in runs)
    assert len({r.run_id for r in runs}) == 6 and runs[0].run_id.startswith("mpp-0-")


def test_a_cells_unknown_task_or_misspelt_section_is_refused_in_one_line(tmp_path):
    raw = yaml.safe_load(EXP.read_text())
    raw["scales"]["smoke"]["grid"] = [{"task": "mpp", "seed": 0}, {"task": "distill", "seed": 0}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ExperimentError, match=r"grid\[1\]: key 'task': 'distill' is not one of pretrain, mpp"):
        Experiment(bad).expand("smoke")
    raw["scales"]["smoke"]["grid"] = [{"task": "mpp", "seed": 0, "mmp.lr": 0.1}]
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ExperimentError, match="unknown key 'mmp' for task 'mpp'"):
        Experiment(bad).expand("smoke")


def test_the_report_gives_each_arm_with_n_and_the_papers_differences(tmp_path):
    base = {"scale": "cpu", "status": "finished", "model": "ViT-C/4", "hardware": "cpu", "error": None, "steps": 600,
            "wall_s": 60.0, "data": "cifar10 x; classes 0-4"}
    rows = [{"run_id": f"{t}-{s}-x", "config_id": t, "task": t, "seed": s, "ft_top1": acc, "ft_lr": 0.03}
            for t, accs in (("mpp", (0.60, 0.62)), ("pretrain", (0.70, 0.70)), ("finetune", (0.50, 0.52)))
            for s, acc in enumerate(accs)]
    rows[-1]["data"] = rows[-2]["data"] = "cifar10 x; classes 5-9"
    folder = tmp_path / "mpp_comparison"
    folder.mkdir()
    pd.DataFrame([{**base, **r} for r in rows]).to_csv(folder / "runs.csv", index=False)
    md, png = mpp_comparison.write_report(folder / "runs.csv", None, folder, "cpu")
    text = md.read_text()
    assert "| masked patch prediction | 2 (0,1) | 61.00 ± 1.41 | 0.03,0.03 |" in text
    assert "| MPP - from scratch | +10.00 | +2.0 |" in text and "| MPP - supervised | -9.00 | -4.0 |" in text
    assert "Downstream (fine-tuning) data: cifar10 x; classes 5-9." in text and png.stat().st_size > 0
