"""Named model variants: ``create_model("ViT-B/16", num_classes=10, img_size=224, posemb="none")``.

Names follow the paper: ``ViT-{Ti,S,B,L,H}/{14,16,32}`` (Table 1; Ti and S from the official code),
``ViT-b/32`` (Fig. 4: ViT-B with every hidden size halved), and small CIFAR variants at 32x32 with
4x4 patches: ``ViT-C/4`` (the seeds' example: P=4, D=128, z0 of 65 x 128), ``ViT-Ti/4``, ``ViT-S/4``.
Any other ``ViT-<variant>/<patch>`` string is decoded as big_vision's ``decode_variant`` does.

BiT ResNets (Sec. 4.1, Table 6): ``R50x1, R50x2, R101x1, R101x3, R152x1, R152x2, R152x4, R200x3``
(``R<depth>x<width factor>``; any depth of ``BIT_DEPTHS`` decodes). Hybrids (Sec. 3.1, Table 6):
``R50+ViT-{B,L}/16`` (R50 with stage 4 folded into stage 3, blocks 3,4,9, total stride 16) and
``R50+ViT-{B,L}/32`` (blocks 3,4,6,3, stride 32), both with 1x1 patches of the feature map.

Every family has a config dataclass (``ViTConfig``, ``BiTConfig``, ``HybridConfig``) whose fields are the
allowed overrides; ``model_config`` validates them without building weights.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Any, Callable

from torch import nn

from .bit import BIT_DEPTHS, BiTResNet
from .hybrid import HybridVisionTransformer
from .vit import ViTConfig, VisionTransformer

# width, depth, mlp_dim, num_heads (Table 1; Ti/S/mu from big_vision; "b" = ViT-B halved, Fig. 4;
# "C" = the seeds' CIFAR-10 example width with a depth that trains on a CPU).
VIT_VARIANTS: dict[str, dict[str, int]] = {
    "mu": dict(width=32, depth=1, mlp_dim=128, num_heads=2),
    "C": dict(width=128, depth=6, mlp_dim=512, num_heads=4),
    "Ti": dict(width=192, depth=12, mlp_dim=768, num_heads=3),
    "S": dict(width=384, depth=12, mlp_dim=1536, num_heads=6),
    "b": dict(width=384, depth=12, mlp_dim=1536, num_heads=12),
    "B": dict(width=768, depth=12, mlp_dim=3072, num_heads=12),
    "L": dict(width=1024, depth=24, mlp_dim=4096, num_heads=16),
    "H": dict(width=1280, depth=32, mlp_dim=5120, num_heads=16),
}

_VIT_NAME = re.compile(r"^ViT-(?P<variant>[A-Za-z]+)/(?P<patch>\d+)$")


def decode_vit_variant(name: str) -> dict[str, int]:
    """``"ViT-B/16"`` or ``"B/16"`` -> dict(width, depth, mlp_dim, num_heads, patch_size).

    Raises ``ValueError`` naming the known variants. Source: big_vision ``models/vit.py:decode_variant``.
    """
    m = _VIT_NAME.match(name if name.startswith("ViT-") else f"ViT-{name}")
    if not m or m["variant"] not in VIT_VARIANTS:
        raise ValueError(f"unknown ViT variant {name!r}: expected ViT-<variant>/<patch> with variant in "
                         f"{', '.join(VIT_VARIANTS)}")
    return dict(VIT_VARIANTS[m["variant"]], patch_size=int(m["patch"]))


_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {}


def register_model(name: str, builder: Callable[..., nn.Module], **defaults: Any) -> None:
    """Register ``name`` -> ``builder(**defaults, **overrides)``.

    The allowed fields are those of ``builder.config_class`` (``ViTConfig`` when it has none).
    """
    _REGISTRY[name] = (builder, defaults)


for _v in ("Ti", "S", "B", "L", "H"):
    for _p in (14, 16, 32):
        register_model(f"ViT-{_v}/{_p}", VisionTransformer, img_size=224, **decode_vit_variant(f"{_v}/{_p}"))
register_model("ViT-b/32", VisionTransformer, img_size=224, **decode_vit_variant("b/32"))
for _v in ("C", "Ti", "S"):
    register_model(f"ViT-{_v}/4", VisionTransformer, img_size=32, num_classes=10, **decode_vit_variant(f"{_v}/4"))

_BIT_NAME = re.compile(r"^R(?P<depth>\d+)x(?P<width>\d+)$")
_HYBRID_LAYERS = {16: (3, 4, 9), 32: (3, 4, 6, 3)}  # total stride -> R50 blocks per stage (Sec. 3.1)


def decode_bit_variant(name: str) -> dict[str, Any]:
    """``"R152x2"`` -> dict(layers=(3, 8, 36, 3), width_factor=2). Raises ``ValueError`` naming the depths."""
    m = _BIT_NAME.match(name)
    if not m or int(m["depth"]) not in BIT_DEPTHS or int(m["width"]) < 1:
        raise ValueError(f"unknown BiT variant {name!r}: expected R<depth>x<width> with depth in "
                         f"{', '.join(map(str, BIT_DEPTHS))}")
    return dict(layers=BIT_DEPTHS[int(m["depth"])], width_factor=int(m["width"]))


for _name in ("R50x1", "R50x2", "R101x1", "R101x3", "R152x1", "R152x2", "R152x4", "R200x3"):
    register_model(_name, BiTResNet, img_size=224, **decode_bit_variant(_name))
for _v in ("B", "L"):
    for _s, _layers in _HYBRID_LAYERS.items():
        _vit = decode_vit_variant(f"{_v}/{_s}")
        register_model(f"R50+ViT-{_v}/{_s}", HybridVisionTransformer, img_size=224, resnet_layers=_layers,
                       **dict(_vit, patch_size=1))
# The CPU-scale hybrid of compute_transfer.yaml: ViT-C on R50's first two stages (blocks 3, 4; stride 8), so
# a 32x32 image gives a 4x4 grid of 1x1 patches.
register_model("R50+ViT-C/8", HybridVisionTransformer, img_size=32, num_classes=10, resnet_layers=(3, 4),
               **dict(decode_vit_variant("C/8"), patch_size=1))


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Registered names matching a shell-style ``pattern``, in registration order, optionally of one
    ``family`` (``"ViT"``, ``"BiT"``, ``"hybrid"``)."""
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern) and (family is None or model_family(n) == family)]


