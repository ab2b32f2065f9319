"""The runner end to end: smoke runs of every experiment, resume after an interrupt, DDP on 2 CPU
processes, a short run on the real CIFAR-10 copy, and the provenance of committed results."""
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vitrepro.cli import main
from vitrepro.tasks import ClassificationTask

ROOT = Path(__file__).resolve().parents[1]
POS_EMB = ROOT / "experiments" / "pos_emb_ablation.yaml"
CIFAR_JPEG = ROOT.parent / "shared" / "data" / "cifar10-jpeg"
PROVENANCE = ("command", "hardware", "wall_s", "data", "finished_at")


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    monkeypatch.delenv("VITREPRO_DATA", raising=False)


EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path, cells", [*((p, ["--cell", "0"]) for p in EXPERIMENTS),
                                         *(pytest.param(p, [], marks=pytest.mark.slow) for p in EXPERIMENTS)],
                         ids=[*(p.stem + "-cell0" for p in EXPERIMENTS), *(p.stem + "-grid" for p in EXPERIMENTS)])
def test_every_experiment_runs_at_smoke_scale(path, cells, tmp_path):
    """Each experiment file end to end at smoke scale: its first cell (fast tier), its whole grid (slow)."""
    assert main(["run", str(path), "--scale", "smoke", *cells, "--results-dir", str(tmp_path)]) == 0
    runs = pd.read_csv(next(tmp_path.glob("*/runs.csv")))
    assert len(runs) >= 1 and runs["run_id"].is_unique
    has_finetune = "finetune" in yaml.safe_load(path.read_text())["base"]
    for task, rows in runs.groupby("task"):  # a cell may set its own task (mpp_comparison.yaml)
        metrics = {"pretrain": ["top1", "fewshot_5"], "mpp": ["fewshot_5"], "finetune": ["fewshot_5", "ft_top1"],
                   "fewshot": ["fewshot_5"]}[task] + (["ft_top1"] if has_finetune else [])
        assert rows[metrics].notna().all().all()
        assert all(rows[m].between(0, 1).all() for m in metrics)
    assert runs[list(PROVENANCE)].notna().all().all()
    assert runs["data"].str.contains("bundled sample").all()


@pytest.mark.parametrize("cells", [pytest.param(None, marks=pytest.mark.slow, id="all-8-cells"),
                                   pytest.param("0,7", id="cells-0-7")])
def test_smoke_writes_rows_table_and_per_run_files(cells, tmp_path):
    """The main job at smoke scale: the whole grid (slow tier), or its first and last cells (fast tier)."""
    assert main(["run", str(POS_EMB), "--results-dir", str(tmp_path), *(["--cell", cells] if cells else [])]) == 0
    out = tmp_path / "pos_emb_ablation"
    runs = pd.read_csv(out / "runs.csv")
    expected = [("none", "stem"), ("learned_1d", "stem"), ("learned_1d", "every_layer"),
                ("learned_1d", "every_layer_shared"), ("learned_2d", "stem"), ("learned_2d", "every_layer"),
                ("learned_2d", "every_layer_shared"), ("relative", "stem")]
    if cells:
        expected = [expected[int(i)] for i in cells.split(",")]
    assert len(runs) == len(expected) and set(runs["scale"]) == {"smoke"} and set(runs["status"]) == {"finished"}
    assert set(zip(runs["posemb"], runs["posemb_placement"])) == set(expected)
    assert (runs["steps"] == 3).all() and (runs["params"] > 0).all() and (runs["gflops"] > 0).all()
    assert runs["command"].iloc[0].startswith("vitrepro run ")
    table = (out / "table8_smoke.md").read_text()
    assert "| None |" in table and "61.38" in table
    assert (out / "table8_smoke.png").stat().st_size > 10_000
    run_dir = out / "runs" / runs["run_id"].iloc[0]
    for name in ("record.json", "config.yaml", "attempts.json", "logs/metrics.csv", "checkpoints/last.ckpt"):
        assert (run_dir / name).exists(), name


