"""All weight reading and writing, for every model family: our checkpoints, timm state_dicts, Google's ``.npz``.

- ``load_pretrained(name_or_model, path, num_classes, img_size)``: any checkpoint the suite meets, ready
  for fine-tuning (zero head, position embeddings resampled to ``img_size``); ``model_from_checkpoint(path)``
  builds the model a checkpoint of ours describes (no model name needed);
- our Lightning checkpoints carry ``MODEL_KEY`` = ``model_spec(model)``: the registry name and every
  architecture field (``checkpoint_model_spec(path)`` reads it without loading the weights);
- ``load_timm_state_dict`` (timm's ``vit_*``, ``resnetv2_*_bit``, ``vit_*_r50_*``), ``load_npz`` /
  ``save_npz`` / ``to_npz_dict`` (the vit_jax, big_vision and big_transfer layouts; the key tables are in
  ``convert.py``), ``load_state_dict_strict`` (the common strict load with position-embedding resampling).

Every torch file is read with ``torch.load(weights_only=True)``: no file a user hands us can run code.
Source: vit_jax ``checkpoint.py`` (one module for checkpoint I/O), timm ``_load_weights``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from .convert import (LAYOUTS, CheckpointKeyError, _arr, _detect, _is_timm_bit, _name_keys, _OURS_VIT_RULES, _rename,
                      _spec, timm_to_vitrepro)
from .posemb import resample_posemb_1d, resample_posemb_grid
from .registry import create_model, model_config
from .vit import VisionTransformer

TORCH_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
CHECKPOINT_SUFFIXES = TORCH_SUFFIXES + (".safetensors", ".npz")
#: The entry of our Lightning checkpoints that describes the model (``model_spec``).
MODEL_KEY = "vitrepro_model"


def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """``{"name": registry name, **every architecture field}`` of a model built by ``create_model``
    (None for another module): enough for ``create_model(**spec)`` to rebuild it."""
    name = getattr(model, "registry_name", None)
    cfg = getattr(model, "cfg", None)
    if name is None or not dataclasses.is_dataclass(cfg):
        return None
    fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
    return {"name": name, **fields}


def _unreadable(path: Path, e: BaseException) -> ValueError:
    """The one-line error for a weight file that cannot be read at all (empty, truncated, another format)."""
    size = path.stat().st_size if path.is_file() else 0
    return ValueError(f"checkpoint {path} cannot be read ({size} bytes: empty, truncated or not a checkpoint): "
                      f"{' '.join(str(e).split())[:160] or type(e).__name__}")


def checkpoint_model_spec(path: str | Path) -> dict[str, Any] | None:
    """The model description a Lightning checkpoint of ours carries (``MODEL_KEY``), None when it has none
    (older checkpoints, timm and ``.npz`` files). Reads the file memory-mapped, weights_only. Raises
    ``ValueError`` naming the file when it cannot be read (empty, truncated)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors" and path.is_file():  # ours (export_weights) carry it as metadata
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                text = (f.metadata() or {}).get(MODEL_KEY)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a bad header
            raise _unreadable(path, e) from None
        return dict(json.loads(text)) if text else None
    if path.suffix.lower() != ".ckpt" or not path.is_file():
        return None
    obj = _torch_load(path, mmap=True)
    spec = obj.get(MODEL_KEY) if isinstance(obj, Mapping) else None
    return dict(spec) if spec else None


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the network of our ``checkpoint`` (a ``.ckpt``) as ``out`` (``.safetensors``): its state_dict in
    our names, fp32, with ``model_spec`` as JSON metadata under ``MODEL_KEY``, so that ``resolve_weights``
    rebuilds its whole architecture from it and nothing in it is pickled. Written to a temporary file and
    renamed into place. Returns ``out``. Raises ``ValueError`` for a checkpoint without a model description."""
    from safetensors.torch import save_file

    checkpoint, out = Path(checkpoint), Path(out)
    spec = checkpoint_model_spec(checkpoint)
    if spec is None:
        raise ValueError(f"checkpoint {checkpoint} does not say which model it holds (no '{MODEL_KEY}' entry); "
                         f"only checkpoints written by `vitrepro run` can be exported")
    _, sd = _unwrap(_torch_load(checkpoint), checkpoint)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file({k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous() for k, v in sd.items()},
              str(tmp), metadata={MODEL_KEY: json.dumps(spec)})
    os.replace(tmp, out)
    return out


#: Model fields a run sets apart from its starting checkpoint: the new training's regularization and head,
#: not the architecture the weights need.
TRAINING_FIELDS = ("dropout", "attention_dropout", "drop_path_rate", "num_classes", "img_size", "head_zero_init",
                   "head_bias_init")


def architecture_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": ..., fields that differ from the name's registry config}`` of a ``model_spec``: what a run
    config's ``model`` section must say to rebuild that architecture (``{"name": "ViT-C/4", "posemb":
    "none"}``), less ``TRAINING_FIELDS``."""
    full = dataclasses.asdict(model_config(spec["name"]))
    plain = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return {"name": spec["name"], **{k: v for k, v in spec.items() if k != "name" and k not in TRAINING_FIELDS
                                     and k in full and plain(full[k]) != plain(v)}}


