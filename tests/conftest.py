"""Fixtures shared by the test modules: data sets written once per session, the environment kept clean."""
from pathlib import Path

import pytest

from vitrepro.data.shapes import write_shapes_imagefolder

ROOT = Path(__file__).resolve().parents[1]
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
