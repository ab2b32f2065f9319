"""Experiment files: every file expands at every scale; bad input is one clear line and exit status 2."""
from pathlib import Path

import pytest
import yaml

from vitrepro.cli import main, parse_overrides
from vitrepro.experiments import Experiment, ExperimentError

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))
POS_EMB = ROOT / "experiments" / "pos_emb_ablation.yaml"


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    monkeypatch.delenv("VITREPRO_DATA", raising=False)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_expands_at_every_scale(path):
    exp = Experiment(path)
    header = path.read_text().split("\nname:")[0]
    assert "vitrepro run" in header and "--scale" in header  # the header documents its commands
    for scale in exp.scales:
        runs = exp.expand(scale)
        assert runs and len({r.run_id for r in runs}) == len(runs)


def test_pos_emb_grid_is_table8():
    runs = Experiment(POS_EMB).expand("smoke")
    cells = [(r.cell["posemb"], r.cell["posemb_placement"]) for r in runs]
    assert cells == [("none", "stem"), ("learned_1d", "stem"), ("learned_1d", "every_layer"),
                     ("learned_1d", "every_layer_shared"), ("learned_2d", "stem"), ("learned_2d", "every_layer"),
                     ("learned_2d", "every_layer_shared"), ("relative", "stem")]
    assert all(r.config["model"]["posemb"] == r.cell["posemb"] for r in runs)


def test_paper_scale_is_vit_b16_at_224_on_imagenet_with_the_papers_recipe(capsys):
    assert main(["run", str(POS_EMB), "--scale", "paper", "--dry-run"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert len(docs) == 8
    cfg = docs[0]["config"]
    assert cfg["model"]["name"] == "ViT-B/16" and cfg["data"]["img_size"] == 224
    assert cfg["data"]["dataset"] == "imagenet"
    assert cfg["data"]["batch_size"] == 4096 and cfg["trainer"]["devices"] == 8  # the batch over all devices
    assert (cfg["optim"]["lr"], cfg["optim"]["weight_decay"], cfg["optim"]["warmup_steps"]) == (0.003, 0.3, 10000)
    assert (cfg["optim"]["beta1"], cfg["optim"]["beta2"], cfg["trainer"]["gradient_clip_val"]) == (0.9, 0.999, 1.0)


def test_command_line_overrides_reach_the_trainer(capsys):
    assert main(["run", str(POS_EMB), "--dry-run", "--trainer.devices=2", "--trainer.strategy", "ddp",
                 "--trainer.precision=bf16-mixed", "--trainer.accumulate_grad_batches=4", "--optim.lr=3e-4"]) == 0
    cfg = next(yaml.safe_load_all(capsys.readouterr().out))["config"]
    assert cfg["trainer"]["devices"] == 2 and cfg["trainer"]["strategy"] == "ddp"
    assert cfg["trainer"]["precision"] == "bf16-mixed" and cfg["trainer"]["accumulate_grad_batches"] == 4
    assert cfg["optim"]["lr"] == 3e-4


def test_data_root_flag_and_environment(capsys, monkeypatch):
    main(["run", str(POS_EMB), "--scale", "cpu", "--dry-run", "--data-root", "/data/c10"])
    assert next(yaml.safe_load_all(capsys.readouterr().out))["config"]["data"]["root"] == "/data/c10"
    monkeypatch.setenv("VITREPRO_DATA", "/env/c10")
    main(["run", str(POS_EMB), "--dry-run"])
    assert next(yaml.safe_load_all(capsys.readouterr().out))["config"]["data"]["root"] == "/env/c10"


def test_parse_overrides():
    assert parse_overrides(["--a.b=1", "--c.d", "[1, 2]", "--e.f=null", "--seed=3"]) == {
        "a.b": 1, "c.d": [1, 2], "e.f": None, "seed": 3}
    with pytest.raises(ValueError, match="unrecognized argument 'oops'"):
        parse_overrides(["oops"])


def write_variant(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(POS_EMB.read_text())
    raw["report"]["paper"] = str(POS_EMB.parent.parent / "results" / "paper" / "table8_pos_emb.csv")
    edit(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


BAD_EDITS = {
    "unknown top-level key": (lambda r: r.update(grids=[]), "unknown key 'grids': allowed are name, description"),
    "unknown model field": (lambda r: r["base"]["model"].update(hidden_size=64),
                            "key 'model': unknown ViT field(s) hidden_size: allowed are img_size"),
    "bad posemb value": (lambda r: r["grid"][2].update({"model.posemb": "sinusoidal"}),
                         "grid[2]: key 'model': posemb='sinusoidal' is not one of none, learned_1d, learned_2d, relative"),
    "N/A cell": (lambda r: r["grid"].append({"model.posemb": "relative", "model.posemb_placement": "every_layer"}),
                 "posemb='relative' admits only posemb_placement='stem'"),
    "wrong type": (lambda r: r["base"]["optim"].update(lr="fast"), 'key "optim.lr"'),
    "bad schedule": (lambda r: r["base"]["optim"].update(schedule="step"), "schedule='step' is not one of linear, cosine"),
    "unknown data key": (lambda r: r["base"]["data"].update(resolution=32),
                         "unknown key 'data.resolution': allowed are dataset, root, download, img_size"),
    "unknown trainer key": (lambda r: r["base"]["trainer"].update(max_epoch=3),
                            "unknown key 'trainer.max_epoch': allowed are lightning.Trainer arguments"),
    "runner-owned trainer key": (lambda r: r["base"]["trainer"].update(logger=False), "unknown key 'trainer.logger'"),
    "bad default scale": (lambda r: r.update(default_scale="huge"), "default_scale 'huge' is not one of smoke, cpu"),
    "bad seed": (lambda r: r["base"].update(seed="zero"), "key 'seed': expected an int"),
    "unknown dotted key": (lambda r: r["scales"]["smoke"].update({"model.posemb.kind": "x"}), "scales.smoke: key"),
}


@pytest.mark.parametrize("case", list(BAD_EDITS))
def test_bad_experiment_files_fail_with_one_line(case, tmp_path, capsys):
    edit, expected = BAD_EDITS[case]
    path = write_variant(tmp_path, edit)
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    assert expected in err


def test_missing_data_root_is_refused_before_anything_is_written(tmp_path, capsys):
    assert main(["run", str(POS_EMB), "--scale", "cpu", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "key 'data.root' needs a data set: pass --data-root DIR or set VITREPRO_DATA" in err
    assert err.count("\n") == 1 and not any(tmp_path.iterdir())


def test_data_root_without_a_data_set_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["run", str(POS_EMB), "--data-root", str(tmp_path / "empty"), "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {POS_EMB}: scale smoke: key 'data': ") and str(tmp_path / "empty") in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv,expected", [
    (["run", "nope.yaml"], "nope.yaml: no such experiment file"),
    (["run", str(POS_EMB), "--scale", "huge"], "--scale 'huge' is not one of smoke, cpu, local, paper"),
    (["run", str(POS_EMB), "--cell", "8"], "--cell 8 is out of range: the grid has cells 0..7"),
    (["run", str(POS_EMB), "--bogus"], "unrecognized argument '--bogus'"),
])
def test_bad_command_lines_fail_with_one_line(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_invalid_yaml_syntax(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nbase: {model: [\n")
    assert main(["run", str(path)]) == 2
    assert f"{path}: not valid YAML" in capsys.readouterr().err


def test_experiment_error_is_a_value_error():
    with pytest.raises(ExperimentError):
        Experiment(POS_EMB).expand("nope")
