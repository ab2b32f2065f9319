"""Compute accounting: the attention products are counted, and Table 6's exaFLOPs follow from our models."""
import json

import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT
from vitrepro.cost import EXA, JFT_IMAGES, forward_flops, training_flops
from vitrepro.models import create_model

TABLE6 = pd.read_csv(ROOT / "results" / "paper" / "table6_compute.csv")
#: How far our count may be from the paper's, per family (measured, ours vs Table 6): ViT -0.2 to +0.0%
#: except ViT-B/32 +2.0%; hybrids +0.0 to +1.5% except R50+ViT-L/16 at 7 epochs, -2.9% (the paper's 859 is
#: not half its own 14-epoch 1668, which we match exactly); BiT ResNets +3.1 to +4.1%.
TOLERANCE = {"ViT": 0.025, "hybrid": 0.03, "BiT": 0.045}


@pytest.mark.slow  # builds the 18 models of Table 6 (on the meta device), 8 s
@pytest.mark.parametrize("row", TABLE6.to_dict("records"), ids=lambda r: f"{r['model']}-{r['epochs']}ep")
def test_table6_exaflops_follow_from_our_models(row):
    with torch.device("meta"):
        model = create_model(row["model"])
    ours = training_flops(forward_flops(model, 224), row["epochs"] * JFT_IMAGES) / EXA
    assert ours == pytest.approx(row["pretrain_exaflops"], rel=TOLERANCE[row["family"]])


def test_the_attention_products_are_counted():
    """ViT-B/16 at 224: the 12 layers' q k^T and attn v add 2 x 2 x 197^2 x 768 FLOPs each to the linear
    layers' count: what FlopCounterMode alone misses on the fused kernel."""
    with torch.device("meta"):
        model = create_model("ViT-B/16")
    total = forward_flops(model, 224)
    attention = 12 * 2 * (2 * 197 * 197 * 768)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fused, torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224, device="meta"))
    assert total - fused.get_total_flops() in (0, attention)  # 0 where the fused kernel is counted itself
    assert total == pytest.approx(35.13e9, rel=1e-3)  # timm: 17.6 GMACs
    assert forward_flops(model) == total  # the model's own resolution


def test_training_flops_is_three_forward_passes_per_image():
    assert training_flops(2.0, 10) == 60.0


def test_a_pretraining_record_carries_its_compute(pretrained_run):
    """Compute is read from the results: images seen, training FLOPs and the measured images/s."""
    record = json.loads((pretrained_run / "record.json").read_text())
    m = record["metrics"]
    config = yaml.safe_load((pretrained_run / "config.yaml").read_text())
    assert m["images_seen"] == m["steps"] * config["config"]["data"]["batch_size"]
    assert m["pretrain_flops"] == pytest.approx(3 * m["gflops"] * 1e9 * m["images_seen"], rel=1e-3)
    assert m["pretrain_petaflops"] == pytest.approx(m["pretrain_flops"] / 1e15, abs=1e-4)
    assert m["images_per_s"] > 0
