"""Position-embedding ablation: our runs beside the ViT paper's Table 8 (App. D.4).

Draws the paper's ViT-B/16 ImageNet 5-shot linear accuracies for the 8 (position embedding x
placement) cells of Table 8 next to ours (seed means, std over seeds), as

- ``<out>/table8_<scale>.md``: the 4x3 grid "ours ± std (paper)" in percent, a per-cell table
  (1/5/10/25-shot, top-1, differences to the no-position-embedding cell) and a header line with
  scale, model(s), data, hardware and total wall time;
- ``<out>/table8_<scale>.png``: two bar panels, paper (left) and ours (right), x = position
  embedding, hue = placement, dashed line at the "None" cell.

Command (from the repository root)::

    python analysis/pos_emb_ablation.py --runs results/pos_emb_ablation/runs.csv \\
        --paper results/paper/table8_pos_emb.csv --out results/pos_emb_ablation --scale cpu

Exits with an error naming the scales present if runs.csv has no row for ``--scale``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from vitrepro.report.pos_emb import write_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("results/pos_emb_ablation/runs.csv"),
                        help="runs.csv written by the experiment runner")
    parser.add_argument("--paper", type=Path, default=Path("results/paper/table8_pos_emb.csv"),
                        help="the paper's Table 8 values")
    parser.add_argument("--out", type=Path, default=Path("results/pos_emb_ablation"),
                        help="folder for table8_<scale>.md and .png")
    parser.add_argument("--scale", default="cpu", help="which rows of runs.csv (smoke, local, cpu, paper)")
    args = parser.parse_args(argv)
    try:
        paths = write_report(args.runs, args.paper, args.out, args.scale)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
