"""Fine-tuning a pre-trained model: the paper's transfer protocol as a LightningModule.

Protocol (Sec. 3.2 "Fine-tuning and higher resolution", Sec. 4.1, App. B.1.1, vit_jax ``train.py`` and
``checkpoint.py``):

- the pre-trained prediction head is removed and a zero-initialized D x K layer is attached
  (``reset_classifier``); a pre-logits layer is dropped too unless the caller builds the model with
  ``representation_size`` (vit_jax ``load_pretrained``: "drop-head variant");
- at a higher resolution the patch size stays, so the sequence grows; the pre-trained position
  embeddings are interpolated in 2-D by their place in the image, the class token's kept
  (``set_input_size``: bilinear with corners aligned = vit_jax's ``scipy.ndimage.zoom(order=1)``);
- SGD with momentum 0.9, no weight decay, batch 512, linear warmup (500 steps in the code) then cosine
  decay, stepped every optimizer step; gradient clipping at global norm 1 (a Trainer option:
  ``Trainer(gradient_clip_val=1.0, gradient_clip_algorithm="norm")``, see ``FinetuneConfig.trainer_kwargs``);
- learning rate and steps from the Table 4 sweep (``vitrepro.tasks.sweep``), picked on a held-out dev split.

``load_pretrained`` reads every checkpoint kind the suite meets: a Lightning checkpoint written by our
runner (``runs/<id>/checkpoints/last.ckpt``, keys ``model.<our keys>``), a state_dict in our names, a timm
state_dict (``.pth``/``.pt``/``.bin``/``.safetensors``) and Google's ``.npz`` (vit_jax, big_vision,
big_transfer layouts).
"""
from __future__ import annotations

import math
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import create_model
from ..models.convert import (CheckpointKeyError, load_npz, load_state_dict_strict, load_timm_state_dict,
                              timm_to_vitrepro)
from .classification import SupervisedTask
from .optim import SCHEDULES, build_optimizer

GRAD_CLIP_NORM = 1.0  # global gradient norm clipped during fine-tuning (App. B.1.1)
TORCH_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
CHECKPOINT_SUFFIXES = TORCH_SUFFIXES + (".safetensors", ".npz")


@dataclass
class FinetuneConfig:
    """Fine-tuning hyper-parameters (Sec. 4.1, App. B.1.1, Table 4).

    lr: base learning rate of SGD (0.03: vit_jax's default; Table 4 sweeps it). momentum: 0.9.
    steps: total optimizer steps of the schedule; None takes ``trainer.estimated_stepping_batches``
    (set the Trainer's ``max_steps`` to the same value, e.g. with ``trainer_kwargs()``).
    warmup_steps: linear warmup, in optimizer steps (500 in vit_jax). schedule: decay after warmup,
    ``cosine`` (the paper), ``linear`` or ``constant``. weight_decay: 0 (the paper uses none); when set,
    coupled L2 on dense and conv kernels only. img_size: fine-tuning resolution in pixels (None keeps
    the model's; the paper fine-tunes at 384). label_smoothing: of the softmax cross-entropy.

    Raises ``ValueError`` naming the field and its allowed values.
    """

    lr: float = 0.03
    momentum: float = 0.9
    steps: int | None = None
    warmup_steps: int = 500
    schedule: str = "cosine"
    weight_decay: float = 0.0
    img_size: int | None = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        checks = [
            ("lr", self.lr, isinstance(self.lr, (int, float)) and self.lr > 0, "a number > 0"),
            ("momentum", self.momentum, isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1,
             "a number in [0, 1)"),
            ("steps", self.steps, self.steps is None or (_is_int(self.steps) and self.steps >= 1),
             "None or an integer >= 1"),
            ("warmup_steps", self.warmup_steps, _is_int(self.warmup_steps) and self.warmup_steps >= 0,
             "an integer >= 0"),
            ("weight_decay", self.weight_decay, isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0,
             "a number >= 0"),
            ("img_size", self.img_size, self.img_size is None or (_is_int(self.img_size) and self.img_size >= 1),
             "None or an integer >= 1"),
            ("label_smoothing", self.label_smoothing,
             isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1, "a number in [0, 1)"),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name}={value!r} is not allowed: expected {allowed}")

    def trainer_kwargs(self) -> dict[str, Any]:
        """The Trainer options the protocol needs: gradient clipping at global norm 1 and, when ``steps``
        is set, ``max_steps``. E.g. ``L.Trainer(**cfg.trainer_kwargs(), precision="bf16-mixed")``."""
        out: dict[str, Any] = {"gradient_clip_val": GRAD_CLIP_NORM, "gradient_clip_algorithm": "norm"}
        if self.steps is not None:
            out["max_steps"] = self.steps
        return out


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------------------------
# Loading a pre-trained checkpoint
# ---------------------------------------------------------------------------------------------------------

