"""Validation of one run config: every section checked and typed, defaults filled.

A run config has the sections ``model`` (``name`` plus any architecture field, checked by the model
registry), ``data`` (``ImageClassificationDataModule``), ``optim`` (``OptimConfig``), ``trainer`` (keyword
arguments of ``lightning.Trainer``), ``eval`` (``EvalConfig``), ``seed``, and optionally ``init``
(``InitConfig``), ``finetune`` (``FinetuneSection``), ``fewshot_callback``, ``checkpoint`` and ``speed``;
which a run takes is its protocol's (``protocols.py``), the class of each is in ``config_sections.py``. All
sections but ``model`` are validated in one jsonargparse pass over those classes' signatures.

Every error is an ``ExperimentError`` whose message is one line naming the file, the key and the
allowed values.
"""
from __future__ import annotations

import functools
import re
from typing import Any

import lightning as L
from jsonargparse import ArgumentParser

from ..data import ImageClassificationDataModule
from ..models import model_config
from ..tasks import FinetuneConfig, MPPConfig, OptimConfig
from ..tasks.recipe import EMAConfig, MixConfig
from .experiment import ExperimentError, one_line as _one_line
from .protocols import PROTOCOLS
from .config_sections import (CALLBACK_SKIP, FINETUNE_FIELDS, FINETUNE_KEYS, RUNNER_OWNED_TRAINER_KEYS, SECTION_CLASSES,
                       EVAL_ON, CheckpointConfig, EvalConfig, FewShotCallback, allowed_keys)

TASKS = tuple(PROTOCOLS)
_RUN_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.][A-Za-z0-9_.-]*$")

@functools.lru_cache(maxsize=4)
def _section_parser(ft_data: bool = False, ft_trainer: bool = False) -> ArgumentParser:
    """The parser of every section (cached: building the Trainer's takes tens of milliseconds)."""
    p = ArgumentParser(exit_on_error=False, default_env=False)
    for name, cls in SECTION_CLASSES.items():
        p.add_class_arguments(cls, name)
    p.add_class_arguments(L.Trainer, "trainer", skip=set(RUNNER_OWNED_TRAINER_KEYS))
    p.add_class_arguments(FewShotCallback, "fewshot_callback", skip=CALLBACK_SKIP)
    p.add_class_arguments(FinetuneConfig, "finetune", skip={"img_size"})
    p.add_argument("--finetune.lrs", type=list[float] | None, default=None)  # FinetuneSection's own fields
    p.add_argument("--finetune.storage", type=str | None, default=None)
    if ft_data:
        p.add_class_arguments(ImageClassificationDataModule, "finetune_data")
    if ft_trainer:
        p.add_class_arguments(L.Trainer, "finetune_trainer", skip=set(RUNNER_OWNED_TRAINER_KEYS))
    return p


_allowed = allowed_keys


#: Trainer arguments that Lightning would resolve to a class: only these names (no ``class_path``, no
#: dotted name: a config value never imports a module).
_PROFILERS = (None, "simple", "advanced", "pytorch")
_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def _strategies() -> tuple[str, ...]:
    from lightning.pytorch.strategies import StrategyRegistry

    return ("auto", *StrategyRegistry.available_strategies())


