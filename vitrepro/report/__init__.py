"""Reports that put our runs beside the ViT paper's numbers (Dosovitskiy et al., ICLR 2021).

``pos_emb``: Table 8 (Appendix D.4), the position-embedding ablation.
"""

from vitrepro.report.pos_emb import (
    describe_runs,
    load_paper,
    load_runs,
    summarize,
    table8_markdown,
    write_report,
)
from vitrepro.report.pos_emb_figure import plot_table8

#: Report kinds an experiment file can name under ``report.kind``:
#: ``fn(runs_csv, paper_csv, out_dir, scale) -> [written paths]``.
REPORTS = {"pos_emb_table8": write_report}

__all__ = [
    "REPORTS",
    "describe_runs",
    "load_paper",
    "load_runs",
    "plot_table8",
    "summarize",
    "table8_markdown",
    "write_report",
]
