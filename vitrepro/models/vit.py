"""Vision Transformer (Dosovitskiy et al., ICLR 2021, Sec. 3.1, Eq. 1-4).

Module and parameter names mirror the official checkpoint layout (vit_jax ``models_vit.py``):
``embedding`` (patch embedding), ``cls`` (class token), ``transformer.posembed_input``,
``transformer.encoderblock.{i}.{ln_0, attn, ln_2, mlp.dense_0, mlp.dense_1}``, ``transformer.encoder_norm``,
``pre_logits``, ``head``. One deliberate difference: query, key and value are one fused ``attn.qkv``
Linear (3D, D) for speed; checkpoint conversion splits and joins them.

Shapes: B batch, C channels, H x W image, P patch size, N = HW / P^2 patches, L = N (+1 class token),
D width, H heads, Dh = D / H.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from timm.layers import DropPath, lecun_normal_
from torch import nn

from .posemb import (POSEMB_KINDS, LearnedPosEmb1D, LearnedPosEmb2D, RelativePositionBias, check_posemb,
                     make_additive_posemb, resample_posemb_1d, resample_posemb_grid)

POOLS = ("token", "gap")


@dataclass
class ViTConfig:
    """Every architecture field of a ViT. ``__post_init__`` raises ``ValueError`` on an invalid value.

    Defaults are ViT-B/16 at 224 with 1000 classes (Table 1). ``posemb``/``posemb_placement`` span
    Table 8; ``pool`` is ``token`` (class token, the paper's default) or ``gap`` (global average pooling
    of the patch tokens, no class token, as vit_jax ``classifier='gap'``). ``representation_size``
    adds the pre-logits layer (Dense + tanh) used in pre-training; ``None`` omits it. ``drop_path_rate``:
    stochastic depth of the last block, rising linearly from 0 at the first (DeiT; timm's ``drop_path_rate``),
    a training setting in [0, 1); the paper uses none.
    """

    family: ClassVar[str] = "ViT"

    img_size: int = 224
    patch_size: int = 16
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    num_classes: int = 1000
    in_chans: int = 3
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0
    posemb: str = "learned_1d"
    posemb_placement: str = "stem"
    pool: str = "token"
    representation_size: int | None = None
    head_zero_init: bool = True
    head_bias_init: float = 0.0

    def __post_init__(self):
        for name in ("img_size", "patch_size", "width", "depth", "num_heads", "mlp_dim", "in_chans"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: expected an integer >= 1")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"num_classes={self.num_classes!r} is not allowed: expected an integer >= 0")
        check_posemb(self.posemb, self.posemb_placement)
        if self.pool not in POOLS:
            raise ValueError(f"pool={self.pool!r} is not one of {', '.join(POOLS)}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size={self.img_size} is not a multiple of patch_size={self.patch_size}")
        if self.width % self.num_heads:
            raise ValueError(f"width={self.width} is not divisible by num_heads={self.num_heads}")
        for name in ("dropout", "attention_dropout", "drop_path_rate"):
            if not isinstance(getattr(self, name), (int, float)) or not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} is not in [0, 1)")

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.img_size // self.patch_size, self.img_size // self.patch_size)

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.pool == "token" else 0

    @property
    def num_tokens(self) -> int:
        gh, gw = self.grid_size
        return gh * gw + self.num_prefix_tokens

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention (Eq. 2 / App. A) with an optional relative-position bias.

    ``forward(x)`` uses ``F.scaled_dot_product_attention`` (fused kernels); ``forward(x, True)`` takes
    the explicit path and also returns the attention weights (B, H, L, L), for rollout and attention
    distance. Both paths compute the same function.
    """

    def __init__(self, width: int, num_heads: int, attention_dropout: float = 0.0,
                 rel_bias: RelativePositionBias | None = None):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, width // num_heads
        self.scale = self.head_dim ** -0.5
        self.attention_dropout = attention_dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.rel_bias = rel_bias

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """x: (B, L, D) -> (B, L, D), and the weights (B, H, L, L) or None."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).reshape(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        bias = self.rel_bias(q * self.scale) if self.rel_bias is not None else None
        p = self.attention_dropout if self.training else 0.0
        attn = None
        if return_attention:
            logits = (q * self.scale) @ k.transpose(-2, -1)
            if bias is not None:
                logits = logits + bias
            attn = logits.softmax(dim=-1)
            y = F.dropout(attn, p) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, L, D)), attn


class MlpBlock(nn.Module):
    """Dense -> GELU -> Dropout -> Dense -> Dropout (vit_jax ``MlpBlock``). (B, L, D) -> (B, L, D).

    GELU is the exact (erf) form, as timm and PyTorch; vit_jax uses flax's tanh approximation.
    """

    def __init__(self, width: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.dense_0 = nn.Linear(width, mlp_dim)
        self.dense_1 = nn.Linear(mlp_dim, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense_1(self.dropout(F.gelu(self.dense_0(x)))))


class EncoderBlock(nn.Module):
    """Pre-LN Transformer block (Eq. 2-3): x + MSA(LN(x)), then x + MLP(LN(x)). (B, L, D) -> (B, L, D).
    ``drop_path``: the probability that a training step skips each residual branch of a sample
    (stochastic depth, Huang et al. 2016, as DeiT; timm's ``DropPath``); 0 (the paper): never."""

    def __init__(self, cfg: ViTConfig, rel_bias: RelativePositionBias | None = None, drop_path: float = 0.0):
        super().__init__()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.ln_0 = nn.LayerNorm(cfg.width, eps=1e-6)
        self.attn = MultiHeadSelfAttention(cfg.width, cfg.num_heads, cfg.attention_dropout, rel_bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ln_2 = nn.LayerNorm(cfg.width, eps=1e-6)
        self.mlp = MlpBlock(cfg.width, cfg.mlp_dim, cfg.dropout)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        y, attn = self.attn(self.ln_0(x), return_attention)
        x = x + self.drop_path(self.dropout(y))
        return x + self.drop_path(self.mlp(self.ln_2(x))), attn


class Encoder(nn.Module):
    """Position embeddings (any Table 8 cell), input dropout, ``depth`` blocks, final LayerNorm.

    vit_jax ``Encoder``: the stem embedding is ``posembed_input``; ``every_layer`` keeps one embedding
    per layer in ``posembed_layers``; ``every_layer_shared`` adds ``posembed_input`` before every layer.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.kind, self.placement = cfg.posemb, cfg.posemb_placement
        additive = cfg.posemb in ("learned_1d", "learned_2d")
        make = lambda: make_additive_posemb(cfg.posemb, cfg.grid_size, cfg.width, cfg.num_prefix_tokens)  # noqa: E731
        self.posembed_input = make() if additive and self.placement in ("stem", "every_layer_shared") else None
        self.posembed_layers = (nn.ModuleList(make() for _ in range(cfg.depth))
                                if additive and self.placement == "every_layer" else None)
        self.dropout = nn.Dropout(cfg.dropout)
        rel = lambda: (RelativePositionBias(cfg.num_tokens, cfg.num_heads, cfg.width // cfg.num_heads)  # noqa: E731
                       if cfg.posemb == "relative" else None)
        # stochastic depth rising linearly from 0 at the first block to drop_path_rate at the last (DeiT, timm)
        rates = [cfg.drop_path_rate * i / max(1, cfg.depth - 1) for i in range(cfg.depth)]
        self.encoderblock = nn.ModuleList(EncoderBlock(cfg, rel(), rates[i]) for i in range(cfg.depth))
        self.encoder_norm = nn.LayerNorm(cfg.width, eps=1e-6)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """x: (B, L, D) token embeddings -> (B, L, D) normalized encoder output, and a list of
        per-layer attention weights (B, H, L, L) when ``return_attention``, else an empty list."""
        if self.placement == "stem" and self.posembed_input is not None:
            x = self.posembed_input(x)
        x = self.dropout(x)
        attentions = []
        for i, block in enumerate(self.encoderblock):
            if self.posembed_layers is not None:
                x = self.posembed_layers[i](x)
            elif self.placement == "every_layer_shared" and self.posembed_input is not None:
                x = self.posembed_input(x)
            x, attn = block(x, return_attention)
            if return_attention:
                attentions.append(attn)
        return self.encoder_norm(x), attentions


class VisionTransformer(nn.Module):
    """ViT (Eq. 1-4) with the uniform model API: ``forward_features``, ``forward_head``,
    ``get_classifier``, ``reset_classifier``; ``num_features`` is the pre-logits width.

    Input: images (B, C, img_size, img_size), normalized as the official code ((x - 127.5) / 127.5).
    Output of ``forward``: logits (B, num_classes). Init follows vit_jax: lecun-normal patch embedding,
    xavier-uniform dense kernels, MLP biases normal(1e-6), class token zeros, position embeddings
    normal(0.02), head zeros (``head_zero_init``) with bias ``head_bias_init``.
    """

    config_class: ClassVar[type] = ViTConfig

    def __init__(self, cfg: ViTConfig | None = None, **kwargs):
        super().__init__()
        cfg = dataclasses.replace(cfg, **kwargs) if cfg is not None else ViTConfig(**kwargs)
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.embedding = self._make_embedding(cfg)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width)) if cfg.pool == "token" else None
        self.transformer = Encoder(cfg)
        self.num_features = cfg.representation_size or cfg.width
        self.pre_logits = (nn.Sequential(nn.Linear(cfg.width, cfg.representation_size), nn.Tanh())
                           if cfg.representation_size else nn.Identity())
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._init_weights()

    def _make_embedding(self, cfg: ViTConfig) -> nn.Module:
        """The patch embedding (Eq. 1, a P x P conv of stride P); the hybrid puts its ResNet before it."""
        return nn.Conv2d(cfg.in_chans, cfg.width, cfg.patch_size, stride=cfg.patch_size)

    def _embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> embedded patch grid (B, D, gh, gw)."""
        return self.embedding(x)

    def _init_weights(self):
        lecun_normal_(self.embedding.weight)
        nn.init.zeros_(self.embedding.bias)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.startswith(("head", "pre_logits")):
                if name.endswith("attn.qkv"):  # xavier per D x D block, as separate q, k, v kernels
                    bound = math.sqrt(6.0 / (m.weight.shape[0] // 3 + m.weight.shape[1]))
                    nn.init.uniform_(m.weight, -bound, bound)
                else:
                    nn.init.xavier_uniform_(m.weight)
                if "mlp" in name:
                    nn.init.normal_(m.bias, std=1e-6)
                else:
                    nn.init.zeros_(m.bias)
        if isinstance(self.pre_logits, nn.Sequential):
            lecun_normal_(self.pre_logits[0].weight)
            nn.init.zeros_(self.pre_logits[0].bias)
        self._init_head()

    def _init_head(self):
        if isinstance(self.head, nn.Linear):
            if self.cfg.head_zero_init:
                nn.init.zeros_(self.head.weight)
            else:
                lecun_normal_(self.head.weight)
            nn.init.constant_(self.head.bias, self.cfg.head_bias_init)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> patch embeddings with the class token prepended, (B, L, D) (Eq. 1,
        before position embeddings). Raises ``ValueError`` if H, W differ from ``img_size``."""
        if x.shape[-2:] != (self.cfg.img_size, self.cfg.img_size):
            raise ValueError(f"expected {self.cfg.img_size}x{self.cfg.img_size} images, got "
                             f"{x.shape[-2]}x{x.shape[-1]}")
        x = self._embed_patches(x).flatten(2).transpose(1, 2)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        return x

    def forward_features(self, x: torch.Tensor, return_attention: bool = False):
        """Images (B, C, H, W) -> encoder output tokens (B, L, D) after the final LayerNorm.
        With ``return_attention``, returns ``(tokens, [attention (B, H, L, L) for each layer])``."""
        tokens, attentions = self.transformer(self.embed(x), return_attention)
        return (tokens, attentions) if return_attention else tokens

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (B, L, D) -> pooled (class token or GAP) -> pre-logits (B, num_features) if
        ``pre_logits`` else logits (B, num_classes)."""
        x = x[:, 0] if self.cfg.pool == "token" else x.mean(dim=1)
        x = self.pre_logits(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    @torch.no_grad()
    def set_input_size(self, img_size: int, interpolation: str = "bilinear", align_corners: bool = True) -> None:
        """Change the input resolution to ``img_size`` x ``img_size``, resampling every position embedding
        to the new patch grid in 2-D by each patch's place in the image, as the paper fine-tunes at a
        higher resolution (Sec. 3.2; vit_jax ``checkpoint.py``: ``scipy.ndimage.zoom(order=1)``, which
        ``interpolation='bilinear', align_corners=True`` equals; timm uses ``align_corners=False``).

        - ``learned_1d``: the patch part of (1, L, D) as a gh x gw grid (``resample_posemb_grid``); the
          class token's embedding is kept.
        - ``learned_2d``: the X table (gw, D/2) and Y table (gh, D/2) each resampled in 1-D along the
          grid axis (the same interpolation along one axis); the class token's vector is kept.
        - ``none``: nothing to resample.
        - ``relative``: raises ``NotImplementedError``. Its offsets are 1-D offsets in the flattened token
          sequence, where a patch offset of (dr, dc) is dr * gw + dc: the table has no axis along which
          a change of grid maps offsets to offsets, so any resampling would be arbitrary.

        Embeddings are replaced by new ``nn.Parameter``s: call this before building the optimizer.
        Raises ``ValueError`` if ``img_size`` does not fit the patch size (or, for a hybrid, the stride).
        """
        if self.cfg.posemb == "relative":
            raise NotImplementedError(
                "set_input_size: posemb='relative' has no resolution-independent meaning (its 1-D offsets "
                "over the flattened sequence mix rows and columns, offset = dr * grid_width + dc), so it "
                "cannot be resampled; fine-tune at the training resolution")
        new_cfg = dataclasses.replace(self.cfg, img_size=img_size)
        new_grid = new_cfg.grid_size
        enc = self.transformer
        modules = [enc.posembed_input] if enc.posembed_input is not None else []
        modules += list(enc.posembed_layers) if enc.posembed_layers is not None else []
        for m in modules:
            if isinstance(m, LearnedPosEmb1D):
                m.pos_embedding = _like(m.pos_embedding, resample_posemb_grid(
                    m.pos_embedding.data, new_grid, self.cfg.num_prefix_tokens, interpolation, align_corners))
            elif isinstance(m, LearnedPosEmb2D):
                for name, n in (("pos_embedding_x", new_grid[1]), ("pos_embedding_y", new_grid[0])):
                    old = getattr(m, name)
                    setattr(m, name, _like(old, resample_posemb_1d(old.data, n, interpolation, align_corners)))
                m.grid_size = new_grid
        self.cfg = new_cfg

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh (zero-initialized, per ``head_zero_init``) D x K layer, as the
        paper does for fine-tuning (Sec. 3.2)."""
        self.num_classes = num_classes
        self.cfg = dataclasses.replace(self.cfg, num_classes=num_classes)
        device = self.embedding.weight.device
        self.head = nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()
        self._init_head()


def _like(old: nn.Parameter, data: torch.Tensor) -> nn.Parameter:
    """A new parameter holding ``data``, as trainable as ``old``."""
    return nn.Parameter(data, requires_grad=old.requires_grad)


__all__ = ["ViTConfig", "VisionTransformer", "POSEMB_KINDS", "POOLS"]
