"""Training throughput of the ViTs the experiments train, in images/s, one line per model size.

A step is what the runner's training does: forward, softmax cross-entropy, backward, gradient clipping
at global norm 1, AdamW update, on a batch of 32x32 images already in memory (the input pipeline is
measured apart; see ``--loader``). Models: ViT-C/4 (the ``cpu`` scale of pos_emb_ablation), ViT-Ti/4,
ViT-S/4 (the ``local`` scale); any registered name, e.g. ``--models ViT-C/4,R50x1`` (the data-size
pair). Each is timed after warm-up steps, all in one process, one after another.

    python benchmarks/train_throughput.py [--models ViT-C/4,ViT-S/4] [--batch 128] [--steps 10]
                                          [--posemb learned_1d] [--loader DATA_ROOT] [--out results/benchmarks]

Prints a table and appends it, with the command, hardware and versions, to
``<out>/train_throughput.csv``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from _record import RANDOM_BATCH, append_results
from vitrepro.experiments.runner import hardware_description
from vitrepro.models import create_model, model_family


def time_training(name: str, batch: int, steps: int, warmup: int, posemb: str, device: torch.device) -> dict:
    torch.manual_seed(0)
    vit = model_family(name) != "BiT"  # a BiT ResNet has no position embedding
    model = create_model(name, num_classes=10, img_size=32, **({"posemb": posemb} if vit else {})).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"model": name, "posemb": posemb if vit else "", "data": RANDOM_BATCH, "params": sum(p.numel() for p in model.parameters()),
            "batch": batch, "steps": steps, "seconds": round(dt, 3), "images_per_s": round(batch * steps / dt, 1)}


def time_loader(root: str, batch: int, batches: int) -> dict:
    """Images/s of the training DataLoader alone (decoded cache + augmentation + collation)."""
    from vitrepro.data import ImageClassificationDataModule

    dm = ImageClassificationDataModule(root=root, batch_size=batch)
    dm.setup()
    it = iter(dm.train_dataloader())
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += next(it)[0].shape[0]
    dt = time.perf_counter() - t0
    return {"model": "(data loader only)", "posemb": "", "data": dm.describe(), "params": 0, "batch": batch, "steps": batches,
            "seconds": round(dt, 3), "images_per_s": round(n / dt, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="ViT-C/4,ViT-Ti/4,ViT-S/4")
    p.add_argument("--posemb", default="learned_1d")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--loader", metavar="DATA_ROOT", help="also time the training DataLoader on this data root")
    p.add_argument("--out", default="results/benchmarks")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    rows = [time_training(m, args.batch, args.steps, args.warmup, args.posemb, device) for m in args.models.split(",")]
    if args.loader:
        rows.append(time_loader(args.loader, args.batch, 50))
    df = pd.DataFrame(rows)
    df["hardware"] = hardware_description() if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(df[["model", "posemb", "params", "batch", "steps", "seconds", "images_per_s"]].to_string(index=False))
    print(f"hardware: {df['hardware'].iloc[0]}; torch {torch.__version__}")
    append_results(df, "train_throughput.py", argv, Path(args.out) / "train_throughput.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
