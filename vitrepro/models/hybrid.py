"""Hybrid ViT: a ResNet root and stages feed the Transformer with 1x1 patches of their feature map
(paper Sec. 3.1 "Hybrid Architecture", Table 6; vit_jax ``models_vit.py`` with ``resnet`` set).

The paper's two R50 variants (Sec. 3.1, footnote and App. D.1):

- total stride 32: the output of stage 4 of R50 (blocks 3, 4, 6, 3): ``R50+ViT-B/32``, ``R50+ViT-L/32``;
- total stride 16: stage 4 removed and its blocks moved into stage 3 (blocks 3, 4, 9), so the same
  number of layers ends at stride 16: ``R50+ViT-B/16``, ``R50+ViT-L/16``. With 1000 classes at 224,
  R50+ViT-B/16 has 98,659,112 parameters (vit_jax ``models_test.py``).

The ResNet is the post-activation "ResNet v1 with GroupNorm" of vit_jax ``models_resnet.py``
(``BiTResNet(preact=False)``: StdConv + GroupNorm, SAME padding, zero-initialized ``gn3`` scale, no
classifier), as timm's ``_resnetv2`` backbone of ``vit_base_r50_s16_224`` in
``timm/models/vision_transformer_hybrid.py``. Its output (B, 256 * 2^(stages-1) * width_factor, H/s,
W/s) goes through the ViT's ``embedding`` conv (``patch_size`` x ``patch_size``, 1 for the paper) and
then through the unchanged ViT: class token, every position-embedding option, encoder, pool, head.

Module names: ``resnet`` (timm's ``stem.{conv, norm}``, ``stages.{s}.blocks.{b}.{conv1, norm1, conv2,
norm2, conv3, norm3, downsample.{conv, norm}}`` = vit_jax ``conv_root``, ``gn_root``,
``block{s+1}/unit{b+1}/{conv1, gn1, ..., conv_proj, gn_proj}``), then the ViT's names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .bit import BiTConfig, BiTResNet
from .vit import ViTConfig, VisionTransformer


@dataclass
class HybridConfig(ViTConfig):
    """A ``ViTConfig`` plus the ResNet: ``resnet_layers`` (blocks per stage; (3, 4, 9) for stride 16,
    (3, 4, 6, 3) for stride 32) and ``resnet_width_factor``. ``patch_size`` is in feature-map cells
    (default 1). Defaults: R50+ViT-B/16 at 224 with 1000 classes. Raises ``ValueError`` on a bad value,
    e.g. an ``img_size`` that is not a multiple of the total stride ``resnet_stride * patch_size``.
    """

    family: ClassVar[str] = "hybrid"

    patch_size: int = 1
    resnet_layers: tuple[int, ...] = (3, 4, 9)
    resnet_width_factor: int = 1

    def __post_init__(self):
        self.resnet_layers = tuple(self.resnet_layers)
        super().__post_init__()
        self.resnet_config()  # validates the ResNet fields
        if self.img_size % (self.resnet_stride * self.patch_size):
            raise ValueError(f"img_size={self.img_size} is not a multiple of the total stride "
                             f"{self.resnet_stride * self.patch_size} (ResNet stride {self.resnet_stride} "
                             f"x patch_size {self.patch_size})")

    def resnet_config(self) -> BiTConfig:
        """The ResNet part: post-activation, no classifier."""
        return BiTConfig(img_size=self.img_size, layers=self.resnet_layers, width_factor=self.resnet_width_factor,
                         num_classes=0, in_chans=self.in_chans, preact=False)

    @property
    def resnet_stride(self) -> int:
        return 4 * 2 ** (len(self.resnet_layers) - 1)

    @property
    def resnet_channels(self) -> int:
        return 256 * 2 ** (len(self.resnet_layers) - 1) * self.resnet_width_factor

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.img_size // (self.resnet_stride * self.patch_size)
        return (g, g)


class HybridVisionTransformer(VisionTransformer):
    """R50+ViT: ``resnet`` -> ``embedding`` (1x1 conv) -> the ViT. The same API as ``VisionTransformer``
    (``forward_features`` (B, L, D), ``return_attention``, ``forward_head``, ``reset_classifier``,
    ``set_input_size``); input (B, C, img_size, img_size). ``HybridVisionTransformer(cfg)`` or
    ``(**fields)`` (see ``HybridConfig``).
    """

    config_class: ClassVar[type] = HybridConfig

    def __init__(self, cfg: HybridConfig | None = None, **kwargs):
        if cfg is None:
            cfg = HybridConfig(**kwargs)
            kwargs = {}
        if not isinstance(cfg, HybridConfig):
            raise TypeError(f"expected a HybridConfig, got {type(cfg).__name__}")
        super().__init__(cfg, **kwargs)

    def _make_embedding(self, cfg: HybridConfig) -> nn.Module:
        self.resnet = BiTResNet(cfg.resnet_config())
        return nn.Conv2d(cfg.resnet_channels, cfg.width, cfg.patch_size, stride=cfg.patch_size)

    def set_input_size(self, img_size: int, interpolation: str = "bilinear", align_corners: bool = True) -> None:
        """As ``VisionTransformer.set_input_size``, on the grid of img_size / (ResNet stride x patch size)."""
        super().set_input_size(img_size, interpolation, align_corners)
        self.resnet.set_input_size(img_size)

    def _embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> ResNet features (B, C', H/s, W/s) -> embedded grid (B, D, gh, gw)."""
        return self.embedding(self.resnet.forward_features(x))


__all__ = ["HybridConfig", "HybridVisionTransformer"]
