"""Few-shot linear evaluation: closed-form regularized least squares on frozen pre-logits features.

The paper's few-shot linear accuracy (Sec. 4.1, "Metrics"): solve a regularized least-squares
regression from the frozen representation to {-1, 1}^K targets, in closed form. Semantics of
big_vision ``evaluators/fewshot_lsr.py``: for each seed, shuffle the training pool with that seed and
take the first ``shots`` images of every class; standardize the features with the few-shot set's mean
and (population) std + 1e-5; append a constant bias feature of 100 (large, so almost unregularized);
targets ``2 * onehot - 1``; ridge solution with ``l2_reg = 2**10``; predict the argmax; accuracy over the
whole test split; 1/5/10/25 shots, 3 seeds.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics.functional.classification import multiclass_stat_scores

BIAS_CONSTANT = 100.0
DEFAULT_L2_REG = 2.0 ** 10
DEFAULT_SHOTS = (1, 5, 10, 25)
DEFAULT_SEEDS = (0, 1, 2)


def lsr_solve(x: torch.Tensor, y: torch.Tensor, l2_reg: float) -> torch.Tensor:
    """Ridge regression weights W (D, K) minimizing ||x W - y||^2 + l2_reg ||W||^2, in float64.

    x: (N, D), y: (N, K). Uses the primal form (x^T x + l I)^-1 x^T y when N >= D and the dual form
    x^T (x x^T + l I)^-1 y otherwise, each through an eigendecomposition as big_vision does.
    """
    x, y = x.double(), y.double()
    n, d = x.shape
    if n >= d:
        evals, evecs = torch.linalg.eigh(x.T @ x)
        inv = evecs @ torch.diag(1.0 / (evals + l2_reg)) @ evecs.T
        return inv @ (x.T @ y)
    evals, evecs = torch.linalg.eigh(x @ x.T)
    inv = evecs @ torch.diag(1.0 / (evals + l2_reg)) @ evecs.T
    return x.T @ (inv @ y)


def fewshot_lsr_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                         test_y: torch.Tensor, num_classes: int, l2_reg: float = DEFAULT_L2_REG) -> float:
    """Accuracy (fraction in [0, 1]) of the closed-form linear probe fit on (train_x (N, D), train_y (N,))
    and scored on (test_x (M, D), test_y (M,)). Labels are ints in [0, num_classes)."""
    train_x, test_x = train_x.double(), test_x.double()
    mean = train_x.mean(dim=0, keepdim=True)
    std = train_x.std(dim=0, unbiased=False, keepdim=True) + 1e-5
    pad = lambda z: torch.cat([(z - mean) / std, torch.full((z.shape[0], 1), BIAS_CONSTANT, dtype=z.dtype)], 1)  # noqa: E731
    targets = 2.0 * torch.nn.functional.one_hot(train_y.long(), num_classes).double() - 1.0
    w = lsr_solve(pad(train_x), targets, l2_reg)
    scores = pad(test_x) @ w
    # torchmetrics' counts (its accuracy is float32); the fraction exactly
    tp, _, _, _, support = multiclass_stat_scores(scores, test_y.long(), num_classes=num_classes, average="micro").tolist()
    return tp / support


def sample_fewshot_indices(labels: Sequence[int] | np.ndarray, shots: int, seed: int,
                           num_classes: int | None = None) -> np.ndarray:
    """Indices of ``shots`` examples per class: the first ones of each class in a permutation seeded by
    ``seed`` (big_vision). Returns int64 (num_classes * shots,), class by class. Raises ``ValueError``
    when a class has fewer than ``shots`` examples, naming the class and its count."""
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    order = np.random.default_rng(seed).permutation(len(labels))
    picked = []
    for c in range(num_classes):
        of_c = order[labels[order] == c]
        if len(of_c) < shots:
            raise ValueError(f"{shots}-shot needs {shots} examples of class {c}, the pool has {len(of_c)}")
        picked.append(of_c[:shots])
    return np.concatenate(picked)


@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset: Dataset, batch_size: int = 256, num_workers: int = 0,
                     device: torch.device | str | None = None, with_logits: bool = False):
    """Frozen pre-logits features of every item: ``model.forward_head(model.forward_features(x),
    pre_logits=True)``. Returns (features (N, num_features) float32 on CPU, labels (N,) int64), and the
    logits (N, num_classes) of ``model.forward_head`` as a third element when ``with_logits``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats, labels, logits = [], [], []
    # its own generator: evaluating during training must not draw from the global one (exact resume)
    for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, generator=torch.Generator()):
        tokens = model.forward_features(x.to(device))
        feats.append(model.forward_head(tokens, pre_logits=True).float().cpu())
        if with_logits:
            logits.append(model.forward_head(tokens).float().cpu())
        labels.append(torch.as_tensor(y))
    model.train(was_training)
    out = (torch.cat(feats), torch.cat(labels).long())
    return out + (torch.cat(logits),) if with_logits else out


def evaluate_fewshot(model: torch.nn.Module, pool: Dataset, pool_labels: Sequence[int] | np.ndarray,
                     test_features: torch.Tensor, test_labels: torch.Tensor, num_classes: int,
                     shots: Iterable[int] = DEFAULT_SHOTS, seeds: Iterable[int] = DEFAULT_SEEDS,
                     l2_reg: float = DEFAULT_L2_REG, batch_size: int = 256) -> dict[str, float]:
    """Few-shot linear accuracy of ``model`` for each shot count, mean and std over seeds.

    ``pool`` is the training split (eval transform) the shots are drawn from, ``pool_labels`` its labels
    in order; test features come from ``extract_features`` over the test split. Only the sampled pool
    images are embedded. Returns ``{"fewshot_{k}": mean, "fewshot_{k}_std": std}`` (fractions).
    Raises ``ValueError`` when a class has fewer pool images than a requested shot count.
    """
    shots, seeds = list(shots), list(seeds)
    chosen = {(k, s): sample_fewshot_indices(pool_labels, k, s, num_classes) for k in shots for s in seeds}
    union = np.unique(np.concatenate(list(chosen.values())))
    feats, _ = extract_features(model, Subset(pool, union.tolist()), batch_size=batch_size)
    row_of = {int(i): r for r, i in enumerate(union)}
    labels = np.asarray(pool_labels, dtype=np.int64)
    out: dict[str, float] = {}
    for k in shots:
        accs = []
        for s in seeds:
            idx = chosen[(k, s)]
            x = feats[[row_of[int(i)] for i in idx]]
            y = torch.from_numpy(labels[idx])
            accs.append(fewshot_lsr_accuracy(x, y, test_features, test_labels, num_classes, l2_reg))
        out[f"fewshot_{k}"] = float(np.mean(accs))
        out[f"fewshot_{k}_std"] = float(np.std(accs))
    return out
