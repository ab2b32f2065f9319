"""Figure 12 (App. D.5) of Dosovitskiy et al.: inference images/s and the largest batch that fits, against
input size.

The paper times inference on one TPUv3 core (16 GiB): left, images/s of each model at input sizes 64-512 px,
each point the best over a range of batch sizes; right, the largest batch that fits on the core. Its
finding, in words (it draws no table): ViTs are as fast as ResNets of similar FLOPs, the quadratic cost of
attention in the number of tokens "only barely starts happening for the largest models at the largest
resolutions", and large ViTs fit larger batches than ResNets (memory efficiency).

Here, for each model and input size, one search does both: the batch doubles from 1 while the forward pass
(inference mode, random images held in memory; bf16 autocast and channels-last ResNets on a GPU, fp32 on a
CPU) fits in ``--memory-gib`` above what the process held before (weights included in that): a CUDA device
via ``torch.cuda.set_per_process_memory_fraction`` and ``OutOfMemoryError``, a CPU via ``RLIMIT_AS`` and
the allocator's "can't allocate memory" error, so a probe never takes the machine down. On a CPU, for the
address space to follow what the probe holds, glibc's malloc is set to map every block of 128 KiB or more
apart and unmap it when freed (``mallopt(M_MMAP_THRESHOLD)``, for the rest of the process) and trimmed
before each probe, and the probe runs without oneDNN (whose primitives, once refused memory, fail for good);
otherwise memory freed by an earlier probe or test stays mapped and is handed out on top of the budget.
Each batch that fits is then timed, outside the budget and with the default kernels, over one warm-up and
``--repeats`` more forwards; images/s is the best over the batches. After the first
batch that does not fit, bisection finds the largest that does. Bounded in time: a probe that would take
past ``--seconds-per-point`` (predicted from the last one, linear in the batch) is not run, and the largest
batch is then reported as a lower bound (``largest_batch_bound: time``); ``--max-batch`` caps it too.
Default memory budget: the device's total on a GPU (less 2 GiB), 0.5 GiB on a CPU (an arbitrary budget;
the paper's was a 16 GiB TPUv3 core). On a CPU the budget is address space, so what the allocator maps
counts as well as what it fills: a batch that fits is a lower bound of what the memory holds.

    python benchmarks/inference_scaling.py                        # a GPU: 4 models x 64-512 px
    python benchmarks/inference_scaling.py --device cpu --sizes 64,128,224,384 --seconds-per-point 30
    python benchmarks/inference_scaling.py --device cpu --models ViT-C/4 --sizes 32 --seconds-per-point 2 \\
        --max-batch 8                                             # the smoke (tests)

Prints a table, appends it with the hardware, command and versions to ``<out>/inference_scaling.csv``
(default ``results/benchmarks``) and draws the two panels to ``<out>/inference_scaling.png`` (``--redraw``
draws them again from the CSV's last measurement, measuring nothing).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from _record import RANDOM_BATCH, append_results
from vitrepro.cost import forward_flops
from vitrepro.experiments.runner import hardware_description
from vitrepro.models import create_model, model_family

DEFAULT_MODELS = "ViT-B/16,ViT-B/32,R50x1,R50+ViT-B/16"
DEFAULT_SIZES = "64,128,224,384,512"
GIB = 2 ** 30


class MemoryBudget:
    """Context that lets the process allocate at most ``budget`` bytes more than it holds on entry: a CUDA
    device's per-process fraction, or the CPU process's address-space limit (``RLIMIT_AS``)."""

    def __init__(self, device: torch.device, budget: int):
        self.device, self.budget = device, budget

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            total = torch.cuda.get_device_properties(self.device).total_memory
            held = torch.cuda.memory_allocated(self.device)
            torch.cuda.set_per_process_memory_fraction(min(1.0, (held + self.budget) / total), self.device)
        else:
            self.onednn, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, False
            unmap_freed_memory()
            self.saved = resource.getrlimit(resource.RLIMIT_AS)
            vm = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (vm + self.budget, self.saved[1]))
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, self.device)
            torch.cuda.empty_cache()
        else:
            resource.setrlimit(resource.RLIMIT_AS, self.saved)
            torch.backends.mkldnn.enabled = self.onednn
        return False


def unmap_freed_memory() -> None:
    """glibc only (a no-op elsewhere): map blocks of 128 KiB or more apart and unmap them when freed, from now
    on in this process (``M_MMAP_THRESHOLD``, which also stops glibc raising that threshold as it goes), and
    give the free top of the heap back now (``malloc_trim``)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return
    mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (malloc.h)
    malloc_trim(0)


