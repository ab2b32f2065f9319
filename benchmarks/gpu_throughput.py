"""Training throughput and model FLOP utilization (MFU) on one GPU, ours against timm's same model in the
same process, and the input path alone.

A training step is forward, softmax cross-entropy, backward and a fused AdamW update on a batch already on
the device, in bf16 autocast, each model ``torch.compile``d (``--no-compile`` to skip) and the ResNets in
channels-last: the suite's ``speed`` options. Ours and timm's alternate in blocks of ``--steps`` after
``--warmup`` steps each, timed with one synchronization per block (none inside it). MFU = images/s x 3 x
forward FLOPs of one image (``vitrepro.cost.forward_flops``: every matmul, attention products
included) / the GPU's bf16 dense peak (``PEAK_TFLOPS``, matched on the device name, or ``--peak-tflops``).
The input path: images/s of the device-resident loader (``data.loader: device``: gather + pad-crop + flip +
normalize on the GPU) and of the CPU DataLoader (``--workers``) over CIFAR-10 (``--data-root``; default the
bundled sample), each alone and with the from-scratch recipe (RandAugment + Mixup/CutMix), each beside the
training step's images/s.

Targets (issue 11; measured on one H100/H200, bf16): ViT-B/16 at 224 >= 45% MFU and at least timm's
images/s; ViT-S/4 at 32 >= 30% MFU with the input path >= 3x the training step. The commands:

    python benchmarks/gpu_throughput.py --data-root /path/to/cifar10            # all four models
    python benchmarks/gpu_throughput.py --models ViT-S/4@32 --batch 1024 --steps 50
    python benchmarks/gpu_throughput.py --device cpu --models ViT-C/4@32 --batch 8 --steps 2 --warmup 1 \\
        --no-compile --no-timm                                                  # the CPU smoke (tests)

Prints a table and appends it, with the GPU's name, the command and versions, to
``<out>/gpu_throughput.csv`` (default ``results/benchmarks``).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from _record import RANDOM_BATCH, append_results
from _timm_twins import timm_twin
from vitrepro.cost import forward_flops
from vitrepro.experiments.runner import hardware_description
from vitrepro.models import create_model, model_family
from vitrepro.experiments.speed import compile_in_place

#: bf16 dense tensor-core peak in TFLOP/s (vendor data sheets, without sparsity), matched on the device name
#: in this order (the first key found in ``torch.cuda.get_device_name()``).
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0,
               "B200": 2250.0, "A100": 312.0, "A10G": 70.0, "L40S": 362.0, "L4": 121.0, "RTX 4090": 165.2,
               "RTX 3090": 71.0, "V100": 125.0}
DEFAULT_MODELS = "ViT-S/4@32,ViT-B/16@224,R50x1@224,R50+ViT-B/16@224"
DEFAULT_BATCH = {32: 1024, 224: 256}


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    """The bf16 dense peak of ``device`` in FLOP/s (``override_tflops`` first; None when unknown)."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in PEAK_TFLOPS.items() if k in name), None)


def prepare(model: torch.nn.Module, device: torch.device, compile_: bool, resnet: bool) -> torch.nn.Module:
    model = model.to(device).train()
    if resnet and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if compile_:
        compile_in_place(model)
    return model


def time_models(models: dict[str, torch.nn.Module], batch: int, img_size: int, steps: int, warmup: int,
                device: torch.device, bf16: bool) -> dict[str, float]:
    """Seconds per step of each model, measured in alternating blocks of ``steps`` steps after ``warmup``."""
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    fused = {"fused": True} if device.type == "cuda" else {}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05, **fused) for k, m in models.items()}
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def block(key: str, n: int) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            with amp:
                loss = F.cross_entropy(models[key](x), y)
            loss.backward()
            opts[key].step()
            opts[key].zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - t0

    for key in models:
        block(key, warmup)
    seconds = {key: 0.0 for key in models}
    for _ in range(2):  # two rounds, alternating, so a drift in clocks or load hits both
        for key in models:
            seconds[key] += block(key, steps)
    return {k: s / (2 * steps) for k, s in seconds.items()}


#: The from-scratch recipe's input path (experiments/cifar10_from_scratch.yaml): RandAugment N=2 (in CPU workers,
#: or on the device in per-op groups) and Mixup/CutMix (batched on the device, as the training step does it).
RECIPE_INPUT = {"randaugment": 2, "randaugment_magnitude": 9}


