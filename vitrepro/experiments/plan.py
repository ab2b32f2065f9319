"""The run plan: what one ``vitrepro run`` command runs, built once, before anything is written.

``build_plan`` takes the experiment file, the scale, the selected cells and the command-line overrides;
the experiment merges them (OmegaConf) and validates the selected cells only (one jsonargparse pass per
cell, ``spec.py``). The plan then resolves what the run config leaves to the machine: the data root
(``--data-root``, ``$VITREPRO_DATA``) and every other ``${NAME}`` placeholder, ``init.run`` (the upstream
run's folder), the data sets (opened once each: layout, class counts, content fingerprint), the model a
checkpoint names, and the devices and memory the runs need. Each run's id is then fixed (``RunSpec.freeze``)
and the frozen ``RunPlan`` goes to the runner, which hands each run's typed sections to its protocol.

Every refusal is an ``ExperimentError``: one line naming the file, the key and the allowed values.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..environment import DATA_ROOT_ENV
from ..rundir import RunDir
from .experiment import Experiment, ExperimentError, RunSpec, cell_label
from .records import find_runs, read_record


@dataclass(frozen=True)
class PlanRequest:
    """What the command line asks for (``vitrepro run``'s arguments, parsed)."""

    config: str | Path
    results_dir: Path
    scale: str | None = None
    cells: tuple[int, ...] | None = None
    overrides: dict[str, Any] | None = None
    data_root: str | None = None  # --data-root or $VITREPRO_DATA, as the command line resolved it
    download: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class RunPlan:
    """The experiment and its resolved, frozen runs (each run id fixed), and where results go."""

    experiment: Experiment
    runs: tuple[RunSpec, ...]
    results_dir: Path

    @property
    def scale(self) -> str:
        return self.runs[0].scale if self.runs else self.experiment.default_scale


def build_plan(req: PlanRequest) -> RunPlan:
    """The ``RunPlan`` of ``req``. A dry run refuses nothing that needs the data or an upstream run (they
    are shown as given). Raises ``ExperimentError`` (a ``ValueError``) for a bad file, override, cell, data
    set, checkpoint or device."""
    exp = Experiment(req.config)
    runs = exp.expand(req.scale, req.overrides, list(req.cells) if req.cells else None)
    _resolve_roots_and_placeholders(runs, req, exp)
    _resolve_init_runs(runs, req, exp)
    _check_devices(runs, exp)
    _open_data(runs, exp, strict=not req.dry_run)
    return RunPlan(exp, tuple(r.freeze() for r in runs), Path(req.results_dir))


#: Run-config entries that may hold a ``${ENV_NAME}`` placeholder, filled from the environment at run time.
ENV_ENTRIES = (("data", "root"), ("finetune", "data", "root"), ("init", "checkpoint"))
_ENV_PLACEHOLDER = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _get(cfg: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(cfg, dict) or k not in cfg:
            return None
        cfg = cfg[k]
    return cfg


def _resolve_roots_and_placeholders(runs, req, exp) -> None:
    """Apply the data root (``--data-root`` / ``$VITREPRO_DATA``) and ``--download``, then fill every other
    ``${NAME}`` placeholder of ``ENV_ENTRIES`` from the environment; refuse a run that still has one (a dry
    run shows them)."""
    for r in runs:
        if req.data_root:
            r.config["data"]["root"] = req.data_root
        if req.download:
            r.config["data"]["download"] = True
        for path in ENV_ENTRIES:
            value = _get(r.config, path)
            m = _ENV_PLACEHOLDER.match(value) if isinstance(value, str) else None
            if not m:
                continue
            if os.environ.get(m[1]):
                _get(r.config, path[:-1])[path[-1]] = os.environ[m[1]]
                continue
            if req.dry_run:
                continue
            key = ".".join(path)
            if m[1] == DATA_ROOT_ENV:
                raise ExperimentError(f"{exp.path}: scale {r.scale}: key '{key}' needs a data set: pass "
                                      f"--data-root DIR or set {DATA_ROOT_ENV} (allowed layouts: an ImageFolder "
                                      "tree with train/ and test/, or CIFAR python batches)")
            raise ExperimentError(f"{exp.path}: scale {r.scale}: key '{key}' is {value}: set the environment "
                                  f"variable {m[1]} (or override it: --{key}=VALUE)")


def reference_results(exp) -> Path:
    """The committed results folder of the checkout an experiment file belongs to (``<repo>/results``)."""
    return exp.path.parent.parent / "results"


def _resolve_init_runs(runs, req, exp) -> None:
    """Point ``init.checkpoint`` of each run that names ``init.run`` (and no checkpoint) at that run's
    directory: in ``--results-dir`` first, else in the committed results. The run's cell then names the
    directory (``checkpoint``), as if the grid had. Refuses a label that matches several runs and, unless a
    dry run, one that matches none, naming the command that trains it."""
    mine, reference = Path(req.results_dir), reference_results(exp)
    folders = [mine] + ([reference] if reference.is_dir() and reference.resolve() != mine.resolve() else [])
    for r in runs:
        init = r.config.get("init") or {}
        ref = init.get("run")
        if not ref or init.get("checkpoint"):
            continue
        upstream, label = ref.split("/", 1)
        where = f"{exp.path}: scale {r.scale}: key 'init.run'"
        for folder in folders:
            found = find_runs(folder / upstream, label, r.scale)
            if len(found) > 1:
                raise ExperimentError(f"{where}: {ref} matches {len(found)} runs in {folder / upstream}: "
                                      f"{', '.join(d.name for d in found)}; name one by its whole run id")
            if found:
                break
        if not found:
            if req.dry_run:
                continue
            raise ExperimentError(f"{where}: no finished run {label} of {upstream} at scale {r.scale} in {mine}: "
                                  f"{_upstream_command(exp, upstream, label, r.scale, mine, reference)}")
        run_dir = found[0]
        if not req.dry_run and folder != mine and not RunDir(run_dir).last.is_file():
            raise ExperimentError(f"{where}: {run_dir} is a committed run without its checkpoint (checkpoints are "
                                  f"not committed): {_upstream_command(exp, upstream, label, r.scale, mine, reference)}")
        init["checkpoint"] = str(run_dir)
        r.cell = {("checkpoint" if k == "run" else k): (str(run_dir) if k == "run" else v) for k, v in r.cell.items()}


def _upstream_command(exp, upstream: str, label: str, scale: str, mine: Path, reference: Path) -> str:
    """"`<command> --cell N --results-dir DIR` trains it (T min on <hardware>)": the one command that trains
    just the upstream run ``label`` of experiment ``upstream`` at ``scale``, with the wall time and
    hardware of the committed run when there is one."""
    path = exp.path.parent / f"{upstream}.yaml"
    try:
        cells = Experiment(path).grid_of(scale)
    except ExperimentError:
        cells = []
    index = next((i for i, c in enumerate(cells) if label in (cell_label(c),) or label.startswith(cell_label(c) + "-")),
                 None)
    committed = find_runs(reference / upstream, label, scale) if reference.is_dir() else []
    record = read_record(committed[0]) if committed else None
    if record:
        command = record["provenance"]["command"]
        command = re.sub(r" --cell[ =]\S+", "", command)
    else:
        command = f"vitrepro run {path} --scale {scale} --data-root DIR"
    cell = f" --cell {index}" if index is not None and len(cells) > 1 else ""
    took = ""
    if record:
        prov = record["provenance"]
        took = f" ({prov['wall_s'] / 60:.0f} min on {prov['hardware']})"
    return f"`{command}{cell} --results-dir {mine}` trains it{took}"


@dataclass(frozen=True)
class _DataFacts:
    """What the pre-flight learns of one data config: its content id, the class with the fewest training
    images (for the shots check), and the class count and resolution a checkpoint is loaded at."""

    dataset: str
    fingerprint: str
    fewest: int
    fewest_class: int
    num_classes: int
    img_size: int


def _read_data_facts(data: dict) -> _DataFacts:
    """Open a data config (cheap: finds the layout, counts classes and images per class, fingerprints the
    files). Raises what ``ImageClassificationDataModule`` raises (a too-large subset included)."""
    import numpy as np

    from ..data import ImageClassificationDataModule

    dm = ImageClassificationDataModule(**data)
    dm.split_indices()  # labels only: a too-large subset fails here
    counts = np.bincount(dm.fewshot_pool_labels(), minlength=dm.num_classes)
    return _DataFacts(dm.dataset, f"{dm.dataset}:{dm.source.fingerprint}", int(counts.min()), int(counts.argmin()),
                      dm.num_classes, dm.img_size)


def _open_data(runs, exp, strict: bool = True) -> None:
    """Check what each run reads before anything trains, and name its data by content.

    Each distinct data config is opened once: the run's ``data`` and, when it fine-tunes, the target
    ``data`` + ``finetune.data``. A subset larger than the split, more shots than a class has, a missing
    ``init.checkpoint`` or one of another architecture is an ``ExperimentError`` naming the key. Each
    run's ``data_ids`` gets the fingerprints (its run id names the data by content, not by path).
    ``strict=False`` (a dry run): nothing is refused and an unreadable data set is named by its root."""
    from .finetune_stage import pretrained_model

    opened: dict[str, _DataFacts | Exception] = {}
    checked: set[str] = set()

    def facts(data: dict) -> _DataFacts | Exception:
        sig = repr(sorted(data.items()))
        if sig not in opened:
            try:
                opened[sig] = _read_data_facts(data)
            except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
                opened[sig] = e
        return opened[sig]

    for r in runs:
        def refuse(key: str, e: Exception):
            raise ExperimentError(f"{exp.path}: scale {r.scale}: key '{key}': {' '.join(str(e).split())}") from None

        if (r.config.get("init") or {}).get("checkpoint"):  # the model is the one init.checkpoint names
            _model_from_checkpoint(r, exp, strict)
        targets = [("data", r.config["data"])]
        if "finetune" in r.config:
            targets.append(("finetune.data", {**r.config["data"], **r.config["finetune"]["data"]}))
        for key, data in targets:
            f = facts(data)
            if isinstance(f, Exception):
                if strict:
                    refuse(key, f)
                continue
            r.data_ids[key] = f.fingerprint
            if data["dataset"] == "auto":  # the run names the kind found, as if it had been given
                if key == "data":
                    r.config["data"]["dataset"] = f.dataset
                elif "dataset" in (ft := r.config["finetune"]["data"]) or "root" in ft:  # else: the run's own
                    ft["dataset"] = f.dataset
            shots = max(r.config["eval"]["shots"]) if key == "data" and "eval" in r.config else 0
            if strict and shots > f.fewest:
                refuse("eval.shots", ValueError(f"{shots}-shot needs {shots} examples of class {f.fewest_class}, "
                                                f"the pool has {f.fewest}"))
        own = facts(r.config["data"])
        if strict and "name" in r.config["model"] and not isinstance(own, Exception):
            _check_memory(r, own, refuse)
        ckpt_key = repr((r.config["model"], (r.config.get("init") or {}).get("checkpoint")))
        if strict and (r.config.get("init") or {}).get("checkpoint") and ckpt_key not in checked:
            checked.add(ckpt_key)  # the file exists and fits the model (loaded once, on CPU)
            try:
                pretrained_model(r.config, own.num_classes, own.img_size)  # resolves init.checkpoint itself
            except (ValueError, FileNotFoundError) as e:
                refuse("init.checkpoint", e)


def _check_memory(run, data: _DataFacts, refuse) -> None:
    """Refuse a model or batch whose memory lower bound (``compute.training_memory_lower_bound``, per
    process) exceeds what this machine has, before anything is allocated."""
    from ..cost import available_memory, training_memory_lower_bound

    cfg = run.config
    trainer = cfg["trainer"]
    batch = max(1, cfg["data"]["batch_size"] // _processes(trainer))
    fields = {k: v for k, v in cfg["model"].items() if k not in ("name", "num_classes", "img_size")}
    need, params = training_memory_lower_bound(cfg["model"]["name"], data.num_classes, data.img_size, batch,
                                               train=run.task != "fewshot", **fields)
    have, where = available_memory(str(trainer.get("accelerator", "auto")))
    if need > have:
        refuse("model', 'data.img_size' and 'data.batch_size", ValueError(
            f"{cfg['model']['name']} with {params:,} parameters on a batch of {batch} images of {data.img_size}x"
            f"{data.img_size} px needs at least {need / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB of "
            f"{where}: choose a smaller model, data.img_size or data.batch_size"))


def _model_from_checkpoint(run, exp, strict: bool) -> None:
    """Set ``model`` of a run that starts from ``init.checkpoint`` to the architecture the checkpoint names
    (``resolve_weights``: ours record every field; the config's model names a timm or ``.npz`` file's), so
    a checkpoint trained with ``posemb: none`` rebuilds without a flag. A dry run leaves a missing one."""
    from ..models.checkpoint import resolve_weights

    try:
        named = any(k == "model" or k.startswith("model.name") for k in run.overrides)  # on the command line
        run.config["model"] = resolve_weights(run.config["init"]["checkpoint"], run.config["model"], named).model
    except (FileNotFoundError, ValueError) as e:
        if strict:
            raise ExperimentError(f"{exp.path}: scale {run.scale}: key 'init.checkpoint': "
                                  f"{' '.join(str(e).split())}") from None


def _processes(trainer: dict) -> int:
    """``trainer.devices x trainer.num_nodes`` when both are counts, else 1 (``auto``, a device list)."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    return devices * nodes if isinstance(devices, int) and devices > 0 and isinstance(nodes, int) else 1


def _check_devices(runs, exp) -> None:
    """Refuse, before anything is written, an accelerator this machine does not have, or a batch that does
    not split evenly over ``trainer.devices x trainer.num_nodes`` processes."""
    import torch

    
    available = {"cpu": True, "auto": True, "gpu": torch.cuda.is_available(), "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    for r in runs:
        trainer = r.config["trainer"]
        accel = str(trainer.get("accelerator", "auto"))
        if not available.get(accel, True):
            have = ", ".join(k for k, ok in available.items() if ok)
            raise ExperimentError(f"{exp.path}: scale {r.scale}: key 'trainer.accelerator': {accel!r} needs a device "
                                  f"this machine does not have (available: {have})")
        world = _processes(trainer)
        batch = r.config["data"]["batch_size"]
        if batch % world:
            raise ExperimentError(f"{exp.path}: scale {r.scale}: key 'data.batch_size': {batch} is the batch over all "
                                  f"{world} devices and must divide by {world}")


__all__ = ["PlanRequest", "RunPlan", "build_plan", "reference_results"]
