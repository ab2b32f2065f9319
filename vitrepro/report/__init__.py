"""Reports that put our runs beside the ViT paper's numbers (Dosovitskiy et al., ICLR 2021).

``pos_emb``: Table 8 (Appendix D.4), the position-embedding ablation.
``data_size``: Figures 3 and 4 (Sec. 4.3), transfer accuracy versus pre-training data size.
``compute_transfer``: Figure 5 and Table 6 (Sec. 4.4), transfer accuracy versus pre-training compute.
``few_shot``: few-shot linear accuracy versus shots (Sec. 4.1, App. B.2).
``pool_curves``: class token vs global average pooling over learning rates (Figure 9, App. D.3).
``model_scaling``: one dimension of a ViT scaled at a time (Figure 8, App. D.2).
``optimizer``: ResNets pre-trained with Adam vs SGD (Table 7, App. D.1).
``transfer``: a checkpoint fine-tuned and probed on another data set (Sec. 3.2, Tables 2, 5, 6).
``recipe``: the from-scratch recipe comparison on CIFAR-10 (not a result of the paper; DeiT's recipe).
``inspection``: the inspection figures of Sec. 4.5 (Figures 6, 7), ``vitrepro analyze``.
``figures``: every report and figure redrawn from results, ``vitrepro figures``.

The report kinds are listed once, in ``REPORT_KINDS``; a kind's module is imported only when its report
is drawn (no plotting library, no torch at start-up).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import NamedTuple


class ReportKind(NamedTuple):
    """A report an experiment file can name under ``report.kind``: the module whose
    ``write_report(runs_csv, paper_csv, out_dir, scale) -> [written paths]`` draws it, and the grid keys
    (last dotted component) every cell must set for the report to tell the runs apart."""

    module: str
    cell_keys: tuple[str, ...] = ()


REPORT_KINDS: dict[str, ReportKind] = {
    "pos_emb_table8": ReportKind("pos_emb", ("posemb", "posemb_placement")),
    "data_size_scaling": ReportKind("data_size", ("train_size",)),
    "compute_transfer": ReportKind("compute_transfer"),
    "few_shot_curves": ReportKind("few_shot"),
    "recipe_comparison": ReportKind("recipe"),
    "pool_curves": ReportKind("pool_curves", ("pool", "lr")),
    "optimizer_table7": ReportKind("optimizer", ("optimizer",)),
    "model_scaling": ReportKind("model_scaling"),
    "mpp_comparison": ReportKind("mpp_comparison", ("task",)),
    "transfer": ReportKind("transfer"),
}


def write_kind(kind: str, runs_csv: Path, paper_csv: Path | None, out_dir: Path, scale: str) -> list[Path]:
    """Draw the report ``kind`` (a key of ``REPORT_KINDS``; ``KeyError`` otherwise); return the written paths."""
    module = importlib.import_module(f"{__name__}.{REPORT_KINDS[kind].module}")
    return module.write_report(runs_csv, paper_csv, out_dir, scale)


def write_experiment_report(exp, runs_csv: Path, scale: str) -> list[Path]:
    """Write the report the experiment file names (``report.kind``) for ``scale`` beside ``runs_csv``;
    return the written paths (none when the file names no report)."""
    if not exp.report:
        return []
    paper = (exp.path.parent / exp.report["paper"]).resolve() if exp.report.get("paper") else None
    return write_kind(exp.report["kind"], runs_csv, paper, runs_csv.parent, scale)


__all__ = ["REPORT_KINDS", "ReportKind", "write_kind", "write_experiment_report"]
