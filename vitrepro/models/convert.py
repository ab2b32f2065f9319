"""Weights in and out: timm state_dicts and Google's ``.npz`` checkpoints, for every model family.

- ``load_timm_state_dict(model, sd)``: a timm ``state_dict`` of the matching architecture
  (``vit_*_patch*``, ``resnetv2_*_bit``, ``vit_*_r50_*``) into our model; ``timm_to_vitrepro`` /
  ``vitrepro_to_timm`` are the key mappings.
- ``load_npz(model, path_or_dict)`` / ``save_npz(model, path)``: Google's checkpoint layouts, flat
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

import os
import re
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from .bit import BiTResNet
from .hybrid import HybridVisionTransformer
from .posemb import resample_posemb_1d, resample_posemb_grid
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


def load_timm_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], img_size: int | None = None,
                         interpolation: str = "bilinear", align_corners: bool = True, skip_head: bool = False) -> None:
    """Load a timm state_dict of the same architecture into ``model`` (any family), strictly.

    Raises ``CheckpointKeyError`` naming missing/unexpected keys (in timm's names, with ours), ``ValueError``
    for a shape mismatch other than a position embedding at another resolution (resampled).
    """
    bit = _is_timm_bit(state_dict)
    to_timm = (lambda k: k) if bit else (lambda k: _rename(k, _OURS_VIT_RULES))  # noqa: E731
    load_state_dict_strict(model, timm_to_vitrepro(state_dict), "timm state_dict", img_size, interpolation, align_corners,
                    skip_head, ours_to_source=to_timm)


# ---------------------------------------------------------------------------------------------------------
# The common strict load, with position-embedding resampling
# ---------------------------------------------------------------------------------------------------------

def load_state_dict_strict(model: nn.Module, sd: dict[str, torch.Tensor], what: str, img_size: int | None,
                           interpolation: str, align_corners: bool, skip_head: bool,
                           ours_to_source: Callable[[str], str] = lambda k: k) -> None:
    """Load a state_dict already in our names into ``model``, strictly, resampling position embeddings of
    another grid (and all of them to ``img_size`` when given). ``what`` names the source and
    ``ours_to_source`` its keys in errors. Raises ``CheckpointKeyError`` (missing/unexpected keys) or
    ``ValueError`` (a shape mismatch that is not a position embedding)."""
    if img_size is not None:
        model.set_input_size(img_size, interpolation=interpolation, align_corners=align_corners)
    target = model.state_dict()
    is_head = lambda k: k.startswith("head.")  # noqa: E731
    if skip_head:
        sd = {k: v for k, v in sd.items() if not is_head(k)}
        target = {k: v for k, v in target.items() if not is_head(k)}
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    if missing or unexpected:
        def src(k):
            s = ours_to_source(k)
            return k if s == k else f"{s} (ours: {k})"
        parts = []
        if missing:
            parts.append(f"missing keys: {_name_keys(src(k) for k in missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_name_keys(src(k) for k in unexpected)}")
        raise CheckpointKeyError(f"{what} does not match {type(model).__name__}: " + "; ".join(parts))
    out = {}
    for k, v in sd.items():
        want = target[k].shape
        if v.shape != want:
            v = _resample_posemb_entry(model, k, v, want, interpolation, align_corners)
            if v is None:
                raise ValueError(f"{what}: shape of {k} is {tuple(sd[k].shape)}, the model's is {tuple(want)}")
        out[k] = v.to(target[k].dtype)
    if skip_head:  # keep the model's own head
        out.update({k: v for k, v in model.state_dict().items() if is_head(k)})
    model.load_state_dict(out, strict=True)


def _resample_posemb_entry(model, key, v, want, interpolation, align_corners):
    """A checkpoint position embedding at another grid, resampled to the model's; None if not one."""
    cfg = getattr(model, "cfg", None)
    if key.endswith("pos_embedding") and v.ndim == 3 and v.shape[-1] == want[-1]:
        return resample_posemb_grid(v, cfg.grid_size, cfg.num_prefix_tokens, interpolation, align_corners)
    if key.endswith(("pos_embedding_x", "pos_embedding_y")) and v.ndim == 2 and v.shape[1] == want[1]:
        return resample_posemb_1d(v, want[0], interpolation, align_corners)
    return None


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


def load_npz(model: nn.Module, path_or_dict: str | os.PathLike | Mapping[str, np.ndarray], img_size: int | None = None,
             interpolation: str = "bilinear", align_corners: bool = True, skip_head: bool = False) -> str:
    """Load a Google ``.npz`` checkpoint (a path, or a mapping of names to arrays) into ``model``.

    The layout (vit_jax, big_vision with or without ``params/``/``opt/target/`` prefix and scanned blocks,
    big_transfer for a pre-activation BiT) is detected from the keys; returns it. Entries outside the
    detected prefix (optimizer state) are ignored; every entry under it must be used. Raises
    ``CheckpointKeyError`` naming missing and unexpected keys, ``ValueError`` for a shape mismatch (a
    position embedding at another grid is resampled, see the module docstring).
    """
    if isinstance(path_or_dict, (str, os.PathLike)):
        with np.load(path_or_dict, allow_pickle=False) as f:
            w = {k: f[k] for k in f.files}
    else:
        w = path_or_dict
    layout, prefix, scanned = _detect(model, w)
    spec = _spec(model, layout, prefix, scanned)
    if skip_head:
        spec = [e for e in spec if not e[0].startswith("head.")]
    sd, used, missing = {}, set(), []
    for ours, keys, fin, _ in spec:
        absent = [k for k in keys if k not in w]
        used.update(k for k in keys if k in w)
        if absent:
            missing.append(f"{', '.join(absent)} (ours: {ours})")
            continue
        sd[ours] = fin(*(np.asarray(w[k]) for k in keys))
    ignored = ("head/",) if skip_head else ()
    unexpected = [k for k in w.keys() if k.startswith(prefix) and k not in used
                  and not k[len(prefix):].startswith(ignored)]
    covered = {e[0] for e in spec}
    target = model.state_dict()
    uncovered = [k for k in target if k not in covered and not (skip_head and k.startswith("head."))]
    if missing or unexpected or uncovered:
        parts = []
        if missing:
            parts.append(f"missing keys: {_name_keys(missing)}")
        if uncovered:
            parts.append(f"parameters the {layout} layout has no key for: {_name_keys(uncovered)}")
        if unexpected:
            parts.append(f"unexpected keys: {_name_keys(unexpected)}")
        raise CheckpointKeyError(f"{layout} .npz does not match {type(model).__name__}: " + "; ".join(parts))
    load_state_dict_strict(model, sd, f"{layout} .npz", img_size, interpolation, align_corners, skip_head)
    return layout


def to_npz_dict(model: nn.Module, layout: str | None = None) -> dict[str, np.ndarray]:
    """Our weights as a flat dict of float32 arrays in ``layout`` (default: vit_jax for a ViT or hybrid,
    big_transfer for a pre-activation BiT, big_vision for a post-activation one).

    Raises ``ValueError`` for a parameter the layout has no place for (e.g. ``posemb='learned_2d'`` or
    ``'relative'``, ``every_layer`` placements). In the big_vision layout the class token's position
    embedding is folded into ``cls`` (the sum is what the encoder sees), so the forward is unchanged.
    """
    if layout is None:
        layout = ("vit_jax" if isinstance(model, VisionTransformer)
                  else "big_transfer" if model.cfg.preact else "big_vision")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {', '.join(LAYOUTS)}")
    spec = _spec(model, layout)
    sd = model.state_dict()
    uncovered = [k for k in sd if k not in {e[0] for e in spec}]
    if uncovered:
        raise ValueError(f"the {layout} layout has no place for {_name_keys(uncovered)} "
                         f"(only learned_1d or no position embedding, added at the stem)")
    out = {}
    for ours, keys, _, fout in spec:
        for k, a in zip(keys, fout(sd[ours])):
            out[k] = np.ascontiguousarray(a, dtype=np.float32)
    if layout == "big_vision" and isinstance(model, VisionTransformer) and model.cls is not None \
            and "pos_embedding" in out:
        out["cls"] = out["cls"] + _arr(sd["transformer.posembed_input.pos_embedding"][:, :1])
    return out


def save_npz(model: nn.Module, path: str | os.PathLike, layout: str | None = None) -> None:
    """Write ``to_npz_dict(model, layout)`` with ``np.savez`` (the format of the released checkpoints,
    readable by ``load_npz`` and by timm's ``_load_weights``)."""
    np.savez(path, **to_npz_dict(model, layout))


__all__ = ["CheckpointKeyError", "LAYOUTS", "timm_to_vitrepro", "vitrepro_to_timm", "load_timm_state_dict",
           "load_npz", "save_npz", "to_npz_dict"]
