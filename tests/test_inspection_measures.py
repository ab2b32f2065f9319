"""The inspection measures of Sec. 4.5 by their semantics: known attention patterns give known answers."""
import itertools
import math

import pytest
import torch

from vitrepro.evaluation.inspection_measures import (attention_rollout, embedding_filters_pca, mean_attention_distance, posemb_similarity,
                               rollout_map)
from vitrepro.models import create_model


def _with_cls(a: torch.Tensor) -> torch.Tensor:
    """(B, H, n, n) over patches -> (B, H, n+1, n+1) with a class token attending to itself alone."""
    b, h, n, _ = a.shape
    out = torch.zeros(b, h, n + 1, n + 1)
    out[..., 0, 0] = 1
    out[..., 1:, 1:] = a
    return out


def test_identity_attention_has_distance_zero():
    eye = _with_cls(torch.eye(16).expand(2, 3, 16, 16))
    assert torch.equal(mean_attention_distance([eye, eye], 4, 8), torch.zeros(2, 3))


def test_uniform_attention_gives_the_mean_pairwise_patch_distance():
    g, p = 4, 8
    uniform = _with_cls(torch.full((1, 2, g * g, g * g), 1 / (g * g)))
    cells = list(itertools.product(range(g), range(g)))
    expected = sum(p * math.dist(a, b) for a in cells for b in cells) / len(cells) ** 2
    assert mean_attention_distance([uniform], g, p) == pytest.approx(torch.full((1, 2), expected), rel=1e-6)


def test_attention_to_the_right_neighbour_is_one_patch_away():
    g, p = 3, 16
    a = torch.zeros(1, 1, g * g, g * g)
    for i in range(g * g):
        a[0, 0, i, i + 1 if i % g < g - 1 else i - 1] = 1  # the neighbour in the same row
    assert mean_attention_distance([_with_cls(a)], g, p).item() == pytest.approx(p)


def test_rollout_of_identity_attentions_is_the_identity():
    eye = torch.eye(5).expand(2, 4, 5, 5)
    assert torch.allclose(attention_rollout([eye, eye, eye]), torch.eye(5).expand(2, 5, 5))


def test_rollout_adds_the_residual_and_multiplies_from_the_first_layer_up():
    a1 = torch.softmax(torch.randn(1, 2, 4, 4), -1)
    a2 = torch.softmax(torch.randn(1, 2, 4, 4), -1)
    step = lambda a: (a.mean(1) + torch.eye(4)) / 2  # noqa: E731  (rows of a + I sum to 2)
    assert torch.allclose(attention_rollout([a1, a2]), step(a2) @ step(a1), atol=1e-6)
    rows = attention_rollout([a1, a2]).sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows))


def test_a_trained_models_measures_have_the_papers_shapes():
    torch.manual_seed(0)
    model = create_model("ViT-C/4", num_classes=10).eval()
    with torch.no_grad():
        _, attns = model.forward_features(torch.randn(2, 3, 32, 32), return_attention=True)
    dist = mean_attention_distance(attns, model.cfg.grid_size, model.cfg.patch_size)
    assert dist.shape == (model.cfg.depth, model.cfg.num_heads)
    assert (dist > 0).all() and (dist < 32 * math.sqrt(2)).all()
    maps = rollout_map(attns, model.cfg.grid_size)
    assert maps.shape == (2, 8, 8) and torch.allclose(maps.amax(dim=(1, 2)), torch.ones(2))


def test_a_2d_table_from_separate_x_and_y_parts_shows_rows_and_columns():
    torch.manual_seed(0)
    model = create_model("ViT-C/4", width=256, num_heads=4, posemb="learned_2d")
    sim = posemb_similarity(model)["stem"]  # (8, 8, 8, 8)
    g = 8
    same_row = [sim[i, j, i, k] for i in range(g) for j in range(g) for k in range(g) if j != k]
    same_col = [sim[i, j, k, j] for i in range(g) for j in range(g) for k in range(g) if i != k]
    neither = [sim[i, j, k, m] for i in range(g) for j in range(g) for k in range(g) for m in range(g)
               if i != k and j != m]
    assert torch.stack(same_row).mean() > 0.4 and torch.stack(same_col).mean() > 0.4
    assert abs(torch.stack(neither).mean()) < 0.05
    assert torch.allclose(torch.diagonal(sim.reshape(64, 64)), torch.ones(64))


def test_every_layer_tables_and_models_without_one():
    every = posemb_similarity(create_model("ViT-C/4", depth=3, posemb_placement="every_layer"))
    assert sorted(every) == ["layer0", "layer1", "layer2"] and every["layer0"].shape == (8, 8, 8, 8)
    assert posemb_similarity(create_model("ViT-C/4", posemb="none")) == {}
    assert list(posemb_similarity(create_model("ViT-C/4", posemb_placement="every_layer_shared"))) == ["stem"]


def test_the_first_principal_component_is_the_filters_common_direction():
    model = create_model("ViT-C/4")
    pattern = torch.randn(3, 4, 4)
    coeffs = torch.randn(model.cfg.width, 1, 1, 1)
    with torch.no_grad():
        model.embedding.weight.copy_(coeffs * pattern + 0.001 * torch.randn_like(model.embedding.weight))
    comps = embedding_filters_pca(model, k=5)
    assert comps.shape == (5, 3, 4, 4) and comps.min() >= 0 and comps.max() <= 1
    corr = torch.corrcoef(torch.stack([comps[0].flatten(), pattern.flatten()]))[0, 1]
    assert abs(corr) > 0.999
    with pytest.raises(ValueError, match="k=49"):
        embedding_filters_pca(model, k=49)


def test_neighbourhood_similarity_reads_a_tables_rows_columns_and_neighbours():
    from vitrepro.evaluation.inspection_measures import neighbourhood_similarity

    g = 4
    rows = torch.eye(g).repeat_interleave(g, dim=0)  # each patch's embedding: one-hot of its row
    table = torch.nn.functional.normalize(rows, dim=-1)
    sim = (table @ table.T).reshape(g, g, g, g)
    st = neighbourhood_similarity(sim)
    assert st["same_row"] == 1.0 and st["same_column"] == 0.0
    assert st["neighbours"] > st["others"] > 0.0  # half the neighbours share the row; few others do
