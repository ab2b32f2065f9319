"""What a user meets at the command line: help, model listing, refused devices, offline downloads."""
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from vitrepro.cli import main
from vitrepro.data.shapes import write_shapes_imagefolder

ROOT = Path(__file__).resolve().parents[1]
POS_EMB = ROOT / "experiments" / "pos_emb_ablation.yaml"


def test_run_help_shows_the_override_syntax_with_examples(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "--<section>.<key>=<value>" in out and "--optim.lr=3e-4" in out and "--seed=<int>" in out
    assert "vitrepro run experiments/pos_emb_ablation.yaml --scale cpu" in out


def test_models_match_any_case_and_show_parameter_counts(capsys):
    assert main(["models", "vit-b/16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ViT-B/16") and "86.57M params" in out
    assert main(["models", "VIT"]) == 0 and "R50+ViT-B/16" in capsys.readouterr().out
    assert main(["models", "nope"]) == 2
    assert "no registered model matches 'nope'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_run_without_a_gpu_is_refused_before_anything_is_written(tmp_path, capsys):
    assert main(["run", str(POS_EMB), "--trainer.accelerator=gpu", "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'trainer.accelerator': 'gpu' needs a device" in err
    assert not (tmp_path / "r").exists()


def test_a_download_without_network_is_one_line(tmp_path, capsys, monkeypatch):
    def offline(dataset, root):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("vitrepro.data.sources._torchvision_download", offline)
    assert main(["run", str(POS_EMB), "--scale", "cpu", "--data-root", str(tmp_path / "data"), "--download",
                 "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not download cifar10 into" in err and "drop --download" in err
    assert not (tmp_path / "r").exists()


def test_a_plain_imagefolder_under_the_cifar_default_says_what_to_add(tmp_path, capsys):
    """Ants and bees, or any tree of one's own, without --data.dataset=imagefolder: the error names the fix."""
    tree = write_shapes_imagefolder(tmp_path / "shapes", train_per_class=3, test_per_class=2)
    assert main(["run", str(POS_EMB), "--data-root", str(tree), "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expects 10 classes" in err and "add --data.dataset=imagefolder" in err


def test_a_run_directory_without_its_checkpoint_names_the_command_that_writes_it(tmp_path, capsys):
    """As on a fresh clone: committed run directories hold records and logs, not checkpoints."""
    run_dir = tmp_path / "results" / "data_size_scaling" / "runs" / "ViT_C_4-49000-ed1cf8b1"
    run_dir.mkdir(parents=True)
    command = "vitrepro run experiments/data_size_scaling.yaml --scale cpu --data-root DIR"
    (run_dir / "config.yaml").write_text(f"command: {command}\n")
    assert main(["run", str(ROOT / "experiments" / "transfer.yaml"), f"--init.checkpoint={run_dir}",
                 "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"`{command}` writes it" in err and "not committed" in err
    assert not (tmp_path / "r").exists()


def test_python_m_vitrepro_runs_from_a_checkout_without_installing(tmp_path):
    """A copy of the checkout's package and experiments, never installed: ``python -m vitrepro`` there uses
    that copy (the working directory comes first on the path) and expands the README's command."""
    import shutil
    import subprocess
    import sys

    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "vitrepro", checkout / "vitrepro", ignore=shutil.ignore_patterns("__pycache__", "sample"))
    shutil.copytree(ROOT / "experiments", checkout / "experiments")
    shutil.copytree(ROOT / "results" / "paper", checkout / "results" / "paper")
    which = subprocess.run([sys.executable, "-c", "import vitrepro; print(vitrepro.__file__)"], cwd=checkout,
                           capture_output=True, text=True, timeout=60)
    assert which.stdout.strip() == str(checkout / "vitrepro" / "__init__.py"), which.stderr
    proc = subprocess.run([sys.executable, "-m", "vitrepro", "run", "experiments/pos_emb_ablation.yaml", "--cell", "1",
                           "--dry-run", "--data-root", str(ROOT / "vitrepro" / "data" / "sample" / "cifar10")],
                          cwd=checkout, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "run_id: learned_1d-stem-" in proc.stdout, proc.stderr[-2000:]
