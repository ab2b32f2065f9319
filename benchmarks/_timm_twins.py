"""timm's model of the same configuration as ours, for the benchmarks that time the two side by side."""
from __future__ import annotations

import timm
import torch
from timm.models.vision_transformer import VisionTransformer as TimmViT

from vitrepro.models import create_model, model_defaults, model_family
from vitrepro.models.convert import vitrepro_to_timm


def make_pair(name: str, img_size: int, num_classes: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our ``name`` and timm's ViT of the same configuration, with the same weights."""
    torch.manual_seed(0)
    ours = create_model(name, num_classes=num_classes, img_size=img_size, head_zero_init=False)
    cfg = ours.cfg
    if model_defaults(name).get("resnet_layers") or cfg.posemb != "learned_1d" or cfg.posemb_placement != "stem" \
            or cfg.representation_size:
        raise ValueError(f"{name}: timm has the plain ViT only (learned_1d at the stem, no pre-logits layer)")
    gap = cfg.pool == "gap"
    ref = TimmViT(img_size=img_size, patch_size=cfg.patch_size, embed_dim=cfg.width, depth=cfg.depth,
                  num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_dim / cfg.width, num_classes=num_classes,
                  class_token=not gap, global_pool="avg" if gap else "token", fc_norm=False if gap else None,
                  drop_rate=cfg.dropout, attn_drop_rate=cfg.attention_dropout)
    ref.load_state_dict(vitrepro_to_timm(ours.state_dict()), strict=True)
    return ours, ref


def timm_twin(name: str, img_size: int, num_classes: int) -> torch.nn.Module | None:
    """timm's model of the same configuration: the plain ViT (``make_pair``), BiT's resnetv2,
    the R50 hybrid ``vit_base_r50_s16_224``; None for a model timm has no twin of."""
    family = model_family(name)
    if family == "ViT":
        return make_pair(name, img_size, num_classes)[1]
    timm_name = {"R50x1": "resnetv2_50x1_bit", "R50+ViT-B/16": "vit_base_r50_s16_224"}.get(name)
    if timm_name is None:
        print(f"{name}: no timm twin (timm has any plain ViT, R50x1 and R50+ViT-B/16); ours alone")
        return None
    kw = {"img_size": img_size} if family == "hybrid" else {}
    return timm.create_model(timm_name, num_classes=num_classes, **kw)


__all__ = ["make_pair", "timm_twin"]
