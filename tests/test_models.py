"""ViT architecture: exact parameter counts, Eq. 1-4, and the semantics of every Table 8 cell."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from vitrepro.models import (ViTConfig, VisionTransformer, create_model, decode_vit_variant, list_models,
                             model_config, model_defaults, model_family, resample_posemb_grid)

TABLE8_CELLS = [("none", "stem"), ("learned_1d", "stem"), ("learned_1d", "every_layer"),
                ("learned_1d", "every_layer_shared"), ("learned_2d", "stem"), ("learned_2d", "every_layer"),
                ("learned_2d", "every_layer_shared"), ("relative", "stem")]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def small(posemb="learned_1d", placement="stem", **kw):
    torch.manual_seed(0)
    return create_model("ViT-C/4", depth=2, posemb=posemb, posemb_placement=placement, head_zero_init=False, **kw).eval()


# vit_jax models_test.py (1000 classes, 224x224).
@pytest.mark.parametrize("name,expected", [("ViT-B/16", 86_567_656), ("ViT-L/16", 304_326_632),
                                           ("ViT-Ti/16", 5_717_416)])
def test_exact_parameter_counts_of_the_official_code(name, expected):
    with torch.device("meta"):
        assert n_params(create_model(name, num_classes=1000)) == expected


@pytest.mark.parametrize("name", list_models(family="ViT"))
def test_every_registered_variant_matches_timm_parameter_count(name):
    """Each variant, built as timm's VisionTransformer of the same configuration, has the same size."""
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    d = model_defaults(name)
    with torch.device("meta"):
        ours = create_model(name, num_classes=1000)
        ref = TimmViT(img_size=d["img_size"], patch_size=d["patch_size"], embed_dim=d["width"], depth=d["depth"],
                      num_heads=d["num_heads"], mlp_ratio=d["mlp_dim"] / d["width"], num_classes=1000)
    assert n_params(ours) == n_params(ref)


def test_variant_decoder():
    assert decode_vit_variant("B/16") == dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16)
    assert decode_vit_variant("ViT-L/32")["depth"] == 24
    assert model_defaults("ViT-C/4") == dict(img_size=32, num_classes=10, width=128, depth=6, mlp_dim=512,
                                             num_heads=4, patch_size=4)
    with pytest.raises(ValueError, match="unknown ViT variant 'ViT-X/16'.*Ti, S"):
        decode_vit_variant("ViT-X/16")
    with pytest.raises(ValueError, match="unknown model 'R50'"):
        create_model("R50")


def test_seeds_cifar_example_shapes():
    """The seeds' CIFAR-10 example: P=4 on 32x32 gives N=64 patches of 48 values, D=128, z0 of 65x128."""
    m = create_model("ViT-C/4")
    x = torch.randn(2, 3, 32, 32)
    assert m.embedding.weight[0].numel() == 48
    assert m.embed(x).shape == (2, 65, 128)
    assert m.forward_features(x).shape == (2, 65, 128)
    assert m(x).shape == (2, 10)


