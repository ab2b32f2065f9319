"""Files and values a user hands us never run code: CIFAR batches are read by a restricted unpickler, and no
config value imports a module (issue 16)."""
import os
import pickle
from pathlib import Path

import pytest

from test_data import write_cifar10_python
from vitrepro.cli import main
from vitrepro.data.readers import clear_cache, read_cifar_python

ROOT = Path(__file__).resolve().parents[1]
EXP = str(ROOT / "experiments" / "pos_emb_ablation.yaml")


class _Exploit:
    """Unpickling this calls ``os.system`` (what a crafted batch in a shared data folder would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _poison(folder: Path, name: str, marker: Path) -> None:
    with open(folder / name, "wb") as f:
        pickle.dump({b"labels": [0], b"data": _Exploit(marker)}, f, protocol=2)


@pytest.mark.parametrize("name", ["data_batch_3", "batches.meta", "test_batch"])
def test_poisoned_cifar_batch_is_refused_without_running(tmp_path, name):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_python(folder)
    marker = tmp_path / "pwned"
    _poison(folder, name, marker)
    clear_cache()
    with pytest.raises(ValueError, match=rf"{name} is refused as a CIFAR python batch: it names posix.system"):
        read_cifar_python(folder, "test" if name == "test_batch" else "train")
    assert not marker.exists()


def test_official_layouts_still_load(tmp_path):
    """Protocol-2 (bytes keys, as Python-3 tools write) and protocol-5 pickles of numpy arrays."""
    folder = tmp_path / "cifar-10-batches-py"
    ref = write_cifar10_python(folder)
    images, labels, _ = read_cifar_python(folder, "train")
    assert labels.tolist() == ref["train_labels"]
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"labels": [1, 2], "data": ref["train_data"][:2]}, f, protocol=5)
    images, labels, _ = read_cifar_python(folder, "test")
    assert labels.tolist() == [1, 2] and (images.reshape(2, -1) == ref["train_data"][:2]).all()


def test_dry_run_names_a_poisoned_data_set_by_its_root(tmp_path, capsys):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    write_cifar10_python(folder)
    marker = tmp_path / "pwned"
    _poison(folder, "data_batch_1", marker)
    clear_cache()
    assert main(["run", EXP, "--dry-run", "--data-root", str(folder.parent)]) == 0
    assert not marker.exists() and f"root: {folder.parent}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["run", EXP, "--cell", "0", "--results-dir"],
    ["fewshot", "--model", "ViT-C/4", "--model.depth=1", "--shots", "1", "--seeds", "0"],
])
def test_poisoned_batch_through_the_cli(tmp_path, capsys, argv):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    write_cifar10_python(folder, n_per_batch=12, n_test=10)
    marker = tmp_path / "pwned"
    _poison(folder, "data_batch_1", marker)
    clear_cache()
    out = tmp_path / "out"
    code = main([*argv, *([str(out)] if argv[-1] == "--results-dir" else []), "--data-root", str(folder.parent)])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists(), err
    assert "data_batch_1 is refused as a CIFAR python batch" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
