"""The report figures say what a reader needs: same scale in both Table 8 panels, n per bar, the data set
named in full; the paper's Figure 3 beside our data-size curves with a tick at every subset size."""
import pandas as pd

from conftest import ROOT
from vitrepro.report.data_size import load_scaling_runs, plot_scaling
from vitrepro.report.pos_emb import load_paper, load_runs
from vitrepro.report.pos_emb_figure import data_set_name, plot_table8

RESULTS = ROOT / "results"


def test_table8_panels_share_one_scale_of_differences_and_show_n():
    runs = load_runs(RESULTS / "pos_emb_ablation" / "runs.csv", scale="cpu")
    fig = plot_table8(runs, load_paper(RESULTS / "paper" / "table8_pos_emb.csv"), scale="cpu")
    paper_ax, ours_ax = fig.axes[:2]
    assert paper_ax.get_ylim() == ours_ax.get_ylim() and "minus the None cell" in paper_ax.get_ylabel()
    texts = [t.get_text() for t in ours_ax.texts]
    assert "+0.00\nn=2" in texts and len(texts) == 8 and all(t.endswith("n=2") for t in texts)  # every cell n = 2
    one_seed = runs.drop(runs.index[(runs["posemb"] == "relative") & (runs["seed"] == 1)])
    texts = [t.get_text() for t in plot_table8(one_seed, load_paper(RESULTS / "paper" / "table8_pos_emb.csv"),
                                               scale="cpu").axes[1].texts]
    assert sum(t.endswith("n=1") for t in texts) == 1  # a cell with one seed says so
    assert "+2.82" in [t.get_text() for t in paper_ax.texts]  # 64.21 - 61.38, rounded as the table
    assert "CIFAR-10 (train 49,000 / test 10,000)" in ours_ax.get_title()


def test_data_set_names_are_written_in_full():
    desc = ("cifar10 ImageFolder JPEG tree at /x (train 50000, test 10000, fingerprint 5994497ca2b4); split train "
            "49000 / dev 1000 (val_fraction 0.02, seed 0)")
    assert data_set_name(desc) == "CIFAR-10 (train 49,000 / test 10,000)"
    assert data_set_name("imagefolder ImageFolder tree at /y (train 1200, test 400)") == \
        "ImageFolder tree (train 1,200 / test 400)"
    kept = ("cifar10 ImageFolder JPEG tree at /x (train 50000, test 10000, fingerprint 5994497ca2b4); classes 5-9 "
            "of 10 (dog, frog, horse, ship, truck) as 0..4: train 25000, test 5000; split train 24500 / dev 500 "
            "(val_fraction 0.02, seed 0)")
    assert data_set_name(kept) == "CIFAR-10 classes 5-9 (train 24,500 / test 5,000)"  # the subset's own sizes


def test_the_data_size_figure_puts_the_papers_points_beside_ours():
    runs = load_scaling_runs(RESULTS / "data_size_scaling" / "runs.csv", "cpu")
    runs = runs[runs["status"] == "finished"]
    fig = plot_scaling(runs, "cpu", pd.read_csv(RESULTS / "paper" / "fig3_data_size.csv"))
    paper_ax, *ours_axes = fig.axes
    assert "Fig. 3" in paper_ax.get_title() and len(paper_ax.lines) >= 5
    for ax in ours_axes:
        assert sorted(ax.get_xticks()) == sorted(runs["train_size"].unique())
    assert len(fig.legends) == 1 and fig.get_size_inches()[0] == 7.0