@dataclasses.dataclass(frozen=True)
class Weights:
    """What a weight source names: ``model`` (``name`` + architecture fields, for ``create_model`` or a run
    config's ``model`` section), ``checkpoint`` (None: a random initialization), ``run`` (a run folder's
    ``config.yaml``, None for a file) and a short ``label``."""

    model: dict[str, Any]
    checkpoint: Path | None
    run: dict[str, Any] | None
    label: str
    img_size: int | None = None  # the resolution a checkpoint of ours was trained at


def resolve_weights(source: str | Path | None, model: Mapping[str, Any] | None = None, named: bool = False) -> Weights:
    """The one resolver from a weight source to a model: a run folder of ``vitrepro run`` (its checkpoint,
    ``RunDir.checkpoint``), a ``.ckpt`` of ours (it names its whole architecture: position embedding, pool,
    every field), a timm state_dict (``.pth``/``.bin``/``.safetensors``) or Google ``.npz`` (``model`` names
    the architecture), or None (a random initialization of ``model``).

    ``model``: a run config's or the command line's model fields. For a checkpoint of ours the checkpoint's
    architecture wins (``architecture_of``) and only ``TRAINING_FIELDS`` of ``model`` are kept, unless the
    user ``named`` another model on purpose (``--model``, ``--model.name``): that model is then built, and
    loading the checkpoint into it fails naming both architectures. Raises
    ``FileNotFoundError`` naming a missing path or checkpoint, ``ValueError`` when nothing names the model
    or the file cannot be read."""
    from ..rundir import RunDir

    given = dict(model or {})
    if given.get("name") is None:
        given.pop("name", None)
    run = None
    if source is None:
        if "name" not in given:
            raise ValueError("no checkpoint and no model: name the model (--model NAME or model.name)")
        return Weights(given, None, None, "random init")
    path = Path(source)
    if path.is_dir():
        folder = RunDir(path)
        checkpoint = folder.checkpoint()
        run = folder.read_config()
        label = path.name
    elif path.is_file():
        checkpoint, label = path, path.stem
    else:
        raise FileNotFoundError(f"{path} not found: expected a run folder of `vitrepro run` or a checkpoint file "
                                f"({', '.join(CHECKPOINT_SUFFIXES)})")
    spec = checkpoint_model_spec(checkpoint)
    if spec and not (named and given.get("name") not in (None, spec["name"])):
        own = architecture_of(spec)
        return Weights({**own, **{k: v for k, v in given.items() if k in TRAINING_FIELDS}}, checkpoint, run, label,
                       spec.get("img_size"))
    if spec:  # another model, named on purpose
        return Weights(given, checkpoint, run, label)
    if run is not None and "name" not in given:
        given = dict(run["config"]["model"])  # an older run's checkpoint: its config names the model
    if "name" not in given:
        raise ValueError(f"{checkpoint} does not say which model it holds (a timm, .npz or older checkpoint): "
                         f"name the model (--model NAME or model.name)")
    return Weights(given, checkpoint, run, label)


