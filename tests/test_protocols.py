"""The paper's protocols through the runner: pre-train -> few-shot -> fine-tune (Table 4 sweep), the
finetune and fewshot tasks from a checkpoint, per-scale grids, and their one-line errors."""
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml

from vitrepro.cli import main
from vitrepro.data.shapes import CLASSES, write_shapes_imagefolder
from vitrepro.experiments import Experiment
from vitrepro.experiments.spec import ExperimentError, validate_run_config
from vitrepro.experiments.finetune_stage import finetune_stage, pretrained_model
from vitrepro.report.data_size import scaling_markdown

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for name in ("VITREPRO_DATA", "VITREPRO_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_imagefolder(tmp_path_factory.mktemp("shapes"), train_per_class=30, test_per_class=10)


def test_a_scale_grid_replaces_the_top_level_grid_and_section_cells_replace_the_section():
    exp = Experiment(EXP / "data_size_scaling.yaml")
    cpu = exp.expand("cpu")
    sizes = [1000, 1000, 4000, 4000, 16000, 16000, 49000, 49000]
    assert [r.config["data"]["train_size"] for r in cpu] == sizes * 2  # training seeds 0 (the base's) and 1
    assert [r.config["seed"] for r in cpu] == [0] * 8 + [1] * 8 and cpu[9].run_id.startswith("R50x1-1000-1-")
    assert [r.config["model"] for r in cpu[:2]] == [{"name": "ViT-C/4"}, {"name": "R50x1"}]  # base's dropout gone
    assert cpu[1].run_id.startswith("R50x1-1000-") and cpu[0].run_id.startswith("ViT_C_4-1000-")
    assert len(exp.expand("smoke")) == 4 and all(r.task == "pretrain" for r in cpu)
    assert all(r.config["finetune"]["data"] == {"train_size": None} for r in cpu)


def test_configs_without_the_new_sections_resolve_without_them():
    cfg = validate_run_config({"model": {"name": "ViT-C/4"}}, "x")
    assert "init" not in cfg and "finetune" not in cfg  # so earlier run ids are unchanged


BASE = {"model": {"name": "ViT-C/4"}, "finetune": {"steps": 2}}


@pytest.mark.parametrize("section, key", [
    ({"finetune": {"lrs": [0]}}, "finetune.lrs"),
    ({"finetune": {"lrs": []}}, "finetune.lrs"),
    ({"finetune": {"bogus": 1}}, "finetune.bogus"),
    ({"finetune": {"img_size": 64}}, "finetune.img_size"),  # the resolution is the target data's img_size
    ({"finetune": {"data": {"bogus": 1}}}, "finetune.data.bogus"),
    ({"finetune": {"data": {"img_size": "big"}}}, "finetune.data.img_size"),
    ({"finetune": {"trainer": {"logger": False}}}, "finetune.trainer.logger"),
    ({"finetune": {"schedule": "step"}}, "schedule"),
    ({"finetune": {"momentum": 1.5}}, "momentum"),
    ({"init": {"ckpt": "x"}}, "init.ckpt"),
])
def test_bad_protocol_sections_are_one_line_errors_naming_the_key(section, key):
    task = "finetune" if "init" in section else "pretrain"  # init is a section of the transfer protocols
    with pytest.raises(ExperimentError) as e:
        validate_run_config({**BASE, **section}, "f.yaml: scale s", task)
    assert "\n" not in str(e.value) and key in str(e.value)


def test_task_errors(tmp_path, capsys):
    raw = yaml.safe_load((EXP / "transfer.yaml").read_text())
    bad = tmp_path / "bad_task.yaml"
    bad.write_text(yaml.safe_dump({**raw, "task": "distill"}))
    assert main(["run", str(bad), "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'task'" in err and "pretrain, mpp, finetune, fewshot" in err
    del raw["base"]["finetune"]
    raw["scales"]["smoke"] = {k: v for k, v in raw["scales"]["smoke"].items() if not k.startswith("finetune.")}
    bad.write_text(yaml.safe_dump(raw))
    assert main(["run", str(bad), "--results-dir", str(tmp_path)]) == 2
    assert "task 'finetune' needs a 'finetune' section" in capsys.readouterr().err


def test_a_needed_checkpoint_or_data_set_is_named(tmp_path, capsys):
    assert main(["run", str(EXP / "transfer.yaml"), "--scale", "local", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "init.checkpoint" in err and "VITREPRO_CHECKPOINT" in err
    assert main(["run", str(EXP / "transfer.yaml"), "--init.checkpoint=/no/such.ckpt"]) == 2
    err = capsys.readouterr().err
    assert "key 'init.checkpoint': /no/such.ckpt not found" in err
    assert main(["run", str(EXP / "transfer.yaml"), "--data-root", str(tmp_path)]) == 2  # empty folder
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'data'" in err


def test_a_subset_larger_than_the_data_set_fails_before_training(tmp_path, capsys):
    assert main(["run", str(EXP / "data_size_scaling.yaml"), "--data.train_size=5000",
                 "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train_size=5000" in err and "392 training images available" in err
    assert not (tmp_path / "data_size_scaling").exists()  # nothing written


def test_more_shots_than_a_class_has_is_named(tmp_path, capsys):
    assert main(["run", str(EXP / "few_shot.yaml"), "--cell", "0", "--eval.shots=[41]",
                 "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "41-shot needs 41 examples of class" in err and "the pool has 40" in err


@pytest.mark.slow  # the data-size smoke cell (fast tier) pre-trains and sweeps too
def test_pretrain_then_finetune_sweeps_on_dev_and_reports_test(tmp_path):
    assert main(["run", str(EXP / "data_size_scaling.yaml"), "--cell", "0", "--results-dir", str(tmp_path)]) == 0
    row = pd.read_csv(tmp_path / "data_size_scaling" / "runs.csv").iloc[0]
    assert row["train_images"] == 100 and row["ft_train_images"] == 400  # target: the whole training split
    assert row["ft_lr"] in (0.003, 0.03) and row["ft_sweep"].count(":") == 2 and row["ft_steps"] == 2
    assert 0 <= row["ft_top1"] <= 1 and 0 <= row["ft_dev_top1"] <= 1
    run_dir = tmp_path / "data_size_scaling" / "runs" / row["run_id"]
    study = optuna.load_study(study_name=row["run_id"], storage=f"sqlite:///{run_dir / 'finetune_sweep.db'}")
    assert sorted(t.params["lr"] for t in study.trials if t.state.name == "COMPLETE") == [0.003, 0.03]
    assert {p.name for p in (run_dir / "finetune").iterdir()} == {"sweep_lr0.003", "sweep_lr0.03", f"final_lr{row['ft_lr']:g}"}
    assert (tmp_path / "data_size_scaling" / "data_size_smoke.md").exists()


def test_an_interrupted_sweep_runs_only_the_learning_rates_left(tmp_path):
    run = Experiment(EXP / "data_size_scaling.yaml").expand("smoke")[0]
    cfg = run.config
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    cfg["finetune"]["storage"] = storage
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={"lr": 0.003}, value=0.9,
                                              distributions={"lr": optuna.distributions.FloatDistribution(0.003, 0.03)}))
    built = []

    def make(k, img_size):
        built.append(img_size)
        return pretrained_model({**cfg, "model": {"name": "ViT-C/4", "depth": 2}}, k, img_size)

    out = finetune_stage(make, cfg, run.sections["finetune"], tmp_path, "s", is_writer=True, log=lambda m: None)
    assert len(built) == 2  # lr 0.03 on dev, then the final fit; 0.003 was complete
    assert out["ft_sweep"].startswith("0.003: 0.9000")


def test_finetune_and_fewshot_tasks_load_the_checkpoint(pretrained_run, tmp_path, capsys):
    ckpt = pretrained_run / "checkpoints" / "last.ckpt"
    cfg = {"model": {"name": "ViT-C/4", "depth": 2}, "init": {"checkpoint": str(pretrained_run)}}
    net = pretrained_model(cfg, num_classes=4, img_size=32)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for k, v in net.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, saved[f"model.{k}"]), k
    assert not net.head.weight.any() and net.head.weight.shape == (4, 128)
    assert main(["run", str(EXP / "transfer.yaml"), f"--init.checkpoint={pretrained_run}", "--eval.shots=[1,5,10,25]",
                 "--results-dir", str(tmp_path)]) == 0
    row = pd.read_csv(tmp_path / "transfer" / "runs.csv").iloc[0]
    assert row["task"] == "finetune" and row["init"] == str(ckpt)
    capsys.readouterr()
    assert main(["fewshot", str(pretrained_run)]) == 0  # the same probe of the same weights
    out = capsys.readouterr().out
    for k in (1, 5, 10, 25):
        assert f"{k:>2}-shot linear accuracy: {100 * row[f'fewshot_{k}']:.2f}%" in out
    assert main(["run", str(EXP / "transfer.yaml"), f"--init.checkpoint={ckpt}", "--model.name=ViT-Ti/4",
                 "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ViT-Ti/4" in err and "width 192" in err and "width 128" in err


@pytest.mark.slow  # writes an ImageFolder of mixed sizes, then fine-tunes and probes from the command line
def test_an_unseen_imagefolder_of_mixed_sizes_fine_tunes_and_probes_from_the_command_line(shapes, pretrained_run,
                                                                                         tmp_path, capsys):
    from PIL import Image

    sizes = {Image.open(p).size for p in (shapes / "train").rglob("*.*")}
    assert len(sizes) > 50 and {p.suffix for p in (shapes / "train").rglob("*.*")} == {".jpg", ".png"}
    assert main(["run", str(EXP / "transfer.yaml"), "--data-root", str(shapes), "--data.dataset=imagefolder",
                 "--data.val_fraction=0.1", f"--init.checkpoint={pretrained_run}", "--results-dir", str(tmp_path)]) == 0
    row = pd.read_csv(tmp_path / "transfer" / "runs.csv").iloc[0]
    assert row["ft_dataset"] == "imagefolder" and row["ft_train_images"] == 30 * len(CLASSES)
    assert "imagefolder ImageFolder tree" in row["data"] and "dev 20" in row["data"]  # 10% of 120 is 12: floor 5 per class
    assert row["ft_dev_images"] == 20  # how many dev images chose the learning rate
    assert 0 <= row["ft_top1"] <= 1 and 0 <= row["fewshot_5"] <= 1
    capsys.readouterr()
    assert main(["fewshot", "--model", "ViT-C/4", "--model.depth=2", "--checkpoint", str(pretrained_run / "checkpoints"
                 / "last.ckpt"), "--dataset", "imagefolder", "--data-root", str(shapes), "--img-size", "32",
                 "--shots", "1,5"]) == 0
    assert "5-shot linear accuracy" in capsys.readouterr().out


@pytest.mark.slow  # the mpp smoke cell (fast tier) pre-trains by MPP too
def test_masked_patch_prediction_pretrains_then_its_checkpoint_fine_tunes(tmp_path, capsys):
    assert main(["run", str(EXP / "mpp.yaml"), "--optim.lr=0.1", "--results-dir", str(tmp_path)]) == 2
    assert "task 'mpp' takes its optimizer from the 'mpp' section" in capsys.readouterr().err
    assert main(["run", str(EXP / "mpp.yaml"), "--mpp.probs=[0.5,0.5,0.5]", "--results-dir", str(tmp_path)]) == 2
    assert "key 'mpp'" in capsys.readouterr().err
    assert main(["run", str(EXP / "mpp.yaml"), "--results-dir", str(tmp_path)]) == 0
    row = pd.read_csv(tmp_path / "mpp" / "runs.csv").iloc[0]
    assert row["task"] == "mpp" and "top1" not in row and 0 <= row["ft_top1"] <= 1
    run_dir = tmp_path / "mpp" / "runs" / row["run_id"]
    keys = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert "mask_token" in keys and "mpp_head.weight" in keys  # ignored when loading for transfer:
    assert main(["run", str(EXP / "few_shot.yaml"), "--cell", "0", f"--init.checkpoint={run_dir}",
                 "--results-dir", str(tmp_path)]) == 0


def test_the_report_says_whether_vit_overtakes_bit():
    rows = [dict(model=m, train_size=n, fewshot_5=a, top1=a, scale="cpu", steps=10, wall_s=1.0, hardware="cpu")
            for m, n, a in [("ViT-C/4", 1000, 0.30), ("R50x1", 1000, 0.40), ("ViT-C/4", 49000, 0.55),
                            ("R50x1", 49000, 0.50)]]
    md = scaling_markdown(pd.DataFrame(rows), "cpu", Path("runs.csv"))
    assert "| 1,000 | 30.00 | 40.00 |" in md and "| 1,000 | -10.00 | -10.00 |" in md
    assert "ViT overtakes BiT" in md and "grows with data (-10.00 pp at 1,000 images, +5.00 pp at 49,000)" in md


def test_the_data_size_report_gives_mean_and_std_over_seeds_with_n():
    rows = [dict(model=m, train_size=1000, seed=s, fewshot_5=a, scale="cpu", steps=10, wall_s=1.0, hardware="cpu")
            for m, s, a in [("ViT-C/4", 0, 0.30), ("ViT-C/4", 1, 0.32), ("R50x1", 0, 0.40)]]
    md = scaling_markdown(pd.DataFrame(rows), "cpu", Path("runs.csv"))
    assert "| 1,000 | 31.00 ± 1.41 | 40.00 |" in md  # one seed of R50x1: its value, no spread
    assert "n = 1-2 a cell" in md and "| 1,000 | -9.00 |" in md


@pytest.mark.slow
def test_pretrain_and_finetune_sweep_under_ddp_on_two_cpu_processes(tmp_path):
    """Both ranks pre-train, then fine-tune every learning rate in lockstep; rank 0 alone records trials and rows."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "vitrepro", "run", str(EXP / "data_size_scaling.yaml"), "--cell", "0",
           "--results-dir", str(tmp_path), "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "data_size_scaling" / "runs.csv")
    assert len(runs) == 1 and runs["devices"].iloc[0] == 2 and 0 <= runs["ft_top1"].iloc[0] <= 1
    run_id = runs["run_id"].iloc[0]
    db = tmp_path / "data_size_scaling" / "runs" / run_id / "finetune_sweep.db"
    study = optuna.load_study(study_name=run_id, storage=f"sqlite:///{db}")
    assert sorted(t.params["lr"] for t in study.trials) == [0.003, 0.03]  # once each, not once per rank


@pytest.mark.slow  # a whole pre-training with the probe every epoch
def test_the_fewshot_callback_section_logs_the_probe_during_pre_training(tmp_path):
    assert main(["run", str(EXP / "pos_emb_ablation.yaml"), "--cell", "1", "--results-dir", str(tmp_path),
                 "--fewshot_callback.every_n_epochs=1", "--fewshot_callback.shots=[1,5]",
                 "--trainer.max_epochs=2", "--trainer.max_steps=26"]) == 0
    metrics = pd.read_csv(next((tmp_path / "pos_emb_ablation" / "runs").glob("*/logs/metrics.csv")))
    probes = metrics[["step", "fewshot/5shot"]].dropna()
    assert len(probes) == 2 and probes["fewshot/5shot"].between(0, 1).all()  # after epochs 1 and 2
    row = pd.read_csv(tmp_path / "pos_emb_ablation" / "runs.csv").iloc[0]
    assert probes["fewshot/5shot"].iloc[-1] == pytest.approx(row["fewshot_5"], abs=1e-4)  # same probe at the end
