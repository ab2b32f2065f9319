"""Start-up time of the ``vitrepro`` command line, in seconds: what a user waits for before anything runs.

``--help``, ``run --help``, ``collect`` and ``compare`` must not import torch or Lightning (target: under 2 s);
``report`` draws its figure (matplotlib, seaborn) without torch; ``models`` builds every registered model on
the ``meta`` device, so it pays for importing torch and timm. The results commands read the committed
``results/`` (``compare`` and ``report`` write into a temporary copy of it). Each command runs
``--repeats`` times as a fresh process; ``seconds`` is the median, ``min_s`` the fastest.

    python benchmarks/cli_startup.py [--repeats 5] [--out results/benchmarks]

Prints a table and appends it, with the command, hardware and versions, to ``<out>/cli_startup.csv``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from _record import append_results
from vitrepro.experiments.runner import hardware_description

EXP = "experiments/pos_emb_ablation.yaml"
COMMANDS = (["--help"], ["run", "--help"], ["collect", EXP, "--results-dir", "{tmp}"],
            ["compare", EXP, "--scale", "cpu", "--results-dir", "{tmp}", "--reference", "results"],
            ["report", EXP, "--scale", "cpu", "--results-dir", "{tmp}", "--reference", "{tmp}"],
            ["run", EXP, "--dry-run"], ["models", "vit"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="results/benchmarks")
    args = p.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    rows = []
    tmp = Path(tempfile.mkdtemp())
    shutil.copytree(root / "results" / "pos_emb_ablation", tmp / "pos_emb_ablation",
                    ignore=shutil.ignore_patterns("*.png", "*.md"))
    for cmd in COMMANDS:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vitrepro", *[c.format(tmp=tmp) for c in cmd]], cwd=root, check=True,
                           capture_output=True)
            times.append(time.perf_counter() - t0)
        rows.append({"command_line": "vitrepro " + " ".join(cmd).replace("{tmp}", "TMP"), "repeats": args.repeats,
                     "seconds": round(statistics.median(times), 3), "min_s": round(min(times), 3)})
    df = pd.DataFrame(rows)
    df["data"] = "none (command-line start-up)"
    df["hardware"] = hardware_description()
    print(df[["command_line", "repeats", "seconds", "min_s"]].to_string(index=False))
    append_results(df, "cli_startup.py", argv, Path(args.out) / "cli_startup.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
