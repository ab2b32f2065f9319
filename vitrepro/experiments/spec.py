"""Experiment files: schema, validation, scales and grid expansion.

An experiment YAML holds ``name``, ``report`` (optional), ``default_scale``, ``base`` (one complete run
config), ``grid`` (a list of cells, each a mapping of dotted keys to values, e.g.
``{model.posemb: learned_2d, model.posemb_placement: every_layer}``) and ``scales`` (per scale, dotted
overrides of ``base``). A run config has the sections ``model`` (``name`` plus any architecture field),
``data`` (the arguments of ``ImageClassificationDataModule``), ``optim`` (``OptimConfig``), ``trainer``
(keyword arguments of ``lightning.Trainer``), ``eval`` (``EvalConfig``) and ``seed``.

Every error is an ``ExperimentError`` whose message is one line naming the file, the key and the
allowed values. Typed validation is jsonargparse's, over the signatures of the classes the run uses.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import ArgumentParser

from ..data import ImageClassificationDataModule
from ..models import model_config
from ..tasks import OptimConfig

TOP_KEYS = ("name", "description", "report", "default_scale", "base", "grid", "scales")
RUN_SECTIONS = ("model", "data", "optim", "trainer", "eval", "seed")
RUNNER_OWNED_TRAINER_KEYS = ("logger", "callbacks", "default_root_dir", "enable_checkpointing")


class ExperimentError(ValueError):
    """A bad experiment file or override; ``str()`` is one line: ``<file>: <where>: <what>``."""


@dataclass
class EvalConfig:
    """Few-shot linear evaluation after training (big_vision ``fewshot_lsr`` defaults)."""

    shots: list[int] = field(default_factory=lambda: [1, 5, 10, 25])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    l2_reg: float = 1024.0
    batch_size: int = 256


@dataclass
class RunSpec:
    """One expanded run: the experiment, the scale, the grid cell and the complete resolved config."""

    experiment: str
    scale: str
    cell: dict[str, Any]
    config: dict[str, Any]

    @property
    def run_id(self) -> str:
        """Stable id of the resolved config: ``<cell values>-<sha1[:8]>``, e.g. ``learned_2d-stem-1a2b3c4d``."""
        digest = hashlib.sha1(json.dumps(self.config, sort_keys=True, default=str).encode()).hexdigest()[:8]
        label = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(v)) for v in self.cell.values())
        return f"{label}-{digest}" if label else digest


def _section_parser() -> ArgumentParser:
    p = ArgumentParser(exit_on_error=False, default_env=False)
    p.add_class_arguments(ImageClassificationDataModule, "data")
    p.add_class_arguments(OptimConfig, "optim")
    p.add_class_arguments(EvalConfig, "eval")
    return p


def _one_line(err: Exception) -> str:
    return re.sub(r"\s+", " ", str(err)).strip()


def set_dotted(cfg: dict, key: str, value: Any) -> None:
    """``set_dotted(cfg, "model.posemb", "none")`` sets ``cfg["model"]["posemb"]``, creating sections."""
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise KeyError(key)
    node[leaf] = value


def apply_overrides(cfg: dict, overrides: dict[str, Any]) -> dict:
    """A deep copy of ``cfg`` with every dotted override applied."""
    out = copy.deepcopy(cfg)
    for k, v in (overrides or {}).items():
        set_dotted(out, k, v)
    return out


def validate_run_config(cfg: dict, where: str) -> dict:
    """Check one complete run config; return it with defaults filled for data/optim/eval.

    Raises ``ExperimentError("<where>: ...")`` for an unknown section or key, a wrong type or value, a
    model the registry cannot build, or a trainer argument ``lightning.Trainer`` does not take.
    """
    unknown = sorted(set(cfg) - set(RUN_SECTIONS))
    if unknown:
        raise ExperimentError(f"{where}: unknown key {unknown[0]!r}: allowed are {', '.join(RUN_SECTIONS)}")
    model = dict(cfg.get("model") or {})
    if "name" not in model:
        raise ExperimentError(f"{where}: key 'model.name' is required (e.g. ViT-B/16, ViT-C/4)")
    try:
        model_config(model.pop("name"), **{k: v for k, v in model.items() if k not in ("num_classes",)})
    except (ValueError, TypeError) as e:
        raise ExperimentError(f"{where}: key 'model': {_one_line(e)}") from None
    trainer = dict(cfg.get("trainer") or {})
    allowed = [n for n in inspect.signature(L.Trainer.__init__).parameters if n != "self"]
    for k in trainer:
        if k in RUNNER_OWNED_TRAINER_KEYS or k not in allowed:
            raise ExperimentError(f"{where}: unknown key 'trainer.{k}': allowed are lightning.Trainer arguments "
                                  f"except {', '.join(RUNNER_OWNED_TRAINER_KEYS)} (set by the runner)")
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ExperimentError(f"{where}: key 'seed': expected an int, got {seed!r}")
    sections = {k: cfg.get(k) or {} for k in ("data", "optim", "eval")}
    for section, cls in (("data", ImageClassificationDataModule), ("optim", OptimConfig), ("eval", EvalConfig)):
        names = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
        for k in sections[section]:
            if k not in names:
                raise ExperimentError(f"{where}: unknown key '{section}.{k}': allowed are {', '.join(names)}")
    try:
        parsed = _section_parser().parse_object(sections)
    except Exception as e:  # jsonargparse.ArgumentError, one line
        raise ExperimentError(f"{where}: {_one_line(e)}") from None
    out = {k: parsed[k].as_dict() for k in ("data", "optim", "eval")}
    try:
        OptimConfig(**out["optim"])
    except ValueError as e:
        raise ExperimentError(f"{where}: key 'optim': {_one_line(e)}") from None
    return {"model": dict(cfg["model"]), **out, "trainer": trainer, "seed": seed}


class Experiment:
    """A loaded, validated experiment file. ``expand(scale)`` gives the runs of one scale."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            raw = yaml.safe_load(self.path.read_text())
        except FileNotFoundError:
            raise ExperimentError(f"{self.path}: no such experiment file") from None
        except yaml.YAMLError as e:
            raise ExperimentError(f"{self.path}: not valid YAML: {_one_line(e)}") from None
        if not isinstance(raw, dict):
            raise ExperimentError(f"{self.path}: expected a mapping with keys {', '.join(TOP_KEYS)}")
        unknown = sorted(set(raw) - set(TOP_KEYS))
        if unknown:
            raise ExperimentError(f"{self.path}: unknown key {unknown[0]!r}: allowed are {', '.join(TOP_KEYS)}")
        for key in ("name", "base", "scales"):
            if key not in raw:
                raise ExperimentError(f"{self.path}: key {key!r} is required")
        self.raw = raw
        self.name: str = raw["name"]
        self.report: str | None = raw.get("report")
        self.base: dict = raw["base"]
        self.grid: list[dict] = raw.get("grid") or [{}]
        self.scales: dict[str, dict] = raw["scales"]
        if not isinstance(self.grid, list) or not all(isinstance(c, dict) for c in self.grid):
            raise ExperimentError(f"{self.path}: key 'grid': expected a list of mappings of dotted keys")
        if not isinstance(self.scales, dict) or not self.scales:
            raise ExperimentError(f"{self.path}: key 'scales': expected a mapping scale name -> overrides")
        self.default_scale: str = raw.get("default_scale") or next(iter(self.scales))
        self.check_scale(self.default_scale, key="default_scale")

    def check_scale(self, scale: str, key: str = "--scale") -> None:
        if scale not in self.scales:
            raise ExperimentError(f"{self.path}: {key} {scale!r} is not one of {', '.join(self.scales)}")

    def expand(self, scale: str | None = None, overrides: dict[str, Any] | None = None) -> list[RunSpec]:
        """The runs of ``scale`` (default ``default_scale``): base <- scale overrides <- grid cell <-
        command-line ``overrides``. Each is validated; raises ``ExperimentError`` naming where."""
        scale = scale or self.default_scale
        self.check_scale(scale)
        base = self._apply(self.base, self.scales[scale] or {}, f"scales.{scale}")
        runs = []
        for i, cell in enumerate(self.grid):
            cfg = self._apply(base, cell, f"grid[{i}]")
            cfg = self._apply(cfg, overrides or {}, "command line")
            where = f"scale {scale}, grid[{i}]" if len(self.grid) > 1 else f"scale {scale}"
            try:
                cfg = validate_run_config(cfg, where)
            except ExperimentError as e:
                raise ExperimentError(f"{self.path}: {e}") from None
            runs.append(RunSpec(self.name, scale, {k.split(".")[-1]: v for k, v in cell.items()}, cfg))
        return runs

    def _apply(self, cfg: dict, overrides: dict, where: str) -> dict:
        if not isinstance(overrides, dict):
            raise ExperimentError(f"{self.path}: {where}: expected a mapping of dotted keys to values")
        try:
            return apply_overrides(cfg, overrides)
        except KeyError as e:
            raise ExperimentError(f"{self.path}: {where}: key {e.args[0]!r} does not name a config entry") from None


def describe_runs(runs: list[RunSpec]) -> str:
    """The expanded runs as YAML text (``vitrepro run --dry-run``)."""
    docs = [{"run_id": r.run_id, "scale": r.scale, "cell": r.cell, "config": r.config} for r in runs]
    return yaml.safe_dump_all(docs, sort_keys=False)


__all__ = ["Experiment", "ExperimentError", "EvalConfig", "RunSpec", "validate_run_config", "describe_runs",
           "apply_overrides"]
