"""Fast-training options (the ``speed`` section): what a GPU run needs to keep every kernel busy, applied by
a Lightning callback so every task (pre-training, MPP, fine-tuning) gets them without code of its own.

``None`` means automatic: on when the run's device is a CUDA GPU, off on CPU (``torch.compile`` on a CPU is
slow to start and rarely pays for a short run; it runs there only when asked with ``compile: true``).
These options change speed, not what is computed (up to floating-point order), so they are not part of a
run's id. bf16 is the Trainer's ``precision: bf16-mixed``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import lightning as L
import torch

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SDPA_BACKENDS = ("auto", "flash", "cudnn", "efficient", "math")
MATMUL_PRECISIONS = ("highest", "high", "medium")


@dataclass
class SpeedConfig:
    """compile: ``torch.compile`` the network in place (``nn.Module.compile``: checkpoints keep their
    names); a graph that fails to compile runs eagerly, with one warning. compile_mode: its mode.
    fused_optimizer: the fused CUDA kernel of AdamW / SGD. channels_last: BiT and hybrid ResNets in the
    channels-last memory format. sdpa: the ``scaled_dot_product_attention`` backend (``auto``: PyTorch
    picks flash or cuDNN attention where the shapes and dtype allow). matmul_precision: float32 matmuls
    (``high``: TF32 on GPUs that have it). Raises ``ValueError`` naming the allowed values."""

    compile: bool | None = None
    compile_mode: str = "default"
    fused_optimizer: bool | None = None
    channels_last: bool | None = None
    sdpa: str = "auto"
    matmul_precision: str = "high"

    def __post_init__(self):
        for name, allowed in (("compile_mode", COMPILE_MODES), ("sdpa", SDPA_BACKENDS),
                              ("matmul_precision", MATMUL_PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")

    def resolved(self, device: torch.device) -> dict[str, bool]:
        """The boolean options for ``device``: each ``None`` becomes ``device.type == "cuda"``."""
        gpu = torch.device(device).type == "cuda"
        return {k: gpu if getattr(self, k) is None else bool(getattr(self, k))
                for k in ("compile", "fused_optimizer", "channels_last")}


def compile_in_place(model: torch.nn.Module, mode: str = "default") -> bool:
    """``model.compile(mode=mode)`` with the fallback: where torch.compile is unavailable, one warning and
    False; a graph that later fails to compile runs eagerly (dynamo's ``suppress_errors``)."""
    try:
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            raise RuntimeError("torch.compile is not supported on this Python")
        torch._dynamo.config.suppress_errors = True
        model.compile(mode=mode)
        return True
    except Exception as e:  # noqa: BLE001 (any failure means: train uncompiled)
        warnings.warn(f"speed.compile: torch.compile unavailable ({type(e).__name__}: {e}); training uncompiled",
                      stacklevel=2)
        return False


def set_sdpa_backend(name: str) -> None:
    """Allow only the ``name`` attention backend (``auto``: all, PyTorch's choice) for this process."""
    if name == "auto":
        flags = dict(flash=True, cudnn=True, efficient=True, math=True)
    else:
        flags = {b: b == name for b in ("flash", "cudnn", "efficient", "math")}
    torch.backends.cuda.enable_flash_sdp(flags["flash"])
    torch.backends.cuda.enable_cudnn_sdp(flags["cudnn"])
    torch.backends.cuda.enable_mem_efficient_sdp(flags["efficient"])
    torch.backends.cuda.enable_math_sdp(flags["math"])


class SpeedCallback(L.Callback):
    """Applies a ``SpeedConfig`` when a fit starts: matmul precision, attention backend, channels-last
    ResNets, the fused optimizer (``pl_module.fused_optimizer``, read by ``build_optimizer``) and the
    compiled network. ``applied`` records what was switched on."""

    def __init__(self, config: SpeedConfig | None = None):
        self.config = config or SpeedConfig()
        self.applied: dict[str, bool] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.applied:
            return
        c = self.config
        on = c.resolved(trainer.strategy.root_device)
        torch.set_float32_matmul_precision(c.matmul_precision)
        set_sdpa_backend(c.sdpa)
        net = getattr(pl_module, "model", pl_module)
        if on["channels_last"] and (hasattr(net, "resnet") or type(net).__name__ == "BiTResNet"):
            net.to(memory_format=torch.channels_last)
        else:
            on["channels_last"] = False
        pl_module.fused_optimizer = on["fused_optimizer"]
        if on["compile"]:
            on["compile"] = compile_in_place(net, c.compile_mode)
        self.applied = on


def speed_callback(cfg: dict) -> SpeedCallback:
    """The callback of a run config's ``speed`` section (absent: the automatic defaults)."""
    return SpeedCallback(SpeedConfig(**cfg.get("speed", {})))


__all__ = ["SpeedConfig", "SpeedCallback", "speed_callback", "compile_in_place", "set_sdpa_backend", "COMPILE_MODES", "SDPA_BACKENDS",
           "MATMUL_PRECISIONS"]
