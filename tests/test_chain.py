"""A fresh clone runs the README's chain: an experiment names the run it starts from (``init.run``), a data
root of one's own is recognized (``dataset: auto``), and the batch is the batch over all devices."""
import json
import shutil

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from vitrepro.cli import main
from vitrepro.data import SAMPLE_ROOT, ImageClassificationDataModule, detect_dataset
from vitrepro.data import datamodule as datamodule_module
from vitrepro.data.shapes import write_shapes_imagefolder

EXP = ROOT / "experiments"


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    return write_shapes_imagefolder(tmp_path_factory.mktemp("own") / "own", train_per_class=8, test_per_class=3)


def test_auto_names_the_kind_a_root_holds(small_tree, tmp_path):
    assert detect_dataset(None) == "cifar10"  # the bundled sample
    assert detect_dataset(SAMPLE_ROOT) == "cifar10"  # CIFAR-10's ten class folders
    assert detect_dataset(small_tree) == "imagefolder"
    dm = ImageClassificationDataModule(root=str(small_tree), img_size=16)
    assert dm.dataset == "imagefolder" and dm.num_classes == 4 and dm.val_fraction == 0.02
    renamed = shutil.copytree(SAMPLE_ROOT, tmp_path / "renamed")
    (renamed / "train" / "cat").rename(renamed / "train" / "kitten")  # not CIFAR-10's classes: a tree of one's own
    assert detect_dataset(renamed) == "imagefolder"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        detect_dataset(tmp_path / "nowhere")


def test_a_tree_of_ones_own_runs_without_naming_its_kind(small_tree, tmp_path):
    """The README's transfer and few-shot commands on a user's ImageFolder: no --data.dataset needed."""
    out = tmp_path / "r"
    assert main(["run", str(EXP / "few_shot.yaml"), "--data-root", str(small_tree), "--results-dir", str(out),
                 "--cell", "0"]) == 0
    row = pd.read_csv(out / "few_shot" / "runs.csv").iloc[0]
    assert row["status"] == "finished" and row["data"].startswith("imagefolder ") and 0 <= row["fewshot_5"] <= 1


def _write_upstream(results, label, scale="cpu", status="finished"):
    run_dir = results / "data_size_scaling" / "runs" / f"{label}-0123abcd"
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text(json.dumps({"run_id": run_dir.name, "status": status, "scale": scale}))
    return run_dir


def test_init_run_finds_the_upstream_run_in_the_results_folder(tmp_path, capsys, small_tree):
    upstream = _write_upstream(tmp_path, "ViT_C_4-49000")
    _write_upstream(tmp_path, "R50x1-49000", scale="local")  # another scale: not this run's upstream
    capsys.readouterr()
    assert main(["run", str(EXP / "transfer.yaml"), "--scale", "cpu", "--data-root", str(small_tree),
                 "--results-dir", str(tmp_path), "--dry-run"]) == 0
    doc = next(d for d in yaml.safe_load_all(capsys.readouterr().out) if d)
    assert doc["config"]["init"]["checkpoint"] == str(upstream)
    assert doc["config"]["data"]["dataset"] == "imagefolder"
    assert main(["run", str(EXP / "transfer.yaml"), "--scale", "cpu", "--data-root", str(small_tree),
                 "--results-dir", str(tmp_path), "--init.run=data_size_scaling/R50x1-49000", "--dry-run"]) == 0
    doc = next(d for d in yaml.safe_load_all(capsys.readouterr().out) if d)
    assert "R50x1-49000-09" not in str(doc["config"]["init"]["checkpoint"])  # the local-scale run is not taken


