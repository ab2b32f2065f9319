"""The device-resident input path (``data.loader: device``): a data set that fits in accelerator memory is
decoded once to a uint8 tensor (N, 3, H, W) on the device, and every batch is gathered and augmented there,
so a training step never waits on the CPU (airbench's recipe for CIFAR-10).

- ``DeviceAugment``: the presets of ``vitrepro.data.transforms`` done on a batch at once, on any device,
  from a seeded ``torch.Generator``: ``pad_crop`` (zero-pad 4, a random 32x32 crop: offsets uniform in
  0..8, as ``v2.RandomCrop``), ``inception_crop`` (``v2.RandomResizedCrop``'s sampler: area 5-100%,
  log-uniform aspect 3/4-4/3, 10 tries then the centre crop; the crop resampled by ``roi_align``,
  bilinear with area averaging when it shrinks), ``flip`` (probability 1/2), ``none``; then the
  official ``(x - 127.5) / 127.5``. The same distributions as the CPU transforms (tests/test_device_data.py).
- ``DeviceLoader``: batches of a ``TensorImageDataset`` in the ``ResumableSampler`` order (seeded per
  epoch, sharded per rank, resumable mid-epoch), each batch augmented under the seed (seed, epoch, batch
  index), so a resumed run sees the same batches. Yields (images float32 (B, 3, S, S), labels int64 (B,)).
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F

from .sampler import ResumableSampler
from .transforms import INCEPTION_CROP_SCALE, PAD_CROP_PADDING, PRESETS, normalize

INCEPTION_RATIO = (3 / 4, 4 / 3)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, size, size), bilinear with antialiasing (as ``v2.Resize``)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def inception_crop_params(b: int, height: int, width: int, generator: torch.Generator,
                          scale=INCEPTION_CROP_SCALE, ratio=INCEPTION_RATIO, tries: int = 10) -> torch.Tensor:
    """``b`` crop boxes (top, left, h, w) as ``v2.RandomResizedCrop.get_params`` draws them, all at once on
    the generator's device: up to ``tries`` draws of area (uniform in ``scale`` x H W) and aspect ratio
    (log-uniform in ``ratio``), the first that fits; else the centre crop of the clamped ratio. (B, 4) int64."""
    dev = generator.device
    area = height * width
    target = area * torch.empty(b, tries, device=dev).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(b, tries, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * r))
    h = torch.round(torch.sqrt(target / r))
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros(b, dtype=torch.long, device=dev))
    h = h.gather(1, first[:, None])[:, 0]
    w = w.gather(1, first[:, None])[:, 0]
    u = torch.rand(b, 2, device=dev, generator=generator)
    top = torch.floor(u[:, 0] * (height - h + 1))
    left = torch.floor(u[:, 1] * (width - w + 1))
    # no try fits: the centre crop of the ratio clamped to `ratio` (get_params' fallback)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fh, fw = height, round(height * ratio[1])
    else:
        fw, fh = width, height
    none = ~ok.any(1)
    h, w = torch.where(none, float(fh), h), torch.where(none, float(fw), w)
    top, left = torch.where(none, float((height - fh) // 2), top), torch.where(none, float((width - fw) // 2), left)
    return torch.stack([top, left, h, w], 1).long()


def resized_crops(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's crop (top, left, h, w) resampled to (size, size): ``torchvision.ops.roi_align`` with
    pixel-aligned boxes, bilinear, averaging ``ceil(crop / size)`` samples per output pixel each way (the
    area-averaging of an antialiased shrink). (B, C, H, W) float -> (B, C, size, size)."""
    from torchvision.ops import roi_align

    t, lft, h, w = boxes.to(x.dtype).unbind(1)
    rois = torch.stack([torch.arange(len(x), device=x.device, dtype=x.dtype), lft, t, lft + w, t + h], 1)
    return roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


#: RandAugment on the device: images per group drawing one set of operations (torchvision's RandAugment
#: draws once per call; a batch is cut into groups of this size, each drawing its own).
RANDAUGMENT_GROUP = 8


