"""Reports that put our runs beside the ViT paper's numbers (Dosovitskiy et al., ICLR 2021).

``pos_emb``: Table 8 (Appendix D.4), the position-embedding ablation.
``data_size``: Figures 3 and 4 (Sec. 4.3), transfer accuracy versus pre-training data size.
``compute``: Figure 5 and Table 6 (Sec. 4.4), transfer accuracy versus pre-training compute.
``few_shot``: few-shot linear accuracy versus shots (Sec. 4.1, App. B.2).
``inspection``: the inspection figures of Sec. 4.5 (Figures 6, 7), ``vitrepro analyze``.
``figures``: every report and figure redrawn from results, ``vitrepro figures``.
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
from vitrepro.report import compute, data_size, few_shot

#: Report kinds an experiment file can name under ``report.kind``:
#: ``fn(runs_csv, paper_csv, out_dir, scale) -> [written paths]``.
REPORTS = {"pos_emb_table8": write_report, "data_size_scaling": data_size.write_report,
           "compute_transfer": compute.write_report, "few_shot_curves": few_shot.write_report}

__all__ = [
    "REPORTS",
    "compute",
    "few_shot",
    "data_size",
    "describe_runs",
    "load_paper",
    "load_runs",
    "plot_table8",
    "summarize",
    "table8_markdown",
    "write_report",
]