def time_input_path(data_root: str | None, batch: int, batches: int, device: torch.device, workers: int) -> list[dict]:
    """Images/s of the device-resident loader and of the CPU DataLoader over CIFAR-10's training split, each
    with the paper's preset alone and with the from-scratch recipe (``RECIPE_INPUT`` + Mixup/CutMix)."""
    from vitrepro.data import ImageClassificationDataModule
    from vitrepro.data.device import DeviceAugment, DeviceLoader
    from vitrepro.tasks.recipe import Mixer, MixConfig

    rows = []
    for loader, recipe in (("device", False), ("cpu", False), ("device", True), ("cpu", True)):
        dm = ImageClassificationDataModule(root=data_root, batch_size=batch, num_workers=0 if loader == "device" else workers,
                                           loader=loader, **(RECIPE_INPUT if recipe else {}))
        dm.setup()
        mixer = Mixer(MixConfig(), dm.num_classes) if recipe else None
        if loader == "device":
            it_src = DeviceLoader(dm.train_set, batch, DeviceAugment(dm.train_augment, dm.img_size, True, dm.randaugment),
                                  device, sampler=None, drop_last=True)
        else:
            it_src = dm.train_dataloader()
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        n, t0 = 0, None
        for i, (x, y) in enumerate(it_src):
            x = x.to(device, non_blocking=True)
            if mixer is not None:
                x, _ = mixer(x, y.to(device, non_blocking=True), seed=i)
            if i == 1:  # the first batch starts workers / warms kernels
                sync()
                t0, n = time.perf_counter(), 0
            elif i > 1:
                n += x.shape[0]
            if i == batches:
                break
        sync()
        dt = time.perf_counter() - (t0 or time.perf_counter())
        what = f"{loader} loader" + (" + RandAugment 2/9 + Mixup/CutMix" if recipe else "")
        rows.append({"model": f"(input path: {what})", "impl": "vitrepro", "batch": batch, "steps": n // batch,
                     "seconds": round(dt, 4), "images_per_s": round(n / dt, 1) if dt > 0 else None,
                     "data": dm.describe(), "workers": 0 if loader == "device" else workers})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated NAME@IMG_SIZE")
    p.add_argument("--batch", type=int, help="per model (default 1024 at 32x32, 256 at 224)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per block (two blocks per model)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens here)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--no-timm", action="store_true", help="time ours only")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    p.add_argument("--peak-tflops", type=float, help="the device's bf16 dense peak (default: PEAK_TFLOPS by name)")
    p.add_argument("--data-root", help="CIFAR-10 for the input path (default: the bundled sample)")
    p.add_argument("--input-batches", type=int, default=50, help="batches of the input-path measurement (0: skip)")
    p.add_argument("--workers", type=int, default=8, help="CPU DataLoader workers of the input-path measurement")
    p.add_argument("--out", default="results/benchmarks")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; this benchmark measures a GPU (use --device cpu for the smoke run)",
              file=sys.stderr)
        return 2
    peak = peak_flops(device, args.peak_tflops)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else hardware_description()
    rows = []
    step_rate = {}
    for spec in args.models.split(","):
        name, _, size = spec.partition("@")
        img_size = int(size or 224)
        batch = args.batch or DEFAULT_BATCH.get(img_size, 128)
        resnet = model_family(name) != "ViT"
        torch.manual_seed(0)
        ours = create_model(name, num_classes=1000, img_size=img_size)
        fwd = forward_flops(ours, img_size)
        models = {"vitrepro": prepare(ours, device, not args.no_compile, resnet)}
        twin = None if args.no_timm else timm_twin(name, img_size, 1000)
        if twin is not None:
            models["timm"] = prepare(twin, device, not args.no_compile, resnet)
        per_step = time_models(models, batch, img_size, args.steps, args.warmup, device, bf16=not args.fp32)
        for impl, s in per_step.items():
            ips = batch / s
            step_rate.setdefault(img_size, ips)
            rows.append({"model": name, "impl": impl, "img_size": img_size, "batch": batch, "steps": 2 * args.steps,
                         "seconds": round(s * 2 * args.steps, 4), "images_per_s": round(ips, 1),
                         "gflops_per_image": round(fwd / 1e9, 3),
                         "achieved_tflops": round(3 * fwd * ips / 1e12, 2),
                         "mfu": round(3 * fwd * ips / peak, 4) if peak else None, "data": RANDOM_BATCH})
        del models
    if args.input_batches:
        for r in time_input_path(args.data_root, args.batch or 1024, args.input_batches, device, args.workers):
            train = step_rate.get(32)
            r["input_over_train_step"] = round(r["images_per_s"] / train, 2) if train and r["images_per_s"] else None
            rows.append(r)
    df = pd.DataFrame(rows)
    df["device"], df["hardware"] = device.type, hardware
    df["precision"] = "fp32" if args.fp32 else "bf16-autocast"
    df["compiled"] = not args.no_compile
    df["peak_tflops"] = peak / 1e12 if peak else None
    timm_rate = df[df.impl == "timm"].set_index("model")["images_per_s"]
    df["ours_over_timm"] = [round(r.images_per_s / timm_rate[r.model], 3) if r.impl == "vitrepro" and r.model in timm_rate
                            else None for r in df.itertuples()]
    cols = [c for c in ("model", "impl", "img_size", "batch", "images_per_s", "achieved_tflops", "mfu", "ours_over_timm",
                        "input_over_train_step") if c in df]
    print(df[cols].to_string(index=False))
    print(f"hardware: {hardware}; peak {df['peak_tflops'].iloc[0]} TFLOP/s bf16 dense; torch {torch.__version__}")
    append_results(df, "gpu_throughput.py", argv, Path(args.out) / "gpu_throughput.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
