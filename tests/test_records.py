"""Per-run records and the runs.csv derived from them; what a run id covers; a quickstart that leaves the
repository clean."""
import multiprocessing as mp
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vitrepro.cli import main
from vitrepro.data.readers import clear_cache
from vitrepro.data.sources import SAMPLE_ROOT
from vitrepro.experiments import Experiment
from vitrepro.experiments.records import LEAD_COLUMNS, collect, write_record, write_table
from vitrepro.experiments.spec import ExperimentError

ROOT = Path(__file__).resolve().parents[1]
POS_EMB = ROOT / "experiments" / "pos_emb_ablation.yaml"


def _record(run_id: str, status: str = "finished", **metrics) -> dict:
    return {"run_id": run_id, "experiment": "e", "task": "pretrain", "status": status, "scale": "smoke",
            "cell": {"posemb": "none"}, "metrics": metrics, "provenance": {"command": "vitrepro run e.yaml"},
            "error": None if status == "finished" else "NonFiniteLossError: non-finite training loss"}


def test_the_table_is_derived_from_the_records_sorted_with_one_schema(tmp_path):
    write_record(tmp_path / "runs" / "b", _record("b", top1=0.5))
    write_record(tmp_path / "runs" / "a", _record("a", "failed"))
    (tmp_path / "runs" / "stray").mkdir()  # a run that never finished: no record, no row
    write_record(tmp_path / "runs" / "c-renamed", _record("c"))  # a folder not named by its run id: ignored
    df = pd.read_csv(write_table(tmp_path))
    assert list(df.columns[:5]) == list(LEAD_COLUMNS) and df.columns[-1] == "error"
    assert list(df["run_id"]) == ["a", "b"] and list(df["status"]) == ["failed", "finished"]
    assert pd.isna(df.loc[0, "top1"]) and df.loc[1, "top1"] == 0.5
    with pytest.raises(ValueError, match="status"):
        write_record(tmp_path / "runs" / "d", _record("d", "running"))


def _writer(args):
    results, worker, n = args
    for i in range(n):
        run_id = f"w{worker}-{i:03d}"
        write_record(Path(results) / "runs" / run_id, _record(run_id, top1=i / n))
        write_table(Path(results))


@pytest.mark.slow  # several processes at once
def test_processes_finishing_runs_at_once_never_lose_or_duplicate_a_row(tmp_path):
    """The failure it replaces: two processes appending 100 rows each to one runs.csv kept 122-145 of 200."""
    workers, per_worker = 4, 50
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_writer, [(str(tmp_path), w, per_worker) for w in range(workers)])
    df = pd.read_csv(tmp_path / "runs.csv")
    print(f"rows kept: {len(df)} of {workers * per_worker}")
    assert len(df) == workers * per_worker and df["run_id"].is_unique


def _dry_run_ids(capsys, *argv) -> list[str]:
    capsys.readouterr()
    assert main(["run", str(POS_EMB), "--dry-run", "--cell", "0,7", *argv]) == 0
    return [d["run_id"] for d in yaml.safe_load_all(capsys.readouterr().out) if d]


def test_the_run_id_names_the_data_by_content_not_by_path(capsys, tmp_path, monkeypatch):
    """The same data reached by two spellings (absolute, relative, through a link) is one run; the
    bundled sample copied elsewhere is still the same data."""
    sample = SAMPLE_ROOT
    link = tmp_path / "link"
    link.symlink_to(sample, target_is_directory=True)
    copy = shutil.copytree(sample, tmp_path / "copy")
    monkeypatch.chdir(tmp_path)
    ids = {name: _dry_run_ids(capsys, "--data-root", root) for name, root in
           [("absolute", str(sample)), ("relative", os.path.relpath(sample)), ("link", "link"), ("copy", "copy")]}
    assert ids["absolute"] == ids["relative"] == ids["link"] == ids["copy"] == _dry_run_ids(capsys)
    (copy / "train" / "cat" / "0000.jpg").write_bytes(b"\xff" * 10)  # other content: another run
    clear_cache()  # directory scans are cached per process
    assert _dry_run_ids(capsys, "--data-root", "copy") != ids["copy"]


def test_the_run_id_covers_what_changes_the_result_and_nothing_else(capsys):
    base = _dry_run_ids(capsys)
    for neutral in ("--trainer.enable_progress_bar=true", "--data.num_workers=2", "--trainer.log_every_n_steps=7",
                    "--checkpoint.every_n_steps=5", "--eval.batch_size=64", "--trainer.accelerator=cpu",
                    "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.num_nodes=1", "--data.dataset=auto"):
        assert _dry_run_ids(capsys, neutral) == base, neutral
    for changing in ("--optim.lr=0.01", "--seed=1", "--data.batch_size=16", "--trainer.max_steps=4"):
        assert not set(_dry_run_ids(capsys, changing)) & set(base), changing


def test_a_cell_named_twice_runs_once(tmp_path):
    assert main(["run", str(POS_EMB), "--cell", "0,0", "--results-dir", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "pos_emb_ablation" / "runs.csv")
    assert len(df) == 1 and df.loc[0, "status"] == "finished"
    assert len(collect(tmp_path / "pos_emb_ablation")) == 1


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r.update(name="../outside"), "key 'name': '../outside' is not allowed"),
    (lambda r: r.update(report={"kind": "table9"}), "key 'report.kind': 'table9' is not one of pos_emb_table8"),
    (lambda r: r["base"]["trainer"].update(gradient_clip_val="high"), 'trainer.gradient_clip_val'),
    (lambda r: r["base"]["optim"].update(lr=0), "lr=0.0 is not allowed"),
    (lambda r: r["report"].update(paper="no_such_table.csv"), "key 'report.paper'"),
    (lambda r: r["base"].update(checkpoint={"every_minutes": -1}), "every_minutes=-1.0 is not allowed"),
])
def test_bad_values_are_refused_before_anything_trains(edit, expected, tmp_path, capsys):
    raw = yaml.safe_load(POS_EMB.read_text())
    raw["report"]["paper"] = str(ROOT / "results" / "paper" / "table8_pos_emb.csv")
    edit(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(path), "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "r").exists()


def test_the_quickstart_leaves_the_repository_clean(tmp_path, monkeypatch):
    """The README's main command, in a fresh clone, writes under results/scratch (git-ignored), never into
    the committed results."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    monkeypatch.chdir(clone)
    assert main(["run", "experiments/pos_emb_ablation.yaml", "--cell", "0"]) == 0
    assert list((clone / "results" / "scratch" / "pos_emb_ablation" / "runs").iterdir())
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, text=True,
                            capture_output=True, check=True).stdout
    assert status == ""


def test_an_experiment_file_names_its_scales(tmp_path):
    with pytest.raises(ExperimentError, match="--scale 'huge' is not one of"):
        Experiment(POS_EMB).expand("huge")
