"""``vitrepro``: run the paper's experiments and regenerate their tables.

  vitrepro run experiments/pos_emb_ablation.yaml [--scale smoke|local|cpu|paper] [--data-root DIR]
               [--download] [--results-dir results] [--dry-run] [--cell 0,3] [--<section>.<key>=<value> ...]
  vitrepro report experiments/pos_emb_ablation.yaml [--scale S] [--results-dir results]
  vitrepro fewshot results/pos_emb_ablation/runs/<run_id> [--data-root DIR] [--shots 1,5,10,25]
  vitrepro fewshot --model ViT-B/16 --checkpoint weights.npz --data-root DIR [--model.<field>=<value>]
  vitrepro models [PATTERN]

``--<section>.<key>=<value>`` (and ``--seed=<int>``, the training seed) overrides any config entry
after the scale and grid, e.g.
``--trainer.devices=2 --trainer.strategy=ddp --trainer.precision=bf16-mixed --optim.lr=3e-4``;
values are parsed as YAML. ``--data-root`` (or the environment variable ``VITREPRO_DATA``) sets
``data.root`` for every run. Errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

DATA_ROOT_ENV = "VITREPRO_DATA"
DATA_ROOT_PLACEHOLDER = "${VITREPRO_DATA}"
TOP_LEVEL_OVERRIDES = ("--seed",)  # run-config entries outside a section


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """``["--trainer.devices=2", "--optim.lr", "3e-4"]`` -> ``{"trainer.devices": 2, "optim.lr": 3e-4}``.
    Raises ``ValueError`` for a token that is not ``--<section>.<key>[=<value>]``."""
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
        out[key] = yaml.safe_load(value)
        i += 1
    return out


def _cells(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected grid cell indices like 0,3, got {text!r}") from None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitrepro", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate the runs of an experiment file")
    report = sub.add_parser("report", help="rewrite an experiment's table and figure from its runs.csv")
    for p in (run, report):
        p.add_argument("config", help="experiment YAML, e.g. experiments/pos_emb_ablation.yaml")
        p.add_argument("--scale", help="a scale named in the file (default: its default_scale)")
        p.add_argument("--results-dir", default="results", help="where <experiment>/runs.csv goes")
    run.add_argument("--data-root", help=f"data set root (default ${DATA_ROOT_ENV}; none = bundled sample)")
    run.add_argument("--download", action="store_true", help="let torchvision download CIFAR into --data-root")
    run.add_argument("--dry-run", action="store_true", help="print the expanded runs and exit")
    run.add_argument("--cell", type=_cells, help="run only these grid cells, 0-based, e.g. 0,3 (a job array "
                     "can give each job one cell; all write to the same runs.csv)")
    fs = sub.add_parser("fewshot", help="few-shot linear accuracy of a run's checkpoint or of outside weights")
    fs.add_argument("run", nargs="?", help="a run directory of `vitrepro run` (config.yaml + checkpoints/last.ckpt)")
    fs.add_argument("--model", help="a registered model name, with --checkpoint, instead of a run directory")
    fs.add_argument("--checkpoint", help="our .ckpt, a timm state_dict (.pth/.bin/.safetensors) or a Google .npz")
    fs.add_argument("--data-root", help=f"data set root (default ${DATA_ROOT_ENV}; none = bundled sample)")
    fs.add_argument("--dataset", help="cifar10, cifar100, imagefolder, imagenet (default: the run's, or cifar10)")
    fs.add_argument("--img-size", type=int, help="input resolution (default: the run's, or the model's)")
    fs.add_argument("--shots", type=_cells, default=[1, 5, 10, 25], help="e.g. 1,5,10,25")
    fs.add_argument("--seeds", type=_cells, default=[0, 1, 2], help="e.g. 0,1,2")
    models = sub.add_parser("models", help="list the registered model variants")
    models.add_argument("pattern", nargs="?", default="*")
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


def _check_data(runs, exp) -> None:
    """Open each distinct data config once (cheap: finds the layout, counts classes) before training: the
    run's ``data`` and, when it fine-tunes, its target ``data`` + ``finetune.data``."""
    from .data import ImageClassificationDataModule
    from .experiments.spec import ExperimentError

    seen = set()
    for r in runs:
        targets = [("data", r.config["data"])]
        if "finetune" in r.config:
            targets.append(("finetune.data", {**r.config["data"], **r.config["finetune"]["data"]}))
        for key, data in targets:
            sig = repr(sorted(data.items()))
            if sig in seen:
                continue
            seen.add(sig)
            try:
                ImageClassificationDataModule(**data).split_indices()  # labels only: a too-large subset fails here
            except (ValueError, FileNotFoundError, RuntimeError) as e:
                msg = " ".join(str(e).split())
                raise ExperimentError(f"{exp.path}: scale {r.scale}: key '{key}': {msg}") from None


