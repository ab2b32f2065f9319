"""Named model variants: ``create_model("ViT-B/16", num_classes=10, img_size=224, posemb="none")``.

Names follow the paper: ``ViT-{Ti,S,B,L,H}/{14,16,32}`` (Table 1; Ti and S from the official code),
``ViT-b/32`` (Fig. 4: ViT-B with every hidden size halved), and small CIFAR variants at 32x32 with
4x4 patches: ``ViT-C/4`` (the seeds' example: P=4, D=128, z0 of 65 x 128), ``ViT-Ti/4``, ``ViT-S/4``.
Any other ``ViT-<variant>/<patch>`` string is decoded as big_vision's ``decode_variant`` does.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, Callable

from torch import nn

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
    """Register ``name`` -> ``builder(**defaults, **overrides)``."""
    _REGISTRY[name] = (builder, defaults)


for _v in ("Ti", "S", "B", "L", "H"):
    for _p in (14, 16, 32):
        register_model(f"ViT-{_v}/{_p}", VisionTransformer, img_size=224, **decode_vit_variant(f"{_v}/{_p}"))
register_model("ViT-b/32", VisionTransformer, img_size=224, **decode_vit_variant("b/32"))
for _v in ("C", "Ti", "S"):
    register_model(f"ViT-{_v}/4", VisionTransformer, img_size=32, num_classes=10, **decode_vit_variant(f"{_v}/4"))


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern``, in registration order."""
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def model_defaults(name: str) -> dict[str, Any]:
    """The architecture fields ``name`` stands for (before overrides). Raises ``ValueError`` if unknown."""
    if name in _REGISTRY:
        return dict(_REGISTRY[name][1])
    if name.startswith("ViT-"):
        return dict(img_size=224, **decode_vit_variant(name))
    raise ValueError(f"unknown model {name!r}: registered are {', '.join(_REGISTRY)}")


def vit_config(name: str, **overrides: Any) -> ViTConfig:
    """The ``ViTConfig`` of ``name`` with ``overrides``, validated, without building weights.

    Raises ``ValueError`` for an unknown name, an unknown field (naming the allowed fields) or a bad value.
    """
    fields = dict(model_defaults(name))
    unknown = sorted(set(overrides) - set(ViTConfig.field_names()))
    if unknown:
        raise ValueError(f"unknown ViT field(s) {', '.join(unknown)}: allowed are {', '.join(ViTConfig.field_names())}")
    fields.update({k: v for k, v in overrides.items() if v is not None or k == "representation_size"})
    return ViTConfig(**fields)


def create_model(name: str, num_classes: int | None = None, img_size: int | None = None, **overrides: Any) -> nn.Module:
    """Build the registered or decodable model ``name``; any architecture field can be overridden.

    ``num_classes``/``img_size`` of None keep the variant's default (1000 classes at 224 for the paper's
    variants, 10 at 32 for the CIFAR ones). Raises ``ValueError`` as ``vit_config``.
    """
    return VisionTransformer(vit_config(name, num_classes=num_classes, img_size=img_size, **overrides))
