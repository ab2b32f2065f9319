"""A data set the suite has never seen: drawn shapes as an ImageFolder tree with images of mixed sizes.

Used to validate the transfer protocol end to end on data unlike CIFAR (``experiments/transfer.yaml`` with
``--data.dataset=imagefolder``) and by the tests. Four classes (``circle``, ``square``, ``triangle``,
``cross``), each image a filled shape of a random colour, size, position and rotation on a random
two-colour noisy background; image sizes vary from 20 to 160 pixels a side (aspect ratios 1:2 to 2:1),
every third image a PNG, the rest JPEG. Deterministic for a seed.

    python -m vitrepro.data.shapes OUT_DIR [--train-per-class 300] [--test-per-class 100] [--seed 0]

writes ``OUT_DIR/{train,test}/<class>/<i>.{jpg,png}``.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross")


def _shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    if kind == "circle":
        return None
    if kind == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif kind == "triangle":
        pts = [(0, -1.2), (1.1, 0.9), (-1.1, 0.9)]
    else:  # cross: a plus sign of arm width 0.6
        a = 0.3
        pts = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def draw_shape(kind: str, rng: np.random.Generator) -> Image.Image:
    """One RGB image of ``kind`` (one of ``CLASSES``), width and height each 20-160 pixels."""
    w = int(rng.integers(20, 161))
    h = int(np.clip(w * rng.uniform(0.5, 2.0), 20, 160))
    bg = rng.integers(0, 256, size=(2, 3))
    t = np.linspace(0, 1, w)[None, :, None]
    img = (bg[0] * (1 - t) + bg[1] * t) * np.ones((h, 1, 1)) + rng.normal(0, 12, size=(h, w, 3))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    r = rng.uniform(0.22, 0.4) * min(w, h)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    color = tuple(int(v) for v in rng.integers(0, 256, size=3))
    poly = _shape_polygon(kind, cx, cy, r, rng.uniform(0, 2 * math.pi))
    if poly is None:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    else:
        d.polygon(poly, fill=color)
    return im


def write_shapes_imagefolder(root: str | Path, train_per_class: int = 300, test_per_class: int = 100,
                             seed: int = 0) -> Path:
    """Write the tree (see the module docstring) under ``root``; return ``root``. Raises ``ValueError``
    for counts below 1 and ``FileExistsError`` when ``root`` already holds a ``train`` or ``test`` folder."""
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError(f"train_per_class={train_per_class}, test_per_class={test_per_class}: expected >= 1")
    root = Path(root)
    for split in ("train", "test"):
        if (root / split).exists():
            raise FileExistsError(f"{root / split} exists; choose an empty folder")
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for kind in CLASSES:
            folder = root / split / kind
            folder.mkdir(parents=True)
            for i in range(n):
                im = draw_shape(kind, rng)
                if i % 3 == 2:
                    im.save(folder / f"{i:05d}.png")
                else:
                    im.save(folder / f"{i:05d}.jpg", quality=90)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    root = write_shapes_imagefolder(a.out, a.train_per_class, a.test_per_class, a.seed)
    print(f"wrote {root} ({len(CLASSES)} classes, {a.train_per_class}/{a.test_per_class} train/test per class)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
