"""``vitrepro``: run the paper's experiments and regenerate their tables.

  vitrepro run experiments/pos_emb_ablation.yaml [--scale smoke|local|cpu|paper] [--data-root DIR]
               [--download] [--results-dir DIR] [--dry-run] [--cell 0,3] [--logger tensorboard]
               [--<section>.<key>=<value> ...]
  vitrepro report experiments/pos_emb_ablation.yaml [--scale S] [--results-dir DIR]
  vitrepro collect experiments/pos_emb_ablation.yaml [--results-dir DIR]
  vitrepro compare experiments/pos_emb_ablation.yaml [--scale S] [--results-dir DIR] [--reference results]
  vitrepro fewshot results/pos_emb_ablation/runs/<run_id> [--data-root DIR] [--data.<key>=<value>] [--shots 1,5]
  vitrepro fewshot path/to/last.ckpt [--data-root DIR]         (our checkpoints name their whole architecture)
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
import sys
from pathlib import Path
from typing import Any

import yaml

from .environment import DATA_ROOT_ENV, RESULTS_ENV

DEFAULT_RESULTS = "results/scratch"  # git-ignored: a quick run never touches the committed results
TOP_LEVEL_OVERRIDES = ("--seed",)  # run-config entries outside a section


def parse_value(text: str, where: str) -> Any:
    """One override's value, read as YAML with YAML 1.2 numbers (``1e-1`` is 0.1; ``experiment.load_yaml``,
    as experiment files are read), without tags: ``!!python/...`` is refused. Raises ``ValueError`` naming
    ``where`` for text that is not YAML."""
    from .experiments.experiment import load_yaml

    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: {text!r} is not a YAML value ({' '.join(str(e).split())[:160]})") from None


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
    an.add_argument("--data-root", help="the test images' data root (default: the run's; any data set the suite "
                    "reads, found by its layout; --data.<key>=<value> sets any other data argument)")
    an.add_argument("--images", type=_positive, default=8, help="test images: rollout maps drawn (default 8); "
                    "attention distance averages over max(N, 64)")
    an.add_argument("--name", help="the figure's file name after <kind>_ (default: the run ids joined)")
    an.add_argument("--results-dir", default=os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS,
                    help=f"figures go to <results-dir>/analysis/ (default ${RESULTS_ENV} or {DEFAULT_RESULTS}; "
                         "the committed figures: results)")
    ex = sub.add_parser("export", help="write a run's trained network as <run>/weights.safetensors (weights and "
                        "architecture, no pickle), so a clone without checkpoints can analyze it")
    ex.add_argument("runs", nargs="+", help="run directories of `vitrepro run` that hold their checkpoint")
    figs = sub.add_parser("figures", help="redraw every report, table and figure from results (no training)")
    figs.add_argument("--results-dir", default=None, help="the results to redraw (default: the committed results/ "
                      "beside --experiments)")
    figs.add_argument("--experiments", default=None, help="the experiment files' folder (default: experiments/ of "
                      "the checkout the working directory is in)")
    models = sub.add_parser("models", help="list the registered model variants with their parameter counts")
    models.add_argument("pattern", nargs="?", default="*", help="a name, part of one or a glob, any case "
                        "(e.g. vit, 'ViT-B/*', r50)")
    return parser


def plan_of(args, extra: list[str]):
    """The ``RunPlan`` of a parsed ``vitrepro run`` command line (``experiments.plan.build_plan``)."""
    from .experiments.plan import PlanRequest, build_plan

    return build_plan(PlanRequest(args.config, Path(args.results_dir), args.scale, tuple(args.cell or ()) or None,
                                  parse_overrides(extra), _data_root(args), args.download, args.dry_run))


def _data_root(args) -> str | None:
    """``--data-root``, else ``$VITREPRO_DATA``, else None (the run config's own)."""
    return args.data_root or os.environ.get(DATA_ROOT_ENV) or None


def cmd_run(args, extra: list[str], argv: list[str]) -> int:
    from .experiments.experiment import describe_runs

    _check_results_dir(Path(args.results_dir), "--results-dir")
    plan = plan_of(args, extra)
    if args.logger == "tensorboard":
        _require_tensorboard()
    if args.dry_run:
        print(describe_runs(list(plan.runs)), end="")
        print(f"# {len(plan.runs)} runs of {plan.experiment.name} at scale {plan.scale}; results would go to "
              f"{plan.results_dir / plan.experiment.name}")
        return 0
    from .experiments.runner import run_experiment

    path, failed = run_experiment(plan, argv=argv, tensorboard=args.logger == "tensorboard")
    print(f"results: {path}")
    if failed:
        print(f"error: {len(failed)} of {len(plan.runs)} runs failed or were interrupted (the same command starts a "
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
    from .experiments.plan import reference_results
    from .report import write_experiment_report

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
    from .experiments.plan import reference_results
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


def _data_and_model(args, extra: list[str], command: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data overrides, model overrides)`` of ``fewshot`` and ``analyze``, named as ``run`` names them:
    ``--data-root DIR`` (or ``$VITREPRO_DATA``) and ``--data.<key>=<value>`` (any
    ``ImageClassificationDataModule`` argument), ``--model.<field>=<value>``. A data root given without a
    ``data.dataset`` is read as ``auto`` (the kind the folder holds), so a CIFAR-trained checkpoint can be
    looked at on one's own ImageFolder tree. Raises ``ValueError`` for another override."""
    from .data import ImageClassificationDataModule
    from .experiments.config_sections import allowed_keys

    data_keys = allowed_keys(ImageClassificationDataModule)
    data, model = {}, {}
    for key, value in parse_overrides(extra).items():
        section, _, field = key.partition(".")
        if section == "model":
            model[field] = value
        elif section == "data" and field in data_keys:
            data[field] = value
        else:
            raise ValueError(f"{command}: unrecognized override --{key}: allowed are --model.<field>=<value> and "
                             f"--data.<key>=<value> with key one of {', '.join(data_keys)}")
    root = _data_root(args)
    if root and "root" not in data:
        data["root"] = root
        data.setdefault("dataset", "auto")
    return data, model


def cmd_fewshot(args, extra: list[str]) -> int:
    from .evaluation.fewshot_checkpoint import fewshot_of_checkpoint
    from .models import model_defaults
    from .models.checkpoint import resolve_weights

    if not (args.run or args.checkpoint or args.model):
        raise ValueError("fewshot: give a run directory or a checkpoint file, or --model NAME (with --checkpoint PATH)")
    if args.run and args.checkpoint:
        raise ValueError("fewshot: give a run directory or checkpoint file, or --checkpoint PATH, not both")
    data_overrides, model_overrides = _data_and_model(args, extra, "fewshot")
    weights = resolve_weights(args.run or args.checkpoint, {**({"name": args.model} if args.model else {}),
                                                             **model_overrides},
                              named=bool(args.model or "name" in model_overrides))
    model, ckpt = weights.model, weights.checkpoint
    if weights.run:  # the run's data, less what only training reads
        data = {k: v for k, v in weights.run["config"]["data"].items()
                if k in ("dataset", "root", "img_size", "seed", "num_workers")}
    else:
        data = {"img_size": weights.img_size or model_defaults(model["name"])["img_size"]}
    data.update({k: v for k, v in (("dataset", args.dataset), ("img_size", args.img_size)) if v})
    data.update(data_overrides)
    out = fewshot_of_checkpoint(model, ckpt, data, shots=args.shots, seeds=args.seeds)
    print(f"{model['name']} {ckpt or '(random init)'} on {out['data']}, {len(args.seeds)} seeds:")
    for k in args.shots:
        print(f"  {k:>2}-shot linear accuracy: {100 * out[f'fewshot_{k}']:.2f}% "
              f"(std {100 * out[f'fewshot_{k}_std']:.2f})")
    return 0


def cmd_analyze(args, extra: list[str], argv: list[str]) -> int:
    """``vitrepro analyze KIND RUN...``: one inspection figure and its caption (``vitrepro.report.inspection``),
    of any run folder or checkpoint, on the run's test images or any data root (``--data-root``,
    ``--data.<key>=<value>``)."""
    from .report.inspection import analyze, load_subject

    data, model = _data_and_model(args, extra, "analyze")
    sources = args.runs or [None]
    subjects = [load_subject(src, args.model, args.checkpoint, model) for src in sources]
    name = args.name or "+".join(s.name for s in subjects)
    for path in analyze(args.kind, subjects, Path(args.results_dir) / "analysis", name,
                        "vitrepro " + " ".join(argv), images=args.images, data=data):
        print(f"wrote {path}")
    return 0


def cmd_export(args) -> int:
    """``vitrepro export RUN...``: each run's network (``RunDir.checkpoint``: pre-trained, else fine-tuned) as
    ``<run>/weights.safetensors`` (``models.checkpoint.export_weights``)."""
    from .models.checkpoint import export_weights
    from .rundir import RunDir

    for run in args.runs:
        folder = RunDir(run)
        source = folder.checkpoint()
        if source == folder.weights:
            raise ValueError(f"{run}: has only its exported {folder.weights.name}; the checkpoint it came from is gone")
        out = export_weights(source, folder.weights)
        print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) from {source.name}")
    return 0


def _checkout() -> Path:
    """The folder holding ``experiments/``: the working directory or the nearest folder above it (as git
    finds its repository). Raises ``FileNotFoundError`` when there is none."""
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if any((folder / "experiments").glob("*.yaml")):
            return folder
    raise FileNotFoundError(f"figures: no experiments/ folder with experiment files in {cwd} or above; run it in a "
                            f"checkout of vitrepro or pass --experiments DIR")


def cmd_figures(args) -> int:
    """``vitrepro figures``: ``vitrepro.report.figures.regenerate`` over the committed (or given) results.
    Default paths follow the working directory: ``experiments/`` and ``results/`` of the checkout it is in."""
    from .report.figures import regenerate

    exp_dir = Path(args.experiments) if args.experiments else _checkout() / "experiments"
    results = Path(args.results_dir) if args.results_dir else exp_dir.parent / "results"
    if results.is_absolute() and results.is_relative_to(Path.cwd()):
        results = results.relative_to(Path.cwd())
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
        if args.command == "analyze":
            return cmd_analyze(args, extra, argv)
        if extra:
            raise ValueError(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "collect":
            cmd_collect(args)
            return 0
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "figures":
            return cmd_figures(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_report(args) if args.command == "report" else cmd_models(args)
    except (ValueError, OSError) as e:  # ExperimentError is a ValueError; OSError: a missing, full or read-only path
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
