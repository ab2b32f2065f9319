"""Preprocessing presets: resize, augmentation and the ViT normalization.

Every pipeline built here maps one image -- a ``PIL.Image`` of any size and mode, or a uint8
tensor ``(3, H, W)`` -- to a float32 tensor ``(3, img_size, img_size)`` with values in [-1, 1].
The image is first turned into a uint8 tensor (``v2.ToImage``), so PIL inputs and in-memory
tensor inputs go through exactly the same tensor kernels and give the same pixels.

Normalization follows the official ``vit_jax`` input pipeline (``google-research/vision_transformer``,
``input_pipeline.py``): ``(x - 127.5) / 127.5`` on raw 0..255 pixels, i.e. no per-channel ImageNet
mean/std. Evaluation is a plain (aspect-squashing) bilinear resize to ``img_size x img_size`` with
no centre crop, as in the official fine-tuning code.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

__all__ = [
    "PIXEL_MEAN",
    "PIXEL_STD",
    "PRESETS",
    "RANDAUGMENT_OPS",
    "Normalize127",
    "RandAugment",
    "randaugment",
    "build_transform",
    "denormalize",
    "normalize",
]

#: Offset subtracted from raw 0..255 pixels (official vit_jax: ``(x - 127.5) / 127.5``).
PIXEL_MEAN = 127.5
#: Scale dividing the offset pixels, so that 0 -> -1.0 and 255 -> +1.0.
PIXEL_STD = 127.5

#: Training augmentation presets accepted by :func:`build_transform`.
PRESETS = ("pad_crop", "inception_crop", "flip", "none")

#: Zero-padding (pixels, each side) of the ``pad_crop`` preset: the standard CIFAR recipe
#: (He et al. 2016): pad 4 with black, random crop back to size, random horizontal flip.
PAD_CROP_PADDING = 4

#: Area range of the ``inception_crop`` preset (the paper's / vit_jax's pre-training crop:
#: ``tf.image.sample_distorted_bounding_box(area_range=(0.05, 1.0))``), aspect ratio 3/4..4/3.
INCEPTION_CROP_SCALE = (0.05, 1.0)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Map raw pixels to the ViT input range.

    Args:
        x: tensor of raw pixel values 0..255, any shape and dtype (typically uint8 ``(..., 3, H, W)``).

    Returns:
        float32 tensor of the same shape, ``(x - 127.5) / 127.5``, values in [-1, 1].

    Source: official vit_jax input pipeline (``input_pipeline.py``: ``(im - 127.5) / 127.5``).
    """
    return (x.to(torch.float32) - PIXEL_MEAN) / PIXEL_STD


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Invert :func:`normalize`: float values in [-1, 1] -> uint8 pixels 0..255 (rounded, clamped).

    Args:
        x: float tensor, any shape (typically ``(..., 3, H, W)``).

    Returns:
        uint8 tensor of the same shape, for display or saving.
    """
    return (x.to(torch.float32) * PIXEL_STD + PIXEL_MEAN).round().clamp(0, 255).to(torch.uint8)


class Normalize127(torch.nn.Module):
    """Transform: uint8 image tensor ``(3, H, W)`` 0..255 -> plain float32 tensor in [-1, 1].

    The output is a plain ``torch.Tensor`` (not a ``tv_tensors.Image``) so that it collates and
    prints like any tensor. See :func:`normalize` (official vit_jax ``(x - 127.5) / 127.5``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return normalize(x.as_subclass(torch.Tensor))

    def extra_repr(self) -> str:  # noqa: D102
        return f"mean={PIXEL_MEAN}, std={PIXEL_STD}"


#: The operations RandAugment draws from (Cubuk et al. 2020; ``torchvision.transforms.v2.RandAugment``).
RANDAUGMENT_OPS = tuple(v2.RandAugment._AUGMENTATION_SPACE)
#: Magnitudes are bins 0..30 of each operation's range (torchvision's ``num_magnitude_bins=31``; timm's
#: ``rand-m9`` is bin 9 of 0..10 on a coarser scale: DeiT's m9 is about 27 here).
RANDAUGMENT_BINS = 31


class RandAugment(v2.RandAugment):
    """``torchvision.transforms.v2.RandAugment`` drawing from ``ops`` only (all of ``RANDAUGMENT_OPS`` by
    default): on a uint8 image ``(3, H, W)`` or a batch ``(B, 3, H, W)`` (one draw for the whole batch)."""

    def __init__(self, num_ops: int, magnitude: int, ops: list[str] | tuple[str, ...] | None = None):
        super().__init__(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=RANDAUGMENT_BINS)
        if ops is not None:
            self._AUGMENTATION_SPACE = {k: v for k, v in v2.RandAugment._AUGMENTATION_SPACE.items() if k in ops}


def randaugment(num_ops: int, magnitude: int, ops: list[str] | None = None) -> RandAugment | None:
    """The RandAugment of a data section (``data.randaugment``, ``randaugment_magnitude``,
    ``randaugment_ops``), None when ``num_ops`` is 0 (the paper: no RandAugment).

    Raises:
        ValueError: ``num_ops`` not an integer >= 0, ``magnitude`` outside 0..30, an empty ``ops`` or an
            operation not in ``RANDAUGMENT_OPS`` (each message names the allowed values).
    """
    if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
        raise ValueError(f"randaugment={num_ops!r} is not allowed: expected the operations per image, an integer >= 0")
    if isinstance(magnitude, bool) or not isinstance(magnitude, int) or not 0 <= magnitude < RANDAUGMENT_BINS:
        raise ValueError(f"randaugment_magnitude={magnitude!r} is not allowed: expected an integer in "
                         f"0..{RANDAUGMENT_BINS - 1}")
    if ops is not None:
        unknown = [op for op in ops if op not in RANDAUGMENT_OPS]
        if unknown or not ops:
            raise ValueError(f"randaugment_ops: {unknown[0] if unknown else '[]'!r} is not allowed: expected a "
                             f"non-empty list of {', '.join(RANDAUGMENT_OPS)}")
    return RandAugment(num_ops, magnitude, ops) if num_ops else None


def _resize(img_size: int) -> v2.Resize:
    # Square (aspect-squashing) bilinear resize with antialiasing, like tf.image.resize in vit_jax.
    # A no-op when the image already has that size (torchvision returns the input unchanged).
    return v2.Resize((img_size, img_size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


def build_transform(name: str, img_size: int, train: bool, augment: RandAugment | None = None) -> v2.Compose:
    """Build a preprocessing pipeline by preset name.

    Args:
        name: one of :data:`PRESETS`:

            * ``"pad_crop"``: resize to ``img_size``, zero-pad 4 pixels each side, random crop
              ``img_size``, random horizontal flip (the standard CIFAR recipe).
            * ``"inception_crop"``: ``RandomResizedCrop(img_size, scale=(0.05, 1.0))`` (aspect
              3/4..4/3, bilinear) + random horizontal flip: the paper's pre-training preset
              (vit_jax ``inception_crop`` with ``area_min=5``).
            * ``"flip"``: resize + random horizontal flip.
            * ``"none"``: plain resize.
        img_size: output side length in pixels (e.g. 32 for CIFAR from scratch, 224 or 384 for
            fine-tuning as in the paper).
        train: if False the preset name is validated but ignored and the evaluation pipeline is
            returned: plain resize to ``img_size x img_size``, no centre crop (official vit_jax).
        augment: a ``RandAugment`` (:func:`randaugment`) applied after the preset's crop and flip, on
            the uint8 image, in training only (DeiT's order).

    Returns:
        A ``torchvision.transforms.v2.Compose`` mapping a PIL image (any mode/size) or a uint8
        tensor ``(3, H, W)`` to a float32 tensor ``(3, img_size, img_size)`` in [-1, 1]
        (``(x - 127.5) / 127.5``).

    Raises:
        ValueError: unknown preset name (the message lists the allowed values), or
            ``img_size`` < 1.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown train_augment preset {name!r}; allowed values: {', '.join(PRESETS)}")
    if int(img_size) < 1:
        raise ValueError(f"img_size must be a positive number of pixels, got {img_size!r}")
    img_size = int(img_size)
    ops: list[torch.nn.Module] = [v2.ToImage(), v2.RGB()]
    if not train or name == "none":
        ops.append(_resize(img_size))
    elif name == "pad_crop":
        ops += [
            _resize(img_size),
            v2.RandomCrop(img_size, padding=PAD_CROP_PADDING, fill=0, padding_mode="constant"),
            v2.RandomHorizontalFlip(),
        ]
    elif name == "inception_crop":
        ops += [
            v2.RandomResizedCrop(
                img_size,
                scale=INCEPTION_CROP_SCALE,
                ratio=(3 / 4, 4 / 3),
                interpolation=v2.InterpolationMode.BILINEAR,
                antialias=True,
            ),
            v2.RandomHorizontalFlip(),
        ]
    elif name == "flip":
        ops += [_resize(img_size), v2.RandomHorizontalFlip()]
    if train and augment is not None:
        ops.append(augment)
    ops.append(Normalize127())
    return v2.Compose(ops)
