"""The run plan (issue 17): one typed plan per run, built once; YAML 1.2 numbers in every section; only the
selected cells validated; labels that tell replicates from variants; the upstream-run message; the
lazy start-up of the results commands; default paths that follow the working directory."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vitrepro.cli import main, parse_overrides
from vitrepro.experiments.experiment import Experiment, ExperimentError, load_yaml
from vitrepro.report.runs import one_configuration

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"


@pytest.mark.parametrize("text, value", [("1e-1", 0.1), ("1E-3", 0.001), (".5", 0.5), ("-0.0", -0.0),
                                         ("+1.5e+2", 150.0), ("3", 3), ("-.5E1", -5.0)])
def test_overrides_and_files_read_numbers_as_yaml_1_2(text, value):
    """PyYAML (YAML 1.1) leaves ``1e-1`` a string; an override and an experiment file read it as 0.1."""
    assert parse_overrides([f"--optim.lr={text}"])["optim.lr"] == value
    assert load_yaml(f"lr: {text}")["lr"] == value


@pytest.mark.parametrize("path, key, text, value", [
    ("pos_emb_ablation.yaml", "optim.lr", "1E-3", 0.001),
    ("pos_emb_ablation.yaml", "trainer.gradient_clip_val", "1e-1", 0.1),
    ("pos_emb_ablation.yaml", "model.dropout", "1e-1", 0.1),
    ("pos_emb_ablation.yaml", "data.val_fraction", ".5", 0.5),
    ("pos_emb_ablation.yaml", "eval.l2_reg", "1e-1", 0.1),
    ("pos_emb_ablation.yaml", "optim.weight_decay", "-0.0", -0.0),
    ("transfer.yaml", "finetune.lr", "1e-2", 0.01),
    ("mpp.yaml", "mpp.lr", "2E-4", 0.0002),
])
def test_numeric_overrides_in_every_section_are_typed(path, key, text, value):
    """`--trainer.gradient_clip_val=1e-1` got another run id than `=0.1` and failed in Lightning;
    `--model.dropout=1e-1` was refused ("'<=' not supported between float and str")."""
    exp = Experiment(EXP / path)
    a = exp.expand(None, parse_overrides([f"--{key}={text}"]), cells=[0])[0]
    b = exp.expand(None, {key: value}, cells=[0])[0]
    section, field = key.split(".")
    got = a.config[section][field]
    assert isinstance(got, float) and got == value and a.run_id == b.run_id


@pytest.mark.parametrize("key, text, allowed", [("optim.lr", "-1e-3", "lr"), ("eval.l2_reg", "-1e-1", "l2_reg"),
                                                ("optim.lr", ".inf", "lr")])
def test_numeric_overrides_out_of_range_are_refused(key, text, allowed, capsys):
    argv = ["run", str(EXP / "pos_emb_ablation.yaml"), "--cell", "0", f"--{key}={text}", "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pos_emb_ablation.yaml" in err and allowed in err


def test_only_the_selected_cells_are_validated_and_the_run_id_is_fixed_once(tmp_path):
    text = (EXP / "pos_emb_ablation.yaml").read_text().replace(
        "  - {model.posemb: relative, model.posemb_placement: stem}",
        "  - {model.posemb: relative, model.posemb_placement: stem, model.depth: zero}").replace(
        "  paper: ../results/paper/table8_pos_emb.csv\n", "")
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    exp = Experiment(path)
    with pytest.raises(ExperimentError, match=r"grid\[7\]"):
        exp.expand()
    run = exp.expand(cells=[1])[0].freeze()
    run_id = run.run_id
    run.config["optim"]["lr"] = 1.0  # after the plan: nothing recomputes the id
    assert run.run_id == run_id


def test_a_variant_is_labelled_and_never_averaged_with_the_file_s_runs(tmp_path, capsys):
    """A 3-step run and a 40-step run of one seed were averaged as "n=2 ... std over seeds"."""
    exp = Experiment(EXP / "pos_emb_ablation.yaml")
    plain = exp.expand(cells=[1])[0]
    short = exp.expand(overrides={"trainer.max_steps": 5, "seed": 1, "data.num_workers": 2}, cells=[1])[0]
    reseeded = exp.expand(overrides={"seed": 1}, cells=[1])[0]
    assert short.variant == "trainer.max_steps=5" and plain.variant == reseeded.variant == ""
    assert plain.config_id == reseeded.config_id != short.config_id
    rows = pd.DataFrame({"run_id": ["learned_1d-stem-aaaaaaaa", "learned_1d-stem-bbbbbbbb", "learned_1d-stem-cccccccc",
                                    "none-stem-dddddddd"],
                         "posemb": ["learned_1d"] * 3 + ["none"], "seed": [0, 1, 0, 0],
                         "fewshot_5": [0.3, 0.32, 0.1, 0.2], "variant": ["", "", "trainer.max_steps=3", "optim.lr=1"]})
    kept = one_configuration(rows, "runs.csv")
    assert kept["fewshot_5"].tolist() == [0.3, 0.32, 0.2]  # a cell of one variant stays
    assert "1 run(s) with trainer.max_steps=3" in capsys.readouterr().out


def test_a_missing_upstream_run_names_the_one_command_that_trains_it(tmp_path, capsys):
    """The hint trained all 8 data-size runs (about 72 min) while saying "5 min": it needs --cell. (The
    upstream run is looked up before any data is opened.)"""
    argv = ["run", str(EXP / "transfer.yaml"), "--scale", "cpu", "--data-root", str(tmp_path / "data"),
            "--results-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cell 6 --results-dir" in err and "data_size_scaling.yaml" in err
    committed = json.loads((ROOT / "results/data_size_scaling/runs/ViT_C_4-49000-5c4cd42d/record.json").read_text())
    assert f"({committed['provenance']['wall_s'] / 60:.0f} min on" in err
    assert not (tmp_path / "transfer").exists()


def test_the_results_commands_do_not_import_torch():
    code = ("import sys; from vitrepro.cli import main; "
            "main(['collect', 'experiments/pos_emb_ablation.yaml', '--results-dir', sys.argv[1]]); "
            "print('torch' in sys.modules, 'lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "results")], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_figures_follows_the_working_directory(tmp_path, monkeypatch, capsys):
    """`vitrepro figures` outside the checkout it was installed from wrote into that checkout."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert main(["figures"]) == 2
    assert "no experiments/ folder" in capsys.readouterr().err
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "x.yaml").write_text((EXP / "pos_emb_ablation.yaml").read_text().replace(
        "  paper: ../results/paper/table8_pos_emb.csv\n", ""))
    assert main(["figures"]) == 0
    out = capsys.readouterr().out
    assert f"no {tmp_path / 'results' / 'pos_emb_ablation' / 'runs.csv'}" in out and str(ROOT) not in out


