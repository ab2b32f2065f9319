"""``vitrepro``: run the paper's experiments and regenerate their tables.

  vitrepro run experiments/pos_emb_ablation.yaml [--scale smoke|local|cpu|paper] [--data-root DIR]
               [--download] [--results-dir DIR] [--dry-run] [--cell 0,3] [--logger tensorboard]
               [--<section>.<key>=<value> ...]
  vitrepro report experiments/pos_emb_ablation.yaml [--scale S] [--results-dir DIR]
  vitrepro collect experiments/pos_emb_ablation.yaml [--results-dir DIR]
  vitrepro compare experiments/pos_emb_ablation.yaml [--scale S] [--results-dir DIR] [--reference results]
  vitrepro fewshot results/pos_emb_ablation/runs/<run_id> [--data-root DIR] [--shots 1,5,10,25]
  vitrepro fewshot path/to/last.ckpt [--data-root DIR]         (our checkpoints name their model)
  vitrepro fewshot --model ViT-B/16 --checkpoint weights.npz --data-root DIR [--model.<field>=<value>]
  vitrepro models [PATTERN]

``--<section>.<key>=<value>`` (and ``--seed=<int>``, the training seed) overrides any config entry
after the scale and grid, e.g.
``--trainer.devices=2 --trainer.strategy=ddp --trainer.precision=bf16-mixed --optim.lr=3e-4``;
values are parsed as YAML. ``--data-root`` (or the environment variable ``VITREPRO_DATA``) sets
``data.root`` for every run. ``--results-dir`` defaults to ``$VITREPRO_RESULTS`` or ``results/scratch``
(git-ignored): the committed results in ``results/`` are only written with ``--results-dir results``.
Errors print one line and exit with status 2; ``run`` exits with status 1 when a run failed (listed).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DATA_ROOT_ENV = "VITREPRO_DATA"
RESULTS_ENV = "VITREPRO_RESULTS"
DEFAULT_RESULTS = "results/scratch"  # git-ignored: a quick run never touches the committed results
DATA_ROOT_PLACEHOLDER = "${VITREPRO_DATA}"
TOP_LEVEL_OVERRIDES = ("--seed",)  # run-config entries outside a section


#: A YAML 1.2 float that YAML 1.1 (PyYAML) leaves a string: ``1e-1``, ``1E-3``, ``.5e2`` (no dot or no sign).
_YAML12_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def parse_value(text: str, where: str) -> Any:
    """One override's value, read as YAML (1.2 numbers: ``1e-1`` is 0.1), without tags: ``!!python/...``
    is refused. Raises ``ValueError`` naming ``where`` for text that is not YAML."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: {text!r} is not a YAML value ({' '.join(str(e).split())[:160]})") from None
    if isinstance(value, str) and _YAML12_FLOAT.match(value) and not value.lstrip("+-").isdigit():
        return float(value)
    return value


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """``["--trainer.devices=2", "--optim.lr", "3e-4"]`` -> ``{"trainer.devices": 2, "optim.lr": 3e-4}``.
    Raises ``ValueError`` for a token that is not ``--<section>.<key>[=<value>]`` or a value that is not
    YAML (``parse_value``)."""
    out, i = {}, 0
    while i < len(tokens):
        tok = tokens[i]
        name = tok.split("=", 1)[0]
        if not tok.startswith("--") or ("." not in name and name not in TOP_LEVEL_OVERRIDES):
            raise ValueError(f"unrecognized argument {tok!r}: overrides look like --<section>.<key>=<value> "
                             f"or --seed=<int>")
        if "=" in tok:
            key, value = tok[2:].split("=", 1)
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            key, value = tok[2:], tokens[i + 1]
            i += 1
        else:
            raise ValueError(f"override {tok!r} has no value")
        out[key] = parse_value(value, f"override --{key}")
        i += 1
    return out


