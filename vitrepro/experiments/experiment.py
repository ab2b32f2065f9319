"""Experiment files: loading, scales, grid cells and overrides merged by OmegaConf (no torch: ``vitrepro
collect``, ``report`` and ``compare`` read experiment files without importing it).

An experiment YAML holds ``name``, ``description``, ``task`` (a protocol name: ``pretrain``, the default;
``mpp``; ``finetune``; ``fewshot``), ``report`` (optional: ``kind``, one of ``vitrepro.report.REPORT_KINDS``,
and ``paper``, the paper's numbers), ``default_scale``, ``base`` (one complete run config), ``grid`` (a list
of cells, each a mapping of dotted keys to values; a key may name a whole section: ``{model: {name:
R50x1}}``) and ``scales`` (per scale, dotted overrides of ``base``; a scale's own ``grid`` replaces the
top-level one). A cell may set ``task`` too, so that one experiment compares protocols (Sec. 4.6: masked
patch prediction, supervised pre-training and training from scratch); such a cell's config keeps only
the sections its protocol reads (``spec.sections_of_task``: ``mpp`` goes to an mpp cell, ``optim`` to a
pretrain cell, ``init`` to a finetune cell). ``Experiment.expand`` merges base <- scale <- cell <- command line for the selected cells
and validates each (``spec.validate_run_config``). YAML is read as YAML 1.2 reads numbers: ``1e-3`` is a
float (PyYAML's YAML 1.1 leaves it a string).

Every error is an ``ExperimentError`` whose message is one line naming the file, the key and the
allowed values.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from ..report import REPORT_KINDS
from .records import section_label

TOP_KEYS = ("name", "description", "task", "report", "default_scale", "base", "grid", "scales")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


#: Entries that never change a run's result, left out of its id: where the data lives (the data set is
#: named by its kind and content fingerprint instead), workers, progress bars and logging, the checkpoint
#: interval (a resumed run ends as the uninterrupted one), evaluation batch sizes, the sweep's storage,
#: and the devices (``data.batch_size`` is the batch over all of them, so 1 GPU or 8 train the same run).
#: Sections that never change a run's result (checkpoint interval, the probe during training, speed options).
SECTIONS_NOT_IN_ID = ("checkpoint", "fewshot_callback", "speed")
NOT_IN_ID = {"data": ("root", "download", "num_workers", "cache_in_memory", "eval_batch_size"),
             "trainer": ("enable_progress_bar", "enable_model_summary", "log_every_n_steps", "accelerator",
                         "devices", "num_nodes", "strategy"),
             "eval": ("batch_size",)}

#: Keys added after runs were committed, by section: ``key: (default, keys that only matter with it)``. At
#: their default they are left out of a run's identity, so the runs from before them keep their ids.
LATER_KEYS = {"data": {"loader": ("cpu", ()),
                       "randaugment": (0, ("randaugment_magnitude", "randaugment_ops")),
                       "classes": (None, ())},
              "optim": {"optimizer": ("adamw", ("momentum",))},
              "eval": {"on": ("upstream", ())}}


def drop_later_defaults(section: dict[str, Any], name: str) -> None:
    """Remove from ``section`` (in place) each ``LATER_KEYS[name]`` key at its default, and its dependents."""
    for key, (default, dependents) in LATER_KEYS.get(name, {}).items():
        if section.get(key, default) == default:
            for k in (key, *dependents):
                section.pop(k, None)


@dataclass
class RunSpec:
    """One expanded run: the experiment, the scale, the grid cell, the complete resolved config, the task
    (a protocol name), the command-line ``overrides``, the typed ``sections`` built by the validation
    (``spec.validate``: ``OptimConfig``, ``EvalConfig``, ...; what the protocols use) and ``data_ids``: the
    content fingerprint of each data set it reads, by config key (``data``, ``finetune.data``), filled in
    when the plan opens the data (``plan.py``)."""

    experiment: str
    scale: str
    cell: dict[str, Any]
    config: dict[str, Any]
    task: str = "pretrain"
    data_ids: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _frozen: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    def freeze(self) -> "RunSpec":
        """Fix the run id and config id once the plan has resolved the run (``plan.build_plan``): later
        reads never recompute them. Returns ``self``."""
        self._frozen = (self._digest(self.identity()), self._digest(self.identity(with_seed=False)))
        return self

    @staticmethod
    def _digest(identity: dict[str, Any]) -> str:
        return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]

    @property
    def variant(self) -> str:
        """What the command line changed beyond the grid that changes the result, other than the seed, e.g.
        ``"trainer.max_steps=3 optim.lr=0.001"`` ("" for none): a run's label and report group show it, so
        runs that differ in anything but the seed are never averaged as seeds."""
        parts = []
        for key, value in self.overrides.items():
            section, _, name = key.partition(".")
            if key == "seed" or name in NOT_IN_ID.get(section, ()) or section in SECTIONS_NOT_IN_ID:
                continue
            text = ",".join(map(str, value)) if isinstance(value, list) else value
            parts.append(f"{key}={text}")
        return " ".join(parts)

    @property
    def config_id(self) -> str:
        """The digest of ``identity()`` without the seed: runs with the same config id are replicates (seeds)
        of one configuration, the only runs a report averages."""
        return self._frozen[1] if self._frozen else self._digest(self.identity(with_seed=False))

    def identity(self, with_seed: bool = True) -> dict[str, Any]:
        """What determines the run's result: the config less ``NOT_IN_ID`` and the ``checkpoint``,
        ``fewshot_callback`` and ``speed`` sections (``LATER_KEYS`` only when not at their defaults, e.g.
        ``data.loader`` only when not ``cpu``);
        each data root replaced by the data set's fingerprint (its spelling when the data could not be opened, e.g. in a dry run without it); ``init.checkpoint`` by its last
        path component (a run directory's name is its run id; ``init.run`` is resolved to one by the command
        line, and stands for itself until then)."""
        cfg = copy.deepcopy(self.config)
        if not with_seed:
            cfg.pop("seed", None)
        for key in SECTIONS_NOT_IN_ID:
            cfg.pop(key, None)
        for section, keys in NOT_IN_ID.items():
            for k in keys:
                (cfg.get(section) or {}).pop(k, None)
        for data in (cfg["data"], (cfg.get("finetune") or {}).get("data") or {}):
            drop_later_defaults(data, "data")
        drop_later_defaults(cfg.get("optim") or {}, "optim")
        drop_later_defaults(cfg.get("eval") or {}, "eval")
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
        digest = self._frozen[0] if self._frozen else self._digest(self.identity())
        label = cell_label(self.cell)
        return f"{label}-{digest}" if label else digest


def cell_label(cell: dict[str, Any]) -> str:
    """The run-id prefix of a grid cell (keys by their last dotted component): its values joined by ``-``,
    a section by its ``section_label``, a path by its last component, e.g. ``ViT_C_4-49000``."""
    values = [section_label(v) if isinstance(v, dict)
              else Path(str(v)).name if k.endswith(("checkpoint", "root")) and v else v
              for k, v in ((k.split(".")[-1], v) for k, v in cell.items())]
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(v)) for v in values)


class ExperimentError(ValueError):
    """A bad experiment file or override; ``str()`` is one line: ``<file>: <where>: <what>``."""


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags that build objects) reading floats as YAML 1.2 does: ``1e-1``,
    ``1E-3``, ``.5``, ``-0.0``, ``+1.5e+3`` are floats."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """``text`` as YAML with YAML 1.2 floats and no object-building tags (``!!python/...`` is an error).
    Raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def one_line(err: BaseException) -> str:
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