@pytest.fixture(scope="module")
def val_tree(tmp_path_factory) -> Path:
    """A small ImageFolder of one's own: mixed image sizes (20-160 px, JPEG and PNG), a ``val/`` split."""
    from vitrepro.data.shapes import write_shapes_imagefolder

    root = write_shapes_imagefolder(tmp_path_factory.mktemp("own") / "own", train_per_class=24, test_per_class=8)
    (root / "test").rename(root / "val")
    return root


@pytest.mark.slow  # three smoke runs and the probes
def test_a_users_data_and_checkpoints_end_to_end(tmp_path, val_tree, capsys):
    """The user's list of issue 17 on a real ImageFolder tree: a ``posemb: none`` checkpoint fine-tunes with
    no model flag; the fine-tuned run keeps a checkpoint that ``fewshot`` and ``analyze`` take; both look at
    a CIFAR-trained run on the user's images with ``--data-root`` alone and say what they read."""
    results = tmp_path / "results"
    assert main(["run", str(EXP / "pos_emb_ablation.yaml"), "--cell", "0", "--results-dir", str(results)]) == 0
    none_run = next((results / "pos_emb_ablation" / "runs").iterdir())
    assert none_run.name.startswith("none-stem")
    capsys.readouterr()
    assert main(["fewshot", str(none_run), "--data-root", str(val_tree), "--shots", "1,2", "--seeds", "0"]) == 0
    assert "ImageFolder" in capsys.readouterr().out
    assert main(["analyze", "distance", str(none_run), "--data-root", str(val_tree), "--images", "4",
                 "--results-dir", str(results)]) == 0
    md = next((results / "analysis").glob("distance_*.md")).read_text()
    assert "ImageFolder" in md and str(val_tree) in md
    argv = ["run", str(EXP / "transfer.yaml"), f"--init.checkpoint={none_run}", "--data-root", str(val_tree),
            "--data.val_fraction=0.25", "--eval.shots=[1,2]", "--results-dir", str(results)]
    assert main(argv) == 0  # was: "missing pos_embedding" until --model.posemb=none
    ft_run = next((results / "transfer" / "runs").iterdir())
    saved = (ft_run / "config.yaml").read_text()
    assert "posemb: none" in saved and (ft_run / "checkpoints" / "finetuned.ckpt").is_file()
    capsys.readouterr()
    assert main(["fewshot", str(ft_run), "--shots", "1,2", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "finetuned.ckpt" in out and "ImageFolder" in out
    assert main(["analyze", "filters", str(ft_run / "checkpoints" / "finetuned.ckpt"),
                 "--results-dir", str(results)]) == 0


def _committed_commands() -> list[tuple[str, set[str]]]:
    """Each distinct command of the committed records, with the run ids it wrote."""
    import shlex

    commands: dict[str, set[str]] = {}
    for path in sorted((ROOT / "results").glob("*/runs/*/record.json")):
        record = json.loads(path.read_text())
        commands.setdefault(record["provenance"]["command"], set()).add(record["run_id"])
    return [(c, ids) for c, ids in commands.items() if "--data-root" in shlex.split(c)]


@pytest.mark.slow  # each command opens and fingerprints its data set
@pytest.mark.parametrize("command, run_ids", _committed_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_committed_command_expands_to_the_run_ids_it_wrote(command, run_ids, monkeypatch, capsys):
    import shlex

    argv = shlex.split(command)[1:]
    root = argv[argv.index("--data-root") + 1]
    if not (ROOT / root).exists():
        pytest.skip(f"{root}: the data set of this command is not on this machine")
    monkeypatch.chdir(ROOT)
    assert main(argv + ["--results-dir", "results", "--dry-run"]) == 0
    planned = {line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("run_id: ")}
    assert run_ids <= planned
