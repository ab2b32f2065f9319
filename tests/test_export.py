"""vitrepro export: a run's network as weights.safetensors (weights and architecture, no pickle), which a
clone without checkpoints analyzes and probes as it would the checkpoint."""
import shutil

import torch

from vitrepro.cli import main
from vitrepro.models.checkpoint import checkpoint_model_spec, model_from_checkpoint, resolve_weights
from vitrepro.rundir import RunDir


def test_an_exported_run_is_analyzed_without_its_checkpoints(pretrained_run, tmp_path, capsys):
    run = tmp_path / "runs" / pretrained_run.name
    shutil.copytree(pretrained_run, run)
    assert main(["export", str(run)]) == 0
    weights = RunDir(run).weights
    assert weights.is_file() and "from last.ckpt" in capsys.readouterr().out
    assert weights.read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
    spec = checkpoint_model_spec(weights)
    assert spec == checkpoint_model_spec(RunDir(run).last) and spec["depth"] == 2
    before = model_from_checkpoint(RunDir(run).last).state_dict()
    shutil.rmtree(RunDir(run).checkpoints)  # as a fresh clone has it
    w = resolve_weights(run)
    assert w.checkpoint == weights and w.run["config"]["model"]["name"] == "ViT-C/4"
    after = model_from_checkpoint(weights).state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert main(["analyze", "posemb", str(run), "--results-dir", str(tmp_path)]) == 0
    assert main(["export", str(run)]) == 2
    assert "has only its exported weights.safetensors" in capsys.readouterr().err
