"""Experiment files: schema, validation, scales and grid expansion.

An experiment YAML holds ``name``, ``task`` (``pretrain``, the default; ``mpp``; ``finetune``; ``fewshot``),
``report`` (optional), ``default_scale``, ``base`` (one complete run config), ``grid`` (a list of cells,
each a mapping of dotted keys to values, e.g. ``{model.posemb: learned_2d, model.posemb_placement:
every_layer}``; a key may name a whole section: ``{model: {name: R50x1}}``) and ``scales`` (per scale,
dotted overrides of ``base``; a scale's own ``grid`` replaces the top-level one, e.g. subset sizes that
depend on the data set). A run config has the sections ``model`` (``name`` plus any architecture field),
``data`` (the arguments of ``ImageClassificationDataModule``), ``optim`` (``OptimConfig``), ``trainer``
(keyword arguments of ``lightning.Trainer``), ``eval`` (``EvalConfig``), ``seed``, and optionally
``init`` (``InitConfig``: the checkpoint that ``finetune`` and ``fewshot`` start from) and ``finetune``
(``FinetuneSection``: the transfer stage of App. B.1.1, after pre-training or as the whole task), and
``fewshot_callback`` (``FewShotCallback`` arguments: the few-shot probe every ``every_n_epochs`` epochs
during training, logged to ``logs/metrics.csv`` as ``fewshot/{k}shot``).

The tasks (what ``vitrepro.experiments.runner`` does with each run):
  pretrain  train ``model`` on ``data`` with ``optim``; evaluate test top-1 and few-shot linear accuracy
            (``eval``); then, when the config has a ``finetune`` section, fine-tune the trained network.
  mpp       as pretrain, but self-supervised by masked patch prediction (Sec. 4.6; the ``mpp`` section,
            ``MPPConfig``, replaces ``optim``); no test top-1 (the model has no classifier yet).
  finetune  load ``init.checkpoint`` into ``model`` and fine-tune it (the ``finetune`` section).
  fewshot   load ``init.checkpoint`` into ``model``; few-shot linear accuracy on ``data`` (``eval``).

Every error is an ``ExperimentError`` whose message is one line naming the file, the key and the
allowed values. Typed validation is jsonargparse's, over the signatures of the classes the run uses.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import ArgumentParser
from omegaconf import OmegaConf

from ..data import ImageClassificationDataModule
from ..models import model_config
from ..tasks import FinetuneConfig, MPPConfig, OptimConfig
from .protocols import PROTOCOLS
from .records import section_label
from .sections import (CALLBACK_SKIP, FINETUNE_FIELDS, FINETUNE_KEYS, RUNNER_OWNED_TRAINER_KEYS, SECTION_CLASSES,
                       CheckpointConfig, EvalConfig, FewShotCallback, FinetuneSection, InitConfig, allowed_keys)

TOP_KEYS = ("name", "description", "task", "report", "default_scale", "base", "grid", "scales")
TASKS = tuple(PROTOCOLS)
RUN_SECTIONS = tuple(dict.fromkeys(k for p in PROTOCOLS.values() for k in p.sections))
#: Report kinds an experiment may name (``vitrepro.report.REPORTS``, not imported here: it loads plotting),
#: with the grid keys (last dotted component) every cell must set for the report to tell the runs apart.
REPORT_CELL_KEYS = {"pos_emb_table8": ("posemb", "posemb_placement"), "data_size_scaling": ("train_size",),
                    "compute_transfer": (), "few_shot_curves": ()}
REPORT_KINDS = tuple(REPORT_CELL_KEYS)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RUN_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.][A-Za-z0-9_.-]*$")

#: Entries that never change a run's result, left out of its id: where the data lives (the data set is
#: named by its kind and content fingerprint instead), workers, progress bars and logging, the checkpoint
#: interval (a resumed run ends as the uninterrupted one), evaluation batch sizes, the sweep's storage,
#: and the devices (``data.batch_size`` is the batch over all of them, so 1 GPU or 8 train the same run).
NOT_IN_ID = {"data": ("root", "download", "num_workers", "cache_in_memory", "eval_batch_size"),
             "trainer": ("enable_progress_bar", "enable_model_summary", "log_every_n_steps", "accelerator",
                         "devices", "num_nodes", "strategy"),
             "eval": ("batch_size",)}


class ExperimentError(ValueError):
    """A bad experiment file or override; ``str()`` is one line: ``<file>: <where>: <what>``."""


@dataclass
class RunSpec:
    """One expanded run: the experiment, the scale, the grid cell, the complete resolved config, the task
    (a protocol name) and ``data_ids``: the content fingerprint of each data set it reads, by config key
    (``data``, ``finetune.data``), filled in when the data is opened (``vitrepro.cli``)."""

    experiment: str
    scale: str
    cell: dict[str, Any]
    config: dict[str, Any]
    task: str = "pretrain"
    data_ids: dict[str, str] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What determines the run's result: the config less ``NOT_IN_ID`` and the ``checkpoint``,
        ``fewshot_callback`` and ``speed`` sections (``data.loader`` only when not the default ``cpu``);
        each data root replaced by the data set's fingerprint (its spelling when the data could not be opened, e.g. in a dry run without it); ``init.checkpoint`` by its last
        path component (a run directory's name is its run id; ``init.run`` is resolved to one by the command
        line, and stands for itself until then)."""
        cfg = copy.deepcopy(self.config)
        for key in ("checkpoint", "fewshot_callback", "speed"):
            cfg.pop(key, None)
        for section, keys in NOT_IN_ID.items():
            for k in keys:
                (cfg.get(section) or {}).pop(k, None)
        for data in (cfg["data"], (cfg.get("finetune") or {}).get("data") or {}):
            if data.get("loader") == "cpu":  # the default input path, as before the key existed
                data.pop("loader")
        cfg["data"]["copy"] = self.data_ids.get("data") or f"root:{self.config['data'].get('root')}"
        ft = cfg.get("finetune")
        if ft:
            ft.pop("storage", None)
            for k in NOT_IN_ID["trainer"]:
                ft["trainer"].pop(k, None)
            if "root" in ft["data"] or "dataset" in ft["data"]:
                for k in NOT_IN_ID["data"]:
                    ft["data"].pop(k, None)
                ft["data"]["copy"] = self.data_ids.get("finetune.data") or f"root:{self.config['finetune']['data'].get('root')}"
        init = cfg.get("init")
        if init is not None:  # a run directory is named by its run id; an unresolved init.run by itself
            run_ref = init.pop("run", None)
            ckpt = init.get("checkpoint") or run_ref
            if ckpt:
                init["checkpoint"] = Path(str(ckpt).rstrip("/")).name
        return cfg

    @property
    def run_id(self) -> str:
        """Stable id of ``identity()``: ``<cell values>-<sha1[:8]>``, e.g. ``learned_2d-stem-1a2b3c4d`` (a
        cell value that is a section is labelled by its ``section_label``: ``R50x1-1000-...``,
        ``ViT_C_4_depth_3-500-...``; a path by its last component)."""
        digest = hashlib.sha1(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:8]
        values = [section_label(v) if isinstance(v, dict)
                  else Path(str(v)).name if k.endswith(("checkpoint", "root")) and v else v
                  for k, v in self.cell.items()]
        label = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(v)) for v in values)
        return f"{label}-{digest}" if label else digest


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