def model_from_checkpoint(path: str | Path, num_classes: int | None = None, img_size: int | None = None) -> nn.Module:
    """The model a checkpoint of ours describes, with its weights; with ``num_classes`` a zero head of that
    size (as ``load_pretrained``), at ``img_size`` (None: the checkpoint's). Raises ``ValueError`` when the
    checkpoint carries no model description (pass the model name instead)."""
    spec = checkpoint_model_spec(path)
    if spec is None:
        raise ValueError(f"checkpoint {path} does not say which model it holds (no '{MODEL_KEY}' entry: a timm, "
                         f".npz or older checkpoint); name the model (--model NAME, or model.name)")
    name = spec.pop("name")
    model = create_model(name, **spec)
    if num_classes is None:
        _load_checkpoint(model, Path(path), name, skip_head=False)
        if img_size is not None and img_size != model.cfg.img_size:
            model.set_input_size(img_size)
        return model
    return load_pretrained(model, path, num_classes, img_size)


# ---------------------------------------------------------------------------------------------------------
# Any checkpoint, ready for fine-tuning
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


def _torch_load(path: Path, mmap: bool = False) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (no arbitrary code from the file). Raises
    ``ValueError`` naming the file when it holds more than tensors and plain containers, or cannot be read
    at all (empty, truncated)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: cannot be read with torch.load(weights_only=True) (it holds objects other "
                         f"than tensors and plain containers; load it yourself and pass a state_dict file): "
                         f"{' '.join(str(e).split())[:300]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise _unreadable(path, e) from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` (``allow_pickle=False``: object arrays are refused). Raises ``ValueError``
    naming the file when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, KeyError) as e:
        raise _unreadable(path, e) from None


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


def _load_checkpoint(model: nn.Module, path: Path, label: str, skip_head: bool = True) -> None:
    """Load ``path`` into ``model`` (except its head with ``skip_head``); errors as ``load_pretrained``."""
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
        w = _read_npz(path)
        w = _drop_pre_logits(model, w, sep="/")
        width, want = _npz_width(w), getattr(getattr(model, "cfg", None), "width", None)
        if width is not None and want is not None and width != want:  # caught before a reshape fails
            raise mismatch(".npz checkpoint", _describe_npz(w), f"width: checkpoint {width}, model {want}")
        try:
            load_npz(model, w, skip_head=skip_head)
        except (CheckpointKeyError, ValueError, TypeError, RuntimeError) as e:
            raise mismatch(".npz checkpoint", _describe_npz(w), str(e)) from e
        return
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            loaded = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a bad header
            raise _unreadable(path, e) from None
        kind, sd = ("vitrepro", loaded) if checkpoint_model_spec(path) else _unwrap(loaded, path)
    else:
        kind, sd = _unwrap(_torch_load(path), path)
    what = {"lightning": "Lightning checkpoint", "vitrepro": "state_dict", "timm": "timm state_dict"}[kind]
    if kind == "timm":  # older timm ViTs name the pre-logits layer pre_logits.fc
        sd = {re.sub(r"^pre_logits\.fc\.", "pre_logits.0.", k): v for k, v in sd.items()}
    sd = _drop_pre_logits(model, sd)
    ours = timm_to_vitrepro(sd) if kind == "timm" else sd
    body = lambda d: {k: v for k, v in d.items() if not (skip_head and k.startswith("head."))}  # noqa: E731
    detail = _first_mismatches(body(model.state_dict()), body(ours))
    if detail:
        raise mismatch(what, describe_state_dict(ours), detail)
    try:
        if kind == "timm":
            load_timm_state_dict(model, sd, skip_head=skip_head)
        else:
            load_state_dict_strict(model, ours, f"{what} {path}", None, "bilinear", True, skip_head=skip_head)
    except (CheckpointKeyError, ValueError) as e:
        raise mismatch(what, describe_state_dict(ours), str(e)) from e


# ---------------------------------------------------------------------------------------------------------
# timm state_dicts
# ---------------------------------------------------------------------------------------------------------