def cmd_run(args, extra: list[str], argv: list[str]) -> int:
    from .experiments import Experiment, describe_runs, run_experiment

    exp = Experiment(args.config)
    runs = exp.expand(args.scale, parse_overrides(extra))
    if args.cell:
        bad = [i for i in args.cell if not 0 <= i < len(runs)]
        if bad:
            raise ValueError(f"{exp.path}: --cell {bad[0]} is out of range: the grid has cells 0..{len(runs) - 1}")
        runs = [runs[i] for i in args.cell]
    _resolve_roots_and_placeholders(runs, args, exp)
    if args.dry_run:
        print(describe_runs(runs), end="")
        print(f"# {len(runs)} runs of {exp.name} at scale {runs[0].scale}; results would go to "
              f"{Path(args.results_dir) / exp.name / 'runs.csv'}")
        return 0
    _check_data(runs, exp)
    path = run_experiment(exp, runs, Path(args.results_dir), argv=argv)
    print(f"results: {path}")
    return 0


def cmd_report(args) -> int:
    from .experiments import Experiment
    from .experiments.runner import write_experiment_report

    exp = Experiment(args.config)
    scale = args.scale or exp.default_scale
    exp.check_scale(scale)
    runs_csv = Path(args.results_dir) / exp.name / "runs.csv"
    if not runs_csv.exists():
        raise FileNotFoundError(f"{runs_csv}: no runs yet; run `vitrepro run {args.config}` first")
    for p in write_experiment_report(exp, runs_csv, scale):
        print(f"wrote {p}")
    return 0


def cmd_fewshot(args, extra: list[str]) -> int:
    from .evaluation.fewshot_checkpoint import fewshot_of_checkpoint, resolve_run
    from .models import model_defaults

    if bool(args.run) == bool(args.model):
        raise ValueError("fewshot: give either a run directory or --model NAME (with --checkpoint PATH)")
    if args.run:
        model, data, ckpt = resolve_run(args.run)
        data = {k: v for k, v in data.items() if k in ("dataset", "root", "img_size", "seed", "num_workers")}
    else:
        model, ckpt = {"name": args.model}, args.checkpoint
        data = {"img_size": model_defaults(args.model)["img_size"]}
    for key, value in parse_overrides(extra).items():
        section, _, field = key.partition(".")
        if section != "model":
            raise ValueError(f"fewshot: unrecognized override --{key}: only --model.<field>=<value> applies here")
        model[field] = value
    root = args.data_root or os.environ.get(DATA_ROOT_ENV)
    data.update({k: v for k, v in (("root", root), ("dataset", args.dataset), ("img_size", args.img_size)) if v})
    out = fewshot_of_checkpoint(model, ckpt, data, shots=args.shots, seeds=args.seeds)
    print(f"{model['name']} {ckpt or '(random init)'} on {data.get('dataset', 'cifar10')} "
          f"({data.get('root') or 'bundled sample'}), {len(args.seeds)} seeds:")
    for k in args.shots:
        print(f"  {k:>2}-shot linear accuracy: {100 * out[f'fewshot_{k}']:.2f}% "
              f"(std {100 * out[f'fewshot_{k}_std']:.2f})")
    return 0


def cmd_models(args) -> int:
    from .models import list_models, model_defaults, model_family

    for name in list_models(args.pattern):
        fields = "  ".join(f"{k} {v}" for k, v in model_defaults(name).items() if k != "num_classes")
        print(f"{name:14s} {model_family(name):7s} {fields}")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get("VITREPRO_VERBOSE") != "1":
        _quiet()
    args, extra = _build_parser().parse_known_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, extra, argv)
        if args.command == "fewshot":
            return cmd_fewshot(args, extra)
        if extra:
            raise ValueError(f"unrecognized arguments: {' '.join(extra)}")
        return cmd_report(args) if args.command == "report" else cmd_models(args)
    except (ValueError, FileNotFoundError) as e:  # ExperimentError is a ValueError
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
