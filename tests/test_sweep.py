"""The Table 4 learning-rate sweep: best pick, sqlite storage, resume without re-running completed lrs."""
import math
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from vitrepro.experiments.sweep import TABLE4_SWEEPS, sweep_learning_rates

optuna.logging.set_verbosity(optuna.logging.WARNING)
LRS = TABLE4_SWEEPS["cifar10"][1]


def peaked(at):
    """A synthetic dev top-1 peaking at learning rate ``at``, counting its calls."""
    calls = Counter()

    def objective(lr):
        calls[lr] += 1
        return 0.9 - 0.1 * abs(math.log10(lr) - math.log10(at))

    return objective, calls


def test_table4_grid():
    assert TABLE4_SWEEPS["imagenet"] == (20_000, [0.003, 0.01, 0.03, 0.06])
    assert TABLE4_SWEEPS["cifar100"] == TABLE4_SWEEPS["cifar10"] == (10_000, [0.001, 0.003, 0.01, 0.03])
    assert TABLE4_SWEEPS["pets"] == TABLE4_SWEEPS["flowers"] == (500, [0.001, 0.003, 0.01, 0.03])
    assert TABLE4_SWEEPS["vtab"] == (2_500, [0.01])


def test_picks_the_best_and_a_second_call_runs_nothing(tmp_path):
    storage = f"sqlite:///{tmp_path}/sweeps/cifar10.db"  # the folder is created
    objective, calls = peaked(0.01)
    best, study = sweep_learning_rates(objective, LRS, storage=storage, study_name="vit_c4_cifar10")
    assert best == 0.01 and sorted(calls) == sorted(LRS) and set(calls.values()) == {1}
    assert (tmp_path / "sweeps" / "cifar10.db").is_file()
    assert sorted(t.params["lr"] for t in study.trials if t.state == TrialState.COMPLETE) == sorted(LRS)

    objective2, calls2 = peaked(0.01)
    best2, study2 = sweep_learning_rates(objective2, LRS, storage=storage, study_name="vit_c4_cifar10")
    assert best2 == 0.01 and not calls2 and len(study2.trials) == len(LRS)  # nothing re-run
    # a wider grid runs only the new value; the stored trials are read from the file
    calls3 = []
    best3, _ = sweep_learning_rates(lambda lr: calls3.append(lr) or 0.95, LRS + [0.06], storage=storage,
                                    study_name="vit_c4_cifar10")
    assert calls3 == [0.06] and best3 == 0.06
    # another study name in the same file is another sweep
    objective4, calls4 = peaked(0.001)
    assert sweep_learning_rates(objective4, LRS, storage=storage, study_name="other")[0] == 0.001
    assert sum(calls4.values()) == len(LRS)


def test_an_interrupted_sweep_resumes_with_the_lrs_left(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    objective, calls = peaked(0.003)

    def crashing(lr):
        if len(calls) == 2:
            raise RuntimeError("machine lost")
        return objective(lr)

    with pytest.raises(RuntimeError, match="machine lost"):
        sweep_learning_rates(crashing, LRS, storage=storage)
    assert len(calls) == 2
    best, study = sweep_learning_rates(objective, LRS, storage=storage)
    assert sorted(calls) == sorted(LRS) and set(calls.values()) == {1}  # every lr exactly once
    assert best == 0.003
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 1


def test_minimize_in_memory_and_errors():
    best, study = sweep_learning_rates(lambda lr: abs(lr - 0.01), LRS, direction="minimize")
    assert best == 0.01 and len(study.trials) == 4
    with pytest.raises(ValueError, match="direction='up' is not one of maximize, minimize"):
        sweep_learning_rates(lambda lr: 0.0, LRS, direction="up")
    with pytest.raises(ValueError, match="lrs is empty"):
        sweep_learning_rates(lambda lr: 0.0, [])


def test_an_lr_running_on_another_machine_is_left_to_it(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    other = optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    other.enqueue_trial({"lr": 0.03})
    trial = other.ask()  # another machine's trial, RUNNING
    trial.suggest_float("lr", 0.001, 0.03)
    objective, calls = peaked(0.01)
    with pytest.warns(UserWarning, match=r"learning rates \[0.03\] are not complete"):
        best, _ = sweep_learning_rates(objective, LRS, storage=storage, study_name="shared")
    assert 0.03 not in calls and sorted(calls) == [0.001, 0.003, 0.01] and best == 0.01
    other.tell(trial, 0.99)  # the other machine finishes; nothing is left to run
    objective2, calls2 = peaked(0.01)
    assert sweep_learning_rates(objective2, LRS, storage=storage, study_name="shared")[0] == 0.03 and not calls2


def test_lockstep_sweep_runs_in_grid_order_resumes_and_only_the_writer_writes(tmp_path):
    """The runner's sweep (every DDP rank fine-tunes the same lrs in the same order; rank 0 records)."""
    from vitrepro.experiments.sweep import completed_learning_rates, sweep_in_lockstep

    storage = f"sqlite:///{tmp_path}/sub/s.db"
    objective, calls = peaked(0.01)
    order = []
    best, scores = sweep_in_lockstep(lambda lr: order.append(lr) or objective(lr), LRS, storage, "run", is_writer=False)
    assert best == 0.01 and order == [float(lr) for lr in LRS] and not (tmp_path / "sub").exists()  # a reader writes nothing
    best, scores = sweep_in_lockstep(objective, LRS[:2], storage, "run", is_writer=True)
    assert set(completed_learning_rates(storage, "run")) == set(LRS[:2])
    again = []
    best, scores = sweep_in_lockstep(lambda lr: again.append(lr) or objective(lr), LRS, storage, "run")
    assert again == [float(lr) for lr in LRS[2:]] and best == 0.01 and list(scores) == [float(lr) for lr in LRS]
    assert completed_learning_rates(storage, "other") == {} and completed_learning_rates(f"sqlite:///{tmp_path}/none.db", "run") == {}
    with pytest.raises(ValueError, match="lrs is empty"):
        sweep_in_lockstep(objective, [], storage, "run")
