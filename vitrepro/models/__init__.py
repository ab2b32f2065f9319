"""Model architectures as plain ``nn.Module``s (no Lightning) and the registry of named variants.

Families: ViT (``vit.py``), BiT ResNetV2 (``bit.py``), hybrid R50+ViT (``hybrid.py``); weight
conversion from timm state_dicts and Google's ``.npz`` checkpoints in ``convert.py``.
"""
from .bit import BIT_DEPTHS, BiTConfig, BiTResNet
from .hybrid import HybridConfig, HybridVisionTransformer
from .posemb import POSEMB_KINDS, POSEMB_PLACEMENTS, resample_posemb_grid
from .registry import (create_model, decode_bit_variant, decode_vit_variant, list_models, model_config,
                       model_defaults, model_family, register_model)
from .vit import POOLS, ViTConfig, VisionTransformer

__all__ = ["create_model", "list_models", "model_config", "model_defaults", "model_family", "register_model",
           "decode_vit_variant", "decode_bit_variant", "ViTConfig", "VisionTransformer", "BiTConfig", "BiTResNet",
           "BIT_DEPTHS", "HybridConfig", "HybridVisionTransformer", "POSEMB_KINDS", "POSEMB_PLACEMENTS", "POOLS",
           "resample_posemb_grid"]