def test_a_missing_upstream_run_names_the_command_that_trains_it(tmp_path, capsys, small_tree):
    """On a fresh clone the committed upstream run has a record but no checkpoint: the error names its
    command with the user's results folder; with no run anywhere, the experiment's own command."""
    mine = tmp_path / "mine"
    assert main(["run", str(EXP / "transfer.yaml"), "--scale", "cpu", "--data-root", str(small_tree),
                 "--results-dir", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'init.run'" in err and "checkpoints are not committed" in err
    assert "vitrepro run experiments/data_size_scaling.yaml --scale cpu" in err and f"--results-dir {mine}`" in err
    assert main(["run", str(EXP / "transfer.yaml"), "--scale", "cpu", "--data-root", str(small_tree),
                 "--results-dir", str(mine), "--init.run=data_size_scaling/ViT_C_4-123"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no finished run ViT_C_4-123 of data_size_scaling at scale cpu" in err
    assert "data_size_scaling.yaml --scale cpu --data-root DIR" in err and not mine.exists()
    assert main(["run", str(EXP / "transfer.yaml"), "--init.run=no slash"]) == 2
    assert "is not <experiment name>/<run id or cell label>" in capsys.readouterr().err


@pytest.mark.slow  # a fine-tuning run and a probe after a training run
def test_the_chain_runs_from_a_trained_run_to_its_probe(pretrained_run, tmp_path):
    """A downstream experiment starts from the upstream run it names, in the same results folder."""
    raw = yaml.safe_load((EXP / "few_shot.yaml").read_text())
    label = pretrained_run.name.rsplit("-", 1)[0]
    trained = yaml.safe_load((pretrained_run / "config.yaml").read_text())["config"]
    raw["scales"]["smoke"].update({"init.run": f"pos_emb_ablation/{label}", "eval.shots": trained["eval"]["shots"],
                                   "eval.seeds": trained["eval"]["seeds"]})
    raw["scales"]["smoke"]["grid"] = [{}]
    raw["base"]["model"] = {}
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    results = pretrained_run.parents[2]
    assert main(["run", str(path), "--results-dir", str(results)]) == 0
    row = pd.read_csv(results / "few_shot" / "runs.csv").iloc[0]
    first = pd.read_csv(results / "pos_emb_ablation" / "runs.csv").iloc[0]
    assert row["model"] == "ViT-C/4" and row["init"].startswith(str(pretrained_run))
    assert round(row["fewshot_1"], 4) == round(first["fewshot_1"], 4)  # the same network, probed again


def test_the_batch_is_split_over_the_processes(monkeypatch):
    dm = ImageClassificationDataModule(batch_size=32, img_size=16)
    monkeypatch.setattr(datamodule_module, "_rank_world", lambda: (1, 4))
    assert dm.rank_batch_size() == 8 and dm.train_dataloader().batch_size == 8
    monkeypatch.setattr(datamodule_module, "_rank_world", lambda: (0, 3))
    with pytest.raises(ValueError, match="batch over all 3 processes"):
        dm.rank_batch_size()


def test_a_batch_that_does_not_split_over_the_devices_is_refused(tmp_path, capsys):
    assert main(["run", str(EXP / "pos_emb_ablation.yaml"), "--trainer.devices=3", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data.batch_size" in err and "divide by 3" in err


@pytest.mark.slow  # writes the default shapes tree (1,600 images)
def test_the_readme_transfer_commands_name_the_committed_runs(shapes_tree, capsys):
    """Without --data.dataset (auto) and with init.run instead of a path, the README's commands still give
    the committed runs' ids, for training seed 0 and for seed 1 (``--seed=1`` from the seed-1 checkpoints):
    running them with --results-dir results skips those runs."""
    committed = set(pd.read_csv(ROOT / "results" / "transfer" / "runs.csv")["run_id"])
    common = ["run", str(EXP / "transfer.yaml"), "--scale", "cpu", "--data-root", str(shapes_tree),
              "--data.val_fraction=0.1", "--results-dir", str(ROOT / "results"), "--dry-run"]
    ids = set()
    for seed, suffix in ((0, ""), (1, "-1")):
        seeded = [f"--seed={seed}"] if seed else []
        for extra in ([f"--init.run=data_size_scaling/ViT_C_4-49000{suffix}"] if seed else [],
                      [f"--init.run=data_size_scaling/R50x1-49000{suffix}", "--model.name=R50x1", "--finetune.lrs=null",
                       "--finetune.lr=0.03"]):
            capsys.readouterr()
            assert main(common + seeded + extra) == 0
            ids |= {d["run_id"] for d in yaml.safe_load_all(capsys.readouterr().out) if d}
    assert ids == committed
