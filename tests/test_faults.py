"""Faults and bad input (issue 16): every bad value refused before anything is written, in one line naming
the key and the allowed values; nothing imported from a config; unreadable checkpoints and run configs one
line; the step log rewritten atomically; a cell running elsewhere skipped with exit 0; failure kinds."""
import csv
import errno
import os
import shutil
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from vitrepro.cli import main
from vitrepro.experiments.runner import failure_kind
from vitrepro.experiments.trainer import NonFiniteLossError, _KeepingWriter

ROOT = Path(__file__).resolve().parents[1]
EXP = str(ROOT / "experiments" / "pos_emb_ablation.yaml")


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """An importable module that leaves a marker file when imported (as `this` prints the Zen of Python)."""
    marker = tmp_path / "imported"
    (tmp_path / "vitrepro_probe.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass X:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


BAD_OVERRIDES = [
    ("--trainer.profiler={class_path: vitrepro_probe.X}", "trainer.profiler.class_path", "no class or module"),
    ("--trainer.profiler=vitrepro_probe.X", "trainer.profiler", "allowed are None, simple, advanced, pytorch"),
    ("--trainer.strategy=vitrepro_probe.X", "trainer.strategy", "allowed are auto, ddp"),
    ("--model.posemb={class_path: vitrepro_probe.X}", "model.posemb.class_path", "no class or module"),
    ("--trainer.strategy=banana", "trainer.strategy", "allowed are auto, ddp"),
    ("--trainer.accelerator=banana", "trainer.accelerator", "allowed are auto, cpu, gpu"),
    ("--trainer.devices=0", "trainer.devices", "an integer >= 1"),
    ("--trainer.max_steps=0", "trainer.max_steps", "-1 (no limit) or an integer >= 1"),
    ("--trainer.max_steps=-5", "trainer.max_steps", "-1 (no limit) or an integer >= 1"),
    ("--model.depth=0", "model", "depth=0 is not allowed: expected an integer >= 1"),
    ("--model.depth=-1", "model", "depth=-1 is not allowed"),
    ("--model.depth=two", "model", "depth='two' is not allowed"),
    ("--model.patch_size=0", "model", "patch_size=0 is not allowed"),
    ("--optim.lr=.inf", "optim", "lr=inf is not allowed: expected a finite number > 0"),
    ("--optim.lr=[1,2", "override --optim.lr", "is not a YAML value"),
    ("--optim.lr=!!python/object/apply:os.system [true]", "override --optim.lr", "is not a YAML value"),
    ("--eval.shots=[-1]", "eval", "shots=[-1] is not allowed"),
    ("--eval.l2_reg=-1", "eval", "l2_reg=-1.0 is not allowed"),
    ("--eval.seeds=[]", "eval", "seeds=[] is not allowed"),
    ("--model.width=100000000", "model', 'data.img_size' and 'data.batch_size", "needs at least"),
    ("--data.img_size=1000000", "model', 'data.img_size' and 'data.batch_size", "needs at least"),
]


@pytest.mark.parametrize("override, key, allowed", BAD_OVERRIDES, ids=[o for o, _, _ in BAD_OVERRIDES])
def test_bad_override_is_refused_before_anything_is_written(override, key, allowed, tmp_path, capsys, probe_module):
    out = tmp_path / "results"
    assert main(["run", EXP, "--cell", "0", "--results-dir", str(out), override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert f"'{key}'" in err or key in err, err
    assert allowed in err, err
    assert not out.exists() and not probe_module.exists()


@pytest.mark.parametrize("value", ["1e-1", "+1E-1"])
def test_yaml_1_2_numbers_are_numbers_in_every_section(value, capsys):
    """PyYAML (YAML 1.1) reads 1e-1 as a string; an override reads it as YAML 1.2 does."""
    keys = ("trainer.gradient_clip_val", "model.dropout", "optim.lr")
    assert main(["run", EXP, "--cell", "0", "--dry-run", *(f"--{k}={value}" for k in keys)]) == 0, capsys.readouterr()
    config = yaml.safe_load(capsys.readouterr().out.split("\n# ")[0])["config"]
    for key in keys:
        section, field = key.split(".")
        assert config[section][field] == pytest.approx(0.1) and isinstance(config[section][field], float)


def test_files_and_folders_in_the_wrong_place(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    cases = [(["run", str(ROOT / "experiments")], "is a folder; expected an experiment YAML file"),
             (["run", EXP, "--results-dir", str(tmp_path / "a_file")], "is a file; expected a folder"),
             (["run", EXP, "--cell", "x"], "--cell: expected integers >= 0"),
             (["fewshot", "--model", "ViT-C/4", "--img-size", "0"], "--img-size: expected an integer >= 1"),
             (["fewshot", "--model", "ViT-C/4", "--shots", "0,5"], "--shots: expected integers >= 1")]
    for argv, says in cases:
        with pytest.raises(SystemExit) if argv[-1] in ("x", "0", "0,5") else _no_exit():
            code = main(argv)
            assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, (argv, err)


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("size", [0, 1000])
@pytest.mark.parametrize("command", ["fewshot", "analyze", "init"])
def test_an_empty_or_truncated_checkpoint_is_one_line(command, size, pretrained_run, tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes((pretrained_run / "checkpoints" / "last.ckpt").read_bytes()[:size])
    argv = {"fewshot": ["fewshot", str(bad)],
            "analyze": ["analyze", "posemb", str(bad), "--results-dir", str(tmp_path / "out")],
            "init": ["run", str(ROOT / "experiments" / "transfer.yaml"), f"--init.checkpoint={bad}",
                     "--results-dir", str(tmp_path / "out")]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad} cannot be read ({size} bytes" in err, err
    assert not (tmp_path / "out").exists()


def test_a_run_config_with_a_python_tag_is_refused(pretrained_run, tmp_path, capsys):
    run_dir = tmp_path / pretrained_run.name
    shutil.copytree(pretrained_run, run_dir)
    marker = tmp_path / "pwned"
    (run_dir / "config.yaml").write_text(f"config: !!python/object/apply:os.system ['touch {marker}']\n")
    for argv in (["fewshot", str(run_dir)], ["analyze", "posemb", str(run_dir), "--results-dir", str(tmp_path / "o")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{run_dir / 'config.yaml'}: not a run config" in err, err
    assert not marker.exists()


def test_a_grid_without_the_keys_its_report_needs_is_refused(tmp_path, capsys):
    exp = yaml.safe_load(Path(EXP).read_text())
    exp["grid"] = [{"model.posemb": "none"}]
    exp["report"]["paper"] = str(ROOT / "results" / "paper" / "table8_pos_emb.csv")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    assert main(["run", str(path), "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "key 'posemb_placement' is missing: report 'pos_emb_table8'" in err and not (tmp_path / "r").exists()


def test_a_cell_running_in_another_job_is_skipped_with_exit_0(tmp_path, capsys):
    """Two array jobs given the same cell: the second skips it and exits 0 (it used to draw the report of
    an empty table and exit 2)."""
    assert main(["run", EXP, "--cell", "0", "--dry-run"]) == 0
    run_id = yaml.safe_load(capsys.readouterr().out.split("\n# ")[0])["run_id"]
    run_dir = tmp_path / "pos_emb_ablation" / "runs" / run_id
    run_dir.mkdir(parents=True)
    with FileLock(str(run_dir / ".lock")):  # the other job
        assert main(["run", EXP, "--cell", "0", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "running in another process, skipped" in out.out and "error" not in out.err
    assert not (run_dir / "record.json").exists()


def test_a_kill_while_the_step_log_gains_columns_loses_no_row(tmp_path, monkeypatch):
    """Lightning rewrites metrics.csv in place when a new column appears (validation at an epoch end);
    killed then, the file was left empty. Now the rewrite goes to a file beside it, moved into place."""
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss\n0,0,2.3\n0,1,2.2\n")
    writer = _KeepingWriter(str(tmp_path), keep_below=2)
    writer.log_metrics({"val/top1": 0.3}, step=2)

    def killed(self, rows):
        raise KeyboardInterrupt  # as a kill -9 in the middle of writing the rows

    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        writer.save()
    rows = list(csv.DictReader(path.open()))
    assert [r["step"] for r in rows] == ["0", "1"]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary file left


def test_a_row_torn_by_a_kill_is_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss,val/top1\n0,0,2.3,\n0,1,2.2,0.4\n0,2")
    _KeepingWriter(str(tmp_path), keep_below=5)
    assert [r["step"] for r in csv.DictReader(path.open())] == ["0", "1"]


def test_failure_kinds():
    assert failure_kind(NonFiniteLossError("nan at step 3")) == "diverged"
    assert failure_kind(OSError(errno.ENOSPC, "No space left on device")) == "infrastructure"
    assert failure_kind(RuntimeError("wrapped")) == "error"
    wrapped = RuntimeError("while saving")
    wrapped.__cause__ = OSError(errno.EROFS, "Read-only file system")
    assert failure_kind(wrapped) == "infrastructure"
    assert failure_kind(ConnectionResetError("Connection reset by peer")) == "interrupted"
    assert failure_kind(ValueError("image file is truncated")) == "error"


# ------------------------------------------------------------------------------------------------ disks

@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs as results folder (root and mount(8) needed; skipped elsewhere). Yields
    ``(path, remount)``; ``remount("size=64m")`` or ``remount("ro")`` changes it in place."""
    import subprocess

    path = tmp_path / "disk"
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and mount(8) to make a small file system")

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)

    try:
        yield path, remount
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow  # two training runs
def test_a_full_disk_is_one_line_a_failed_record_no_torn_file_and_resumes(small_disk, capsys):
    import torch

    disk, remount = small_disk
    argv = ["run", EXP, "--cell", "1", "--results-dir", str(disk), "--checkpoint.every_n_steps=1"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    failed = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(failed) == 1 and "(infrastructure)" in failed[0] and "No space left on device" in failed[0], err
    for path in disk.rglob("*"):  # nothing torn, no temporary file left behind
        assert not (path.name.startswith(".") and not path.name.endswith(".lock")), path
        if path.suffix == ".ckpt":
            torch.load(path, map_location="cpu", weights_only=True)
    record = yaml.safe_load(next(disk.rglob("record.json")).read_text())
    assert record["status"] == "failed" and record["failure"] == "infrastructure"
    remount("size=64m")  # space freed: the same command resumes the run in place
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "failed earlier (infrastructure); resuming from its newest good checkpoint" in out
    assert not (disk / "pos_emb_ablation" / "failed").exists()
    assert yaml.safe_load(next(disk.rglob("record.json")).read_text())["status"] == "finished"


@pytest.mark.slow  # one training run
def test_a_read_only_results_folder_is_one_line_for_every_command(small_disk, capsys):
    disk, remount = small_disk
    remount("size=64m")
    argv = ["run", EXP, "--cell", "1", "--results-dir", str(disk)]
    assert main(argv) == 0
    run_dir = next((disk / "pos_emb_ablation" / "runs").iterdir())
    remount("ro")
    capsys.readouterr()
    for command in (argv, ["report", EXP, "--results-dir", str(disk)],
                    ["analyze", "posemb", str(run_dir), "--results-dir", str(disk)]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("Read-only file system" in err or "cannot be written" in err), err


@pytest.mark.slow  # three training runs
def test_a_run_that_failed_for_another_reason_than_divergence_resumes(tmp_path, capsys):
    """Failure kinds: ``error`` (a bad image, a bug) and ``infrastructure`` resume in place; ``diverged``
    starts over with the failed attempt moved aside."""
    import json

    argv = ["run", EXP, "--cell", "1", "--results-dir", str(tmp_path)]
    assert main(argv) == 0
    record_path = next(tmp_path.rglob("record.json"))
    for kind, says in (("error", "resuming from its newest good checkpoint"), ("diverged", "retrying from scratch")):
        record = json.loads(record_path.read_text())
        record.update(status="failed", failure=kind, error="RuntimeError: as if")
        record_path.write_text(json.dumps(record))
        capsys.readouterr()
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert f"failed earlier ({kind}); {says}" in out, out
        resumed = json.loads(record_path.read_text())["provenance"]["resumed"]
        assert resumed is (kind == "error")
        assert (tmp_path / "pos_emb_ablation" / "failed").exists() is (kind == "diverged")


# ------------------------------------------------------------------------------------------------ DDP

@pytest.mark.slow  # two DDP jobs of two processes
def test_an_error_on_one_ddp_rank_ends_every_rank_with_one_failed_record(tmp_path):
    """A truncated image that one rank reads: that rank records the run failed (kind ``error``) and every
    rank stops within seconds (it used to leave rank 0 waiting in a collective forever). The same command
    again resumes the run in place (a mended image is other data, so another run id)."""
    import subprocess
    import sys

    from vitrepro.data.shapes import write_shapes_imagefolder

    tree = write_shapes_imagefolder(tmp_path / "tree", train_per_class=8, test_per_class=4)
    bad = sorted((tree / "train").rglob("*.png"))[1]
    bad.write_bytes(bad.read_bytes()[:50])
    cmd = [sys.executable, "-m", "vitrepro", "run", EXP, "--cell", "1", "--results-dir", str(tmp_path / "res"),
           "--data-root", str(tree), "--data.dataset=imagefolder", "--data.val_fraction=0", "--eval.shots=[1,5]",
           "--trainer.max_steps=8", "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "every rank of the DDP job stops" in proc.stderr, proc.stderr[-3000:]
    records = list((tmp_path / "res").rglob("record.json"))
    assert len(records) == 1
    record = yaml.safe_load(records[0].read_text())
    assert record["status"] == "failed" and record["failure"] == "error" and record["error"].startswith("rank ")
    assert "Truncated" in record["error"] or "truncated" in record["error"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # not mended yet
    assert proc.returncode == 1 and "failed earlier (error); resuming from its newest good checkpoint" in proc.stdout
    assert not (tmp_path / "res" / "pos_emb_ablation" / "failed").exists()  # resumed in place, not set aside


def test_a_symbolic_link_loop_in_a_class_folder_is_refused(tmp_path, capsys):
    from vitrepro.data.shapes import write_shapes_imagefolder

    tree = write_shapes_imagefolder(tmp_path / "tree", train_per_class=6, test_per_class=2)
    (tree / "train" / "circle" / "again").symlink_to(tree / "train" / "circle", target_is_directory=True)
    out = tmp_path / "out"
    assert main(["run", EXP, "--cell", "0", "--data-root", str(tree), "--data.dataset=imagefolder",
                 "--eval.shots=[1]", "--results-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "circle/again reaches" in err and "a symbolic link loop" in err, err
    assert not out.exists()


def test_a_torn_slurm_checkpoint_is_set_aside_where_lightning_no_longer_finds_it(tmp_path):
    """Under SLURM, Lightning resumes from the highest ``hpc_ckpt_<n>`` named in the run folder: a torn one
    set aside as ``hpc_ckpt_1.ckpt.corrupt`` was still found, and the run failed with 'Checkpoint file not
    found'. Now it loses the name."""
    from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

    from vitrepro.experiments.trainer import find_resume_checkpoint

    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"PK\x03\x04 torn")
    warnings = []
    assert find_resume_checkpoint(tmp_path, warnings.append) is None
    assert len(warnings) == 1 and "set aside as hpc-ckpt-1.ckpt.corrupt" in warnings[0]
    assert _CheckpointConnector._CheckpointConnector__max_ckpt_version_in_folder(tmp_path, "hpc_ckpt_") is None


def test_a_run_is_decided_when_it_starts_not_when_the_job_starts(tmp_path, capsys, monkeypatch):
    """``--cell 0,1`` beside another job that finishes cell 1 while this one trains cell 0: cell 1 is
    skipped (the job used to read every status at start-up, train cell 1 again and rewrite its record)."""
    import json

    from vitrepro.experiments import runner

    assert main(["run", EXP, "--cell", "0,1", "--dry-run"]) == 0
    ids = [d["run_id"] for d in yaml.safe_load_all(capsys.readouterr().out.split("\n# ")[0])]
    trained = []

    def execute(run, exp_dir, command, log, tensorboard=False):
        trained.append(run.run_id)
        record = {"run_id": run.run_id, "experiment": run.experiment, "task": run.task, "scale": run.scale,
                  "cell": run.cell, "status": "finished", "metrics": {"model": "ViT-C/4", "seed": 0},
                  "provenance": {"wall_s": 0.0}, "error": None}
        for run_id in ids:  # this run, and the other job's cell 1 finishing meanwhile
            (exp_dir / "runs" / run_id).mkdir(parents=True, exist_ok=True)
            (exp_dir / "runs" / run_id / "record.json").write_text(json.dumps({**record, "run_id": run_id}))
        return record

    monkeypatch.setattr(runner, "execute_run", execute)
    monkeypatch.setattr(runner, "write_experiment_report", lambda *a: [])
    assert main(["run", EXP, "--cell", "0,1", "--results-dir", str(tmp_path)]) == 0
    assert trained == ids[:1]
    assert f"{ids[1]}: finished earlier, skipped" in capsys.readouterr().out


@pytest.mark.slow  # a DDP job killed, then resumed
def test_kill_9_of_a_ddp_rank_is_an_interruption_and_the_rerun_resumes(tmp_path):
    """``kill -9`` of rank 1: every rank stops, no failed record is written (it used to be recorded failed
    on rank 0's 'Connection reset by peer' and retrained from scratch), and the same command resumes from
    the newest checkpoint."""
    import json
    import signal
    import subprocess
    import sys
    import time

    import torch

    cmd = [sys.executable, "-m", "vitrepro", "run", EXP, "--cell", "1", "--results-dir", str(tmp_path / "res"),
           "--trainer.max_steps=40", "--trainer.max_epochs=40", "--checkpoint.every_n_steps=2",
           "--checkpoint.every_minutes=null", "--trainer.accelerator=cpu", "--trainer.devices=2",
           "--trainer.strategy=ddp"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    t0 = time.time()
    while time.time() - t0 < 300:  # a checkpoint at step >= 4 on disk
        ckpts = list((tmp_path / "res").glob("pos_emb_ablation/runs/*/checkpoints/last.ckpt"))
        try:
            if ckpts and torch.load(ckpts[0], map_location="cpu", weights_only=True)["global_step"] >= 4:
                break
        except Exception:  # being replaced right now
            pass
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.1)
    children = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat")
                if p.read_text().rsplit(")", 1)[1].split()[1] == str(proc.pid)
                and b"vitrepro" in (p.parent / "cmdline").read_bytes()]
    assert len(children) == 1, children  # rank 1, launched by rank 0
    os.kill(children[0], signal.SIGKILL)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0
    assert not list((tmp_path / "res").rglob("record.json")), output[-3000:]
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from checkpoints/" in rerun.stdout
    record = json.loads(next((tmp_path / "res").rglob("record.json")).read_text())
    assert record["status"] == "finished" and record["provenance"]["resumed"] is True
    assert not (tmp_path / "res" / "pos_emb_ablation" / "failed").exists()


# ------------------------------------------------------------------------------------------------ interrupts

def test_max_epochs_ending_training_before_max_steps_is_said(tmp_path, capsys):
    assert main(["run", EXP, "--cell", "0", "--results-dir", str(tmp_path), "--trainer.limit_train_batches=2",
                 "--trainer.max_steps=5"]) == 0
    assert ("note: trainer.max_epochs=1 ends training at step 2, before trainer.max_steps=5 (2 batches an epoch)"
            in capsys.readouterr().out)


@pytest.mark.slow  # two runs interrupted, one resumed
@pytest.mark.parametrize("sig, code, name", [("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "SIGTERM")])
def test_an_interrupt_is_one_line_with_the_step_and_how_to_resume(sig, code, name, tmp_path):
    """Ctrl-C used to exit 1 in silence and SIGTERM 0; now one line (run, step, checkpoint, how to resume)
    and 130 / 143; the same command resumes from that checkpoint."""
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "vitrepro", "run", EXP, "--cell", "1", "--results-dir", str(tmp_path / "res"),
           "--trainer.max_steps=400", "--trainer.max_epochs=100", "--checkpoint.every_minutes=null"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    t0 = time.time()
    while time.time() - t0 < 300:
        log = next((tmp_path / "res").glob("pos_emb_ablation/runs/*/logs/metrics.csv"), None)
        if log is not None and len(log.read_text().splitlines()) > 8:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"interrupted ({name}): "), err[-3000:]
    assert "last.ckpt; run the same command to resume" in lines[0] and " at step " in lines[0]
    step = int(lines[0].split(" at step ")[1].split(",")[0])
    assert step > 0
    rerun = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        seen = [rerun.stdout.readline() for _ in range(3)]  # "[1/1] ... pretrain", then the resume line
        assert any(f"resuming from checkpoints/last.ckpt at step {step}" in line for line in seen), seen
    finally:
        rerun.kill()
        rerun.wait()


def test_fewshot_takes_the_data_flag_its_hint_names(tmp_path, capsys):
    """`vitrepro fewshot` said "add --data.dataset=imagefolder" and then refused that flag; it also printed
    "on cifar10" for any tree. Now it takes --data.<key> as `run` does and names the data it read."""
    from vitrepro.data.shapes import write_shapes_imagefolder

    tree = write_shapes_imagefolder(tmp_path / "tree", train_per_class=6, test_per_class=2)
    argv = ["fewshot", "--model", "ViT-C/4", "--model.depth=1", "--data-root", str(tree), "--shots", "1",
            "--seeds", "0"]
    assert main(argv + ["--data.dataset=imagefolder"]) == 0
    out = capsys.readouterr().out
    assert "on imagefolder" in out and "cifar10" not in out and "1-shot linear accuracy" in out, out
    assert main(argv + ["--data.colour=red"]) == 2
    assert "allowed are --model.<field>=<value> and --data.<key>=<value>" in capsys.readouterr().err