@pytest.mark.slow  # two training runs, one interrupted
def test_interrupted_experiment_resumes_without_loss_or_duplicates(tmp_path, monkeypatch):
    """Ctrl-C in the third run; the same command again skips two, resumes the third from its checkpoint."""
    original = ClassificationTask.training_step
    calls = {"n": 0}

    def interrupting_step(self, batch, batch_idx):
        calls["n"] += 1
        if calls["n"] == 3 * 3 - 1:  # runs 1 and 2 take 3 steps each; stop in the middle of run 3
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ClassificationTask, "training_step", interrupting_step)
    handler = signal.getsignal(signal.SIGINT)
    try:  # one line and 130 (Ctrl-C), not Lightning's silent exit 1
        assert main(["run", str(POS_EMB), "--cell", "0,1,2", "--results-dir", str(tmp_path)]) == 130
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after an interrupt
    csv = tmp_path / "pos_emb_ablation" / "runs.csv"
    before = pd.read_csv(csv)
    assert len(before) == 2
    third = next(d for d in (tmp_path / "pos_emb_ablation" / "runs").iterdir() if d.name.startswith("learned_1d-every_layer-"))
    assert (third / "checkpoints" / "last.ckpt").exists()

    monkeypatch.setattr(ClassificationTask, "training_step", original)
    assert main(["run", str(POS_EMB), "--cell", "0,1,2", "--results-dir", str(tmp_path)]) == 0
    after = pd.read_csv(csv)
    assert len(after) == 3 and after["run_id"].is_unique
    kept = after.set_index("run_id").loc[before["run_id"]]  # runs.csv is sorted by run id
    pd.testing.assert_frame_equal(kept[before.columns[1:]], before.set_index("run_id"), check_dtype=False)
    resumed = after.set_index("run_id").loc[third.name]
    assert bool(resumed["resumed"]) and resumed["steps"] == 3
    assert main(["run", str(POS_EMB), "--cell", "0,1,2", "--results-dir", str(tmp_path)]) == 0  # all finished: nothing changes
    pd.testing.assert_frame_equal(pd.read_csv(csv), after)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path):
    """Lightning's DDP (gloo) with 2 processes: each rank runs the grid, rank 0 alone writes the rows."""
    cmd = [sys.executable, "-m", "vitrepro", "run", str(POS_EMB), "--cell", "0,7", "--results-dir", str(tmp_path),
           "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "pos_emb_ablation" / "runs.csv")
    assert len(runs) == 2 and runs["run_id"].is_unique
    assert (runs["devices"] == 2).all() and (runs["steps"] == 3).all()
    assert list(runs["posemb"]) == ["none", "relative"]


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_JPEG.exists(), reason=f"real CIFAR-10 copy not at {CIFAR_JPEG}")
def test_short_run_on_real_cifar10(tmp_path):
    assert main(["run", str(POS_EMB), "--scale", "cpu", "--data-root", str(CIFAR_JPEG), "--cell", "1",
                 "--results-dir", str(tmp_path), "--trainer.max_steps=10", "--trainer.limit_val_batches=2"]) == 0
    row = pd.read_csv(tmp_path / "pos_emb_ablation" / "runs.csv").iloc[0]
    assert row["train_images"] == 49_000 and row["steps"] == 10
    assert "cifar10 ImageFolder JPEG tree" in row["data"] and "test 10000" in row["data"]
    for k in ("top1", "fewshot_1", "fewshot_5", "fewshot_10", "fewshot_25"):
        assert 0.0 <= row[k] <= 1.0


COMMITTED = sorted((ROOT / "results").glob("*/runs.csv"))


