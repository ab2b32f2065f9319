"""BiT ResNets (Kolesnikov et al. 2020), the CNN baselines of the ViT paper (Sec. 4.1, Table 6).

"ResNet (BiT)": Group Normalization (32 groups) instead of BatchNorm and weight-standardized
convolutions. Built on timm's ``ResNetV2`` (``timm/models/resnetv2.py``), configured as timm's
``resnetv2_*_bit`` definitions (``stem_type='fixed'``, ``StdConv2d(eps=1e-8)``, ``GroupNormAct``), so
timm state_dicts load with the identity key mapping. Parameter names are timm's: ``stem.conv``,
``stages.{s}.blocks.{b}.{norm1, conv1, norm2, conv2, norm3, conv3, downsample.conv}``, ``norm``,
``head.fc`` (a 1x1 conv). What is ours: the config, the registry names and the uniform model API.

Two unit types (``preact``):

- ``preact=True`` (default, the registered ``R<depth>x<width>`` names): the pre-activation bottleneck of
  ResNet v2 and the BiT paper (big_vision ``models/bit_paper.py``, BiT's public checkpoints, timm
  ``PreActBottleneck``): GN-ReLU-conv1, GN-ReLU-conv2 (stride here), GN-ReLU-conv3, plus the shortcut;
  a final GN-ReLU before the head.
- ``preact=False``: the post-activation unit of the ViT paper's own code (vit_jax ``models_resnet.py``,
  big_vision ``models/bit.py``, "ResNet V1 with GroupNorm", timm ``Bottleneck``): conv1-GN-ReLU,
  conv2-GN-ReLU, conv3-GN, ReLU after the residual sum; a GN on the projection shortcut; SAME padding
  (``StdConv2dSame``). This is also the hybrids' backbone (``hybrid.py``).

Zero-init of the last norm of each block (``zero_init_last``): the paper's code initializes the scale of
``gn3`` to zero (``scale_init=zeros``), so each residual branch starts as zero and each unit as the
identity (then ReLU). That norm exists only in the post-activation unit, and it is done there by
default. In the pre-activation unit the last norm (``norm3``) is followed by a ReLU: a zero scale (and
zero bias) gives ReLU inputs of exactly 0, whose gradient is 0, so the branch would never train; the
alternative timm offers (zeroing ``conv3``'s kernel) is undone after one step by weight standardization,
with gradients amplified by 1/sqrt(eps). The BiT code (``bit_paper.py``, BiT's PyTorch code) zero-inits
only the head, as we do. So ``zero_init_last`` defaults to ``not preact`` and ``True`` with
``preact=True`` raises ``ValueError``.

Shapes: input (B, C, H, W) at any size (``img_size`` is the nominal resolution, for the uniform API);
``forward_features`` -> (B, 2048 * width_factor, H/32, W/32) for 4 stages; ``forward_head`` ->
(B, num_classes), or (B, num_features) with ``pre_logits=True`` (global average pool).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from timm.layers import StdConv2d, StdConv2dSame
from timm.models.resnetv2 import ResNetV2
from torch import nn

# Blocks per stage for each depth (BiT paper; big_vision models/bit.py get_block_desc).
BIT_DEPTHS: dict[int, tuple[int, ...]] = {
    26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


@dataclass
class BiTConfig:
    """Every architecture field of a BiT ResNet. ``__post_init__`` raises ``ValueError`` on a bad value.

    Defaults are R50x1 with 1000 classes. ``layers``: blocks per stage (1 to 4 stages; stage ``s`` has
    256 * 2^s * ``width_factor`` output channels, stride 1 for the first stage and 2 after it).
    ``head_zero_init``: zero head, as BiT and the paper's fine-tuning. ``zero_init_last``: zero scale of
    each unit's last GroupNorm; ``None`` means ``not preact`` (see the module docstring).
    """

    family: ClassVar[str] = "BiT"

    img_size: int = 224
    layers: tuple[int, ...] = (3, 4, 6, 3)
    width_factor: int = 1
    num_classes: int = 1000
    in_chans: int = 3
    preact: bool = True
    zero_init_last: bool | None = None
    head_zero_init: bool = True

    def __post_init__(self):
        self.layers = tuple(self.layers)
        if not 1 <= len(self.layers) <= 4 or not all(isinstance(n, int) and n > 0 for n in self.layers):
            raise ValueError(f"layers={self.layers!r} must be 1 to 4 positive block counts, e.g. (3, 4, 6, 3)")
        if not isinstance(self.width_factor, int) or self.width_factor < 1:
            raise ValueError(f"width_factor={self.width_factor!r} must be a positive int")
        if self.img_size < 1 or self.num_classes < 0 or self.in_chans < 1:
            raise ValueError(f"img_size={self.img_size}, num_classes={self.num_classes}, in_chans={self.in_chans}: "
                             f"expected img_size >= 1, num_classes >= 0, in_chans >= 1")
        if self.preact and self.zero_init_last:
            raise ValueError("zero_init_last=True needs preact=False: in a pre-activation unit the last norm "
                             "feeds a ReLU, and a zero scale would stop its branch from ever training")

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of each stage, before the width factor."""
        return tuple(256 * 2 ** i for i in range(len(self.layers)))

    @property
    def stride(self) -> int:
        """Total stride of the root and stages: 4 * 2^(stages - 1)."""
        return 4 * 2 ** (len(self.layers) - 1)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