def _one_line(err: Exception) -> str:
    return re.sub(r"\s+", " ", str(err)).strip()


def apply_overrides(cfg: dict, overrides: dict[str, Any]) -> dict:
    """A copy of ``cfg`` with every dotted override applied by OmegaConf (``OmegaConf.update``, no merge:
    a value replaces what was there, a mapping replaces a whole section, missing sections are created;
    ``${NAME}`` placeholders are kept as text). Raises ``KeyError(key)`` when a key goes through a value
    that is not a section (``model.posemb.kind`` while ``model.posemb`` is ``"learned_1d"``)."""
    conf = OmegaConf.create(cfg)
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        for i in range(1, len(parts)):
            node = OmegaConf.select(conf, ".".join(parts[:i]), default=None, throw_on_missing=False)
            if node is not None and not OmegaConf.is_dict(node):
                raise KeyError(key)
        OmegaConf.update(conf, key, value, merge=False, force_add=True)
    return OmegaConf.to_container(conf, resolve=False)


def validate_run_config(cfg: dict, where: str, task: str = "pretrain") -> dict:
    """Check one complete run config of ``task``; return it with defaults filled for data, eval and optim
    (mpp for the mpp task), and for init/finetune/fewshot_callback when present: a config without them
    resolves, and hashes, as before they existed.

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
    for key, cls in (("optim", OptimConfig), ("mpp", MPPConfig), ("checkpoint", CheckpointConfig),
                     ("eval", EvalConfig)):
        if key in present:
            try:
                cls(**parsed[key].as_dict())
            except ValueError as e:
                raise ExperimentError(f"{where}: key '{key}': {_one_line(e)}") from None
    resolved = {"model": dict(cfg.get("model") or {}), **out, "trainer": trainer, "seed": seed}
    if "mpp" in present:
        resolved["mpp"] = parsed["mpp"].as_dict()
        resolved["mpp"]["probs"] = list(resolved["mpp"]["probs"])
    for key in ("init", "fewshot_callback", "checkpoint"):
        if key in present and (key in cfg or key == "init"):
            resolved[key] = parsed[key].as_dict()
    if "finetune" in cfg:
        ft = parsed["finetune"].as_dict()
        try:
            FinetuneConfig(**{k: ft[k] for k in FINETUNE_FIELDS})
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
    return resolved


class Experiment:
    """A loaded, validated experiment file. ``expand(scale)`` gives the runs of one scale."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            raw = yaml.safe_load(self.path.read_text())
        except FileNotFoundError:
            raise ExperimentError(f"{self.path}: no such experiment file") from None
        except IsADirectoryError:
            raise ExperimentError(f"{self.path}: is a folder; expected an experiment YAML file, e.g. "
                                  f"experiments/pos_emb_ablation.yaml") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ExperimentError(f"{self.path}: cannot be read as an experiment file ({_one_line(e)})") from None
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
        if not isinstance(raw["name"], str) or not _NAME.match(raw["name"]):
            raise ExperimentError(f"{self.path}: key 'name': {raw['name']!r} is not allowed: expected letters, digits, "
                                  f"'_', '-' or '.', not starting with '.' (it names a folder under --results-dir)")
        self.name: str = raw["name"]
        self.task: str = raw.get("task") or "pretrain"
        if self.task not in TASKS:
            raise ExperimentError(f"{self.path}: key 'task': {self.task!r} is not one of {', '.join(TASKS)}")
        self.report: dict | None = raw.get("report")
        if self.report is not None and (not isinstance(self.report, dict) or self.report.get("kind") not in REPORT_KINDS):
            kind = self.report.get("kind") if isinstance(self.report, dict) else self.report
            raise ExperimentError(f"{self.path}: key 'report.kind': {kind!r} is not one of {', '.join(REPORT_KINDS)}")
        if self.report and self.report.get("paper") and not (self.path.parent / self.report["paper"]).is_file():
            raise ExperimentError(f"{self.path}: key 'report.paper': {self.report['paper']} not found (a path "
                                  f"relative to the experiment file, e.g. ../results/paper/table8_pos_emb.csv)")
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
        of_scale, grid = self.scales[scale] or {}, self.grid
        if isinstance(of_scale, dict) and "grid" in of_scale:
            of_scale = {k: v for k, v in of_scale.items() if k != "grid"}
            grid = self.scales[scale]["grid"]
            if not isinstance(grid, list) or not grid or not all(isinstance(c, dict) for c in grid):
                raise ExperimentError(f"{self.path}: key 'scales.{scale}.grid': expected a non-empty list of "
                                      f"mappings of dotted keys")
        base = self._apply(self.base, of_scale, f"scales.{scale}")
        needed = REPORT_CELL_KEYS[self.report["kind"]] if self.report else ()
        runs = []
        for i, cell in enumerate(grid):
            lacking = [k for k in needed if k not in {c.split(".")[-1] for c in cell}]
            if lacking:
                raise ExperimentError(f"{self.path}: scale {scale}, grid[{i}]: key {lacking[0]!r} is missing: report "
                                      f"{self.report['kind']!r} tells cells apart by {', '.join(needed)}, so every "
                                      f"cell sets them")
            cfg = self._apply(base, cell, f"grid[{i}]")
            cfg = self._apply(cfg, overrides or {}, "command line")
            where = f"scale {scale}, grid[{i}]" if len(grid) > 1 else f"scale {scale}"
            try:
                cfg = validate_run_config(cfg, where, self.task)
            except ExperimentError as e:
                raise ExperimentError(f"{self.path}: {e}") from None
            runs.append(RunSpec(self.name, scale, {k.split(".")[-1]: v for k, v in cell.items()}, cfg, self.task))
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
    docs = [{"run_id": r.run_id, "task": r.task, "scale": r.scale, "cell": r.cell, "config": r.config} for r in runs]
    return yaml.safe_dump_all(docs, sort_keys=False)


__all__ = ["Experiment", "ExperimentError", "EvalConfig", "InitConfig", "FinetuneSection", "RunSpec", "TASKS",
           "REPORT_KINDS", "NOT_IN_ID",
           "validate_run_config", "describe_runs", "apply_overrides"]