def _int_at_least(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_trainer_value(key: str, value) -> str | None:
    """What is wrong with ``trainer.<key>: value`` (the allowed values), or None. Checks the arguments that
    name a class or a count Lightning only checks when the Trainer is built (after a run folder exists)."""
    named = {"accelerator": _ACCELERATORS, "strategy": None, "profiler": _PROFILERS}
    if key in named:
        allowed = named[key] or _strategies()
        return None if value in allowed else f"allowed are {', '.join(map(str, allowed))}"
    if key == "devices":
        ok = (value in ("auto", -1, "-1") or _int_at_least(value, 1)
              or (isinstance(value, str) and value.isdigit() and int(value) >= 1)
              or (isinstance(value, list) and value and all(_int_at_least(v, 0) for v in value)))
        return None if ok else "allowed are an integer >= 1, -1 or 'auto' (all), or a non-empty list of device indices"
    if key in ("num_nodes", "accumulate_grad_batches"):
        return None if _int_at_least(value, 1) else "allowed are integers >= 1"
    if key == "max_steps":
        return None if value == -1 or _int_at_least(value, 1) else "allowed are -1 (no limit) or an integer >= 1"
    if key == "max_epochs":
        return None if value in (None, -1) or _int_at_least(value, 1) else \
            "allowed are null or -1 (no limit) or an integer >= 1"
    return None


def _check_trainer(trainer: dict, where: str, prefix: str = "trainer") -> None:
    allowed = _allowed(L.Trainer)
    for k in trainer:
        if k in RUNNER_OWNED_TRAINER_KEYS or k not in allowed:
            raise ExperimentError(f"{where}: unknown key '{prefix}.{k}': allowed are lightning.Trainer arguments "
                                  f"except {', '.join(RUNNER_OWNED_TRAINER_KEYS)} (set by the runner)")
        problem = _check_trainer_value(k, trainer[k])
        if problem:
            raise ExperimentError(f"{where}: key '{prefix}.{k}': {trainer[k]!r} is not allowed: {problem}")


def _refuse_class_paths(value, where: str, key: str = "") -> None:
    """No entry of a run config may be a ``class_path``/``init_args`` mapping: jsonargparse would import
    the module it names (any installed module, with its side effects) before refusing it."""
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{key}.{k}" if key else str(k)
            if k in ("class_path", "init_args", "__path__"):
                raise ExperimentError(f"{where}: key '{path}': a config names no class or module (nothing is "
                                      f"imported from a config): give a value of the entry's own type")
            _refuse_class_paths(v, where, path)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_class_paths(v, where, f"{key}[{i}]")


def sections_of_task(cfg: dict, task: str) -> dict:
    """``cfg`` less the sections that only other protocols read (a grid cell that sets ``task``: the
    experiment's base holds every arm's sections). A section no protocol knows is kept, so a misspelt
    one is still refused by ``validate``."""
    known = {s for p in PROTOCOLS.values() for s in p.sections}
    return {k: v for k, v in cfg.items() if k in PROTOCOLS[task].sections or k not in known}


def validate(cfg: dict, where: str, task: str = "pretrain") -> tuple[dict, dict[str, Any]]:
    """Check one complete run config of ``task``; return ``(resolved, typed)``: the config with defaults
    filled for data, eval and optim (mpp for the mpp task), and for init/finetune/fewshot_callback when
    present (a config without them resolves, and hashes, as before they existed); and the typed section
    objects built in this one pass, by section: ``optim`` (``OptimConfig``), ``mpp`` (``MPPConfig``),
    ``eval`` (``EvalConfig``), ``checkpoint`` (``CheckpointConfig``), ``mixing`` (``MixConfig``), ``ema``
    (``EMAConfig``), ``finetune`` (``FinetuneConfig``, at the
    default resolution: the stage sets the target's), those the run has. The protocols use these; they
    build no config again.

    Raises ``ExperimentError("<where>: ...")`` for an unknown section or key, a wrong type or value, a
    model the registry cannot build, a trainer argument ``lightning.Trainer`` does not take, or a section
    the task needs and lacks (``finetune`` for the finetune task).
    """
    if task not in PROTOCOLS:
        raise ExperimentError(f"{where}: task {task!r} is not one of {', '.join(PROTOCOLS)}")
    _refuse_class_paths(cfg, where)
    protocol = PROTOCOLS[task]
    if task == "mpp" and "optim" in cfg:
        raise ExperimentError(f"{where}: key 'optim': task 'mpp' takes its optimizer from the 'mpp' section "
                              f"(allowed keys: {', '.join(_allowed(MPPConfig))})")
    unknown = sorted(set(cfg) - set(protocol.sections))
    if unknown:
        raise ExperimentError(f"{where}: unknown key {unknown[0]!r} for task {task!r}: allowed are "
                              f"{', '.join(protocol.sections)}")
    model = dict(cfg.get("model") or {})
    if "name" in model and model["name"] is None:  # model.name: null, as left out
        del model["name"]
        cfg["model"] = model
    init = cfg.get("init") or {}
    from_checkpoint = "init" in protocol.sections and bool(init.get("checkpoint") or init.get("run"))
    if init.get("run") is not None and not (isinstance(init["run"], str) and _RUN_REF.match(init["run"])):
        raise ExperimentError(f"{where}: key 'init.run': {init['run']!r} is not <experiment name>/<run id or cell "
                              f"label>, e.g. data_size_scaling/ViT_C_4-49000")
    if "name" not in model and not from_checkpoint:
        raise ExperimentError(f"{where}: key 'model.name' is required (e.g. ViT-B/16, ViT-C/4)")
    if "name" in model:  # without a name the model is the one init.checkpoint names (filled in when it is opened)
        try:
            model_config(model.pop("name"), **{k: v for k, v in model.items() if k not in ("num_classes",)})
        except (ValueError, TypeError) as e:
            raise ExperimentError(f"{where}: key 'model': {_one_line(e)}") from None
    trainer = dict(cfg.get("trainer") or {})
    _check_trainer(trainer, where)
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ExperimentError(f"{where}: key 'seed': expected an int, got {seed!r}")
    if "finetune" in protocol.required and cfg.get("finetune") is None:
        raise ExperimentError(f"{where}: task {task!r} needs a 'finetune' section (allowed keys: "
                              f"{', '.join(FINETUNE_KEYS)})")
    # required sections are filled with their defaults; optional ones only when given
    present = [k for k in protocol.required] + [k for k in protocol.optional if k in cfg]
    sections = {k: dict(cfg.get(k) or {}) for k in present}
    ft_extra = {}
    if "finetune" in sections:
        ft_extra = {k: sections["finetune"].pop(k) or {} for k in ("data", "trainer") if k in sections["finetune"]}
        for k, v in ft_extra.items():
            if not isinstance(v, dict):
                raise ExperimentError(f"{where}: key 'finetune.{k}': expected a mapping of keys to values, got {v!r}")
        _check_trainer(ft_extra.get("trainer", {}), where, "finetune.trainer")
    allowed = {**{k: _allowed(c) for k, c in SECTION_CLASSES.items()},
               "finetune": FINETUNE_KEYS,
               "fewshot_callback": [n for n in _allowed(FewShotCallback) if n not in CALLBACK_SKIP]}
    for section in present:
        for k in sections[section]:
            if k not in allowed[section]:
                raise ExperimentError(f"{where}: unknown key '{section}.{k}': allowed are {', '.join(allowed[section])}")
    for k in ft_extra.get("data", {}):
        if k not in allowed["data"]:
            raise ExperimentError(f"{where}: unknown key 'finetune.data.{k}': allowed are {', '.join(allowed['data'])}")
    to_parse = {**sections, "trainer": trainer}
    if "trainer" in ft_extra:
        to_parse["finetune_trainer"] = ft_extra["trainer"]
    if "data" in ft_extra:  # the target data must be a valid data section too
        to_parse["finetune_data"] = {**sections["data"], **ft_extra["data"]}
    try:
        parser = _section_parser("finetune_data" in to_parse, "finetune_trainer" in to_parse)
        parsed = parser.parse_object(to_parse)
    except Exception as e:  # jsonargparse.ArgumentError, one line
        msg = _one_line(e).replace("finetune_data.", "finetune.data.").replace("finetune_trainer.", "finetune.trainer.")
        raise ExperimentError(f"{where}: {msg}") from None
    out = {k: parsed[k].as_dict() for k in ("data", "optim", "eval") if k in present}
    typed: dict[str, Any] = {}
    for key, cls in (("optim", OptimConfig), ("mpp", MPPConfig), ("checkpoint", CheckpointConfig),
                     ("eval", EvalConfig), ("mixing", MixConfig), ("ema", EMAConfig)):
        if key in present:
            values = parsed[key].as_dict()
            if key == "mpp":
                values["probs"] = tuple(values["probs"])
            try:
                typed[key] = cls(**values)
            except ValueError as e:
                raise ExperimentError(f"{where}: key '{key}': {_one_line(e)}") from None
    if "eval" in typed and typed["eval"].on == "downstream" and "finetune" not in cfg:
        raise ExperimentError(f"{where}: key 'eval.on': 'downstream' probes the fine-tuning data and needs a "
                              f"'finetune' section (allowed: {', '.join(EVAL_ON)}; upstream without one)")
    resolved = {"model": dict(cfg.get("model") or {}), **out, "trainer": trainer, "seed": seed}
    if "mpp" in present:
        resolved["mpp"] = parsed["mpp"].as_dict()
        resolved["mpp"]["probs"] = list(resolved["mpp"]["probs"])
    for key in ("init", "fewshot_callback", "checkpoint", "mixing", "ema"):
        if key in present and (key in cfg or key == "init"):
            resolved[key] = parsed[key].as_dict()
    if "finetune" in cfg:
        ft = parsed["finetune"].as_dict()
        try:
            typed["finetune"] = FinetuneConfig(**{k: ft[k] for k in FINETUNE_FIELDS})
        except ValueError as e:
            raise ExperimentError(f"{where}: key 'finetune': {_one_line(e)}") from None
        if ft["lrs"] is not None and not (ft["lrs"] and all(lr > 0 for lr in ft["lrs"])):
            raise ExperimentError(f"{where}: key 'finetune.lrs': expected null or a non-empty list of numbers > 0, "
                                  f"got {ft['lrs']!r}")
        data_overrides = ft_extra.get("data", {})
        target = parsed["finetune_data"].as_dict() if "finetune_data" in to_parse else out["data"]
        ft["data"] = {k: target[k] for k in data_overrides}  # only the overrides, resolved
        ft["trainer"] = ft_extra.get("trainer", {})
        resolved["finetune"] = ft
    return resolved, typed


def validate_run_config(cfg: dict, where: str, task: str = "pretrain") -> dict:
    """The resolved config of ``validate`` (see there)."""
    return validate(cfg, where, task)[0]


__all__ = ["ExperimentError", "TASKS", "sections_of_task", "validate", "validate_run_config"]
