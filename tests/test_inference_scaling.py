"""Figure 12's largest-batch search (benchmarks/inference_scaling.py) is bounded in memory and time and
brackets the limit it reports (no timing is asserted)."""
import contextlib
import os
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from inference_scaling import search  # noqa: E402

from vitrepro.models import create_model  # noqa: E402

MIB = 2 ** 20
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return create_model("ViT-C/4", num_classes=10, img_size=32).eval()


BUDGET_SEARCHES = """
import contextlib, json, sys, torch
sys.path.insert(0, sys.argv[1])
from inference_scaling import search
from vitrepro.models import create_model
MIB = 2 ** 20
torch.manual_seed(0)
vit = create_model("ViT-C/4", num_classes=10, img_size=32).eval()
held = [torch.empty(int(n), dtype=torch.uint8) for n in torch.randint(MIB, 16 * MIB, (40,))]
del held  # freed memory left mapped, as before a benchmark's first search
out = [search(vit, 32, torch.device("cpu"), mib * MIB, max_batch=4096, seconds=60, repeats=0,
              amp=contextlib.nullcontext()) for mib in (8, 32, 8)]
out.append({"lifted": torch.empty(64 * MIB, dtype=torch.uint8).numel() == 64 * MIB,
            "onednn": torch.backends.mkldnn.enabled})
print(json.dumps(out))
"""


@pytest.mark.slow  # a fresh process, as the benchmark runs: a test worker's earlier tests leave its heap fragmented
def test_the_search_brackets_the_largest_batch_in_a_memory_budget():
    import json
    import subprocess

    proc = subprocess.run([sys.executable, "-c", BUDGET_SEARCHES, str(BENCHMARKS)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    small, larger, again, after = json.loads(proc.stdout.strip().splitlines()[-1])
    assert small["largest_batch_bound"] is None  # memory stopped it, not time or the cap
    assert small["largest_batch"] >= 1 and small["first_batch_not_fitting"] == small["largest_batch"] + 1
    assert larger["largest_batch"] > small["largest_batch"]
    assert again["largest_batch"] < larger["largest_batch"]  # what the larger probes freed is not handed out again
    assert after == {"lifted": True, "onednn": True}  # the budget is lifted afterwards, oneDNN on again


def test_the_search_stops_at_its_batch_cap_and_its_time_bound_and_says_so(vit):
    capped = search(vit, 32, CPU, 512 * MIB, max_batch=4, seconds=60, repeats=1, amp=contextlib.nullcontext())
    assert (capped["largest_batch"], capped["largest_batch_bound"]) == (4, "max_batch")
    assert capped["images_per_s"] > 0 and capped["at_batch"] in (1, 2, 4)
    timed = search(vit, 32, CPU, 512 * MIB, max_batch=1 << 20, seconds=0.0, repeats=1, amp=contextlib.nullcontext())
    assert timed["largest_batch_bound"] == "time" and timed["first_batch_not_fitting"] is None


@pytest.mark.slow  # a subprocess that imports torch
def test_the_committed_figure_is_redrawn_from_its_csv(tmp_path):
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "results" / "benchmarks" / "inference_scaling.csv", tmp_path)
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "inference_scaling.py"), "--redraw", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "inference_scaling.png").stat().st_size > 10_000
