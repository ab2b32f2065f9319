"""Few-shot linear accuracy of any checkpoint: a run of ours, a timm state_dict or a Google ``.npz``.

``vitrepro fewshot results/pos_emb_ablation/runs/<run_id> --data-root DIR`` reads the run's
``config.yaml`` (data) and checkpoint (``models.checkpoint.resolve_weights``); ``vitrepro fewshot --model ViT-B/16
--checkpoint weights.npz --data-root DIR --img-size 224`` evaluates outside weights. The probe is the
paper's (``fewshot.py``): pre-logits features, closed-form least squares, 1/5/10/25 shots, 3 seeds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..data import ImageClassificationDataModule
from ..models.checkpoint import load_pretrained
from .fewshot import DEFAULT_L2_REG, evaluate_fewshot, extract_features


def fewshot_of_checkpoint(model: dict[str, Any], checkpoint: str | Path | None, data: dict[str, Any],
                          shots: Sequence[int] = (1, 5, 10, 25), seeds: Sequence[int] = (0, 1, 2),
                          l2_reg: float = DEFAULT_L2_REG, batch_size: int = 256) -> dict[str, Any]:
    """Few-shot accuracies (fractions, mean and std over seeds; ``data``: the data set it read, as
    ``describe()`` says) of the model ``model["name"]`` (plus its
    architecture fields) with weights from ``checkpoint`` (None: random init), on ``data`` (arguments of
    ``ImageClassificationDataModule``): shots drawn from its training split, scored on its test split.

    Raises what ``load_pretrained`` raises for a checkpoint of the wrong family or size.
    """
    dm = ImageClassificationDataModule(**data)
    dm.setup()
    # the head is replaced; the resolution is the data's (a checkpoint at another one is resampled)
    fields = {k: v for k, v in model.items() if k not in ("num_classes", "img_size")}
    net = load_pretrained(fields.pop("name"), checkpoint, num_classes=dm.num_classes, img_size=dm.img_size, **fields)
    feats, labels = extract_features(net.eval(), dm.test_set, batch_size=batch_size)
    out = evaluate_fewshot(net, dm.fewshot_pool(), dm.fewshot_pool_labels(), feats, labels, dm.num_classes,
                           shots=shots, seeds=seeds, l2_reg=l2_reg, batch_size=batch_size)
    return {**out, "data": dm.describe()}
