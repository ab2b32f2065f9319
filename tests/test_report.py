"""Tests for vitrepro.report.pos_emb (Table 8, App. D.4 of the ViT paper).

The runs.csv built here is SYNTHETIC: it tests the table code, not results. Each cell gets a
distinct value so a number landing in the wrong cell is caught.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vitrepro.report.pos_emb import (
    describe_runs,
    load_paper,
    load_runs,
    summarize,
    table8_markdown,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]
PAPER_CSV = REPO / "results" / "paper" / "table8_pos_emb.csv"
DASH = "\u2013"

PAPER_VALUES = {
    ("none", "stem"): 0.61382,
    ("learned_1d", "stem"): 0.64206,
    ("learned_1d", "every_layer"): 0.63964,
    ("learned_1d", "every_layer_shared"): 0.64292,
    ("learned_2d", "stem"): 0.64001,
    ("learned_2d", "every_layer"): 0.64046,
    ("learned_2d", "every_layer_shared"): 0.64022,
    ("relative", "stem"): 0.64032,
}

# (posemb, placement, seed, fewshot_5, top1, fewshot_1) -- synthetic, distinct per cell.
CPU_ROWS = [
    ("none", "stem", 0, 0.30, 0.50, 0.10),
    ("none", "stem", 1, 0.32, 0.54, 0.12),
    ("learned_1d", "stem", 0, 0.41, 0.61, 0.21),
    ("learned_1d", "every_layer", 0, 0.42, 0.62, 0.22),
    ("learned_1d", "every_layer_shared", 0, 0.43, 0.63, 0.23),
    ("learned_1d", "every_layer_shared", 1, 0.44, 0.64, 0.24),
    ("learned_1d", "every_layer_shared", 2, 0.45, 0.65, 0.25),
    ("learned_2d", "stem", 0, 0.51, 0.71, 0.31),
    ("learned_2d", "every_layer", 0, 0.52, 0.72, 0.32),
    ("learned_2d", "every_layer_shared", 0, 0.53, 0.73, None),  # 1-shot not evaluated
    # relative/stem deliberately not run at scale cpu
]


def _row(posemb, placement, seed, f5, top1, f1, scale="cpu"):
    return {
        "run_id": f"{scale}-{posemb}-{placement}-{seed}",
        "experiment": "pos_emb_ablation",
        "scale": scale,
        "model": "vit_tiny_p4",
        "posemb": posemb,
        "posemb_placement": placement,
        "seed": seed,
        "params": 5_000_000,
        "gflops": 0.1,
        "train_images": 50000,
        "epochs": 10,
        "steps": 1000,
        "top1": top1,
        "fewshot_1": f1,
        "fewshot_5": f5,
        "fewshot_10": None if f5 is None else f5 + 0.05,
        "fewshot_25": None if f5 is None else f5 + 0.08,
        "fewshot_1_std": None,
        "fewshot_5_std": 0.01,
        "fewshot_10_std": None,
        "fewshot_25_std": None,
        "wall_s": 100.0,
        "hardware": "2 CPU cores",
        "data": "cifar10 (synthetic test)",
        "command": "vitrepro fit ...",
        "finished_at": "2025-01-01T00:00:00",
    }


@pytest.fixture
def runs_csv(tmp_path: Path) -> Path:
    rows = [_row(*r) for r in CPU_ROWS]
    # other scales in the same file must be ignored, including a relative/stem row
    rows.append(_row("relative", "stem", 0, 0.99, 0.99, 0.99, scale="smoke"))
    rows.append(_row("none", "stem", 0, 0.98, 0.98, 0.98, scale="smoke"))
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _grid(md: str) -> dict[str, list[str]]:
    """Rows of the 4x3 grid: display name -> [stem, every_layer, every_layer_shared] cells."""
    grid = {}
    in_grid = False
    for line in md.splitlines():
        if line.startswith("| Pos. emb. | Default/Stem |"):
            in_grid = True
            continue
        if in_grid and line.startswith("|:"):
            continue
        if in_grid and line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            grid[cells[0]] = cells[1:]
        elif in_grid:
            break
    return grid


def _long(md: str) -> dict[tuple[str, str], list[str]]:
    rows, header = {}, None
    for line in md.splitlines():
        if line.startswith("| Pos. emb. | Placement |"):
            header = [c.strip() for c in line.strip().strip("|").split("|")]
            continue
        if header and line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[(cells[0], cells[1])] = dict(zip(header, cells))
        elif header and not line.startswith("|"):
            break
    return rows


def test_paper_csv_has_table8_values():
    paper = load_paper(PAPER_CSV)
    assert len(paper) == 8
    got = {(r.posemb, r.posemb_placement): r.fewshot_5 for r in paper.itertuples()}
    assert got == PAPER_VALUES
    assert list(paper.columns) == [
        "posemb", "posemb_placement", "fewshot_5", "model", "dataset", "metric", "source"
    ]
    assert set(paper["model"]) == {"ViT-B/16"}
    assert set(paper["dataset"]) == {"ImageNet"}
    assert set(paper["metric"]) == {"5-shot linear accuracy"}
    assert set(paper["source"]) == {"Dosovitskiy et al. 2021, Table 8 (App. D.4)"}


def test_load_runs_filters_scale(runs_csv):
    assert len(load_runs(runs_csv)) == len(CPU_ROWS) + 2
    cpu = load_runs(runs_csv, scale="cpu")
    assert len(cpu) == len(CPU_ROWS)
    assert set(cpu["scale"]) == {"cpu"}
    assert cpu["fewshot_1"].isna().sum() == 1


def test_unknown_scale_raises_naming_scales(runs_csv):
    with pytest.raises(ValueError) as err:
        load_runs(runs_csv, scale="paper")
    msg = str(err.value)
    assert "runs.csv" in msg and "'paper'" in msg
    assert "cpu" in msg and "smoke" in msg
    with pytest.raises(ValueError, match="cpu, smoke"):
        write_report(runs_csv, PAPER_CSV, runs_csv.parent / "out", scale="local")


def test_summarize_averages_seeds(runs_csv):
    s = summarize(load_runs(runs_csv, scale="cpu"))
    assert len(s) == 7  # relative/stem not run at this scale
    cell = s.set_index(["posemb", "posemb_placement"])
    none = cell.loc[("none", "stem")]
    assert none["n"] == 2 and none["n_runs"] == 2
    assert none["mean"] == pytest.approx(0.31)
    assert none["std"] == pytest.approx(math.sqrt(2) * 0.01)  # sample std of 0.30, 0.32
    assert none["top1"] == pytest.approx(0.52)
    assert none["fewshot_1"] == pytest.approx(0.11)
    assert none["seeds"] == "0,1"
    shared = cell.loc[("learned_1d", "every_layer_shared")]
    assert shared["n"] == 3 and shared["mean"] == pytest.approx(0.44) and shared["std"] == pytest.approx(0.01)
    single = cell.loc[("learned_2d", "stem")]
    assert single["n"] == 1 and single["mean"] == pytest.approx(0.51) and math.isnan(single["std"])
    assert math.isnan(cell.loc[("learned_2d", "every_layer_shared"), "fewshot_1"])
    # paper order
    assert list(s["posemb"]) == ["none", "learned_1d", "learned_1d", "learned_1d",
                                 "learned_2d", "learned_2d", "learned_2d"]


def test_grid_cells(runs_csv):
    runs = load_runs(runs_csv, scale="cpu")
    md = table8_markdown(summarize(runs), load_paper(PAPER_CSV))
    grid = _grid(md)
    assert list(grid) == ["None", "1-D", "2-D", "Relative"]
    assert grid["None"] == ["31.00 ± 1.41 (61.38)", "N/A", "N/A"]
    assert grid["1-D"] == ["41.00 (64.21)", "42.00 (63.96)", "44.00 ± 1.00 (64.29)"]
    assert grid["2-D"] == ["51.00 (64.00)", "52.00 (64.05)", "53.00 (64.02)"]
    assert grid["Relative"] == [f"{DASH} (64.03)", "N/A", "N/A"]  # not run: never filled
    assert "99.00" not in md and "98.00" not in md  # smoke rows stay out


def test_cell_without_metric_is_not_filled(runs_csv, tmp_path):
    runs = load_runs(runs_csv, scale="cpu")
    extra = runs.iloc[[0]].copy()
    extra[["posemb", "posemb_placement", "fewshot_5"]] = ["relative", "stem", float("nan")]
    runs = pd.concat([runs, extra], ignore_index=True)
    md = table8_markdown(summarize(runs), load_paper(PAPER_CSV))
    assert _grid(md)["Relative"][0] == f"{DASH} (64.03)"
    assert _long(md)[("Relative", "Default/Stem")]["n"] == "0 (of 1 runs)"


def test_long_table(runs_csv):
    md = table8_markdown(summarize(load_runs(runs_csv, scale="cpu")), load_paper(PAPER_CSV))
    rows = _long(md)
    assert len(rows) == 7
    r = rows[("1-D", "Default/Stem")]
    assert r["n"] == "1"
    assert r["ours 5-shot (%)"] == "41.00"
    assert r["ours 1-shot (%)"] == "21.00"
    assert r["ours 10-shot (%)"] == "46.00"
    assert r["ours 25-shot (%)"] == "49.00"
    assert r["ours top-1 (%)"] == "61.00"
    assert r["paper 5-shot (%)"] == "64.21"
    assert r["ours 5-shot − ours None (pp)"] == "+10.00"
    assert r["paper − paper None (pp)"] == "+2.82"
    none = rows[("None", "Default/Stem")]
    assert none["ours 5-shot (%)"] == "31.00 ± 1.41" and none["n"] == "2"
    assert none["ours 5-shot − ours None (pp)"] == "+0.00"
    assert rows[("2-D", "Every layer-shared")]["ours 1-shot (%)"] == DASH


def test_header_line(runs_csv):
    runs = load_runs(runs_csv, scale="cpu")
    line = describe_runs(runs, "cpu")
    assert "`cpu`" in line and "vit_tiny_p4" in line and "cifar10 (synthetic test)" in line
    assert "2 CPU cores" in line and "16.7 min (1000 s)" in line and "10 run(s)" in line


def test_write_report(runs_csv, tmp_path):
    out = tmp_path / "report"
    paths = write_report(runs_csv, PAPER_CSV, out, scale="cpu")
    assert paths == [out / "table8_cpu.md", out / "table8_cpu.png"]
    md = paths[0].read_text(encoding="utf-8")
    assert "scale `cpu`" in md and "31.00 ± 1.41 (61.38)" in md
    png = paths[1].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 20_000
    import matplotlib.image as mpimg

    img = mpimg.imread(paths[1])
    assert img.shape[0] > 400 and img.shape[1] > 1000  # 13x4.8 in at dpi 120
    assert img[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.slow  # a subprocess that starts pandas and matplotlib
def test_analysis_script_runs(runs_csv, tmp_path):
    out = tmp_path / "script_out"
    cmd = [sys.executable, str(REPO / "analysis" / "pos_emb_ablation.py"), "--runs", str(runs_csv),
           "--paper", str(PAPER_CSV), "--out", str(out), "--scale", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = [Path(p) for p in done.stdout.split()]
    assert printed == [out / "table8_cpu.md", out / "table8_cpu.png"]
    assert all(p.is_file() for p in printed)
    bad = subprocess.run(cmd[:-1] + ["nosuch"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "cpu, smoke" in bad.stderr