def _lookup(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    """(builder, default fields) of a registered or decodable name. Raises ``ValueError`` if unknown."""
    if name in _REGISTRY:
        builder, defaults = _REGISTRY[name]
        return builder, dict(defaults)
    if name.startswith("ViT-"):
        return VisionTransformer, dict(img_size=224, **decode_vit_variant(name))
    if _BIT_NAME.match(name):
        return BiTResNet, dict(img_size=224, **decode_bit_variant(name))
    raise ValueError(f"unknown model {name!r}: registered are {', '.join(_REGISTRY)}")


def model_family(name: str) -> str:
    """``"ViT"``, ``"BiT"`` or ``"hybrid"``. Raises ``ValueError`` if ``name`` is unknown."""
    return getattr(config_class(name), "family", "ViT")


def config_class(name: str) -> type:
    """The config dataclass of ``name``'s family (``ViTConfig``, ``BiTConfig``, ``HybridConfig``)."""
    return getattr(_lookup(name)[0], "config_class", ViTConfig)


def model_defaults(name: str) -> dict[str, Any]:
    """The architecture fields ``name`` stands for (before overrides). Raises ``ValueError`` if unknown."""
    return _lookup(name)[1]


def model_config(name: str, **overrides: Any):
    """The config of ``name`` (its family's dataclass) with ``overrides``, validated, without weights.

    An override of None keeps the variant's default, except for fields whose default is None
    (``representation_size``, ``zero_init_last``). Raises ``ValueError`` for an unknown name, an unknown
    field (naming the allowed fields) or a bad value.
    """
    cls = config_class(name)
    fields = model_defaults(name)
    allowed = cls.field_names()
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        family = getattr(cls, "family", "ViT")
        raise ValueError(f"unknown {family} field(s) {', '.join(unknown)}: allowed are {', '.join(allowed)}")
    nullable = {f.name for f in dataclasses.fields(cls) if f.default is None}
    fields.update({k: v for k, v in overrides.items() if v is not None or k in nullable})
    return cls(**fields)


def create_model(name: str, num_classes: int | None = None, img_size: int | None = None, **overrides: Any) -> nn.Module:
    """Build the registered or decodable model ``name`` of any family; any config field can be overridden.

    ``num_classes``/``img_size`` of None keep the variant's default (1000 classes at 224 for the paper's
    variants, 10 at 32 for the CIFAR ones). Raises ``ValueError`` as ``model_config``.
    """
    builder, _ = _lookup(name)
    cfg = model_config(name, num_classes=num_classes, img_size=img_size, **overrides)
    model = builder(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    model.registry_name = name  # with model.cfg, what a checkpoint records (checkpoint.model_spec)
    return model
