"""Weights in and out: parity with timm, Google's .npz layouts read by timm's loaders, strict keys, and
position embeddings resampled on a change of resolution as the official code does (scipy zoom order 1).

No weights can be downloaded here: every checkpoint is built from a randomly initialized model.
"""
from functools import partial

import numpy as np
import pytest
import timm
import torch
from scipy import ndimage
from timm.layers import HybridEmbed
from timm.layers.pos_embed import resample_abs_pos_embed
from timm.models import resnetv2 as timm_resnetv2
from timm.models import vision_transformer as timm_vit
from timm.models.vision_transformer_hybrid import _resnetv2

from vitrepro.models import create_model
from vitrepro.models.checkpoint import CheckpointKeyError, load_npz, load_timm_state_dict, save_npz, to_npz_dict
from vitrepro.models.convert import vitrepro_to_timm

PARITY_ATOL = 1e-4


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def logits(model, x):
    return model.eval()(x)


# ---------------------------------------------------------------------------------------------------------
# timm parity: the same weights give the same logits
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow  # full-size ViT-B/16 on CPU; the small ViTs' parity is in the fast tier
def test_vit_b16_matches_timm():
    torch.manual_seed(0)
    ref = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    ours = create_model("ViT-B/16")
    load_timm_state_dict(ours, ref.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref_tokens, tokens = ref.forward_features(x), ours.eval().forward_features(x)
        assert max_diff(ref_tokens, tokens) < PARITY_ATOL
        assert max_diff(ref.forward_head(ref_tokens), ours.forward_head(tokens)) < PARITY_ATOL
        assert max_diff(ref.forward_head(ref_tokens, pre_logits=True),
                        ours.forward_head(tokens, pre_logits=True)) < PARITY_ATOL
    assert ref.head.weight.abs().sum() > 0  # a non-trivial head, so the logits compare something
    back = timm.create_model("vit_base_patch16_224", pretrained=False)
    back.load_state_dict(vitrepro_to_timm(ours.state_dict()), strict=True)  # the mapping is a bijection


def test_bit_r50x1_matches_timm():
    torch.manual_seed(0)
    ref = timm.create_model("resnetv2_50x1_bit", pretrained=False).eval()
    ours = create_model("R50x1")
    load_timm_state_dict(ours, ref.state_dict())
    x = torch.randn(2, 3, 128, 128)
    assert max_diff(logits(ref, x), logits(ours, x)) < PARITY_ATOL
    assert logits(ref, x).abs().max() > 1e-3


@pytest.mark.slow  # full-size R50+ViT-B/16 on CPU
def test_hybrid_r50_b16_matches_timm():
    torch.manual_seed(0)
    ref = timm.create_model("vit_base_r50_s16_224", pretrained=False, num_classes=1000).eval()
    ours = create_model("R50+ViT-B/16")
    load_timm_state_dict(ours, ref.state_dict())
    x = torch.randn(2, 3, 224, 224)
    assert max_diff(logits(ref, x), logits(ours, x)) < PARITY_ATOL
    back = timm.create_model("vit_base_r50_s16_224", pretrained=False, num_classes=1000)
    back.load_state_dict(vitrepro_to_timm(ours.state_dict()), strict=True)


def small_timm_vit(**kw):
    return timm_vit.VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2,
                                      num_classes=10, **kw)


def small_vit(**kw):
    torch.manual_seed(0)
    return create_model("ViT-B/16", **dict(dict(img_size=64, width=64, depth=2, num_heads=2, mlp_dim=128,
                                                num_classes=10, head_zero_init=False), **kw))


def test_timm_missing_and_unexpected_keys_are_named():
    sd = small_timm_vit().state_dict()
    del sd["blocks.1.mlp.fc2.bias"]
    sd["fc_norm.weight"] = torch.ones(64)
    with pytest.raises(CheckpointKeyError, match=r"missing keys: blocks\.1\.mlp\.fc2\.bias \(ours: "
                                                 r"transformer\.encoderblock\.1\.mlp\.dense_1\.bias\); "
                                                 r"unexpected keys: fc_norm\.weight"):
        load_timm_state_dict(small_vit(), sd)


def test_timm_shape_mismatch_is_named_and_skip_head_keeps_ours():
    sd = small_timm_vit().state_dict()
    with pytest.raises(ValueError, match=r"shape of head\.weight is \(10, 64\), the model's is \(7, 64\)"):
        load_timm_state_dict(small_vit(num_classes=7), sd)
    m = small_vit(num_classes=7, head_zero_init=True)
    load_timm_state_dict(m, sd, skip_head=True)  # fine-tuning: a fresh zero head
    assert torch.count_nonzero(m.head.weight) == 0
    torch.testing.assert_close(m.cls, sd["cls_token"])