RUN_EPILOG = """overrides (after the scale and the grid; values are YAML):
  --<section>.<key>=<value>   any entry of the run config, e.g.
      --optim.lr=3e-4  --model.depth=8  --data.batch_size=64  --eval.shots=[1,5]
      --trainer.devices=8 --trainer.strategy=ddp --trainer.precision=bf16-mixed (any lightning.Trainer argument)
      --checkpoint.every_minutes=5  --data.dataset=imagefolder
      --init.run=data_size_scaling/R50x1-49000  (start from that run of another experiment, in --results-dir)
  --seed=<int>                the training seed

examples:
  vitrepro run experiments/pos_emb_ablation.yaml                 # smoke scale, bundled data, ~10 s
  vitrepro run experiments/pos_emb_ablation.yaml --scale cpu --data-root ../shared/data/cifar10-jpeg
  vitrepro run experiments/pos_emb_ablation.yaml --scale paper --dry-run
  vitrepro run experiments/pos_emb_ablation.yaml --cell 3 --results-dir results   # one cell, committed folder
  vitrepro compare experiments/pos_emb_ablation.yaml --scale cpu     # your runs beside the committed ones
"""


def _cells(text: str) -> list[int]:
    try:
        cells = [int(t) for t in text.split(",")]
    except ValueError:
        cells = [-1]
    if any(c < 0 for c in cells):
        raise argparse.ArgumentTypeError(f"expected integers >= 0 separated by commas, like 0,3, got {text!r}")
    return cells


