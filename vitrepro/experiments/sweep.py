"""The fine-tuning learning-rate sweep of Table 4 (App. B.1.1), as a resumable Optuna grid study.

The paper fine-tunes with each learning rate of a small grid and picks the best on a held-out dev split
(2% of CIFAR's training set, 10% of Pets/Flowers', 1% of ImageNet's: ``val_fraction`` of the
datamodule), then reports test accuracy of that run. ``sweep_learning_rates`` runs the grid as an
Optuna study; with a database ``storage`` (e.g. ``sqlite:///results/<exp>/sweeps.db``) an interrupted
sweep resumes and several machines can share one sweep: a learning rate with a COMPLETE trial is never
run again, and machines running at the same time take different grid points (Optuna's ``GridSampler``
skips points another process is running).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.trial import TrialState

# dataset -> (fine-tuning steps, learning rates) of Table 4; VTAB: 1000 training examples, res 384.
TABLE4_SWEEPS: dict[str, tuple[int, list[float]]] = {
    "imagenet": (20_000, [0.003, 0.01, 0.03, 0.06]),
    "cifar10": (10_000, [0.001, 0.003, 0.01, 0.03]),
    "cifar100": (10_000, [0.001, 0.003, 0.01, 0.03]),
    "pets": (500, [0.001, 0.003, 0.01, 0.03]),
    "flowers": (500, [0.001, 0.003, 0.01, 0.03]),
    "vtab": (2_500, [0.01]),
}

DIRECTIONS = ("maximize", "minimize")
HEARTBEAT_S, GRACE_S = 60, 180  # a RUNNING trial without a heartbeat for GRACE_S seconds is marked FAIL


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def _complete(study: optuna.Study, lr: float, states=(TrialState.COMPLETE,),
              other_than: int | None = None) -> optuna.trial.FrozenTrial | None:
    """The first trial of ``study`` in one of ``states`` with learning rate ``lr`` (not trial number
    ``other_than``), or None."""
    for t in study.get_trials(deepcopy=False, states=states):
        if "lr" in t.params and _same(t.params["lr"], lr) and t.number != other_than:
            return t
    return None


def _ensure_sqlite_dir(storage: str | None) -> None:
    """Create the folder of an ``sqlite:///path`` file (SQLite creates the file, not its folders)."""
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///"):].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def sweep_learning_rates(objective: Callable[[float], float], lrs: Sequence[float],
                         storage: str | optuna.storages.BaseStorage | None = None,
                         study_name: str = "finetune_lr_sweep",
                         direction: str = "maximize") -> tuple[float, optuna.Study]:
    """Run ``objective(lr)`` for every learning rate of ``lrs`` not yet COMPLETE in the study; return the best.

    Args:
        objective: fine-tunes with learning rate ``lr`` and returns its dev-split top-1 (a fraction), or
            any score to ``direction``. An exception fails that trial (state FAIL) and propagates; the
            learning rate runs again on the next call.
        lrs: the grid, e.g. ``TABLE4_SWEEPS["cifar10"][1]``.
        storage: None (in memory, nothing kept) or any storage URL Optuna accepts, e.g.
            ``"sqlite:///results/<exp>/sweeps.db"`` (its folder is created), or an Optuna storage object.
        study_name: the study in ``storage``; the same name resumes it (``load_if_exists=True``).
        direction: ``"maximize"`` (accuracy) or ``"minimize"``.

    Before running a learning rate the study's trials are checked: one with a COMPLETE trial (from an
    earlier call or another machine) is not re-run. The grid of the learning rates left is sampled by
    ``optuna.samplers.GridSampler({"lr": left})`` for ``len(left)`` trials, and each trial checks the
    study again when it starts: a point completed or being run by another process meanwhile is pruned,
    not run twice. A URL ``storage`` gets heartbeats (every 60 s): the RUNNING trial of a machine that
    died is marked FAIL after 3 minutes and runs again on the next call (a call within those minutes
    leaves that point to the dead trial and warns).

    Returns ``(best_lr, study)``: the best over COMPLETE trials of learning rates in ``lrs``. Warns when
    some of ``lrs`` are not complete (running on another machine). Raises ``ValueError`` for an empty grid
    or a bad ``direction``; ``RuntimeError`` when no learning rate of ``lrs`` is complete.
    Source: App. B.1.1, Table 4.
    """
    lrs = [float(lr) for lr in lrs]
    if not lrs:
        raise ValueError("lrs is empty: expected at least one learning rate")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} is not one of {', '.join(DIRECTIONS)}")
    _ensure_sqlite_dir(storage)
    if isinstance(storage, str):  # as Optuna reads a URL, with heartbeats so a dead machine's trial is failed
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, stable in use since 2.x
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(storage, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    study = optuna.create_study(study_name=study_name, storage=storage, direction=direction,
                                sampler=optuna.samplers.GridSampler({"lr": lrs}), load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise ValueError(f"study {study_name!r} in {storage} was created with direction="
                         f"{study.direction.name.lower()!r}, not {direction!r}")
    left = [lr for lr in lrs if _complete(study, lr) is None]
    if left:
        study.sampler = optuna.samplers.GridSampler({"lr": left})

        def run(trial: optuna.Trial) -> float:
            lr = trial.suggest_float("lr", min(left), max(left))
            done = _complete(study, lr, (TrialState.COMPLETE, TrialState.RUNNING), other_than=trial.number)
            if done is not None:
                raise optuna.TrialPruned(f"lr={lr} already {done.state.name} in trial {done.number}")
            return float(objective(lr))

        study.optimize(run, n_trials=len(left))
    scored = [(t.value, t.params["lr"]) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if "lr" in t.params and any(_same(t.params["lr"], lr) for lr in lrs)]
    if not scored:
        raise RuntimeError(f"no learning rate of {lrs} is complete in study {study_name!r}")
    missing = [lr for lr in lrs if _complete(study, lr) is None]
    if missing:
        warnings.warn(f"learning rates {missing} are not complete in study {study_name!r} (running elsewhere?): "
                      f"the best is over the others", stacklevel=2)
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda vl: vl[0])[1], study


def completed_learning_rates(storage: str, study_name: str) -> dict[float, float]:
    """{lr: score} of the COMPLETE trials in ``study_name`` at ``storage``, reading only: an ``sqlite:///``
    file that does not exist yet, or a study not in the storage, gives ``{}`` and creates nothing."""
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):].split("?", 1)[0]).exists():
        return {}
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return {}
    return {float(t.params["lr"]): float(t.value) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "lr" in t.params}