# ---------------------------------------------------------------------------------------------------------
# .npz in the official layouts
# ---------------------------------------------------------------------------------------------------------

def test_vit_npz_round_trip_and_timm_reads_it(tmp_path):
    ours = small_vit()
    path = tmp_path / "vit.npz"
    save_npz(ours, path)
    w = np.load(path)
    assert w["embedding/kernel"].shape == (16, 16, 3, 64)  # HWIO
    assert w["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel"].shape == (64, 2, 32)
    assert w["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/out/kernel"].shape == (2, 32, 64)
    assert w["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"].shape == (64, 128)
    assert w["Transformer/posembed_input/pos_embedding"].shape == (1, 17, 64)
    x = torch.randn(2, 3, 64, 64)
    fresh = small_vit(head_zero_init=True)
    assert load_npz(fresh, path) == "vit_jax"
    torch.testing.assert_close(logits(fresh, x), logits(ours, x), atol=1e-6, rtol=0)
    ref = small_timm_vit()
    timm_vit._load_weights(ref, str(path))
    assert max_diff(logits(ref, x), logits(ours, x)) < PARITY_ATOL


def test_representation_layer_round_trips(tmp_path):
    ours = small_vit(representation_size=32)
    save_npz(ours, tmp_path / "r.npz")
    assert np.load(tmp_path / "r.npz")["pre_logits/kernel"].shape == (64, 32)
    fresh = small_vit(representation_size=32, head_zero_init=True)
    load_npz(fresh, tmp_path / "r.npz")
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(logits(fresh, x), logits(ours, x), atol=1e-6, rtol=0)


def test_big_vision_layout_reads_and_writes(tmp_path):
    """big_vision: pos_embedding on the patches only (the class token's is folded into cls), module indices
    0/1/0, optionally a params/ prefix and scanned blocks."""
    ours = small_vit()
    x = torch.randn(2, 3, 64, 64)
    w = to_npz_dict(ours, "big_vision")
    assert w["pos_embedding"].shape == (1, 16, 64) and "Transformer/encoderblock_0/LayerNorm_1/scale" in w
    np.savez(tmp_path / "bv.npz", **w)
    fresh = small_vit(head_zero_init=True)
    assert load_npz(fresh, tmp_path / "bv.npz") == "big_vision"
    torch.testing.assert_close(logits(fresh, x), logits(ours, x), atol=1e-5, rtol=0)
    ref = small_timm_vit(no_embed_class=True)  # timm's form of "no position embedding on the class token"
    timm_vit._load_weights(ref, str(tmp_path / "bv.npz"))
    assert max_diff(logits(ref, x), logits(ours, x)) < PARITY_ATOL
    # scanned blocks under params/: every block array stacked on a leading depth axis
    blocks = sorted({k.split("/")[1] for k in w if k.startswith("Transformer/encoderblock_")})
    scanned = {f"params/{k}": v for k, v in w.items() if not k.startswith("Transformer/encoderblock_")}
    for k in [k for k in w if k.startswith("Transformer/encoderblock_0/")]:
        rest = k.split("/", 2)[2]
        scanned[f"params/Transformer/encoderblock/{rest}"] = np.stack([w[f"Transformer/{b}/{rest}"] for b in blocks])
    fresh = small_vit(head_zero_init=True)
    load_npz(fresh, scanned)
    torch.testing.assert_close(logits(fresh, x), logits(ours, x), atol=1e-5, rtol=0)


def test_gap_pool_npz_has_no_class_token(tmp_path):
    ours = small_vit(pool="gap")
    w = to_npz_dict(ours)
    assert "cls" not in w and w["Transformer/posembed_input/pos_embedding"].shape == (1, 16, 64)
    fresh = small_vit(pool="gap", head_zero_init=True)
    load_npz(fresh, w)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(logits(fresh, x), logits(ours, x), atol=1e-6, rtol=0)


def tiny_hybrid(**kw):
    torch.manual_seed(0)
    return create_model("R50+ViT-B/16", **dict(dict(resnet_layers=(1, 1, 1), width=64, depth=2, num_heads=2,
                                                     mlp_dim=128, img_size=64, num_classes=10,
                                                     head_zero_init=False), **kw))


def test_hybrid_npz_round_trip_and_timm_reads_it(tmp_path):
    ours = tiny_hybrid()
    path = tmp_path / "hybrid.npz"
    save_npz(ours, path)
    w = np.load(path)
    assert w["conv_root/kernel"].shape == (7, 7, 3, 64) and w["gn_root/scale"].shape == (64,)
    assert w["block3/unit1/conv_proj/kernel"].shape == (1, 1, 512, 1024) and "block3/unit1/gn_proj/bias" in w
    assert w["embedding/kernel"].shape == (1, 1, 1024, 64)
    x = torch.randn(2, 3, 64, 64)
    fresh = tiny_hybrid(head_zero_init=True)
    load_npz(fresh, path)
    torch.testing.assert_close(logits(fresh, x), logits(ours, x), atol=1e-6, rtol=0)
    torch.manual_seed(1)
    ref = timm_vit.VisionTransformer(img_size=64, patch_size=1, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2,
                                     num_classes=10, embed_layer=partial(HybridEmbed, backbone=_resnetv2((1, 1, 1))))
    timm_vit._load_weights(ref, str(path))
    assert max_diff(logits(ref, x), logits(ours, x)) < PARITY_ATOL