def out_of_memory(err: BaseException) -> bool:
    """True for the error of an allocation refused by the budget (CUDA or the CPU allocator)."""
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err) \
        or "Cannot allocate memory" in str(err)


def forward_seconds(model: torch.nn.Module, batch: int, img_size: int, device: torch.device, budget: int,
                    repeats: int, amp) -> tuple[float | None, float | None]:
    """``(seconds of the probe forward, seconds per timed forward)`` of ``batch`` images, or ``(None, None)``
    when the probe does not fit in ``budget``; ``repeats`` = 0 skips the timing."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    try:
        with MemoryBudget(device, budget):
            x = torch.randn(batch, 3, img_size, img_size, device=device)
            if device.type == "cuda" and model_family(model.registry_name) != "ViT":
                x = x.to(memory_format=torch.channels_last)
            with torch.inference_mode(), amp:
                sync()
                t0 = time.perf_counter()
                model(x)
                sync()
                probe = time.perf_counter() - t0
    except (RuntimeError, MemoryError) as err:
        if not out_of_memory(err):
            raise
        return None, None
    if not repeats:
        return probe, None
    with torch.inference_mode(), amp:
        model(x)  # warm-up: the default kernels' first call
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        sync()
    return probe, (time.perf_counter() - t0) / repeats


def search(model: torch.nn.Module, img_size: int, device: torch.device, budget: int, max_batch: int,
           seconds: float, repeats: int, amp) -> dict:
    """Largest batch that fits (doubling, then bisection) and the best images/s over the batches timed;
    bounded by ``max_batch`` and ``seconds`` (see the module's docstring)."""
    forward_seconds(model, 1, img_size, device, budget, 0, amp)  # warm-up: first-call kernel selection
    start = time.perf_counter()
    left = lambda: seconds - (time.perf_counter() - start)  # noqa: E731
    best_ips, best_batch, fits, fails, bound, last = 0.0, None, 0, None, None, None
    batch = 1
    while True:  # doubling: time each batch that fits
        if batch > max_batch:
            bound = "max_batch"
            break
        if last is not None and last[1] * batch / last[0] * (2 + repeats if repeats else 1) > left():
            bound = "time"
            break
        probe, timed = forward_seconds(model, batch, img_size, device, budget, repeats, amp)
        if probe is None:
            fails = batch
            break
        fits, last = batch, (batch, probe)
        ips = batch / (timed or probe)
        if ips > best_ips:
            best_ips, best_batch = ips, batch
        batch *= 2
    while fails is not None and fails - fits > 1:  # bisection, untimed
        mid = (fits + fails) // 2
        if last[1] * mid / last[0] > left():
            bound = "time"
            break
        probe, _ = forward_seconds(model, mid, img_size, device, budget, 0, amp)
        if probe is None:
            fails = mid
        else:
            fits, last = mid, (mid, probe)
    return {"largest_batch": fits, "largest_batch_bound": bound, "first_batch_not_fitting": fails,
            "images_per_s": round(best_ips, 2), "at_batch": best_batch, "seconds": round(time.perf_counter() - start, 1)}


def plot(df: pd.DataFrame, path: Path, hardware: str, budget_gib: float) -> None:
    """The paper's two panels: images/s and largest batch against input size, one line a model; open markers
    where the largest batch is a lower bound (the search's time or batch cap, not memory, stopped it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    palette = dict(zip(df.model.unique(), sns.color_palette("tab10")))
    for model, g in df.groupby("model", sort=False):
        g = g.sort_values("img_size")
        c = palette[model]
        axes[0].plot(g.img_size, g.images_per_s, "o-", color=c, label=model)
        axes[1].plot(g.img_size, g.largest_batch, "-", color=c, label=model)
        exact = g.largest_batch_bound.isna()
        axes[1].plot(g.img_size[exact], g.largest_batch[exact], "o", color=c)
        axes[1].plot(g.img_size[~exact], g.largest_batch[~exact], "o", mfc="none", color=c)
    for ax, ylabel in zip(axes, ("inference images/s (best over batch sizes)",
                                 f"largest batch in {budget_gib:g} GiB (open: lower bound)")):
        ax.set(xscale="log", yscale="log", xlabel="input size (px)", ylabel=ylabel)
        ax.set_xticks(sorted(df.img_size.unique()), [str(s) for s in sorted(df.img_size.unique())])
        ax.minorticks_off()
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Figure 12 (App. D.5) on {hardware}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated registry names")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated input sizes in px")
    p.add_argument("--device", default="cuda")
    p.add_argument("--memory-gib", type=float, help="budget above what the process holds (default: see above)")
    p.add_argument("--max-batch", type=int, default=8192)
    p.add_argument("--seconds-per-point", type=float, default=20.0, help="time bound of one model and size")
    p.add_argument("--repeats", type=int, default=2, help="timed forwards per batch that fits")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on a GPU (a CPU runs fp32 always)")
    p.add_argument("--out", default="results/benchmarks")
    p.add_argument("--redraw", action="store_true", help="measure nothing: draw <out>/inference_scaling.png again "
                   "from the last measurement in <out>/inference_scaling.csv")
    args = p.parse_args(argv)
    if args.redraw:
        rows = pd.read_csv(Path(args.out) / "inference_scaling.csv")
        last = rows[rows["measured_at"] == rows["measured_at"].iloc[-1]]
        plot(last, Path(args.out) / "inference_scaling.png", last["hardware"].iloc[0], float(last["memory_gib"].iloc[0]))
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; use --device cpu", file=sys.stderr)
        return 2
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
        total = torch.cuda.get_device_properties(device).total_memory
        budget_gib = args.memory_gib or round(total / GIB - 2, 1)
    else:
        hardware, budget_gib = hardware_description(), args.memory_gib or 0.5
    bf16 = device.type == "cuda" and not args.fp32
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    rows = []
    for name in args.models.split(","):
        for img_size in (int(s) for s in args.sizes.split(",")):
            torch.manual_seed(0)
            model = create_model(name, num_classes=1000, img_size=img_size).eval().to(device)
            if device.type == "cuda" and model_family(name) != "ViT":
                model = model.to(memory_format=torch.channels_last)
            row = {"model": name, "img_size": img_size, "gflops_per_image": round(forward_flops(model, img_size) / 1e9, 3)}
            row.update(search(model, img_size, device, int(budget_gib * GIB), args.max_batch, args.seconds_per_point,
                              args.repeats, amp))
            print(f"{name}@{img_size}: {row['images_per_s']} images/s (batch {row['at_batch']}), largest batch "
                  f"{row['largest_batch']}{' (lower bound: ' + row['largest_batch_bound'] + ')' if row['largest_batch_bound'] else ''}"
                  f" [{row['seconds']} s]", flush=True)
            rows.append(row)
            del model
    df = pd.DataFrame(rows)
    df["device"], df["hardware"], df["memory_gib"] = device.type, hardware, budget_gib
    df["precision"] = "bf16-autocast" if bf16 else "fp32"
    df["threads"] = torch.get_num_threads() if device.type == "cpu" else None
    df["data"] = RANDOM_BATCH
    out = Path(args.out)
    append_results(df.copy(), "inference_scaling.py", argv, out / "inference_scaling.csv")
    plot(df, out / "inference_scaling.png", hardware, budget_gib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