class Experiment:
    """A loaded, validated experiment file. ``expand(scale)`` gives the runs of one scale."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            raw = load_yaml(self.path.read_text())
        except FileNotFoundError:
            raise ExperimentError(f"{self.path}: no such experiment file") from None
        except IsADirectoryError:
            raise ExperimentError(f"{self.path}: is a folder; expected an experiment YAML file, e.g. "
                                  f"experiments/pos_emb_ablation.yaml") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ExperimentError(f"{self.path}: cannot be read as an experiment file ({one_line(e)})") from None
        except yaml.YAMLError as e:
            raise ExperimentError(f"{self.path}: not valid YAML: {one_line(e)}") from None
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
        self.task: str = raw.get("task") or "pretrain"  # checked against the protocols when the runs are expanded
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

    def grid_of(self, scale: str) -> list[dict[str, Any]]:
        """The grid cells of ``scale`` (its own ``grid``, else the top-level one), unvalidated."""
        of_scale = self.scales.get(scale) or {}
        return of_scale["grid"] if isinstance(of_scale, dict) and "grid" in of_scale else self.grid

    def expand(self, scale: str | None = None, overrides: dict[str, Any] | None = None,
               cells: list[int] | None = None) -> list[RunSpec]:
        """The runs of ``scale`` (default ``default_scale``): base <- scale overrides <- grid cell <-
        command-line ``overrides``, for the grid cells ``cells`` (0-based, each once; None: all). Only those
        are validated (``spec.validate_run_config``); raises ``ExperimentError`` naming where."""
        from .spec import TASKS, sections_of_task, validate  # the typed validation imports torch and Lightning

        if self.task not in TASKS:
            raise ExperimentError(f"{self.path}: key 'task': {self.task!r} is not one of {', '.join(TASKS)}")

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
        needed = REPORT_KINDS[self.report["kind"]].cell_keys if self.report else ()
        if cells:
            bad = [i for i in cells if not 0 <= i < len(grid)]
            if bad:
                raise ExperimentError(f"{self.path}: --cell {bad[0]} is out of range: the grid has cells "
                                      f"0..{len(grid) - 1}")
        runs = []
        for i in dict.fromkeys(cells) if cells else range(len(grid)):
            cell = grid[i]
            lacking = [k for k in needed if k not in {c.split(".")[-1] for c in cell}]
            if lacking:
                raise ExperimentError(f"{self.path}: scale {scale}, grid[{i}]: key {lacking[0]!r} is missing: report "
                                      f"{self.report['kind']!r} tells cells apart by {', '.join(needed)}, so every "
                                      f"cell sets them")
            where = f"scale {scale}, grid[{i}]" if len(grid) > 1 else f"scale {scale}"
            task = cell.get("task", self.task)
            if task not in TASKS:
                raise ExperimentError(f"{self.path}: {where}: key 'task': {task!r} is not one of {', '.join(TASKS)}")
            cfg = self._apply(base, {k: v for k, v in cell.items() if k != "task"}, f"grid[{i}]")
            cfg = self._apply(cfg, overrides or {}, "command line")
            if "task" in cell:
                cfg = sections_of_task(cfg, task)
            try:
                cfg, typed = validate(cfg, where, task)
            except ExperimentError as e:
                raise ExperimentError(f"{self.path}: {e}") from None
            runs.append(RunSpec(self.name, scale, {k.split(".")[-1]: v for k, v in cell.items()}, cfg, task,
                                overrides=dict(overrides or {}), sections=typed))
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


__all__ = ["Experiment", "ExperimentError", "RunSpec", "cell_label", "NOT_IN_ID", "apply_overrides", "describe_runs", "load_yaml",
           "one_line"]
