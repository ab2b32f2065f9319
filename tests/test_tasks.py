"""ClassificationTask: the paper's schedule, which parameters are decayed, the losses."""
import math
from types import SimpleNamespace

import pytest
import torch

from vitrepro.models import create_model
from vitrepro.tasks import ClassificationTask, OptimConfig, warmup_decay


def test_warmup_then_linear_or_cosine_decay_to_zero():
    total, warmup = 100, 10
    assert warmup_decay(0, total, warmup, "linear") == pytest.approx(0.1)
    assert warmup_decay(9, total, warmup, "cosine") == pytest.approx(1.0)
    assert warmup_decay(10, total, warmup, "linear") == pytest.approx(1.0)
    assert warmup_decay(55, total, warmup, "linear") == pytest.approx(0.5)
    assert warmup_decay(55, total, warmup, "cosine") == pytest.approx(0.5)
    assert warmup_decay(32, total, warmup, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 22 / 90)))
    assert warmup_decay(100, total, warmup, "linear") == pytest.approx(0.0)
    assert warmup_decay(100, total, warmup, "cosine") == pytest.approx(0.0)
    assert warmup_decay(70, total, 0, "constant") == 1.0


def make_task(**optim):
    task = ClassificationTask(create_model("ViT-C/4", depth=1, posemb="learned_2d"), 10, OptimConfig(**optim))
    task.trainer = SimpleNamespace(estimated_stepping_batches=200)  # what configure_optimizers reads
    return task


def test_pretraining_with_sgd_and_momentum_is_a_config_choice():
    """Table 7 (App. D.1): the paper's Adam or BiT's SGD with momentum, the same parameter groups."""
    opt = make_task(optimizer="sgd", lr=0.03, momentum=0.8, weight_decay=1e-4).configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.8 and opt.defaults["lr"] == 0.03
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    assert isinstance(make_task().configure_optimizers()["optimizer"], torch.optim.AdamW)


def test_weight_decay_only_on_dense_and_conv_kernels():
    task = make_task(weight_decay=0.3, warmup_fraction=0.1)
    conf = task.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.3 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in task.model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    assert "embedding.weight" in decayed_names and "head.weight" in decayed_names
    assert "transformer.encoderblock.0.attn.qkv.weight" in decayed_names
    assert not any(n.endswith("bias") or "pos_embedding" in n or "cls" in n or "ln_" in n for n in decayed_names)
    assert len(decayed["params"]) + len(plain["params"]) == len(list(task.model.parameters()))
    assert (opt.defaults["betas"], opt.defaults["lr"]) == ((0.9, 0.999), 1e-3)
    assert conf["lr_scheduler"]["interval"] == "step"
    assert sched.get_last_lr()[0] == pytest.approx(1e-3 / 20)  # step 0 of a 20-step warmup


def test_losses():
    logits, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    plain = make_task().loss(logits, y)
    assert plain == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    smoothed = ClassificationTask(torch.nn.Identity(), 3, OptimConfig(label_smoothing=0.1)).loss(logits, y)
    assert smoothed > plain
    sig = ClassificationTask(torch.nn.Identity(), 3, OptimConfig(loss="sigmoid_xent")).loss(logits, y)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0, 0.0, 0.0]]),
                                                                     reduction="sum")
    assert sig == pytest.approx(expected.item())


def test_bad_optim_values():
    with pytest.raises(ValueError, match="schedule='step' is not one of linear, cosine, constant"):
        OptimConfig(schedule="step")
    with pytest.raises(ValueError, match="loss='hinge' is not one of softmax_xent, sigmoid_xent"):
        OptimConfig(loss="hinge")
