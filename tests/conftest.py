"""Fixtures shared by the test modules: data sets written once per session, the environment kept clean."""
import os
from pathlib import Path

import pytest
import torch

import pandas as pd

from vitrepro.cli import main
from vitrepro.data.shapes import write_shapes_imagefolder

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N processes share the cores, one thread each
    torch.set_num_threads(1)
CIFAR_JPEG = ROOT.parent / "shared" / "data" / "cifar10-jpeg"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No data root, checkpoint or results folder leaks in from the caller's shell."""
    for name in ("VITREPRO_DATA", "VITREPRO_CHECKPOINT", "VITREPRO_RESULTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def shapes_tree(tmp_path_factory) -> Path:
    """The drawn-shapes ImageFolder of ``python -m vitrepro.data.shapes DIR`` (default sizes), as the
    committed transfer runs used it: same generator, same files, another path."""
    return write_shapes_imagefolder(tmp_path_factory.mktemp("shapes") / "shapes")


@pytest.fixture(scope="session")
def pretrained_run(tmp_path_factory) -> Path:
    """One smoke-scale run of the position-embedding experiment (ViT-C/4, depth 2, learned 1-D, cell 1),
    shared by the tests that only read it: its run directory (record, config, checkpoint)."""
    out = tmp_path_factory.mktemp("pretrained")
    assert main(["run", str(ROOT / "experiments" / "pos_emb_ablation.yaml"), "--cell", "1",
                 "--results-dir", str(out)]) == 0
    row = pd.read_csv(out / "pos_emb_ablation" / "runs.csv").iloc[0]
    return out / "pos_emb_ablation" / "runs" / row["run_id"]