def sweep_in_lockstep(objective: Callable[[float], float], lrs: Sequence[float], storage: str, study_name: str,
                      is_writer: bool = True) -> tuple[float, dict[float, float]]:
    """The Table 4 sweep for processes that must fine-tune the same learning rates in the same order:
    the ranks of one DDP job, each running ``objective(lr)`` as one rank of a distributed fit.

    Every process reads the study's COMPLETE learning rates first (``completed_learning_rates``; no process
    writes before the first distributed fit, which needs all of them), then runs ``objective`` for the
    others in the order of ``lrs``; the writer (global rank 0) records each result as a COMPLETE trial, so
    a re-run skips it. ``objective`` must return the same score on every process (a metric synchronized
    across ranks, e.g. a torchmetrics top-1 from ``trainer.validate``).

    Use ``sweep_learning_rates`` instead to spread one sweep over independent machines. Returns
    ``(best_lr, {lr: score})`` over ``lrs`` (highest score; ties to the first). Raises ``ValueError`` for an
    empty grid. Source: App. B.1.1, Table 4.
    """
    lrs = [float(lr) for lr in lrs]
    if not lrs:
        raise ValueError("lrs is empty: expected at least one learning rate")
    done = completed_learning_rates(storage, study_name)
    scores = {lr: next(v for d, v in done.items() if _same(d, lr)) for lr in lrs if any(_same(d, lr) for d in done)}
    for lr in lrs:
        if lr in scores:
            continue
        scores[lr] = float(objective(lr))
        if is_writer:
            _ensure_sqlite_dir(storage)
            study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                        load_if_exists=True)
            study.add_trial(optuna.trial.create_trial(
                params={"lr": lr}, distributions={"lr": optuna.distributions.FloatDistribution(min(lrs), max(lrs))},
                value=scores[lr]))
    best = max(lrs, key=lambda lr: scores[lr])
    return best, {lr: scores[lr] for lr in lrs}


__all__ = ["TABLE4_SWEEPS", "sweep_learning_rates", "sweep_in_lockstep", "completed_learning_rates"]