def _counts(text: str) -> list[int]:
    """``--shots 1,5``: integers >= 1."""
    cells = _cells(text)
    if 0 in cells:
        raise argparse.ArgumentTypeError(f"expected integers >= 1 separated by commas, like 1,5,10,25, got {text!r}")
    return cells


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``vitrepro run: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vitrepro", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate the runs of an experiment file", epilog=RUN_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         usage="vitrepro run CONFIG [--scale S] [--data-root DIR] [--cell 0,3] [--dry-run] "
                               "[--results-dir DIR] [--<section>.<key>=<value> ...]")
    report = sub.add_parser("report", help="rebuild an experiment's runs.csv from its records; redraw its report")
    collect = sub.add_parser("collect", help="rebuild an experiment's runs.csv from its per-run records")
    compare = sub.add_parser("compare", help="put your runs beside the committed ones and the paper's numbers, "
                             "cell by cell, with the differences")
    for p in (run, report, collect, compare):
        p.add_argument("config", help="experiment YAML, e.g. experiments/pos_emb_ablation.yaml")
        p.add_argument("--results-dir", default=os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS,
                       help=f"where <experiment>/ goes (default ${RESULTS_ENV} or {DEFAULT_RESULTS}; "
                            "the committed results: results)")
    for p in (run, report, compare):
        p.add_argument("--scale", help="a scale named in the file (default: its default_scale)")
    for p in (report, compare):
        p.add_argument("--reference", help="the committed results to compare with (default: the results/ folder "
                       "beside the experiment's folder)")
    run.add_argument("--logger", choices=["csv", "tensorboard"], default="csv",
                     help="tensorboard: Lightning's TensorBoard logger beside the CSV log (needs tensorboard)")
    run.add_argument("--data-root", help=f"data set root (default ${DATA_ROOT_ENV}; none = bundled sample)")
    run.add_argument("--download", action="store_true", help="let torchvision download CIFAR into --data-root")
    run.add_argument("--dry-run", action="store_true", help="print the expanded runs and exit")
    run.add_argument("--cell", type=_cells, help="run only these grid cells, 0-based, e.g. 0,3 (a job array "
                     "can give each job one cell; all write to the same runs.csv)")
    fs = sub.add_parser("fewshot", help="few-shot linear accuracy of a run's checkpoint or of outside weights")
    fs.add_argument("run", nargs="?", help="a run directory of `vitrepro run` (config.yaml + checkpoints/last.ckpt) "
                    "or a .ckpt of ours (it names its model)")
    fs.add_argument("--model", help="a registered model name, for a checkpoint that does not name its model "
                    "(timm, .npz) or for a random initialization")
    fs.add_argument("--checkpoint", help="our .ckpt, a timm state_dict (.pth/.bin/.safetensors) or a Google .npz")
    fs.add_argument("--data-root", help=f"data set root (default ${DATA_ROOT_ENV}; none = bundled sample)")
    fs.add_argument("--dataset", help="cifar10, cifar100, imagefolder, imagenet (default: the run's, or cifar10)")
    fs.add_argument("--img-size", type=_positive, help="input resolution (default: the run's, or the model's)")
    fs.add_argument("--shots", type=_counts, default=[1, 5, 10, 25], help="e.g. 1,5,10,25")
    fs.add_argument("--seeds", type=_cells, default=[0, 1, 2], help="e.g. 0,1,2")
    an = sub.add_parser("analyze", help="draw an inspection figure of Sec. 4.5 (Figs. 6, 7) from a run or checkpoint",
                        usage="vitrepro analyze {filters,posemb,distance,rollout} RUN_OR_CKPT [RUN_OR_CKPT ...] "
                              "[--model NAME --checkpoint PATH] [--data-root DIR] [--images N] [--results-dir DIR]")
    an.add_argument("kind", choices=["filters", "posemb", "distance", "rollout"],
                    help="filters: Fig. 7 left; posemb: Fig. 7 centre (several runs side by side); distance: Fig. 7 "
                         "right, beside a random initialization; rollout: Fig. 6")
    an.add_argument("runs", nargs="*", help="run directories of `vitrepro run` or .ckpt files of ours")
    an.add_argument("--model", help="a registered model name, for outside weights (--checkpoint)")
    an.add_argument("--checkpoint", help="a timm state_dict or Google .npz (with --model)")
    an.add_argument("--data-root", help="the test images' data root (default: the run's)")
    an.add_argument("--images", type=_positive, default=8, help="test images: rollout maps drawn (default 8); "
                    "attention distance averages over max(N, 64)")
    an.add_argument("--name", help="the figure's file name after <kind>_ (default: the run ids joined)")
    an.add_argument("--results-dir", default=os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS,
                    help=f"figures go to <results-dir>/analysis/ (default ${RESULTS_ENV} or {DEFAULT_RESULTS}; "
                         "the committed figures: results)")
    figs = sub.add_parser("figures", help="redraw every report, table and figure from results (no training)")
    figs.add_argument("--results-dir", default=None, help="the results to redraw (default: the committed results/ "
                      "beside --experiments)")
    figs.add_argument("--experiments", default=None, help="the experiment files' folder (default: experiments/ of "
                      "this checkout, else ./experiments)")
    models = sub.add_parser("models", help="list the registered model variants with their parameter counts")
    models.add_argument("pattern", nargs="?", default="*", help="a name, part of one or a glob, any case "
                        "(e.g. vit, 'ViT-B/*', r50)")
    return parser


