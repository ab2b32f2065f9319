"""Runs that survive a cluster: exact resume after kill -9, SLURM requeue, corrupt checkpoints, a diverging
cell among good ones."""
import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vitrepro.cli import main
from vitrepro.data.sampler import ResumableSampler, SeededItems
from vitrepro.experiments.trainer import _KeepingWriter

ROOT = Path(__file__).resolve().parents[1]
POS_EMB = ROOT / "experiments" / "pos_emb_ablation.yaml"


# ------------------------------------------------------------------------------------------------ sampler

def test_a_resumed_epoch_yields_exactly_the_rest_of_the_uninterrupted_one():
    s = ResumableSampler(50, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.resume_at(2, 17)
    assert list(s) == full[17:]
    assert list(s) == full  # the skip applies once
    s.set_epoch(3)
    assert [i for i, _ in s] != [i for i, _ in full]  # another epoch, another order
    assert sorted(i for i, _ in full) == list(range(50))


def test_ranks_take_disjoint_shards_of_the_same_order(monkeypatch):
    shards = []
    for rank in range(3):
        monkeypatch.setattr("vitrepro.data.sampler._rank_world", lambda r=rank: (r, 3))
        s = ResumableSampler(10, seed=0)
        assert len(s) == 4
        shards.append([i for i, _ in s])
    assert all(len(x) == 4 for x in shards)  # padded like DistributedSampler
    assert set().union(*shards) == set(range(10))


class _Noisy(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.rand(3), i


def test_an_items_augmentation_depends_on_its_seed_only_and_leaves_the_global_generator_alone():
    items = SeededItems(_Noisy())
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = items[(2, 123)][0]
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(5)  # whatever the global generator did meanwhile
    assert torch.equal(items[(2, 123)][0], a) and not torch.equal(items[(2, 124)][0], a)


def test_the_csv_log_of_a_resumed_run_keeps_the_steps_before_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss\n0,0,2.3\n0,1,2.2\n0,2,2.1\n0,3,2.0\n")
    writer = _KeepingWriter(str(tmp_path), keep_below=2)
    rows = list(csv.DictReader(path.open()))
    assert [r["step"] for r in rows] == ["0", "1"] and writer.metrics_keys == ["epoch", "step", "train/loss"]
    writer.log_metrics({"train/loss": 2.15, "val/top1": 0.3}, step=2)
    writer.save()
    rows = list(csv.DictReader(path.open()))
    assert [r["step"] for r in rows] == ["0", "1", "2"] and rows[-1]["val/top1"] == "0.3"
    _KeepingWriter(str(tmp_path), keep_below=None)  # a fresh start: the old log goes
    assert not path.exists()


# ------------------------------------------------------------------------------------------------ runs

def _run(tmp_path, *extra) -> int:
    return main(["run", str(POS_EMB), "--cell", "1", "--results-dir", str(tmp_path), *extra])


def _record(tmp_path) -> dict:
    return json.loads(next((tmp_path / "pos_emb_ablation" / "runs").glob("*/record.json")).read_text())


@pytest.mark.slow  # several training runs in a row
def test_a_truncated_checkpoint_is_set_aside_and_the_run_restarts(tmp_path, capsys):
    """A torn last.ckpt: set aside with a one-line warning, the run resumes from the older epoch-end
    checkpoint; with every checkpoint torn, it starts again from scratch (resumed: false)."""
    assert _run(tmp_path) == 0
    run_dir = next((tmp_path / "pos_emb_ablation" / "runs").iterdir())
    ckpts = run_dir / "checkpoints"
    for torn in (["last.ckpt"], ["last.ckpt", "epoch-end.ckpt"]):
        (run_dir / "record.json").unlink()  # as if the run had been killed before recording
        for name in torn:
            (ckpts / name).write_bytes((ckpts / name).read_bytes()[:1000])
        capsys.readouterr()
        assert _run(tmp_path) == 0
        out = capsys.readouterr().out
        warnings = [line for line in out.splitlines() if "warning:" in line]
        assert len(warnings) == len(torn) and "Traceback" not in out
        for name in torn:  # newest first: one line each, naming the file and where it went
            assert any(str(ckpts / name) in w and f"set aside as {name}.corrupt" in w for w in warnings), name
            assert (ckpts / f"{name}.corrupt").exists()
        record = _record(tmp_path)
        assert record["status"] == "finished" and record["metrics"]["steps"] == 3
        assert record["provenance"]["resumed"] is (len(torn) == 1), torn


@pytest.mark.slow  # three runs, one failing, then the retry
def test_a_diverging_cell_fails_alone_and_is_retried_from_scratch(tmp_path, capsys):
    """lr 1e6 in one cell: a NaN loss from step 3 stops that run at once; the other cells finish; the
    command exits 1 naming it; the report shows it as failed; a rerun retries it and skips the others."""
    args = ["run", str(POS_EMB), "--cell", "0", "--results-dir", str(tmp_path)]
    assert main(args) == 0
    diverging = ["run", str(POS_EMB), "--cell", "4", "--results-dir", str(tmp_path), "--optim.lr=1e6",
                 "--trainer.max_steps=6"]
    capsys.readouterr()
    assert main(diverging) == 1
    err = capsys.readouterr().err
    assert "1 of 1 runs failed" in err and "(diverged): NonFiniteLossError: non-finite training loss" in err
    runs = pd.read_csv(tmp_path / "pos_emb_ablation" / "runs.csv")
    assert sorted(runs["status"]) == ["failed", "finished"]
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert pd.isna(failed.get("fewshot_5")) and "at step" in failed["error"]
    run_dir = tmp_path / "pos_emb_ablation" / "runs" / failed["run_id"]
    assert not list((run_dir / "checkpoints").glob("*.ckpt"))  # nothing to resume a NaN from
    table = (tmp_path / "pos_emb_ablation" / "table8_smoke.md").read_text()
    assert "| 2-D | failed (64.00)" in table and failed["run_id"] in table
    capsys.readouterr()
    assert main(diverging) == 1  # retried from scratch (and fails again: the lr has not changed)
    out = capsys.readouterr().out
    assert "failed earlier (diverged); retrying from scratch" in out
    assert (tmp_path / "pos_emb_ablation" / "failed" / f"{failed['run_id']}.1" / "error.log").exists()
    capsys.readouterr()
    assert main(args) == 0 and capsys.readouterr().out.count("finished earlier, skipped") == 1


# ------------------------------------------------------------------------------------------------ processes

KILL_ARGS = ["--cell", "4", "--trainer.max_steps=20", "--trainer.max_epochs=3", "--model.dropout=0.1",
             "--checkpoint.every_minutes=null", "--trainer.log_every_n_steps=1"]
EVERY_2_STEPS = ["--checkpoint.every_n_steps=2"]
DDP_2 = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
#: the from-scratch recipe: its state (EMA weights, the mixing draws, RandAugment, stochastic depth) resumes too
RECIPE = ["--data.randaugment=2", "--mixing.mixup_alpha=0.8", "--mixing.cutmix_alpha=1.0", "--ema.decay=0.8",
          "--model.drop_path_rate=0.1"]


def _start(results: Path, env=None, *extra) -> subprocess.Popen:
    extra = extra or tuple(EVERY_2_STEPS)
    cmd = [sys.executable, "-m", "vitrepro", "run", str(POS_EMB), "--results-dir", str(results), *KILL_ARGS, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=results.parent,
                            env={**os.environ, **(env or {})})


def _wait_for_checkpoint(results: Path, proc, min_step: int, timeout: float = 300) -> int:
    t0 = time.time()
    while time.time() - t0 < timeout:
        for ckpt in results.glob("pos_emb_ablation/runs/*/checkpoints/*.ckpt"):
            try:
                step = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
            except Exception:  # being replaced right now
                continue
            if step >= min_step:
                return step
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    raise TimeoutError


def _final(results: Path) -> tuple[dict, dict, list]:
    run_dir = next(results.glob("pos_emb_ablation/runs/*/"))
    weights = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    record = json.loads((run_dir / "record.json").read_text())
    log = list(csv.DictReader((run_dir / "logs" / "metrics.csv").open()))
    return weights, record, log


@pytest.mark.slow
@pytest.mark.parametrize("policy, min_step", [(EVERY_2_STEPS, 7), (["--checkpoint.every_n_steps=null"], 12),
                                              (EVERY_2_STEPS + DDP_2, 5), (EVERY_2_STEPS + RECIPE, 7)],
                         ids=["mid-epoch-every-2-steps", "epoch-end-only", "ddp-mid-epoch", "recipe-mid-epoch"])
def test_kill_9_then_rerun_ends_as_the_uninterrupted_run(policy, min_step, tmp_path):
    """ViT-C/4 with dropout, 20 steps over two 12-batch epochs; SIGKILL once a checkpoint at step >=
    ``min_step`` exists (every 2 steps: mid-epoch 0; epoch ends only: during epoch 1, resuming from the
    epoch-end checkpoint; under DDP on two processes, rank 0 killed mid-epoch, rank 1 stopping on its
    own; with the whole from-scratch recipe on, its EMA weights and seeded draws); the same command again
    resumes there and ends with bit-identical weights, metrics and step log
    (under DDP each rank's metric sums and generators are restored, not rank 0's); wall_s sums both
    attempts."""
    whole, cut = tmp_path / "whole" / "r", tmp_path / "cut" / "r"
    for d in (whole, cut):
        d.parent.mkdir()
    proc = _start(whole, None, *policy)
    assert proc.wait(timeout=600) == 0, proc.stdout.read()[-3000:]
    proc = _start(cut, None, *policy)
    step = _wait_for_checkpoint(cut, proc, min_step=min_step)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    print(f"killed with a checkpoint at step {step}")
    proc = _start(cut, None, *policy)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0 and f"at step {step}" in out and "resuming from checkpoints/" in out, out[-3000:]
    (wa, ra, la), (wb, rb, lb) = _final(whole), _final(cut)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for k in ("top1", "fewshot_1", "fewshot_5", "steps", "epochs", "images_seen", "pretrain_flops"):
        assert ra["metrics"][k] == rb["metrics"][k], k
    assert rb["provenance"]["resumed"] is True and ra["provenance"]["resumed"] is False
    assert la == lb  # every step logged before the kill is kept, none twice
    attempts = json.loads(next(cut.glob("pos_emb_ablation/runs/*/attempts.json")).read_text())
    assert len(attempts) == 2 and attempts[1]["from_step"] == step
    assert rb["provenance"]["wall_s"] >= attempts[0]["seconds"] + attempts[1]["seconds"]


@pytest.mark.slow
def test_slurm_requeue_signal_saves_requeues_and_the_requeued_job_resumes(tmp_path):
    """As on a cluster: SIGUSR1 (SLURM's warning before preemption) makes Lightning write hpc_ckpt_1.ckpt
    and call `scontrol requeue <array job>_<task>`; the job is then killed; the requeued job, the same
    command, resumes from that checkpoint and finishes with the weights and step log of an uninterrupted
    run (the signal is acted on at the next batch end, not wherever it lands)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
           "SLURM_JOB_NAME": "vitrepro", "SLURM_JOB_ID": "1234", "SLURM_ARRAY_JOB_ID": "1200",
           "SLURM_ARRAY_TASK_ID": "4", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
           "SLURM_NODELIST": "localhost"}
    whole, results = tmp_path / "whole" / "r", tmp_path / "r"
    whole.parent.mkdir()
    proc = _start(whole, env, "--trainer.max_steps=200", "--trainer.max_epochs=100", "--checkpoint.every_n_steps=1000")
    assert proc.wait(timeout=600) == 0, proc.stdout.read()[-3000:]
    proc = _start(results, env, "--trainer.max_steps=200", "--trainer.max_epochs=100", "--checkpoint.every_n_steps=1000")
    _wait_for_metrics(results, proc, min_rows=5)
    proc.send_signal(signal.SIGUSR1)
    run_dir = _wait_for(lambda: next(results.glob("pos_emb_ablation/runs/*/hpc_ckpt_1.ckpt"), None), proc).parent
    _wait_for(lambda: calls.exists() and calls.read_text(), proc)
    proc.send_signal(signal.SIGKILL)  # what SLURM does to the requeued job
    proc.wait()
    assert calls.read_text().split() == ["requeue", "1200_4"]
    step = torch.load(run_dir / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=True)["global_step"]
    proc = _start(results, env, "--trainer.max_steps=200", "--trainer.max_epochs=100", "--checkpoint.every_n_steps=1000")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0 and f"resuming from hpc_ckpt_1.ckpt at step {step}" in out, out[-3000:]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "finished" and record["provenance"]["resumed"] is True
    assert record["metrics"]["steps"] == 200
    (wa, _, la), (wb, _, lb) = _final(whole), _final(results)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert la == lb  # the interrupted epoch's train/top1 included (the signal lands between batches' ends)


def _wait_for(probe, proc, timeout: float = 300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = probe()
        if value:
            return value
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    raise TimeoutError


def _wait_for_metrics(results: Path, proc, min_rows: int) -> None:
    def rows():
        log = next(results.glob("pos_emb_ablation/runs/*/logs/metrics.csv"), None)
        return log is not None and len(log.read_text().splitlines()) > min_rows
    _wait_for(rows, proc)


def test_numpy_is_not_the_sampler_state():
    """The sampler's order comes from its own generator: numpy's global one does not move it."""
    s = ResumableSampler(20, seed=1)
    a = list(s)
    np.random.seed(99)
    assert list(s) == a
