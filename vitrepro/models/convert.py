"""The key tables between our parameter names and the other layouts, for every model family (the reading
and writing itself is in ``checkpoint.py``).

- timm: ``timm_to_vitrepro`` / ``vitrepro_to_timm`` map a ``state_dict`` of the matching architecture
  (``vit_*_patch*``, ``resnetv2_*_bit``, ``vit_*_r50_*``) to and from our names.
- Google's checkpoint layouts (``_spec``: one entry per parameter of ours), flat
  ``/``-joined keys, kernels HWIO (convs) and (in, out) (dense):

  - ``vit_jax`` (google-research/vision_transformer ``models_vit.py``, ``models_resnet.py``): ViT and
    R50+ViT: ``embedding/kernel``, ``cls``, ``Transformer/posembed_input/pos_embedding`` (1, L, D),
    ``Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1/{query, key, value}
    (D, H, Dh), out (H, Dh, D), LayerNorm_2, MlpBlock_3/Dense_{0,1}}``, ``Transformer/encoder_norm``,
    ``pre_logits``, ``head``; the hybrid's ResNet ``conv_root``, ``gn_root``,
    ``block{s}/unit{u}/{conv1, gn1, conv2, gn2, conv3, gn3, conv_proj, gn_proj}``.
  - ``big_vision`` (``big_vision/models/vit.py``): ``MultiHeadDotProductAttention_0``, ``LayerNorm_1``,
    ``MlpBlock_0``, a top-level ``pos_embedding`` (1, N, D) added to the patches only (the class token
    has none), optionally ``params/`` or ``opt/target/`` prefixes and scanned blocks
    (``Transformer/encoderblock/...`` with a leading depth axis); read both, written unscanned. The
    post-activation BiT of ``big_vision/models/bit.py`` uses the hybrid's ResNet names plus ``head``.
  - ``big_transfer`` (BiT's public checkpoints, google-research/big_transfer): pre-activation BiT,
    ``resnet/root_block/standardized_conv2d/kernel``, ``resnet/block{s}/unit{uu:02d}/{a,b,c}/...``,
    ``resnet/group_norm``, ``resnet/head/conv2d``.

  The reference readers are timm's ``_load_weights`` in ``timm/models/vision_transformer.py`` (ViT,
  hybrid) and ``timm/models/resnetv2.py`` (BiT); the tests load what ``save_npz`` writes with them.

Strictness: every parameter of the model must come from the checkpoint and every checkpoint entry must
be used (``skip_head=True`` leaves the model's head as it is, for fine-tuning with a new head); otherwise
``CheckpointKeyError`` (a ``KeyError``) names the missing and the unexpected keys. A shape that differs
raises ``ValueError`` naming the key, except for position embeddings: a checkpoint at another
resolution is resampled in 2-D to the model's grid (``interpolation``, ``align_corners``; the default,
bilinear with corners aligned, equals vit_jax's ``scipy.ndimage.zoom(order=1)``), keeping the class
token's embedding. ``img_size`` first sets the model's resolution (``set_input_size``).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from .bit import BiTResNet
from .hybrid import HybridVisionTransformer
from .vit import VisionTransformer

LAYOUTS = ("vit_jax", "big_vision", "big_transfer")


class CheckpointKeyError(KeyError):
    """Missing or unexpected checkpoint keys; the message names them."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _name_keys(keys, limit: int = 40) -> str:
    keys = list(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ---------------------------------------------------------------------------------------------------------
# timm state_dicts
# ---------------------------------------------------------------------------------------------------------

# (timm, ours) names for ViT and hybrid; BiT keys are timm's own (bit.py subclasses timm's ResNetV2).
# "{i}" is the block index; a name ending in "." is a prefix, any other an exact key.
_VIT_NAMES = [
    ("patch_embed.proj.", "embedding."),
    ("patch_embed.backbone.", "resnet."),
    ("cls_token", "cls"),
    ("pos_embed", "transformer.posembed_input.pos_embedding"),
    ("blocks.{i}.norm1.", "transformer.encoderblock.{i}.ln_0."),
    ("blocks.{i}.attn.qkv.", "transformer.encoderblock.{i}.attn.qkv."),
    ("blocks.{i}.attn.proj.", "transformer.encoderblock.{i}.attn.out."),
    ("blocks.{i}.norm2.", "transformer.encoderblock.{i}.ln_2."),
    ("blocks.{i}.mlp.fc1.", "transformer.encoderblock.{i}.mlp.dense_0."),
    ("blocks.{i}.mlp.fc2.", "transformer.encoderblock.{i}.mlp.dense_1."),
    ("norm.", "transformer.encoder_norm."),
]


def _rules(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(source name, target name) pairs -> (regex, replacement) rules for ``_rename``."""
    rules = []
    for src, dst in pairs:
        pattern = "^" + re.escape(src).replace(r"\{i\}", r"(\d+)") + ("" if src.endswith(".") else "$")
        rules.append((pattern, dst.replace("{i}", r"\1")))
    return rules


_TIMM_VIT_RULES = _rules(_VIT_NAMES)
_OURS_VIT_RULES = _rules([(ours, timm) for timm, ours in _VIT_NAMES])


def _is_timm_bit(keys) -> bool:
    return any(k.startswith("stem.conv.") for k in keys)


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def timm_to_vitrepro(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a timm state_dict to ours; shapes are the same (timm also fuses q, k, v).

    ViT/hybrid (``timm/models/vision_transformer.py``, ``vision_transformer_hybrid.py``):
    ``patch_embed.proj`` -> ``embedding``, ``patch_embed.backbone`` -> ``resnet``, ``cls_token`` -> ``cls``,
    ``pos_embed`` -> ``transformer.posembed_input.pos_embedding``, ``blocks.i.{norm1, attn.qkv,
    attn.proj, norm2, mlp.fc1, mlp.fc2}`` -> ``transformer.encoderblock.i.{ln_0, attn.qkv, attn.out,
    ln_2, mlp.dense_0, mlp.dense_1}``, ``norm`` -> ``transformer.encoder_norm``, ``head`` -> ``head``.
    BiT (``resnetv2_*_bit``, recognized by ``stem.conv``): unchanged. Keys with no counterpart (e.g.
    ``fc_norm``, ``reg_token``) are kept as they are, so loading names them as unexpected.
    """
    if _is_timm_bit(state_dict):
        return dict(state_dict)
    return {_rename(k, _TIMM_VIT_RULES): v for k, v in state_dict.items()}


def vitrepro_to_timm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``timm_to_vitrepro``: our state_dict with timm's names (``pre_logits``, which timm's
    ViT does not have, stays as it is)."""
    if _is_timm_bit(state_dict):
        return dict(state_dict)
    return {_rename(k, _OURS_VIT_RULES): v for k, v in state_dict.items()}


# ---------------------------------------------------------------------------------------------------------
# Google .npz checkpoints
# ---------------------------------------------------------------------------------------------------------

def _conv_in(a: np.ndarray) -> torch.Tensor:  # HWIO -> OIHW
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(3, 2, 0, 1)))


def _conv_out(t: torch.Tensor) -> np.ndarray:  # OIHW -> HWIO
    return t.detach().cpu().float().numpy().transpose(2, 3, 1, 0)


def _dense_in(a: np.ndarray) -> torch.Tensor:  # (in, out) -> (out, in)
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a).T))


def _dense_out(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().T


def _vec_in(a: np.ndarray) -> torch.Tensor:  # GN scales may be stored as (1, 1, 1, C) in old checkpoints
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a).reshape(-1)))


def _arr(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a)))


# A spec maps each of our keys to its npz keys: (ours, [npz keys], from_npz(arrays) -> tensor,
# to_npz(tensor) -> [arrays]).
Spec = list[tuple[str, list[str], Callable[..., torch.Tensor], Callable[[torch.Tensor], list[np.ndarray]]]]


def _plain(ours, key, fin=_t, fout=_arr):
    return (ours, [key], fin, lambda t: [fout(t)])


def _gn(ours, key, scale="scale", bias="bias"):
    return [_plain(f"{ours}.weight", f"{key}/{scale}", _vec_in), _plain(f"{ours}.bias", f"{key}/{bias}", _vec_in)]


def _dense(ours, key):
    return [_plain(f"{ours}.weight", f"{key}/kernel", _dense_in, _dense_out), _plain(f"{ours}.bias", f"{key}/bias")]


def _resnet_v1_spec(resnet: BiTResNet, ours: str, prefix: str) -> Spec:
    """Post-activation ResNet (vit_jax models_resnet.py, big_vision bit.py) <-> our ``resnet`` names."""
    spec = [_plain(f"{ours}stem.conv.weight", f"{prefix}conv_root/kernel", _conv_in, _conv_out)]
    spec += _gn(f"{ours}stem.norm", f"{prefix}gn_root")
    for s, stage in enumerate(resnet.stages):
        for b, block in enumerate(stage.blocks):
            o, k = f"{ours}stages.{s}.blocks.{b}.", f"{prefix}block{s + 1}/unit{b + 1}/"
            for r in (1, 2, 3):
                spec.append(_plain(f"{o}conv{r}.weight", f"{k}conv{r}/kernel", _conv_in, _conv_out))
                spec += _gn(f"{o}norm{r}", f"{k}gn{r}")
            if block.downsample is not None:
                spec.append(_plain(f"{o}downsample.conv.weight", f"{k}conv_proj/kernel", _conv_in, _conv_out))
                spec += _gn(f"{o}downsample.norm", f"{k}gn_proj")
    return spec


def _bit_paper_spec(model: BiTResNet, prefix: str = "resnet/") -> Spec:
    """Pre-activation BiT (big_transfer checkpoints; timm resnetv2.py _load_weights) <-> ours."""
    conv = "standardized_conv2d"
    spec = [_plain("stem.conv.weight", f"{prefix}root_block/{conv}/kernel", _conv_in, _conv_out)]
    spec += _gn("norm", f"{prefix}group_norm", "gamma", "beta")
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage.blocks):
            o, k = f"stages.{s}.blocks.{b}.", f"{prefix}block{s + 1}/unit{b + 1:02d}/"
            for r, g in zip((1, 2, 3), "abc"):
                spec.append(_plain(f"{o}conv{r}.weight", f"{k}{g}/{conv}/kernel", _conv_in, _conv_out))
                spec += _gn(f"{o}norm{r}", f"{k}{g}/group_norm", "gamma", "beta")
            if block.downsample is not None:
                spec.append(_plain(f"{o}downsample.conv.weight", f"{k}a/proj/{conv}/kernel", _conv_in, _conv_out))
    if isinstance(model.get_classifier(), nn.Conv2d):
        spec.append(_plain("head.fc.weight", f"{prefix}head/conv2d/kernel", _conv_in, _conv_out))
        spec.append(_plain("head.fc.bias", f"{prefix}head/conv2d/bias"))
    return spec


def _bit_v1_spec(model: BiTResNet, prefix: str = "") -> Spec:
    """Post-activation BiT (big_vision bit.py): the hybrid's ResNet names and a Dense head."""
    spec = _resnet_v1_spec(model, "", prefix)
    if isinstance(model.get_classifier(), nn.Conv2d):  # timm's 1x1-conv head <-> a Dense (C, K)
        spec.append(("head.fc.weight", [f"{prefix}head/kernel"], lambda a: _dense_in(a)[:, :, None, None],
                     lambda t: [_dense_out(t[:, :, 0, 0])]))
        spec.append(_plain("head.fc.bias", f"{prefix}head/bias"))
    return spec


def _vit_spec(model: VisionTransformer, layout: str, prefix: str, scanned: bool = False) -> Spec:
    """ViT (and a hybrid's ResNet) <-> the vit_jax or big_vision layout."""
    cfg = model.cfg
    D, H = cfg.width, cfg.num_heads
    Dh = D // H
    bv = layout == "big_vision"
    mha, ln2, mlp = ("MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0") if bv else \
        ("MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
    spec: Spec = []
    if isinstance(model, HybridVisionTransformer):
        spec += _resnet_v1_spec(model.resnet, "resnet.", prefix)
    spec.append(_plain("embedding.weight", f"{prefix}embedding/kernel", _conv_in, _conv_out))
    spec.append(_plain("embedding.bias", f"{prefix}embedding/bias"))
    has_cls = model.cls is not None
    if has_cls:
        spec.append(_plain("cls", f"{prefix}cls"))
    if cfg.posemb == "learned_1d" and cfg.posemb_placement == "stem":  # the only kind the layouts hold
        if bv and has_cls:  # big_vision adds pos_embedding to the patches only: the class token's entry is 0
            spec.append(("transformer.posembed_input.pos_embedding", [f"{prefix}pos_embedding"],
                         lambda a: torch.cat([torch.zeros(1, 1, a.shape[-1]), _t(a).float()], dim=1),
                         lambda t: [_arr(t[:, 1:])]))
        else:
            key = f"{prefix}pos_embedding" if bv else f"{prefix}Transformer/posembed_input/pos_embedding"
            spec.append(_plain("transformer.posembed_input.pos_embedding", key))
    for i in range(cfg.depth):
        o = f"transformer.encoderblock.{i}."
        k = f"{prefix}Transformer/encoderblock/" if scanned else f"{prefix}Transformer/encoderblock_{i}/"
        sub = []
        sub += _gn(f"{o}ln_0", f"{k}LayerNorm_0")
        qkv = [f"{k}{mha}/{n}/kernel" for n in ("query", "key", "value")]
        sub.append((f"{o}attn.qkv.weight", qkv,
                    lambda q, kk, v: torch.cat([_t(a).reshape(D, D).T for a in (q, kk, v)], dim=0),
                    lambda t: [_arr(w.T).reshape(D, H, Dh) for w in t.chunk(3, dim=0)]))
        sub.append((f"{o}attn.qkv.bias", [f"{k}{mha}/{n}/bias" for n in ("query", "key", "value")],
                    lambda q, kk, v: torch.cat([_t(a).reshape(D) for a in (q, kk, v)]),
                    lambda t: [_arr(b).reshape(H, Dh) for b in t.chunk(3)]))
        sub.append((f"{o}attn.out.weight", [f"{k}{mha}/out/kernel"], lambda a: _t(a).reshape(D, D).T,
                    lambda t: [_arr(t.T).reshape(H, Dh, D)]))
        sub.append(_plain(f"{o}attn.out.bias", f"{k}{mha}/out/bias"))
        sub += _gn(f"{o}ln_2", f"{k}{ln2}")
        sub += _dense(f"{o}mlp.dense_0", f"{k}{mlp}/Dense_0")
        sub += _dense(f"{o}mlp.dense_1", f"{k}{mlp}/Dense_1")
        if scanned:  # every npz array has a leading depth axis: take layer i
            sub = [(ours, keys, (lambda f, i=i: lambda *a: f(*(x[i] for x in a)))(fin), fout)
                   for ours, keys, fin, fout in sub]
        spec += sub
    spec += _gn("transformer.encoder_norm", f"{prefix}Transformer/encoder_norm")
    if isinstance(model.pre_logits, nn.Sequential):
        spec += _dense("pre_logits.0", f"{prefix}pre_logits")
    if isinstance(model.head, nn.Linear):
        spec += _dense("head", f"{prefix}head")
    return spec


def _spec(model: nn.Module, layout: str, prefix: str = "", scanned: bool = False) -> Spec:
    if isinstance(model, VisionTransformer):
        if layout not in ("vit_jax", "big_vision"):
            raise ValueError(f"layout={layout!r}: a ViT or hybrid is stored as vit_jax or big_vision")
        return _vit_spec(model, layout, prefix, scanned)
    if isinstance(model, BiTResNet):
        if model.cfg.preact:
            if layout != "big_transfer":
                raise ValueError(f"layout={layout!r}: a pre-activation BiT is stored as big_transfer")
            return _bit_paper_spec(model, prefix or "resnet/")
        if layout != "big_vision":
            raise ValueError(f"layout={layout!r}: a post-activation BiT is stored as big_vision (bit.py)")
        return _bit_v1_spec(model, prefix)
    raise TypeError(f"no .npz layout for {type(model).__name__}")


def _detect(model: nn.Module, w: Mapping[str, Any]) -> tuple[str, str, bool]:
    """(layout, key prefix, scanned) of a checkpoint, as timm's ``_load_weights`` detects them."""
    keys = list(w.keys())
    if isinstance(model, BiTResNet):
        if model.cfg.preact:
            return "big_transfer", "resnet/", False
        prefix = next((p for p in ("", "opt/target/", "params/") if f"{p}conv_root/kernel" in keys), "")
        return "big_vision", prefix, False
    prefix = next((p for p in ("", "opt/target/", "params/", "params/img/") if f"{p}embedding/kernel" in keys), "")
    scanned = f"{prefix}Transformer/encoderblock/LayerNorm_0/scale" in keys
    big_vision = (scanned or f"{prefix}pos_embedding" in keys
                  or any("MultiHeadDotProductAttention_0" in k for k in keys))
    return ("big_vision" if big_vision else "vit_jax"), prefix, scanned


__all__ = ["CheckpointKeyError", "LAYOUTS", "timm_to_vitrepro", "vitrepro_to_timm"]