def load_timm_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], img_size: int | None = None,
                         interpolation: str = "bilinear", align_corners: bool = True, skip_head: bool = False) -> None:
    """Load a timm state_dict of the same architecture into ``model`` (any family), strictly.

    Raises ``CheckpointKeyError`` naming missing/unexpected keys (in timm's names, with ours), ``ValueError``
    for a shape mismatch other than a position embedding at another resolution (resampled).
    """
    bit = _is_timm_bit(state_dict)
    to_timm = (lambda k: k) if bit else (lambda k: _rename(k, _OURS_VIT_RULES))  # noqa: E731
    load_state_dict_strict(model, timm_to_vitrepro(state_dict), "timm state_dict", img_size, interpolation, align_corners,
                    skip_head, ours_to_source=to_timm)


# ---------------------------------------------------------------------------------------------------------
# The common strict load, with position-embedding resampling
# ---------------------------------------------------------------------------------------------------------

def load_state_dict_strict(model: nn.Module, sd: dict[str, torch.Tensor], what: str, img_size: int | None,
                           interpolation: str, align_corners: bool, skip_head: bool,
                           ours_to_source: Callable[[str], str] = lambda k: k) -> None:
    """Load a state_dict already in our names into ``model``, strictly, resampling position embeddings of
    another grid (and all of them to ``img_size`` when given). ``what`` names the source and
    ``ours_to_source`` its keys in errors. Raises ``CheckpointKeyError`` (missing/unexpected keys) or
    ``ValueError`` (a shape mismatch that is not a position embedding)."""
    if img_size is not None:
        model.set_input_size(img_size, interpolation=interpolation, align_corners=align_corners)
    target = model.state_dict()
    is_head = lambda k: k.startswith("head.")  # noqa: E731
    if skip_head:
        sd = {k: v for k, v in sd.items() if not is_head(k)}
        target = {k: v for k, v in target.items() if not is_head(k)}
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    if missing or unexpected:
        def src(k):
            s = ours_to_source(k)
            return k if s == k else f"{s} (ours: {k})"
        parts = []
        if missing:
            parts.append(f"missing keys: {_name_keys(src(k) for k in missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_name_keys(src(k) for k in unexpected)}")
        raise CheckpointKeyError(f"{what} does not match {type(model).__name__}: " + "; ".join(parts))
    out = {}
    for k, v in sd.items():
        want = target[k].shape
        if v.shape != want:
            v = _resample_posemb_entry(model, k, v, want, interpolation, align_corners)
            if v is None:
                raise ValueError(f"{what}: shape of {k} is {tuple(sd[k].shape)}, the model's is {tuple(want)}")
        out[k] = v.to(target[k].dtype)
    if skip_head:  # keep the model's own head
        out.update({k: v for k, v in model.state_dict().items() if is_head(k)})
    model.load_state_dict(out, strict=True)


def _resample_posemb_entry(model, key, v, want, interpolation, align_corners):
    """A checkpoint position embedding at another grid, resampled to the model's; None if not one."""
    cfg = getattr(model, "cfg", None)
    if key.endswith("pos_embedding") and v.ndim == 3 and v.shape[-1] == want[-1]:
        return resample_posemb_grid(v, cfg.grid_size, cfg.num_prefix_tokens, interpolation, align_corners)
    if key.endswith(("pos_embedding_x", "pos_embedding_y")) and v.ndim == 2 and v.shape[1] == want[1]:
        return resample_posemb_1d(v, want[0], interpolation, align_corners)
    return None


# ---------------------------------------------------------------------------------------------------------
# Google .npz checkpoints
# ---------------------------------------------------------------------------------------------------------