def tiny_bit(**kw):
    torch.manual_seed(0)
    return create_model("R50x1", **dict(dict(layers=(1, 1, 1, 1), num_classes=10, head_zero_init=False), **kw))


def test_bit_npz_big_transfer_layout_and_timm_reads_it(tmp_path):
    ours = tiny_bit()
    path = tmp_path / "bit.npz"
    save_npz(ours, path)
    w = np.load(path)
    assert w["resnet/root_block/standardized_conv2d/kernel"].shape == (7, 7, 3, 64)
    assert w["resnet/block2/unit01/a/proj/standardized_conv2d/kernel"].shape == (1, 1, 256, 512)
    assert w["resnet/head/conv2d/kernel"].shape == (1, 1, 2048, 10)
    x = torch.randn(2, 3, 64, 64)
    fresh = tiny_bit(head_zero_init=True)
    assert load_npz(fresh, path) == "big_transfer"
    torch.testing.assert_close(logits(fresh, x), logits(ours, x), atol=1e-6, rtol=0)
    ref = timm_resnetv2.ResNetV2(layers=[1, 1, 1, 1], num_classes=10, stem_type="fixed",
                                 conv_layer=partial(timm_resnetv2.StdConv2d, eps=1e-8))
    timm_resnetv2._load_weights(ref, str(path))
    assert max_diff(logits(ref, x), logits(ours, x)) < PARITY_ATOL


def test_post_activation_bit_npz_round_trip():
    ours = tiny_bit(preact=False)
    w = to_npz_dict(ours)
    assert w["head/kernel"].shape == (2048, 10) and w["block1/unit1/gn3/scale"].shape == (256,)
    fresh = tiny_bit(preact=False, head_zero_init=True)
    assert load_npz(fresh, w) == "big_vision"
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(logits(fresh, x), logits(ours, x), atol=1e-6, rtol=0)


def test_npz_missing_and_unexpected_keys_are_named():
    w = to_npz_dict(small_vit())
    del w["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel"]
    w["Transformer/encoderblock_1/extra/kernel"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointKeyError) as e:
        load_npz(small_vit(), w)
    msg = str(e.value)
    assert ("missing keys: Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel "
            "(ours: transformer.encoderblock.1.attn.qkv.weight)") in msg
    assert "unexpected keys: Transformer/encoderblock_1/extra/kernel" in msg
    w = to_npz_dict(small_vit())
    with pytest.raises(CheckpointKeyError, match="unexpected keys: pre_logits/kernel, pre_logits/bias"):
        load_npz(small_vit(), dict(w, **{"pre_logits/kernel": np.zeros((64, 8)), "pre_logits/bias": np.zeros(8)}))


def test_npz_layout_refuses_what_it_cannot_hold():
    m = small_vit(posemb="learned_2d")
    with pytest.raises(ValueError, match="vit_jax layout has no place for .*pos_embedding_x"):
        to_npz_dict(m)
    with pytest.raises(CheckpointKeyError, match="no key for: transformer.posembed_input.pos_embedding_x"):
        load_npz(m, to_npz_dict(small_vit()))


def test_npz_skip_head_for_fine_tuning():
    w = to_npz_dict(small_vit())
    m = small_vit(num_classes=5, head_zero_init=True)
    load_npz(m, w, skip_head=True)
    assert torch.count_nonzero(m.head.weight) == 0 and m.head.weight.shape == (5, 64)


# ---------------------------------------------------------------------------------------------------------
# Another resolution: position embeddings resampled in 2-D, class token kept
# ---------------------------------------------------------------------------------------------------------

def zoom_grid(pos: np.ndarray, g: int, new: int, prefix: int = 1) -> np.ndarray:
    """vit_jax checkpoint.py: scipy.ndimage.zoom(order=1) of the patch grid, prefix tokens kept."""
    grid = pos[0, prefix:].reshape(g, g, -1)
    zoomed = ndimage.zoom(grid, (new / g, new / g, 1), order=1).reshape(1, new * new, -1)
    return np.concatenate([pos[:, :prefix], zoomed], axis=1)