#: Run-config entries that may hold a ``${ENV_NAME}`` placeholder, filled from the environment at run time.
ENV_ENTRIES = (("data", "root"), ("finetune", "data", "root"), ("init", "checkpoint"))
_ENV_PLACEHOLDER = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _get(cfg: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(cfg, dict) or k not in cfg:
            return None
        cfg = cfg[k]
    return cfg


def _resolve_roots_and_placeholders(runs, args, exp) -> None:
    """Apply --data-root / $VITREPRO_DATA and --download, then fill every other ``${NAME}`` placeholder of
    ``ENV_ENTRIES`` from the environment; refuse a run that still has one (a dry run shows them)."""
    from .experiments.spec import ExperimentError

    root = args.data_root or os.environ.get(DATA_ROOT_ENV)
    for r in runs:
        if root:
            r.config["data"]["root"] = root
        if args.download:
            r.config["data"]["download"] = True
        for path in ENV_ENTRIES:
            value = _get(r.config, path)
            m = _ENV_PLACEHOLDER.match(value) if isinstance(value, str) else None
            if not m:
                continue
            if os.environ.get(m[1]):
                _get(r.config, path[:-1])[path[-1]] = os.environ[m[1]]
                continue
            if args.dry_run:
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


def _resolve_init_runs(runs, args, exp) -> None:
    """Point ``init.checkpoint`` of each run that names ``init.run`` (and no checkpoint) at that run's
    directory: in ``--results-dir`` first, else in the committed results. The run's cell then names the
    directory (``checkpoint``), as if the grid had. Refuses a label that matches several runs and, unless a
    dry run, one that matches none, naming the command that trains it."""
    from .experiments.records import find_runs, read_record
    from .experiments.spec import ExperimentError

    mine, reference = Path(args.results_dir), reference_results(exp)
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
            if args.dry_run:
                continue
            raise ExperimentError(f"{where}: no finished run {label} of {upstream} at scale {r.scale} in {mine}: "
                                  f"`vitrepro run {exp.path.parent / upstream}.yaml --scale {r.scale} --data-root DIR "
                                  f"--results-dir {mine}` trains it")
        run_dir = found[0]
        if not args.dry_run and folder != mine and not (run_dir / "checkpoints" / "last.ckpt").is_file():
            rec = read_record(run_dir)
            raise ExperimentError(f"{where}: {run_dir} is a committed run without its checkpoint (checkpoints are "
                                  f"not committed): `{rec['provenance']['command']} --results-dir {mine}` trains it "
                                  f"({rec['provenance']['wall_s'] / 60:.0f} min on {rec['provenance']['hardware']})")
        init["checkpoint"] = str(run_dir)
        r.cell = {("checkpoint" if k == "run" else k): (str(run_dir) if k == "run" else v) for k, v in r.cell.items()}


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

    from .data import ImageClassificationDataModule

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
    from .experiments.spec import ExperimentError
    from .experiments.stages import init_checkpoint, pretrained_model

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

        if "name" not in r.config["model"]:  # the model is the one init.checkpoint names
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
                init_checkpoint(r.config)
                pretrained_model(r.config, own.num_classes, own.img_size)
            except (ValueError, FileNotFoundError) as e:
                refuse("init.checkpoint", e)


def _check_memory(run, data: _DataFacts, refuse) -> None:
    """Refuse a model or batch whose memory lower bound (``compute.training_memory_lower_bound``, per
    process) exceeds what this machine has, before anything is allocated."""
    from .compute import available_memory, training_memory_lower_bound

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
    """Fill ``model`` of a run that names none from its ``init.checkpoint`` (our checkpoints record the
    model's name and architecture fields, ``vitrepro.models.checkpoint``)."""
    from .experiments.spec import ExperimentError
    from .experiments.stages import init_checkpoint
    from .models import checkpoint_model_spec

    try:
        spec = checkpoint_model_spec(init_checkpoint(run.config))
    except FileNotFoundError as e:
        if not strict:
            return
        raise ExperimentError(f"{exp.path}: scale {run.scale}: key 'init.checkpoint': {' '.join(str(e).split())}") from None
    if spec is None:
        if not strict:
            return
        raise ExperimentError(f"{exp.path}: scale {run.scale}: key 'model.name' is required: "
                              f"{run.config['init']['checkpoint']} does not say which model it holds (a timm, .npz or "
                              f"older checkpoint)")
    run.config["model"] = {k: v for k, v in spec.items() if k not in ("num_classes", "img_size")}


def expand_command(args, extra: list[str]):
    """``(experiment, runs)`` of a parsed ``vitrepro run`` command line: the file's runs at ``--scale`` with
    the overrides, the ``--cell`` selection (each cell once), the data root and ``${NAME}`` placeholders
    filled. Raises ``ValueError`` (``ExperimentError``) for a bad file, override or cell."""
    from .experiments import Experiment

    exp = Experiment(args.config)
    runs = exp.expand(args.scale, parse_overrides(extra))
    if args.cell:
        bad = [i for i in args.cell if not 0 <= i < len(runs)]
        if bad:
            raise ValueError(f"{exp.path}: --cell {bad[0]} is out of range: the grid has cells 0..{len(runs) - 1}")
        runs = [runs[i] for i in dict.fromkeys(args.cell)]
    _resolve_roots_and_placeholders(runs, args, exp)
    _resolve_init_runs(runs, args, exp)
    return exp, runs


def cmd_run(args, extra: list[str], argv: list[str]) -> int:
    from .experiments import describe_runs, run_experiment

    exp, runs = expand_command(args, extra)
    _check_results_dir(Path(args.results_dir), "--results-dir")
    _check_devices(runs, exp)
    if args.logger == "tensorboard":
        _require_tensorboard()
    _open_data(runs, exp, strict=not args.dry_run)
    if args.dry_run:
        print(describe_runs(runs), end="")
        print(f"# {len(runs)} runs of {exp.name} at scale {runs[0].scale}; results would go to "
              f"{Path(args.results_dir) / exp.name}")
        return 0
    path, failed = run_experiment(exp, runs, Path(args.results_dir), argv=argv, tensorboard=args.logger == "tensorboard")
    print(f"results: {path}")
    if failed:
        print(f"error: {len(failed)} of {len(runs)} runs failed or were interrupted (the same command starts a "
              f"diverged run again from scratch and resumes the others from their newest good checkpoint):",
              file=sys.stderr)
        for rec in failed:
            kind = rec.get("failure") or "failed"
            print(f"  {rec['run_id']} ({kind}): {rec['error']}", file=sys.stderr)
        return 1
    return 0


def _check_results_dir(path: Path, flag: str) -> None:
    """Refuse, before anything is written, a results folder that is a file or cannot be written (a
    read-only file system, no permission): one line naming it."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file; expected a folder (it is created when missing)")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {existing} cannot be written (read-only file system or no permission); "
                         f"choose another with {flag} DIR")


def _processes(trainer: dict) -> int:
    """``trainer.devices x trainer.num_nodes`` when both are counts, else 1 (``auto``, a device list)."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    return devices * nodes if isinstance(devices, int) and devices > 0 and isinstance(nodes, int) else 1


def _check_devices(runs, exp) -> None:
    """Refuse, before anything is written, an accelerator this machine does not have, or a batch that does
    not split evenly over ``trainer.devices x trainer.num_nodes`` processes."""
    import torch

    from .experiments.spec import ExperimentError

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


def _require_tensorboard() -> None:
    import importlib.util

    if not (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
        raise ValueError("--logger tensorboard needs the tensorboard package: pip install tensorboard "
                         "(or pip install -e \".[tensorboard]\")")


def cmd_collect(args) -> Path:
    """Rebuild ``runs.csv`` from the records; raises ``FileNotFoundError`` when the experiment has none."""
    from .experiments import Experiment, write_table

    exp = Experiment(args.config)
    exp_dir = Path(args.results_dir) / exp.name
    if not any(exp_dir.glob("runs/*/record.json")):
        raise FileNotFoundError(f"{exp_dir}: no run records yet (runs/<run_id>/record.json); run "
                                f"`vitrepro run {args.config} --results-dir {args.results_dir}` first")
    path = write_table(exp_dir)
    print(f"wrote {path}")
    return path


def cmd_report(args) -> int:
    from .experiments import Experiment
    from .experiments.runner import write_experiment_report

    exp = Experiment(args.config)
    scale = args.scale or exp.default_scale
    exp.check_scale(scale)
    runs_csv = cmd_collect(args)
    written = write_experiment_report(exp, runs_csv, scale)
    if not written:
        print(f"{exp.path} names no report (key 'report'); the runs are in {runs_csv}")
    for p in written:
        print(f"wrote {p}")
    reference = Path(args.reference) if args.reference else reference_results(exp)
    if reference.resolve() != Path(args.results_dir).resolve() and any((reference / exp.name).glob("runs/*/record.json")):
        cmd_compare(args)
    return 0


def cmd_compare(args) -> int:
    """Write and print ``compare_<scale>.md``: the runs of ``--results-dir`` beside those of the reference
    folder (matched by run id) and the paper's numbers of the experiment's ``report.paper``."""
    from .experiments import Experiment
    from .report.compare import write_comparison

    exp = Experiment(args.config)
    scale = args.scale or exp.default_scale
    exp.check_scale(scale)
    reference = Path(args.reference) if args.reference else reference_results(exp)
    paper = exp.path.parent / exp.report["paper"] if exp.report and exp.report.get("paper") else None
    path = write_comparison(exp.name, scale, Path(args.results_dir), reference, paper)
    print(path.read_text(), end="")
    print(f"wrote {path}")
    return 0


def cmd_fewshot(args, extra: list[str]) -> int:
    from .evaluation.fewshot_checkpoint import fewshot_of_checkpoint, resolve_run
    from .models import model_defaults

    from .models import checkpoint_model_spec

    if not (args.run or args.checkpoint or args.model):
        raise ValueError("fewshot: give a run directory or a checkpoint file, or --model NAME (with --checkpoint PATH)")
    if args.run and args.checkpoint:
        raise ValueError("fewshot: give a run directory or checkpoint file, or --checkpoint PATH, not both")
    if args.run and Path(args.run).is_dir():
        model, data, ckpt = resolve_run(args.run)
        data = {k: v for k, v in data.items() if k in ("dataset", "root", "img_size", "seed", "num_workers")}
    else:
        ckpt = args.run or args.checkpoint
        if ckpt and not Path(ckpt).is_file():
            raise FileNotFoundError(f"fewshot: {ckpt} is neither a run directory nor a checkpoint file")
        spec = checkpoint_model_spec(ckpt) if ckpt else None
        if args.model:
            model = {"name": args.model}
        elif spec:  # our checkpoints say which model they hold
            model = spec
        else:
            raise ValueError(f"fewshot: {ckpt or 'no checkpoint'}: name the model with --model NAME (a timm, .npz or "
                             f"older checkpoint does not say which model it holds)")
        data = {"img_size": model.get("img_size") or model_defaults(model["name"])["img_size"]}
    from .data import ImageClassificationDataModule
    from .experiments.sections import allowed_keys

    data_keys = allowed_keys(ImageClassificationDataModule)
    data_overrides = {}
    for key, value in parse_overrides(extra).items():
        section, _, field = key.partition(".")
        if section == "model":
            model[field] = value
        elif section == "data" and field in data_keys:  # e.g. --data.dataset=imagefolder, as `run` takes it
            data_overrides[field] = value
        else:
            raise ValueError(f"fewshot: unrecognized override --{key}: allowed are --model.<field>=<value> and "
                             f"--data.<key>=<value> with key one of {', '.join(data_keys)}")
    root = args.data_root or os.environ.get(DATA_ROOT_ENV)
    data.update({k: v for k, v in (("root", root), ("dataset", args.dataset), ("img_size", args.img_size)) if v})
    data.update(data_overrides)
    out = fewshot_of_checkpoint(model, ckpt, data, shots=args.shots, seeds=args.seeds)
    print(f"{model['name']} {ckpt or '(random init)'} on {out['data']}, {len(args.seeds)} seeds:")
    for k in args.shots:
        print(f"  {k:>2}-shot linear accuracy: {100 * out[f'fewshot_{k}']:.2f}% "
              f"(std {100 * out[f'fewshot_{k}_std']:.2f})")
    return 0


def cmd_analyze(args, argv: list[str]) -> int:
    """``vitrepro analyze KIND RUN...``: one inspection figure and its caption (``vitrepro.report.inspection``)."""
    from .report.inspection import analyze, load_subject

    sources = args.runs or [None]
    subjects = [load_subject(src, args.model, args.checkpoint) for src in sources]
    name = args.name or "+".join(s.label for s in subjects)
    for path in analyze(args.kind, subjects, Path(args.results_dir) / "analysis", name,
                        "vitrepro " + " ".join(argv), images=args.images, data_root=args.data_root):
        print(f"wrote {path}")
    return 0


def cmd_figures(args) -> int:
    """``vitrepro figures``: ``vitrepro.report.figures.regenerate`` over the committed (or given) results."""
    from .report.figures import regenerate

    exp_dir = Path(args.experiments) if args.experiments else next(
        (p for p in (Path(__file__).resolve().parents[1] / "experiments", Path("experiments")) if p.is_dir()),
        Path("experiments"))
    results = Path(args.results_dir) if args.results_dir else exp_dir.parent / "results"
    if results.is_absolute() and results.is_relative_to(Path.cwd()):
        results = results.relative_to(Path.cwd())  # the reports name their runs.csv as the repository does
    for path in regenerate(exp_dir, results):
        print(f"wrote {path}")
    return 0


def cmd_models(args) -> int:
    """Registered models whose name matches ``pattern`` case-insensitively (a glob, or a part of the name),
    with their parameter counts (built on the ``meta`` device: no memory, no initialization)."""
    import fnmatch

    import torch

    from .models import create_model, list_models, model_defaults, model_family

    pattern = args.pattern.lower()
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    names = [n for n in list_models() if fnmatch.fnmatchcase(n.lower(), pattern)]
    if not names:
        raise ValueError(f"models: no registered model matches {args.pattern!r}; `vitrepro models` lists them all")
    for name in names:
        with torch.device("meta"):
            params = sum(p.numel() for p in create_model(name).parameters())
        fields = "  ".join(f"{k} {v}" for k, v in model_defaults(name).items() if k != "num_classes")
        print(f"{name:14s} {model_family(name):7s} {params / 1e6:8.2f}M params  {fields}")
    return 0


def _quiet() -> None:
    """Keep Lightning's progress facts (GPU available, tips) out of the log; warnings still show."""
    import logging
    import warnings

    import lightning  # noqa: F401  (importing it sets its loggers to INFO; lower them afterwards)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # lightning vs torch 2.14 deprecation
    warnings.filterwarnings("ignore", message=r".*Total length of .* across ranks is zero.*")  # no dev split: by design
    # the training sampler resumes mid-epoch itself (vitrepro.data.sampler), which Lightning cannot see
    warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable.*")


def _interruptible(command, *args) -> int:
    """``command(*args)``, but Ctrl-C and ``SIGTERM`` end with one line (the run, the step and checkpoint
    it resumes from, "run the same command to resume") and exit status 130 / 143."""
    from .experiments.runner import RunInterrupted

    try:
        return command(*args)
    except RunInterrupted as e:
        print(f"{e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C) before any run started training; run the same command to start",
              file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, extra = _build_parser().parse_known_args(argv)  # --help exits here, before torch is imported
    if os.environ.get("VITREPRO_VERBOSE") != "1" and args.command in ("run", "fewshot", "analyze"):
        _quiet()
    try:
        if args.command == "run":
            return _interruptible(cmd_run, args, extra, argv)
        if args.command == "fewshot":
            return cmd_fewshot(args, extra)
        if args.command == "analyze" and not extra:
            return cmd_analyze(args, argv)
        if extra:
            raise ValueError(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "collect":
            cmd_collect(args)
            return 0
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "figures":
            return cmd_figures(args)
        return cmd_report(args) if args.command == "report" else cmd_models(args)
    except (ValueError, OSError) as e:  # ExperimentError is a ValueError; OSError: a missing, full or read-only path
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
