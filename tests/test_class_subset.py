"""data.classes: an upstream and a downstream task cut from one data copy (vitrepro/data/class_subset.py),
on the bundled sample's real JPEG files (40 train + 20 test images a class)."""
import numpy as np
import pytest

from vitrepro.data import ImageClassificationDataModule, resolve_source
from vitrepro.data.class_subset import ClassSubset


def test_a_class_subset_keeps_its_classes_relabelled_in_the_order_given():
    full = resolve_source("cifar10")
    sub = ClassSubset(full, [9, 5, 6])
    assert sub.classes == ["truck", "dog", "frog"] and sub.num_classes == 3
    assert (sub.count("train"), sub.count("test")) == (120, 60)
    labels = sub.labels("train")
    assert sorted(np.unique(labels)) == [0, 1, 2] and (labels == 0).sum() == 40
    samples = sub.samples("train")
    assert all(f"/{sub.classes[lab]}/" in path for path, lab in samples)  # files of the kept class folders
    images, tensor_labels = sub.load_tensors("test")
    assert images.shape == (60, 3, 32, 32) and tensor_labels.tolist() == sub.labels("test").tolist()
    assert sub.fingerprint == full.fingerprint  # the same data copy
    assert "classes 9,5-6 of 10 (truck, dog, frog) as 0..2: train 120, test 60" in sub.describe()


@pytest.mark.parametrize("keep", [[], [0, 0], [10], [-1]])
def test_a_bad_class_list_is_refused_in_one_line_naming_the_allowed_indices(keep):
    with pytest.raises(ValueError, match=r"data.classes must be distinct class indices in 0..9 of cifar10 \(0 airplane"):
        ClassSubset(resolve_source("cifar10"), keep)


def test_the_datamodule_splits_probes_and_tests_on_the_kept_classes_only():
    dm = ImageClassificationDataModule(dataset="cifar10", classes=[5, 6, 7, 8, 9], val_fraction=0.1)
    dm.setup()
    assert dm.num_classes == 5 and dm.classes == ["dog", "frog", "horse", "ship", "truck"]
    assert len(dm.train_set) + len(dm.val_set) == 200 and len(dm.test_set) == 100
    assert set(int(dm.train_set[i][1]) for i in range(len(dm.train_set))) == {0, 1, 2, 3, 4}
    assert sorted(np.unique(dm.fewshot_pool_labels())) == [0, 1, 2, 3, 4] and len(dm.fewshot_pool()) == 200
    assert "classes 5-9 of 10" in dm.describe()


def test_classes_enter_a_runs_identity_only_when_set_and_are_validated_before_training():
    from pathlib import Path

    from vitrepro.experiments import Experiment, ExperimentError

    exp = Experiment(Path(__file__).resolve().parents[1] / "experiments" / "pos_emb_ablation.yaml")
    plain = exp.expand("smoke", cells=[0])[0]
    cut = exp.expand("smoke", {"data.classes": [0, 1, 2, 3, 4], "finetune": {"data": {"classes": [5, 6, 7]}}},
                     cells=[0])[0]
    assert "classes" not in plain.identity()["data"]
    assert cut.identity()["data"]["classes"] == [0, 1, 2, 3, 4] and cut.run_id != plain.run_id
    with pytest.raises(ExperimentError, match="classes"):
        exp.expand("smoke", {"data.classes": "dogs"}, cells=[0])


def test_eval_on_downstream_probes_the_finetuning_classes_and_is_refused_without_a_finetune_section(monkeypatch):
    from pathlib import Path

    import torch

    from vitrepro.experiments import Experiment, ExperimentError, protocols
    from vitrepro.experiments.config_sections import EvalConfig
    from vitrepro.models import create_model

    exp = Experiment(Path(__file__).resolve().parents[1] / "experiments" / "compute_transfer.yaml")
    plain = exp.expand("smoke", cells=[0])[0]
    down = exp.expand("smoke", {"eval.on": "downstream"}, cells=[0])[0]
    assert "on" not in plain.identity()["eval"] and down.run_id != plain.run_id  # committed ids kept at the default
    with pytest.raises(ExperimentError, match=r"eval.on.*allowed: upstream, downstream"):
        Experiment(Path(__file__).resolve().parents[1] / "experiments" / "few_shot.yaml").expand(
            "smoke", {"eval.on": "downstream"}, cells=[0])
    with pytest.raises(ExperimentError, match="upstream, downstream"):
        exp.expand("smoke", {"eval.on": "sideways"}, cells=[0])

    probed = []
    monkeypatch.setattr(protocols, "evaluate_fewshot", lambda model, pool, pool_labels, feats, labels, n, **kw:
                        probed.append((n, sorted(set(labels.tolist())))) or {"fewshot_1": 0.0})
    cfg = {"data": {"dataset": "cifar10", "img_size": 32, "classes": [0, 1, 2]},
           "finetune": {"data": {"classes": [3, 4, 5, 6, 7]}}}
    up = ImageClassificationDataModule(**cfg["data"])
    up.setup()
    torch.manual_seed(0)
    model = create_model("ViT-C/4", depth=1, num_classes=3, img_size=32).eval()
    out = protocols.probe(model, up, cfg, EvalConfig(shots=[1], seeds=[0], on="downstream"))
    assert probed == [(5, [0, 1, 2, 3, 4])] and 0 <= out["top1"] <= 1  # few-shot: 5 downstream classes; top-1: upstream head
    protocols.probe(model, up, cfg, EvalConfig(shots=[1], seeds=[0]))
    assert probed[-1] == (3, [0, 1, 2])