class CheckpointMismatchError(ValueError):
    """A checkpoint of another family or size than the model: the message names the model, what it
    expected, what the checkpoint holds and the first mismatched keys and shapes."""


def describe_state_dict(sd: Mapping[str, Any]) -> str:
    """A one-line architecture summary of a state_dict in our names (or timm's BiT names), e.g.
    ``"ViT (width 128, patch 4, depth 6, 65 position tokens)"`` or ``"BiT ResNet (stem width 64,
    blocks per stage 3,4,6,3)"``; for anything else its first keys."""
    keys = list(sd.keys())
    shape = lambda k: tuple(sd[k].shape)  # noqa: E731
    if "embedding.weight" in sd:
        D, _, P, _ = shape("embedding.weight")
        depth = len({m[1] for k in keys if (m := re.match(r"transformer\.encoderblock\.(\d+)\.", k))})
        pos = [shape(k) for k in keys if k.endswith("pos_embedding")]
        extra = f", {pos[0][1]} position tokens" if pos and len(pos[0]) == 3 else ""
        family = "R50+ViT hybrid" if any(k.startswith("resnet.") for k in keys) else "ViT"
        return f"{family} (width {D}, patch {P}, depth {depth}{extra})"
    if "stem.conv.weight" in sd:
        blocks = {}
        for k in keys:
            if m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.", k):
                blocks.setdefault(int(m[1]), set()).add(int(m[2]))
        layers = ",".join(str(len(blocks[s])) for s in sorted(blocks))
        return f"BiT ResNet (stem width {shape('stem.conv.weight')[0]}, blocks per stage {layers})"
    return f"an unknown architecture (first keys: {', '.join(keys[:5])})"


def _npz_width(w: Mapping[str, np.ndarray]) -> int | None:
    """D of a ViT ``.npz`` (its patch embedding's output channels), None for another kind."""
    emb = next((k for k in w if k.endswith("embedding/kernel") and "posembed" not in k), None)
    return int(w[emb].shape[-1]) if emb is not None else None


def _describe_npz(w: Mapping[str, np.ndarray]) -> str:
    """``describe_state_dict`` for Google's ``.npz`` layouts."""
    keys = list(w.keys())
    emb = next((k for k in keys if k.endswith("embedding/kernel") and "posembed" not in k), None)
    resnet = any("conv_root" in k or "root_block" in k for k in keys)
    if emb is not None:
        P, _, _, D = w[emb].shape
        scanned = [k for k in keys if k.endswith("Transformer/encoderblock/LayerNorm_0/scale")]
        depth = (w[scanned[0]].shape[0] if scanned
                 else len({m[1] for k in keys if (m := re.search(r"encoderblock_(\d+)/", k))}))
        return f"{'R50+ViT hybrid' if resnet else 'ViT'} (width {D}, patch {P}, depth {depth})"
    if resnet:
        return "BiT ResNet"
    return f"an unknown architecture (first keys: {', '.join(keys[:5])})"


def _first_mismatches(model_sd: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], limit: int = 5) -> str:
    """The first missing, unexpected and differently shaped keys (position embeddings of another grid are
    not a mismatch: they are resampled)."""
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)}, model {tuple(model_sd[k].shape)}" for k in model_sd
              if k in sd and tuple(sd[k].shape) != tuple(model_sd[k].shape)
              and not (k.endswith(("pos_embedding", "pos_embedding_x", "pos_embedding_y"))
                       and sd[k].ndim == model_sd[k].ndim and sd[k].shape[-1] == model_sd[k].shape[-1])]
    parts = []
    for what, items in (("shapes differ", shapes), ("missing", missing), ("unexpected", unexpected)):
        if items:
            more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{what}: {'; '.join(items[:limit])}{more}")
    return " | ".join(parts)


def _torch_load(path: Path) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (no arbitrary code from the file). Raises
    ``ValueError`` naming the file when it holds more than tensors and plain containers."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: cannot be read with torch.load(weights_only=True) (it holds objects other "
                         f"than tensors and plain containers; load it yourself and pass a state_dict file): {e}") from e


