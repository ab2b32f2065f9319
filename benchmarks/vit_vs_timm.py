"""Training speed of our ViT against timm's ViT of the same configuration, side by side, in images/s.

A step is forward, softmax cross-entropy, backward and an AdamW update, on a batch of random images
already on the device. Both models hold the same weights (ours copied into timm's with
``vitrepro_to_timm``), so they compute the same function. Steps are interleaved (ours, timm, ours,
timm, ...) in one process after warm-up steps of each, so a change in machine load hits both alike.
On CPU in float32; on CUDA (when available) also in bf16 autocast.

    python benchmarks/vit_vs_timm.py [--model ViT-B/16] [--img-size 224] [--batch 32] [--steps 10]
                                     [--warmup 2] [--devices cpu,cuda] [--out results/benchmarks]

Prints a table with the ratio ours/timm (above 1: ours is faster) and appends it, with the command,
hardware and torch/timm versions, to ``<out>/vit_vs_timm.csv``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import pandas as pd
import timm
import torch
import torch.nn.functional as F

from _record import RANDOM_BATCH, append_results
from _timm_twins import make_pair
from vitrepro.experiments.runner import hardware_description
from vitrepro.models import model_defaults


def benchmark(name: str, img_size: int, batch: int, steps: int, warmup: int, device: torch.device,
              precision: str) -> list[dict]:
    ours, ref = make_pair(name, img_size, num_classes=1000)
    models = {"vitrepro": ours.to(device).train(), "timm": ref.to(device).train()}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05) for k, m in models.items()}
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(key: str) -> float:
        sync()
        t0 = time.perf_counter()
        with autocast:
            loss = F.cross_entropy(models[key](x), y)
        opts[key].zero_grad(set_to_none=True)
        loss.backward()
        opts[key].step()
        sync()
        return time.perf_counter() - t0

    for _ in range(warmup):
        for key in models:
            step(key)
    seconds = {key: 0.0 for key in models}
    for _ in range(steps):
        for key in models:
            seconds[key] += step(key)
    params = sum(p.numel() for p in ours.parameters())
    return [{"model": name, "impl": key, "device": device.type, "precision": precision, "img_size": img_size,
             "params": params, "batch": batch, "steps": steps, "seconds": round(s, 4),
             "images_per_s": round(batch * steps / s, 2)} for key, s in seconds.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ViT-B/16", help="a registered ViT name (vitrepro models)")
    p.add_argument("--img-size", type=int, help="default: the model's (224 for the paper's variants)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps of each model")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped when unavailable")
    p.add_argument("--out", default="results/benchmarks")
    args = p.parse_args(argv)
    img_size = args.img_size or model_defaults(args.model)["img_size"]
    runs = []
    for dev in args.devices.split(","):
        if dev == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        runs += [(torch.device(dev), "fp32")] if dev == "cpu" else [(torch.device(dev), "bf16")]
    rows = []
    for device, precision in runs:
        rows += benchmark(args.model, img_size, args.batch, args.steps, args.warmup, device, precision)
    df = pd.DataFrame(rows)
    timm_speed = df[df.impl == "timm"].set_index(["device", "precision"])["images_per_s"]
    df["ours_over_timm"] = [round(r.images_per_s / timm_speed[(r.device, r.precision)], 3)
                            if r.impl == "vitrepro" else None for r in df.itertuples()]
    df["data"] = RANDOM_BATCH
    df["hardware"] = [hardware_description() if d == "cpu" else torch.cuda.get_device_name(0) for d in df.device]
    cols = ["model", "impl", "device", "precision", "batch", "steps", "seconds", "images_per_s", "ours_over_timm"]
    print(df[cols].to_string(index=False))
    print(f"hardware: {', '.join(sorted(set(df.hardware)))}; torch {torch.__version__}; timm {timm.__version__}")
    append_results(df, "vit_vs_timm.py", argv, Path(args.out) / "vit_vs_timm.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