def randaugment_groups(x: torch.Tensor, augment, generator: torch.Generator, group: int = RANDAUGMENT_GROUP) -> torch.Tensor:
    """``augment`` (a ``vitrepro.data.transforms.RandAugment``) on uint8 (B, 3, H, W) in groups of ``group``
    images, each group its own draw of operations and magnitudes signs, seeded from ``generator`` (torch's
    CPU generator is forked, so the global random state is untouched). Same shape and dtype."""
    seed = int(torch.randint(0, 2**62, (), device=generator.device, generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return torch.cat([augment(chunk) for chunk in x.split(group)])


class DeviceAugment:
    """A training preset of ``vitrepro.data.transforms`` on a batch: uint8 (B, 3, H, W) on any device ->
    float32 (B, 3, size, size) in [-1, 1]. ``train=False``: the evaluation pipeline (plain resize).
    ``randaugment``: a ``vitrepro.data.transforms.RandAugment`` after the crop and flip, on the device in
    groups of ``RANDAUGMENT_GROUP`` images (``randaugment_groups``).
    Raises ``ValueError`` for an unknown preset (naming the allowed ones)."""

    def __init__(self, preset: str, size: int, train: bool = True, randaugment=None):
        if preset not in PRESETS:
            raise ValueError(f"unknown train_augment preset {preset!r}; allowed values: {', '.join(PRESETS)}")
        self.preset, self.size, self.train, self.randaugment = preset, int(size), train, randaugment

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.float()
        b, s = x.shape[0], self.size
        if not self.train or self.preset == "none":
            return normalize(_resize(x, s))
        if generator is None:
            raise ValueError("DeviceAugment: a training preset needs a torch.Generator on the images' device")
        if self.preset == "inception_crop":
            x = resized_crops(x, inception_crop_params(b, x.shape[-2], x.shape[-1], generator), s)
        else:
            x = _resize(x, s)
        if self.preset == "pad_crop":
            p = PAD_CROP_PADDING
            padded = F.pad(x, (p, p, p, p))
            off = torch.randint(0, 2 * p + 1, (b, 2), device=x.device, generator=generator)
            rows = (off[:, 0, None] + torch.arange(s, device=x.device))[:, None, :, None]  # (B, 1, S, 1)
            cols = (off[:, 1, None] + torch.arange(s, device=x.device))[:, None, None, :]  # (B, 1, 1, S)
            padded = padded.gather(2, rows.expand(b, x.shape[1], s, padded.shape[-1]))
            x = padded.gather(3, cols.expand(b, x.shape[1], s, s))
        flip = torch.rand(b, device=x.device, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.randaugment is not None:
            x = randaugment_groups(x.round().clamp(0, 255).to(torch.uint8), self.randaugment, generator)
        return normalize(x)


class DeviceLoader:
    """Batches of ``dataset`` (a ``TensorImageDataset``: its uint8 images and labels are moved to ``device``
    once) in ``sampler``'s order (None: the dataset's order, for evaluation), augmented by ``augment``.

    ``len()`` is the batches of an epoch on this rank. Yields (float32 (B, 3, S, S), int64 (B,)) on
    ``device``. Raises ``ValueError`` for a dataset without its images in memory."""

    def __init__(self, dataset, batch_size: int, augment: DeviceAugment, device: torch.device | str,
                 sampler: ResumableSampler | None = None, drop_last: bool = False, seed: int = 0):
        if not hasattr(dataset, "images"):
            raise ValueError("data.loader=device needs the images decoded in memory (cache_in_memory: true; allowed "
                             "for data sets of one image size such as CIFAR)")
        self.device = torch.device(device)
        idx = torch.as_tensor(dataset.indices, dtype=torch.long)
        self.images = dataset.images[idx].to(self.device)  # the rows this dataset exposes, in its order
        self.labels = torch.as_tensor(dataset.labels)[idx].to(self.device)
        self.batch_size, self.augment, self.order_sampler = int(batch_size), augment, sampler
        self.drop_last, self.seed = drop_last, int(seed)

    def __len__(self) -> int:
        n = len(self.order_sampler) if self.order_sampler is not None else len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> tuple[torch.Tensor, int, int]:
        """(this rank's indices of the epoch, the epoch, the batch to start from)."""
        if self.order_sampler is None:
            return torch.arange(len(self.labels), device=self.device), 0, 0
        epoch = self.order_sampler.current_epoch()
        shard, _ = self.order_sampler.order(epoch)
        start = self.order_sampler.take_start(epoch)
        return torch.as_tensor(shard, device=self.device), epoch, start // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, epoch, first = self._order()
        gen = torch.Generator(device=self.device)
        for b in range(first, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            gen.manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + b)
            yield self.augment(self.images[idx], gen), self.labels[idx]


__all__ = ["DeviceAugment", "DeviceLoader", "randaugment_groups", "RANDAUGMENT_GROUP", "inception_crop_params", "resized_crops"]
