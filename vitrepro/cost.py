"""Compute accounting in the paper's convention (Sec. 4.4, Table 6, Figure 5).

``forward_flops(model, img_size)``: FLOPs of one forward pass of one image, a multiply-add counted as 2,
every matmul and convolution counted, the attention products ``q k^T`` and ``attn v`` included (the ViT
and hybrid models are run through their explicit attention path, ``forward_features(x,
return_attention=True)``, because torch's ``FlopCounterMode`` does not see inside the fused
``scaled_dot_product_attention`` kernel on CPU). Normalizations, activations and softmax are not counted,
as in the FLOP counts of timm and fvcore. ``training_flops = 3 x forward x images seen`` (forward and a
backward pass of twice its cost), which reproduces the exaFLOPs column of Table 6 from our models (7 epochs
of JFT-300M = 2.121e9 images; ``tests/test_compute.py`` checks every row): ViT within 0.2% (ViT-B/32 +2.0%),
hybrids within 1.5% (R50+ViT-L/16 at 7 epochs -2.9%, where the paper's 859 is not half its own 14-epoch
1668, which we match), BiT ResNets 3.1-4.1% above the paper.
"""
from __future__ import annotations

import inspect
import os

import torch
from torch import nn

#: JFT-300M's size (Sec. 4.1: 303M high-resolution images): Table 6's 7 epochs are 2.121e9 images.
JFT_IMAGES = 303_000_000
EXA = 1e18


def _has_explicit_attention(model: nn.Module) -> bool:
    ff = getattr(model, "forward_features", None)
    return ff is not None and "return_attention" in inspect.signature(ff).parameters


def forward_flops(model: nn.Module, img_size: int | None = None, in_chans: int = 3) -> float:
    """FLOPs of one forward pass of one ``img_size`` image (default: the model's ``cfg.img_size``), head
    included, a multiply-add counted as 2 (see the module docstring). The model is run in eval mode on the
    ``meta`` device when its parameters are there (no memory, no arithmetic), else on its own device.
    Raises ``ValueError`` without an ``img_size`` the model does not know."""
    from torch.utils.flop_counter import FlopCounterMode

    if img_size is None:
        img_size = getattr(getattr(model, "cfg", None), "img_size", None)
        if img_size is None:
            raise ValueError(f"forward_flops: give img_size for {type(model).__name__} (it has no cfg.img_size)")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, img_size, img_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if _has_explicit_attention(model):
            model.forward_head(model.forward_features(x, return_attention=True)[0])
        else:
            model(x)
    model.train(was_training)
    return float(counter.get_total_flops())


def training_flops(forward: float, images: float) -> float:
    """Training FLOPs of ``images`` images seen at ``forward`` FLOPs each: ``3 x forward x images`` (the
    paper's convention: a backward pass costs two forward passes)."""
    return 3.0 * float(forward) * float(images)


def training_memory_lower_bound(name: str, num_classes: int, img_size: int, batch: int, train: bool = True,
                                **fields) -> tuple[int, int]:
    """``(bytes, parameters)``: a lower bound of the memory one process needs to train (``train``) or run
    the registered model ``name`` on ``batch`` images of ``img_size`` px in fp32, from the model built on
    the ``meta`` device (no memory). Training: weights, gradients and two Adam moments (16 bytes a
    parameter); inference: the weights (4 bytes a parameter). Plus the input batch, and for a ViT or hybrid
    the activations every block keeps for the backward pass, at least 16 values per token and channel
    (the qkv, attention output, MLP and norm inputs; the attention matrix is not counted, which fused
    kernels avoid). A lower bound: a run above it cannot fit; one below it may still not."""
    from .models import create_model

    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, img_size=img_size, **fields)
    params = sum(p.numel() for p in model.parameters())
    need = params * (16 if train else 4) + batch * 3 * img_size * img_size * 4
    cfg = getattr(model, "cfg", None)
    if train and cfg is not None and hasattr(cfg, "num_tokens") and hasattr(cfg, "depth"):
        need += batch * cfg.num_tokens * cfg.width * 16 * 4 * cfg.depth
    return int(need), int(params)


def available_memory(accelerator: str = "cpu") -> tuple[int, str]:
    """``(bytes, where)``: the memory one process can use: a CUDA device's total memory, else the host's
    available memory (``MemAvailable`` of ``/proc/meminfo``, else the physical memory)."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return int(props.total_memory), props.name
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "host memory available"
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "host memory"


__all__ = ["JFT_IMAGES", "EXA", "forward_flops", "training_flops",
           "training_memory_lower_bound", "available_memory"]
