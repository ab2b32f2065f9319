"""Few-shot linear probe: the closed-form solver against independent solves, big_vision's semantics."""
import numpy as np
import pytest
import torch

from vitrepro.data import ImageClassificationDataModule
from vitrepro.evaluation import (evaluate_fewshot, extract_features, fewshot_lsr_accuracy, lsr_solve,
                                 sample_fewshot_indices)
from vitrepro.models import create_model


@pytest.mark.parametrize("n,d", [(200, 30), (12, 50)])  # primal (N >= D) and dual (N < D) branches
def test_lsr_solve_matches_lstsq_on_the_augmented_system(n, d):
    """Ridge = least squares on [X; sqrt(l) I] w = [y; 0], solved by numpy's SVD-based lstsq."""
    rng = np.random.default_rng(0)
    x, y, lam = rng.normal(size=(n, d)), rng.normal(size=(n, 4)), 7.5
    aug_x = np.vstack([x, np.sqrt(lam) * np.eye(d)])
    aug_y = np.vstack([y, np.zeros((d, 4))])
    ref = np.linalg.lstsq(aug_x, aug_y, rcond=None)[0]
    w = lsr_solve(torch.from_numpy(x), torch.from_numpy(y), lam)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-8, atol=1e-10)


def numpy_fewshot(train_x, train_y, test_x, test_y, k, l2):
    """An independent transcription of big_vision fewshot_lsr: whiten, bias 100, +-1 targets, solve."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-5
    a = np.hstack([(train_x - mean) / std, np.full((len(train_x), 1), 100.0)])
    b = np.hstack([(test_x - mean) / std, np.full((len(test_x), 1), 100.0)])
    t = 2 * np.eye(k)[train_y] - 1
    w = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ t)
    return float(((b @ w).argmax(1) == test_y).mean())


def test_fewshot_accuracy_matches_independent_implementation():
    rng = np.random.default_rng(1)
    k, d = 5, 16
    centers = rng.normal(scale=1.5, size=(k, d))
    train_y, test_y = np.repeat(np.arange(k), 10), rng.integers(0, k, 300)
    train_x = centers[train_y] + rng.normal(size=(len(train_y), d))
    test_x = centers[test_y] + rng.normal(size=(len(test_y), d))
    for l2 in (1.0, 1024.0):
        ours = fewshot_lsr_accuracy(*map(torch.from_numpy, (train_x, train_y, test_x, test_y)), k, l2)
        assert ours == pytest.approx(numpy_fewshot(train_x, train_y, test_x, test_y, k, l2), abs=1e-12)
        assert 0.5 < ours <= 1.0  # well above chance (0.2) on separable clusters


def test_fewshot_is_chance_on_random_labels():
    rng = np.random.default_rng(2)
    x, y = torch.from_numpy(rng.normal(size=(50, 8))), torch.from_numpy(rng.integers(0, 10, 50))
    xt, yt = torch.from_numpy(rng.normal(size=(5000, 8))), torch.from_numpy(rng.integers(0, 10, 5000))
    assert fewshot_lsr_accuracy(x, y, xt, yt, 10) == pytest.approx(0.1, abs=0.03)


def test_sampling_takes_k_per_class_seeded():
    labels = np.repeat(np.arange(4), 30)
    a = sample_fewshot_indices(labels, 5, seed=0)
    assert len(a) == 20 and all((labels[a] == c).sum() == 5 for c in range(4))
    assert np.array_equal(a, sample_fewshot_indices(labels, 5, seed=0))
    assert not np.array_equal(a, sample_fewshot_indices(labels, 5, seed=1))
    # the first k of a class in the seeded permutation: 1-shot picks are the first of the 5-shot picks
    one = sample_fewshot_indices(labels, 1, seed=0)
    assert np.array_equal(one, a.reshape(4, 5)[:, 0])
    with pytest.raises(ValueError, match="25-shot needs 25 examples of class 3, the pool has 2"):
        sample_fewshot_indices(np.concatenate([labels[:90], [3, 3]]), 25, seed=0)


def test_evaluate_fewshot_on_a_model_and_real_images():
    dm = ImageClassificationDataModule(root=None, val_fraction=0.0)
    dm.setup()
    torch.manual_seed(0)
    model = create_model("ViT-C/4", depth=1).eval()
    feats, labels = extract_features(model, dm.test_set)
    assert feats.shape == (200, 128) and labels.shape == (200,)
    out = evaluate_fewshot(model, dm.fewshot_pool(), dm.fewshot_pool_labels(), feats, labels, 10,
                           shots=(1, 5), seeds=(0, 1))
    assert set(out) == {"fewshot_1", "fewshot_1_std", "fewshot_5", "fewshot_5_std"}
    assert all(0.0 <= v <= 1.0 for v in out.values())
    # the same features through the plain function reproduce the reported number
    idx = sample_fewshot_indices(dm.fewshot_pool_labels(), 5, 0, 10)
    x, y = extract_features(model, torch.utils.data.Subset(dm.fewshot_pool(), idx.tolist()))
    acc0 = fewshot_lsr_accuracy(x, y, feats, labels, 10)
    acc1_idx = sample_fewshot_indices(dm.fewshot_pool_labels(), 5, 1, 10)
    x1, y1 = extract_features(model, torch.utils.data.Subset(dm.fewshot_pool(), acc1_idx.tolist()))
    acc1 = fewshot_lsr_accuracy(x1, y1, feats, labels, 10)
    assert out["fewshot_5"] == pytest.approx((acc0 + acc1) / 2, abs=1e-9)