def test_npz_at_another_resolution_equals_scipy_zoom_order_1():
    src = small_vit()
    w = to_npz_dict(src)
    pos = w["Transformer/posembed_input/pos_embedding"]  # 4x4 grid + class token
    m = small_vit(head_zero_init=True)
    load_npz(m, w, img_size=112)  # 7x7 grid
    got = m.transformer.posembed_input.pos_embedding.detach().numpy()
    assert got.shape == (1, 50, 64) and m.cfg.img_size == 112
    np.testing.assert_allclose(got, zoom_grid(pos, 4, 7), atol=1e-5)
    np.testing.assert_array_equal(got[:, 0], pos[:, 0])
    assert m(torch.randn(1, 3, 112, 112)).shape == (1, 10)
    big = small_vit(img_size=112)  # a model built at 112 loads the 64 checkpoint the same way
    load_npz(big, w)
    torch.testing.assert_close(big.transformer.posembed_input.pos_embedding, m.transformer.posembed_input.pos_embedding)


def test_interpolation_is_an_option():
    sd = small_timm_vit().state_dict()
    pos = sd["pos_embed"]
    timm_way = small_vit(img_size=112)
    load_timm_state_dict(timm_way, sd, interpolation="bilinear", align_corners=False)
    ref = resample_abs_pos_embed(pos, (7, 7), num_prefix_tokens=1, interpolation="bilinear", antialias=False,
                                 align_corners=False)
    torch.testing.assert_close(timm_way.transformer.posembed_input.pos_embedding, ref)
    official, cubic = small_vit(img_size=112), small_vit(img_size=112)
    load_timm_state_dict(official, sd)
    load_timm_state_dict(cubic, sd, interpolation="bicubic")
    np.testing.assert_allclose(official.transformer.posembed_input.pos_embedding.detach().numpy(),
                               zoom_grid(pos.numpy(), 4, 7), atol=1e-5)
    for other in (timm_way, cubic):
        assert max_diff(other.transformer.posembed_input.pos_embedding,
                        official.transformer.posembed_input.pos_embedding) > 1e-4


def test_hybrid_loads_at_another_resolution():
    w = to_npz_dict(tiny_hybrid())
    m = tiny_hybrid()
    load_npz(m, w, img_size=128)
    pos = w["Transformer/posembed_input/pos_embedding"]
    np.testing.assert_allclose(m.transformer.posembed_input.pos_embedding.detach().numpy(), zoom_grid(pos, 4, 8),
                               atol=1e-5)
    assert m(torch.randn(1, 3, 128, 128)).shape == (1, 10)


@pytest.mark.parametrize("placement", ["stem", "every_layer", "every_layer_shared"])
def test_set_input_size_learned_1d(placement):
    m = small_vit(posemb_placement=placement)
    tables = [m.transformer.posembed_input] if m.transformer.posembed_input is not None else []
    tables += list(m.transformer.posembed_layers or [])
    before = [t.pos_embedding.detach().numpy().copy() for t in tables]
    m.set_input_size(96)
    for t, b in zip(tables, before):
        np.testing.assert_allclose(t.pos_embedding.detach().numpy(), zoom_grid(b, 4, 6), atol=1e-5)
    assert m(torch.randn(1, 3, 96, 96)).shape == (1, 10)


def test_set_input_size_learned_2d_resamples_x_and_y_tables():
    m = small_vit(posemb="learned_2d")
    pe = m.transformer.posembed_input
    x, y = pe.pos_embedding_x.detach().numpy().copy(), pe.pos_embedding_y.detach().numpy().copy()
    cls = pe.cls_embedding.detach().clone()
    m.set_input_size(112)
    np.testing.assert_allclose(pe.pos_embedding_x.detach().numpy(), ndimage.zoom(x, (7 / 4, 1), order=1), atol=1e-5)
    np.testing.assert_allclose(pe.pos_embedding_y.detach().numpy(), ndimage.zoom(y, (7 / 4, 1), order=1), atol=1e-5)
    assert torch.equal(pe.cls_embedding, cls) and pe.table().shape == (1, 49, 64)
    assert m(torch.randn(1, 3, 112, 112)).shape == (1, 10)


def test_set_input_size_gap_and_none_and_relative():
    m = small_vit(pool="gap")
    pos = m.transformer.posembed_input.pos_embedding.detach().numpy().copy()
    m.set_input_size(96)
    np.testing.assert_allclose(m.transformer.posembed_input.pos_embedding.detach().numpy(),
                               zoom_grid(pos, 4, 6, prefix=0), atol=1e-5)
    m = small_vit(posemb="none")
    m.set_input_size(96)
    assert m(torch.randn(1, 3, 96, 96)).shape == (1, 10)
    with pytest.raises(NotImplementedError, match="posemb='relative' has no resolution-independent meaning"):
        small_vit(posemb="relative").set_input_size(96)
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        small_vit().set_input_size(100)