def _unwrap(obj: Any, path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """(kind, state_dict) of a loaded torch file: ``lightning`` (keys ``model.*`` stripped), ``vitrepro``
    (our names) or ``timm``. Raises ``ValueError`` when no state_dict is found."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        inner = obj["state_dict"]
        if "pytorch-lightning_version" in obj or any(k.startswith("model.") for k in inner):
            sd = {k[len("model."):]: v for k, v in inner.items() if k.startswith("model.")}
            if not sd:
                raise CheckpointMismatchError(
                    f"{path}: Lightning checkpoint without model.* entries (keys: {', '.join(list(inner)[:5])}); "
                    f"expected one written by a task holding the network as .model")
            return "lightning", sd
        obj = inner
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]  # timm / torchvision training checkpoints
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: no state_dict found (expected a mapping of names to tensors, "
                         f"a Lightning checkpoint or a dict with 'state_dict' or 'model')")
    sd = dict(obj)
    timm_names = any(k.startswith(("patch_embed.", "blocks.", "cls_token", "pos_embed")) for k in sd)
    ours = any(k.startswith(("embedding.", "transformer.")) for k in sd)
    return ("vitrepro" if ours and not timm_names else "timm"), sd


def _drop_pre_logits(model: nn.Module, sd: dict, sep: str = ".") -> dict:
    """Drop the checkpoint's pre-logits layer when the model has none (vit_jax ``load_pretrained``,
    "drop-head variant": fine-tuning attaches the new head to the D-dim token)."""
    if isinstance(getattr(model, "pre_logits", None), nn.Sequential):
        return sd
    pattern = re.compile(r"(^|/)pre_logits/" if sep == "/" else r"^pre_logits\.")
    return {k: v for k, v in sd.items() if not pattern.search(k)}


def load_pretrained(model_name_or_module: str | nn.Module, checkpoint: str | Path | None, num_classes: int,
                    img_size: int | None = None, **model_overrides: Any) -> nn.Module:
    """A model ready for fine-tuning: pre-trained weights, a zero D x K head, the fine-tuning resolution.

    Args:
        model_name_or_module: a registry name (``"ViT-B/16"``, ``"R50x1"``, ...) built with
            ``create_model(name, **model_overrides)`` at its default resolution (that of the checkpoint;
            another is resampled), or a model to load into (changed in place).
        checkpoint: path to any of: a Lightning checkpoint of our runner (``.ckpt``; its ``model.*``
            entries are the network, other entries such as MPP's mask token are ignored; hyper-parameters
            are not saved, so the caller names the model and its overrides), a state_dict in our names or
            timm's (``.pth``/``.pt``/``.bin``, or ``.safetensors``; read by ``load_timm_state_dict``), or a
            Google ``.npz`` (``load_npz``). None: no weights (fine-tuning from scratch).
        num_classes: K, the classes of the new head.
        img_size: fine-tuning resolution in pixels; when it differs from the model's, ``set_input_size``
            resamples every position embedding in 2-D to the new grid, keeping the class token's
            (Sec. 3.2). The checkpoint's embeddings are resampled once, straight to the new grid.
        **model_overrides: architecture fields for ``create_model`` (e.g. ``depth=1``, ``posemb=...``,
            ``representation_size=768`` to keep a pre-logits layer; without it a checkpoint's pre-logits
            layer is dropped, as vit_jax does).

    Returns the model (the same object when one was given) with ``get_classifier()`` a zero-initialized
    (weight and bias) ``num_features x num_classes`` layer.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist (the message names it).
        CheckpointMismatchError (a ``ValueError``): a checkpoint of another family or size; the message
            names the model, the architecture it expected, the one found and the first mismatched keys
            and shapes.
        ValueError: an unknown suffix (naming the allowed ones), a file without a state_dict, a bad
            ``img_size`` or model override.
        NotImplementedError: ``img_size`` changes with ``posemb="relative"`` (see ``set_input_size``).
    """
    if isinstance(model_name_or_module, str):
        label = model_name_or_module + "".join(f", {k}={v!r}" for k, v in model_overrides.items())
        model = create_model(model_name_or_module, **model_overrides)
    else:
        if model_overrides:
            raise ValueError(f"model overrides {', '.join(model_overrides)} need a model name, not a module")
        model = model_name_or_module
        label = type(model).__name__
    if img_size is not None and img_size != model.cfg.img_size:
        model.set_input_size(img_size)
    if checkpoint is not None:
        _load_checkpoint(model, Path(checkpoint), label)
    model.reset_classifier(num_classes)
    head = model.get_classifier()
    if isinstance(head, (nn.Linear, nn.Conv2d)):
        with torch.no_grad():
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()
    return model


def _load_checkpoint(model: nn.Module, path: Path, label: str) -> None:
    """Load ``path`` into ``model`` except its head; errors as ``load_pretrained``."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"checkpoint {path}: unknown suffix {suffix!r}; allowed: {', '.join(CHECKPOINT_SUFFIXES)}")
    expected = describe_state_dict(model.state_dict())

    def mismatch(what: str, found: str, detail: str) -> CheckpointMismatchError:
        return CheckpointMismatchError(f"{what} {path} does not fit {label}: expected {expected}, found {found}; "
                                       f"{detail}")

    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            w = {k: f[k] for k in f.files}
        w = _drop_pre_logits(model, w, sep="/")
        width, want = _npz_width(w), getattr(getattr(model, "cfg", None), "width", None)
        if width is not None and want is not None and width != want:  # caught before a reshape fails
            raise mismatch(".npz checkpoint", _describe_npz(w), f"width: checkpoint {width}, model {want}")
        try:
            load_npz(model, w, skip_head=True)
        except (CheckpointKeyError, ValueError, TypeError, RuntimeError) as e:
            raise mismatch(".npz checkpoint", _describe_npz(w), str(e)) from e
        return
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        kind, sd = _unwrap(load_file(str(path)), path)
    else:
        kind, sd = _unwrap(_torch_load(path), path)
    what = {"lightning": "Lightning checkpoint", "vitrepro": "state_dict", "timm": "timm state_dict"}[kind]
    if kind == "timm":  # older timm ViTs name the pre-logits layer pre_logits.fc
        sd = {re.sub(r"^pre_logits\.fc\.", "pre_logits.0.", k): v for k, v in sd.items()}
    sd = _drop_pre_logits(model, sd)
    ours = timm_to_vitrepro(sd) if kind == "timm" else sd
    body = lambda d: {k: v for k, v in d.items() if not k.startswith("head.")}  # noqa: E731
    detail = _first_mismatches(body(model.state_dict()), body(ours))
    if detail:
        raise mismatch(what, describe_state_dict(ours), detail)
    try:
        if kind == "timm":
            load_timm_state_dict(model, sd, skip_head=True)
        else:
            load_state_dict_strict(model, ours, f"{what} {path}", None, "bilinear", True, skip_head=True)
    except (CheckpointKeyError, ValueError) as e:
        raise mismatch(what, describe_state_dict(ours), str(e)) from e