def test_patch_embedding_is_linear_projection_of_flattened_patches():
    """Eq. 1: the conv patch embedding equals x_p E for x_p the flattened P x P x C patches."""
    m = small()
    x = torch.randn(2, 3, 32, 32)
    P = 4
    patches = x.unfold(2, P, P).unfold(3, P, P)  # (B, C, 8, 8, P, P)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 64, 3 * P * P)  # row-major patch order
    E = m.embedding.weight.reshape(128, -1)
    expected = patches @ E.T + m.embedding.bias
    tokens = m.embed(x)
    torch.testing.assert_close(tokens[:, 1:], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(tokens[:, 0], m.cls.expand(2, -1, -1)[:, 0])


def test_initialization_follows_vit_jax():
    m = create_model("ViT-C/4")
    assert torch.count_nonzero(m.cls) == 0
    assert torch.count_nonzero(m.head.weight) == 0
    x = torch.randn(3, 3, 32, 32)
    assert torch.count_nonzero(m(x)) == 0  # zero-init head gives zero logits
    pos = m.transformer.posembed_input.pos_embedding
    assert pos.shape == (1, 65, 128) and 0.015 < pos.std().item() < 0.025
    biased = create_model("ViT-C/4", head_bias_init=-10.0)
    assert torch.allclose(biased(x), torch.full((3, 10), -10.0))


def permute_patches(x: torch.Tensor, perm: torch.Tensor, P: int = 4) -> torch.Tensor:
    """Move the image's P x P patches to new places: patch perm[k] goes to place k."""
    B, C, H, W = x.shape
    g = H // P
    p = x.unfold(2, P, P).unfold(3, P, P).permute(0, 2, 3, 1, 4, 5).reshape(B, g * g, C, P, P)
    p = p[:, perm].reshape(B, g, g, C, P, P).permute(0, 3, 1, 4, 2, 5)
    return p.reshape(B, C, H, W)


@pytest.mark.parametrize("pool", ["token", "gap"])
def test_without_position_embedding_patch_order_does_not_matter(pool):
    """With posemb=none the encoder is permutation-equivariant, so the prediction ignores patch places."""
    m = small("none", pool=pool)
    x = torch.randn(4, 3, 32, 32)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    xp = permute_patches(x, perm)
    assert not torch.allclose(x, xp)
    torch.testing.assert_close(m(xp), m(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("posemb,placement", [c for c in TABLE8_CELLS if c[0] != "none"])
def test_every_position_embedding_makes_patch_order_matter(posemb, placement):
    m = small(posemb, placement)
    x = torch.randn(4, 3, 32, 32)
    xp = permute_patches(x, torch.randperm(64, generator=torch.Generator().manual_seed(1)))
    assert (m(xp) - m(x)).abs().max() > 1e-3


def test_learned_2d_concatenates_x_and_y_tables():
    m = small("learned_2d")
    pe = m.transformer.posembed_input
    table = pe.table().reshape(8, 8, 128)
    r, c = 3, 5
    torch.testing.assert_close(table[r, c], torch.cat([pe.pos_embedding_x[c], pe.pos_embedding_y[r]]))
    # patches in one row share the Y half, in one column the X half
    assert torch.equal(table[r, 0, 64:], table[r, 7, 64:]) and torch.equal(table[0, c, :64], table[7, c, :64])


def test_relative_bias_is_query_dot_offset_embedding():
    m = small("relative")
    rel = m.transformer.encoderblock[0].attn.rel_bias
    q = torch.randn(2, 4, 65, 32)
    bias = rel(q)
    for i, j in [(0, 0), (3, 10), (64, 0), (10, 3)]:
        expected = (q[:, :, i] * rel.rel_embedding[j - i + 64]).sum(-1)
        torch.testing.assert_close(bias[:, :, i, j], expected)
    # the same offset gives the same key embedding wherever it occurs
    torch.testing.assert_close(rel(torch.ones(1, 4, 65, 32))[0, :, 3, 5], rel(torch.ones(1, 4, 65, 32))[0, :, 40, 42])


def test_relative_embeddings_get_gradients():
    m = small("relative")
    m.train()
    m(torch.randn(2, 3, 32, 32)).sum().backward()
    for block in m.transformer.encoderblock:
        assert block.attn.rel_bias.rel_embedding.grad.abs().sum() > 0


def test_placements_own_the_right_number_of_tables():
    D, L, depth = 128, 65, 2
    stem, every, shared = (n_params(small("learned_1d", p)) for p in ("stem", "every_layer", "every_layer_shared"))
    assert shared == stem and every - stem == (depth - 1) * L * D
    none = n_params(small("none"))
    assert stem - none == L * D
    assert n_params(small("learned_2d")) - none == 8 * 64 + 8 * 64 + D  # X, Y tables and the class token's


def test_every_layer_shared_adds_the_same_embedding_at_every_layer():
    m = small("learned_1d", "every_layer_shared")
    seen = []
    handle = m.transformer.posembed_input.register_forward_hook(lambda mod, i, o: seen.append(o - i[0]))
    m(torch.randn(2, 3, 32, 32))
    handle.remove()
    table = m.transformer.posembed_input.pos_embedding.expand(2, -1, -1)
    assert len(seen) == 2
    for added in seen:
        torch.testing.assert_close(added, table, atol=1e-5, rtol=0)


@pytest.mark.parametrize("posemb,placement", [("relative", "every_layer"), ("relative", "every_layer_shared"),
                                              ("none", "every_layer")])
def test_combinations_table8_marks_na_are_refused(posemb, placement):
    with pytest.raises(ValueError, match=f"posemb='{posemb}' admits only posemb_placement='stem'"):
        create_model("ViT-C/4", posemb=posemb, posemb_placement=placement)


@pytest.mark.parametrize("field,value,match", [("posemb", "sinusoidal", "posemb='sinusoidal' is not one of none"),
                                               ("pool", "max", "pool='max' is not one of token, gap"),
                                               ("posemb_placement", "end", "is not one of stem"),
                                               ("img_size", 30, "not a multiple of patch_size")])
def test_bad_field_values_are_refused(field, value, match):
    with pytest.raises(ValueError, match=match):
        model_config("ViT-C/4", **{field: value})


def test_unknown_field_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown ViT field.*hidden.*allowed are img_size, patch_size"):
        create_model("ViT-C/4", hidden=64)


@pytest.mark.parametrize("posemb,placement", TABLE8_CELLS)
def test_attention_readout_matches_fused_path(posemb, placement):
    m = small(posemb, placement)
    x = torch.randn(2, 3, 32, 32)
    tokens, attn = m.forward_features(x, return_attention=True)
    torch.testing.assert_close(tokens, m.forward_features(x), atol=1e-5, rtol=1e-4)
    assert len(attn) == 2 and attn[0].shape == (2, 4, 65, 65)
    torch.testing.assert_close(attn[1].sum(-1), torch.ones(2, 4, 65))


def test_gap_pool_has_no_class_token():
    m = small("learned_1d", pool="gap")
    assert m.cls is None
    assert m.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 64, 128)
    assert m.transformer.posembed_input.pos_embedding.shape == (1, 64, 128)


def test_pre_logits_and_reset_classifier():
    m = create_model("ViT-C/4", representation_size=64)
    x = torch.randn(2, 3, 32, 32)
    feats = m.forward_head(m.forward_features(x), pre_logits=True)
    assert feats.shape == (2, 64) and feats.abs().max() <= 1  # tanh
    m.reset_classifier(37)
    assert m(x).shape == (2, 37) and torch.count_nonzero(m.get_classifier().weight) == 0


def test_wrong_image_size_is_refused():
    with pytest.raises(ValueError, match="expected 32x32 images, got 48x48"):
        create_model("ViT-C/4")(torch.randn(1, 3, 48, 48))


def test_resample_posemb_equals_official_scipy_zoom_order_1():
    """vit_jax checkpoint.py resizes with scipy.ndimage.zoom(order=1), keeping the class token's embedding."""
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 14 * 14, 16)
    new = resample_posemb_grid(pos, (24, 24))
    grid = pos[0, 1:].reshape(14, 14, 16).numpy()
    ref = ndimage.zoom(grid, (24 / 14, 24 / 14, 1), order=1).reshape(1, 24 * 24, 16)
    assert new.shape == (1, 1 + 24 * 24, 16)
    assert torch.equal(new[:, 0], pos[:, 0])
    np.testing.assert_allclose(new[:, 1:].numpy(), ref, atol=1e-5)
    with pytest.raises(ValueError, match="not a square grid"):
        resample_posemb_grid(torch.randn(1, 1 + 15, 4), (4, 4))


def test_config_defaults_are_vit_b16():
    cfg = ViTConfig()
    assert (cfg.width, cfg.depth, cfg.num_heads, cfg.mlp_dim, cfg.patch_size, cfg.num_tokens) == (768, 12, 12, 3072, 16, 197)
    assert isinstance(VisionTransformer(cfg, depth=1, img_size=32), VisionTransformer)


def _tiny(name: str) -> dict:
    """Overrides that keep a variant's width and patch size (its identity) but make it one block deep."""
    family, d = model_family(name), model_defaults(name)
    if family == "ViT":
        return dict(depth=1, img_size=2 * d["patch_size"])
    if family == "BiT":
        return dict(layers=[1, 1, 1, 1], img_size=32)
    return dict(depth=1, resnet_layers=[1] * len(d["resnet_layers"]), img_size=64)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("R101x3", "R152x4", "R200x3") else n
                                  for n in list_models()])
def test_every_registered_model_runs_forward_and_backward(name):
    """timm's tests/test_models.py in spirit: every name of the registry builds, its forward on a tiny input
    is finite with the right shape, and the backward reaches every parameter."""
    kw = _tiny(name)
    model = create_model(name, num_classes=3, **kw)
    x = torch.randn(2, 3, kw["img_size"], kw["img_size"])
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