def load_npz(model: nn.Module, path_or_dict: str | os.PathLike | Mapping[str, np.ndarray], img_size: int | None = None,
             interpolation: str = "bilinear", align_corners: bool = True, skip_head: bool = False) -> str:
    """Load a Google ``.npz`` checkpoint (a path, or a mapping of names to arrays) into ``model``.

    The layout (vit_jax, big_vision with or without ``params/``/``opt/target/`` prefix and scanned blocks,
    big_transfer for a pre-activation BiT) is detected from the keys; returns it. Entries outside the
    detected prefix (optimizer state) are ignored; every entry under it must be used. Raises
    ``CheckpointKeyError`` naming missing and unexpected keys, ``ValueError`` for a shape mismatch (a
    position embedding at another grid is resampled, see the module docstring).
    """
    if isinstance(path_or_dict, (str, os.PathLike)):
        w = _read_npz(Path(path_or_dict))
    else:
        w = path_or_dict
    layout, prefix, scanned = _detect(model, w)
    spec = _spec(model, layout, prefix, scanned)
    if skip_head:
        spec = [e for e in spec if not e[0].startswith("head.")]
    sd, used, missing = {}, set(), []
    for ours, keys, fin, _ in spec:
        absent = [k for k in keys if k not in w]
        used.update(k for k in keys if k in w)
        if absent:
            missing.append(f"{', '.join(absent)} (ours: {ours})")
            continue
        sd[ours] = fin(*(np.asarray(w[k]) for k in keys))
    ignored = ("head/",) if skip_head else ()
    unexpected = [k for k in w.keys() if k.startswith(prefix) and k not in used
                  and not k[len(prefix):].startswith(ignored)]
    covered = {e[0] for e in spec}
    target = model.state_dict()
    uncovered = [k for k in target if k not in covered and not (skip_head and k.startswith("head."))]
    if missing or unexpected or uncovered:
        parts = []
        if missing:
            parts.append(f"missing keys: {_name_keys(missing)}")
        if uncovered:
            parts.append(f"parameters the {layout} layout has no key for: {_name_keys(uncovered)}")
        if unexpected:
            parts.append(f"unexpected keys: {_name_keys(unexpected)}")
        raise CheckpointKeyError(f"{layout} .npz does not match {type(model).__name__}: " + "; ".join(parts))
    load_state_dict_strict(model, sd, f"{layout} .npz", img_size, interpolation, align_corners, skip_head)
    return layout


def to_npz_dict(model: nn.Module, layout: str | None = None) -> dict[str, np.ndarray]:
    """Our weights as a flat dict of float32 arrays in ``layout`` (default: vit_jax for a ViT or hybrid,
    big_transfer for a pre-activation BiT, big_vision for a post-activation one).

    Raises ``ValueError`` for a parameter the layout has no place for (e.g. ``posemb='learned_2d'`` or
    ``'relative'``, ``every_layer`` placements). In the big_vision layout the class token's position
    embedding is folded into ``cls`` (the sum is what the encoder sees), so the forward is unchanged.
    """
    if layout is None:
        layout = ("vit_jax" if isinstance(model, VisionTransformer)
                  else "big_transfer" if model.cfg.preact else "big_vision")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {', '.join(LAYOUTS)}")
    spec = _spec(model, layout)
    sd = model.state_dict()
    uncovered = [k for k in sd if k not in {e[0] for e in spec}]
    if uncovered:
        raise ValueError(f"the {layout} layout has no place for {_name_keys(uncovered)} "
                         f"(only learned_1d or no position embedding, added at the stem)")
    out = {}
    for ours, keys, _, fout in spec:
        for k, a in zip(keys, fout(sd[ours])):
            out[k] = np.ascontiguousarray(a, dtype=np.float32)
    if layout == "big_vision" and isinstance(model, VisionTransformer) and model.cls is not None \
            and "pos_embedding" in out:
        out["cls"] = out["cls"] + _arr(sd["transformer.posembed_input.pos_embedding"][:, :1])
    return out


def save_npz(model: nn.Module, path: str | os.PathLike, layout: str | None = None) -> None:
    """Write ``to_npz_dict(model, layout)`` with ``np.savez`` (the format of the released checkpoints,
    readable by ``load_npz`` and by timm's ``_load_weights``)."""
    np.savez(path, **to_npz_dict(model, layout))


__all__ = ["MODEL_KEY", "export_weights", "TORCH_SUFFIXES", "CHECKPOINT_SUFFIXES", "CheckpointMismatchError", "CheckpointKeyError",
           "LAYOUTS", "resolve_weights", "Weights", "architecture_of", "model_spec", "checkpoint_model_spec", "model_from_checkpoint", "load_pretrained",
           "describe_state_dict", "load_timm_state_dict", "load_state_dict_strict", "load_npz", "save_npz",
           "to_npz_dict"]