# ---------------------------------------------------------------------------------------------------------
# The LightningModule
# ---------------------------------------------------------------------------------------------------------

class FinetuneTask(SupervisedTask):
    """Fine-tune ``model`` (any family with the uniform API, head already K-way, e.g. from
    ``load_pretrained``) on (images (B, C, H, W) in [-1, 1], labels (B,) int64) batches.

    SGD momentum 0.9 without weight decay; the learning rate is ``lr * warmup_decay(step, steps, warmup,
    schedule)`` per optimizer step (``interval="step"``); softmax cross-entropy (optionally smoothed).
    Clip gradients with the Trainer: ``L.Trainer(**config.trainer_kwargs())``. Logs ``train/loss``,
    ``train/top1``, ``val/loss``, ``val/top1``, ``test/loss``, ``test/top1`` (torchmetrics, fractions).

    ``config.img_size``, when it differs from the model's, is applied here with ``set_input_size``.
    Raises ``ValueError`` when the model's head is not ``num_classes``-way.
    """

    def __init__(self, model: nn.Module, num_classes: int, config: FinetuneConfig | None = None):
        config = config or FinetuneConfig()
        if config.img_size is not None and config.img_size != model.cfg.img_size:
            model.set_input_size(config.img_size)
        have = getattr(model, "num_classes", None)
        if have != num_classes:
            raise ValueError(f"the model's head has {have} classes, num_classes={num_classes}: build it with "
                             f"load_pretrained(..., num_classes={num_classes}) or call reset_classifier")
        super().__init__(model, num_classes)
        self.config = config

    @classmethod
    def from_pretrained(cls, model_name_or_module: str | nn.Module, checkpoint: str | Path | None, num_classes: int,
                        config: FinetuneConfig | None = None, **model_overrides: Any) -> "FinetuneTask":
        """``FinetuneTask(load_pretrained(..., img_size=config.img_size, **model_overrides), num_classes,
        config)``; raises as ``load_pretrained``."""
        config = config or FinetuneConfig()
        model = load_pretrained(model_name_or_module, checkpoint, num_classes, config.img_size, **model_overrides)
        return cls(model, num_classes, config)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)

    def total_steps(self) -> int:
        """Optimizer steps of the schedule: ``config.steps``, else the Trainer's estimate."""
        if self.config.steps is not None:
            max_steps = getattr(self._trainer, "max_steps", -1)  # no Trainer attached: nothing to compare
            if max_steps not in (-1, None) and max_steps != self.config.steps:
                warnings.warn(f"FinetuneConfig.steps={self.config.steps} but Trainer max_steps={max_steps}: the "
                              f"schedule decays over {self.config.steps} steps", stacklevel=2)
            return self.config.steps
        est = self.trainer.estimated_stepping_batches
        if not math.isfinite(est):
            raise ValueError("FinetuneConfig.steps=None needs a Trainer with max_steps or max_epochs")
        return max(1, int(est))

    def configure_optimizers(self):
        c = self.config
        return build_optimizer(self.model, "sgd", c.lr, c.weight_decay, self.total_steps(), c.warmup_steps,
                               c.schedule, momentum=c.momentum)


__all__ = ["FinetuneConfig", "FinetuneTask", "load_pretrained", "CheckpointMismatchError", "describe_state_dict",
           "GRAD_CLIP_NORM"]