class BiTResNet(ResNetV2):
    """BiT ResNet with the uniform model API: ``forward_features`` (B, C, H', W'), ``forward_head``
    (``pre_logits=True`` -> (B, num_features)), ``get_classifier``, ``reset_classifier`` (zero head),
    ``set_input_size``; ``num_features`` is the pre-logits width.

    ``BiTResNet(cfg)`` or ``BiTResNet(**fields)`` (see ``BiTConfig``). Init: timm's (kaiming-normal
    convs, unit GroupNorms), the last GN of each post-activation unit zero, the head zero.
    """

    config_class: ClassVar[type] = BiTConfig

    def __init__(self, cfg: BiTConfig | None = None, **kwargs):
        cfg = dataclasses.replace(cfg, **kwargs) if cfg is not None else BiTConfig(**kwargs)
        zero_init_last = (not cfg.preact) if cfg.zero_init_last is None else cfg.zero_init_last
        if cfg.preact:  # timm resnetv2_*_bit: BiT's fixed root padding, symmetric conv padding
            stem_type, conv_layer = "fixed", partial(StdConv2d, eps=1e-8)
        else:  # vit_jax / big_vision ResNet v1: SAME padding everywhere
            stem_type, conv_layer = "same", partial(StdConv2dSame, eps=1e-8)
        super().__init__(layers=list(cfg.layers), channels=cfg.channels, num_classes=cfg.num_classes,
                         in_chans=cfg.in_chans, width_factor=cfg.width_factor, stem_type=stem_type,
                         preact=cfg.preact, conv_layer=conv_layer, zero_init_last=zero_init_last)
        self.cfg = cfg
        self._init_head()

    def _init_head(self) -> None:
        fc = self.get_classifier()
        if self.cfg.head_zero_init and isinstance(fc, (nn.Conv2d, nn.Linear)):
            nn.init.zeros_(fc.weight)
            nn.init.zeros_(fc.bias)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head by a fresh (zero, per ``head_zero_init``) num_features x K layer, as the paper
        fine-tunes (Sec. 3.2) and BiT does (``zero_head``)."""
        super().reset_classifier(num_classes, global_pool)
        self.cfg = dataclasses.replace(self.cfg, num_classes=num_classes)
        self._init_head()

    def set_input_size(self, img_size: int, interpolation: str = "bilinear", align_corners: bool = True) -> None:
        """Record a new nominal input resolution. A CNN has no position embedding to resample, so nothing
        else changes; ``interpolation``/``align_corners`` exist for the uniform API only."""
        self.cfg = dataclasses.replace(self.cfg, img_size=img_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> final feature map (B, num_features, H', W'), after the final GN-ReLU
        (pre-activation) or the last unit (post-activation)."""
        return super().forward_features(x)


__all__ = ["BIT_DEPTHS", "BiTConfig", "BiTResNet"]
