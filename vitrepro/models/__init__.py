"""Model architectures as plain ``nn.Module``s (no Lightning) and the registry of named variants.

Families: ViT (``vit.py``), BiT ResNetV2 (``bit.py``), hybrid R50+ViT (``hybrid.py``); weight
reading and writing (our checkpoints, timm state_dicts, Google's ``.npz``) in ``checkpoint.py``, with the key
tables of the other layouts in ``convert.py``.
"""
from .bit import BIT_DEPTHS, BiTConfig, BiTResNet
from .checkpoint import (CheckpointMismatchError, checkpoint_model_spec, load_npz, load_pretrained,
                         load_timm_state_dict, model_from_checkpoint, model_spec, resolve_weights, save_npz)
from .hybrid import HybridConfig, HybridVisionTransformer
from .posemb import POSEMB_KINDS, POSEMB_PLACEMENTS, resample_posemb_grid
from .registry import (create_model, decode_bit_variant, decode_vit_variant, list_models, model_config,
                       model_defaults, model_family, register_model)
from .vit import POOLS, ViTConfig, VisionTransformer

__all__ = ["create_model", "list_models", "model_config", "model_defaults", "model_family", "register_model",
           "decode_vit_variant", "decode_bit_variant", "ViTConfig", "VisionTransformer", "BiTConfig", "BiTResNet",
           "BIT_DEPTHS", "HybridConfig", "HybridVisionTransformer", "POSEMB_KINDS", "POSEMB_PLACEMENTS", "POOLS",
           "resample_posemb_grid", "CheckpointMismatchError", "checkpoint_model_spec", "load_npz", "load_pretrained",
           "load_timm_state_dict", "model_from_checkpoint", "model_spec", "resolve_weights", "save_npz"]
