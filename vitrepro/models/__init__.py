"""Model architectures as plain ``nn.Module``s (no Lightning) and the registry of named variants."""
from .posemb import POSEMB_KINDS, POSEMB_PLACEMENTS, resample_posemb_grid
from .registry import create_model, decode_vit_variant, list_models, model_defaults, register_model, vit_config
from .vit import POOLS, ViTConfig, VisionTransformer

__all__ = ["create_model", "list_models", "model_defaults", "register_model", "vit_config", "decode_vit_variant",
           "ViTConfig", "VisionTransformer", "POSEMB_KINDS", "POSEMB_PLACEMENTS", "POOLS", "resample_posemb_grid"]
