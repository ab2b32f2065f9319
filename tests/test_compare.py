"""``vitrepro compare``: a reproduction's runs beside the committed ones and the paper's, by run id."""
import json
import shutil

from conftest import ROOT
from vitrepro.cli import main

POS_EMB = ROOT / "experiments" / "pos_emb_ablation.yaml"
COMMITTED = ROOT / "results" / "pos_emb_ablation"


def test_new_runs_meet_the_committed_runs_they_reproduce_and_the_papers_numbers(tmp_path, capsys):
    mine = tmp_path / "mine" / "pos_emb_ablation"
    shutil.copytree(COMMITTED / "runs" / "none-stem-95ffca21", mine / "runs" / "none-stem-95ffca21")
    record = json.loads((mine / "runs" / "none-stem-95ffca21" / "record.json").read_text())
    committed_5shot = record["metrics"]["fewshot_5"]
    record["metrics"]["fewshot_5"] = committed_5shot + 0.0125  # a reproduction 1.25 points higher
    (mine / "runs" / "none-stem-95ffca21" / "record.json").write_text(json.dumps(record))
    assert main(["compare", str(POS_EMB), "--scale", "cpu", "--results-dir", str(tmp_path / "mine"),
                 "--reference", str(ROOT / "results")]) == 0
    text = (mine / "compare_cpu.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| none-stem-95ffca21 | fewshot_5 "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2:5] == [f"{100 * committed_5shot + 1.25:.2f}", f"{100 * committed_5shot:.2f}", "+1.25"]
    assert cells[5] == "61.38"  # Table 8: no position embedding, ViT-B/16, 5-shot ImageNet
    assert "1 runs in both" in text and "| learned_1d-stem-ee2973a6 | fewshot_5 |  | 45.16 |" in text
    assert main(["compare", str(POS_EMB), "--scale", "paper", "--results-dir", str(tmp_path / "mine")]) == 2
    assert "no finished runs of pos_emb_ablation at scale paper" in capsys.readouterr().err


def test_report_of_a_working_folder_compares_it_with_the_committed_results(tmp_path, capsys):
    mine = tmp_path / "pos_emb_ablation"
    shutil.copytree(COMMITTED / "runs" / "relative-stem-6b7b9083", mine / "runs" / "relative-stem-6b7b9083")
    assert main(["report", str(POS_EMB), "--scale", "cpu", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (mine / "table8_cpu.md").exists() and (mine / "compare_cpu.md").exists()
    assert "| relative-stem-6b7b9083 | fewshot_5 | 43.91 | 43.91 | +0.00 | 64.03 | -20.12 |" in out