@pytest.mark.parametrize("csv", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_results_carry_their_provenance(csv):
    runs = pd.read_csv(csv)
    assert len(runs) and runs["run_id"].is_unique
    assert runs[list(PROVENANCE)].notna().all().all()
    assert runs["command"].str.startswith("vitrepro run experiments/").all()
    for scale in set(runs["scale"]):
        assert (csv.parent / f"table8_{scale}.md").exists() or csv.parent.name != "pos_emb_ablation"


@pytest.mark.slow  # fingerprints the real CIFAR-10 copy (60,000 files) and writes the shapes tree
@pytest.mark.parametrize("csv", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_runs_resume_under_the_current_code(csv, capsys, shapes_tree):
    """Each row's own command, expanded now, gives the row's run_id, so running it again with
    ``--results-dir results`` skips the row. The commands name the data by path; the run id names it by
    content, so the shapes tree regenerated elsewhere (another spelling of the same data) gives the same
    ids. A failure means a change altered what a run id covers: decide whether the committed runs still
    stand for the new code before migrating them (``python -m vitrepro.experiments.migrate``)."""
    if not CIFAR_JPEG.exists():
        pytest.skip(f"real CIFAR-10 copy not at {CIFAR_JPEG}")
    runs = pd.read_csv(csv)
    assert set(runs["status"]) == {"finished"}
    for command, rows in runs.groupby("command"):
        argv = [str(shapes_tree) if a == "data/shapes" else a for a in shlex.split(command)[1:]]
        assert main(argv + ["--dry-run"]) == 0
        ids = {d["run_id"] for d in yaml.safe_load_all(capsys.readouterr().out) if d}
        assert set(rows["run_id"]) <= ids, command


def test_fewshot_command_reproduces_a_runs_numbers_and_refuses_a_wrong_checkpoint(pretrained_run, capsys):
    run_dir = pretrained_run
    row = pd.read_csv(run_dir.parents[1] / "runs.csv").iloc[0]
    capsys.readouterr()
    assert main(["fewshot", str(run_dir)]) == 0
    out = capsys.readouterr().out
    for k in (1, 5, 10, 25):  # the same probe on the same checkpoint gives the recorded numbers
        assert f"{k:>2}-shot linear accuracy: {100 * row[f'fewshot_{k}']:.2f}%" in out
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert main(["fewshot", "--model", "ViT-Ti/4", "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ViT-Ti/4" in err and "width 192" in err and "width 128" in err
    capsys.readouterr()
    assert main(["fewshot", str(ckpt)]) == 0  # the checkpoint names its model: no --model needed
    out = capsys.readouterr().out
    assert out.startswith("ViT-C/4 ") and f"{100 * row['fewshot_5']:.2f}%" in out
    assert main(["fewshot"]) == 2
    assert "give a run directory or a checkpoint file, or --model NAME" in capsys.readouterr().err


@pytest.mark.slow  # the data-size smoke grid (slow tier) runs R50x1 through the runner as well
def test_a_bit_resnet_trains_and_evaluates_through_the_runner(tmp_path):
    """Every family runs through the same runner: a BiT ResNet at smoke scale."""
    raw = yaml.safe_load(POS_EMB.read_text())
    raw.update(name="bit_smoke", report=None, grid=[{}])
    raw["base"]["model"] = {"name": "R26x1"}
    raw["scales"]["smoke"].pop("model.depth")
    path = tmp_path / "bit.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(path), "--results-dir", str(tmp_path)]) == 0
    row = pd.read_csv(tmp_path / "bit_smoke" / "runs.csv").iloc[0]
    assert row["model"] == "R26x1" and row["steps"] == 3 and 0 <= row["top1"] <= 1 and 0 <= row["fewshot_5"] <= 1


def test_a_checkpoint_alone_rebuilds_the_trained_model(pretrained_run):
    """Checkpoints record the registry name and every architecture field (here depth 2, not the registry's
    6): the file alone rebuilds the network with its trained weights and head."""
    import torch

    from vitrepro.models import checkpoint_model_spec, model_from_checkpoint

    ckpt = pretrained_run / "checkpoints" / "last.ckpt"
    spec = checkpoint_model_spec(ckpt)
    assert spec["name"] == "ViT-C/4" and spec["depth"] == 2 and spec["posemb"] == "learned_1d"
    model = model_from_checkpoint(ckpt).eval()
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[f"model.{k}"]) for k, v in model.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10) and model_from_checkpoint(ckpt, num_classes=3)(x).abs().sum() == 0  # zero head
