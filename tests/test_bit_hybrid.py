"""BiT ResNets and R50+ViT hybrids: exact parameter counts, zero-init of the last norms, the uniform API."""
from functools import partial

import pytest
import timm
import torch
from timm.layers import HybridEmbed, StdConv2d, StdConv2dSame
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer as TimmViT
from timm.models.vision_transformer_hybrid import _resnetv2

from vitrepro.models.bit import BiTConfig, BiTResNet
from vitrepro.models.hybrid import HybridVisionTransformer
from vitrepro.models.registry import (create_model, decode_bit_variant, list_models, model_config, model_defaults,
                                      model_family)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


BIT_NAMES = ["R50x1", "R50x2", "R101x1", "R101x3", "R152x1", "R152x2", "R152x4", "R200x3"]
HYBRID_NAMES = ["R50+ViT-B/16", "R50+ViT-B/32", "R50+ViT-L/16", "R50+ViT-L/32", "R50+ViT-C/8"]
# timm's registered BiT models, 1000 classes (timm/models/resnetv2.py resnetv2_*_bit).
TIMM_BIT_COUNTS = {"R50x1": 25_549_352, "R101x1": 44_541_480, "R101x3": 387_934_888, "R152x2": 236_335_208,
                   "R152x4": 936_533_224}


def test_registry_lists_every_family():
    assert list_models(family="BiT") == BIT_NAMES
    assert list_models(family="hybrid") == HYBRID_NAMES
    assert "ViT-B/16" in list_models(family="ViT") and "R50x1" not in list_models(family="ViT")
    assert set(BIT_NAMES + HYBRID_NAMES + ["ViT-B/16"]) <= set(list_models())
    assert model_family("R152x4") == "BiT" and model_family("R50+ViT-L/16") == "hybrid"
    assert model_defaults("R50+ViT-B/16")["resnet_layers"] == (3, 4, 9)
    assert model_defaults("R50+ViT-L/32")["resnet_layers"] == (3, 4, 6, 3)
    assert decode_bit_variant("R200x3") == dict(layers=(3, 24, 36, 3), width_factor=3)


@pytest.mark.parametrize("name", BIT_NAMES)
def test_bit_parameter_count_matches_timm(name):
    """The same architecture built by timm (its resnetv2_*_bit where registered, else ResNetV2 with the same
    arguments) has exactly as many parameters."""
    d = model_defaults(name)
    timm_name = f"resnetv2_{name[1:]}_bit"
    with torch.device("meta"):
        ours = create_model(name, num_classes=1000)
        if timm_name in timm.list_models():
            ref = timm.create_model(timm_name, pretrained=False, num_classes=1000)
        else:
            ref = ResNetV2(layers=list(d["layers"]), width_factor=d["width_factor"], num_classes=1000,
                           stem_type="fixed", conv_layer=partial(StdConv2d, eps=1e-8))
    assert n_params(ours) == n_params(ref)
    if name in TIMM_BIT_COUNTS:
        assert n_params(ours) == TIMM_BIT_COUNTS[name]


def test_post_activation_bit_parameter_count_matches_timm():
    with torch.device("meta"):
        ours = create_model("R50x1", preact=False)
        ref = ResNetV2(layers=[3, 4, 6, 3], num_classes=1000, preact=False, stem_type="same",
                       conv_layer=partial(StdConv2dSame, eps=1e-8))
    assert n_params(ours) == n_params(ref)


def timm_hybrid(name: str, **kw) -> TimmViT:
    """timm's hybrid of the same configuration (``vit_base_r50_s16_224`` for R50+ViT-B/16): ResNetV2
    backbone in ``HybridEmbed``, 1x1 patches."""
    d = model_defaults(name)
    return TimmViT(img_size=d["img_size"], patch_size=1, embed_dim=d["width"], depth=d["depth"], num_heads=d["num_heads"],
                   mlp_ratio=d["mlp_dim"] / d["width"], num_classes=1000,
                   embed_layer=partial(HybridEmbed, backbone=_resnetv2(d["resnet_layers"])), **kw)


@pytest.mark.parametrize("name", HYBRID_NAMES)
def test_hybrid_parameter_count_matches_timm(name):
    with torch.device("meta"):
        ours = create_model(name, num_classes=1000)
        ref = timm_hybrid(name)
    assert n_params(ours) == n_params(ref)


def test_hybrid_b16_has_the_official_parameter_count():
    """vit_jax models_test.py: R50+ViT-B_16 with 1000 classes at 224 has 98,659,112 parameters."""
    with torch.device("meta"):
        assert n_params(create_model("R50+ViT-B/16", num_classes=1000)) == 98_659_112
        assert n_params(timm.create_model("vit_base_r50_s16_224", num_classes=1000)) == 98_659_112


@pytest.mark.parametrize("name,stride,grid,chans", [("R50+ViT-B/16", 16, 14, 1024), ("R50+ViT-B/32", 32, 7, 2048)])
def test_hybrid_strides_and_stages(name, stride, grid, chans):
    with torch.device("meta"):
        m = create_model(name)
    assert m.cfg.resnet_stride == stride and m.cfg.grid_size == (grid, grid)
    assert m.embedding.weight.shape == (m.cfg.width, chans, 1, 1)
    assert [len(s.blocks) for s in m.resnet.stages] == list(model_defaults(name)["resnet_layers"])
    assert m.transformer.posembed_input.pos_embedding.shape == (1, grid * grid + 1, m.cfg.width)


def tiny_hybrid(**kw):
    torch.manual_seed(0)
    kw = dict(dict(resnet_layers=(1, 1, 1), width=64, depth=2, num_heads=2, mlp_dim=128, img_size=64,
                   num_classes=10), **kw)
    return create_model("R50+ViT-B/16", **kw)


def tiny_bit(**kw):
    torch.manual_seed(0)
    return create_model("R50x1", **dict(dict(layers=(1, 1, 1, 1), num_classes=10, img_size=64), **kw))


def test_post_activation_units_zero_init_the_last_norm():
    """vit_jax models_resnet.py: gn3 has scale_init=zeros, so every unit starts as relu(shortcut(x))."""
    for resnet in (tiny_hybrid().resnet, tiny_bit(preact=False)):
        blocks = [b for s in resnet.stages for b in s.blocks]
        assert len(blocks) >= 3
        for b in blocks:
            assert torch.count_nonzero(b.norm3.weight) == 0
            assert torch.all(b.norm1.weight == 1) and torch.all(b.norm2.weight == 1)
        x = torch.randn(2, 256, 16, 16)
        b = resnet.stages[1].blocks[0]
        torch.testing.assert_close(b(x), torch.relu(b.downsample(x)))


def test_pre_activation_units_cannot_zero_init_the_last_norm():
    """In a pre-activation unit the last norm feeds a ReLU: a zero scale makes the branch's gradient zero
    forever, so the BiT default leaves it at one (as BiT's code) and asking for it is refused."""
    m = tiny_bit()
    assert all(torch.all(b.norm3.weight == 1) for s in m.stages for b in s.blocks)
    with pytest.raises(ValueError, match="zero_init_last=True needs preact=False"):
        create_model("R50x1", zero_init_last=True)
    m = tiny_bit(head_zero_init=False)
    block = m.stages[0].blocks[0]
    torch.nn.init.zeros_(block.norm3.weight)
    m(torch.randn(2, 3, 64, 64)).sum().backward()
    assert block.conv1.weight.grad.abs().sum() == 0 and block.norm3.weight.grad.abs().sum() == 0


@pytest.mark.parametrize("make", [tiny_bit, partial(tiny_bit, preact=False)], ids=["preact", "postact"])
def test_bit_uniform_api(make):
    m = make().eval()
    x = torch.randn(2, 3, 64, 64)
    feats = m.forward_features(x)
    assert feats.shape == (2, 2048, 2, 2) and m.num_features == 2048
    assert m.forward_head(feats, pre_logits=True).shape == (2, 2048)
    assert m(x).shape == (2, 10)
    assert torch.count_nonzero(m(x)) == 0  # zero-initialized head, as BiT and the paper's fine-tuning
    m.reset_classifier(7)
    assert m(x).shape == (2, 7) and torch.count_nonzero(m.get_classifier().weight) == 0
    assert m.cfg.num_classes == 7
    m.set_input_size(96)
    assert m.cfg.img_size == 96 and m(torch.randn(1, 3, 96, 96)).shape == (1, 7)


def test_hybrid_uniform_api_and_attention():
    m = tiny_hybrid().eval()
    x = torch.randn(2, 3, 64, 64)
    tokens, attn = m.forward_features(x, return_attention=True)
    assert tokens.shape == (2, 17, 64) and len(attn) == 2 and attn[0].shape == (2, 2, 17, 17)
    torch.testing.assert_close(tokens, m.forward_features(x), atol=1e-5, rtol=1e-4)
    assert m.forward_head(tokens, pre_logits=True).shape == (2, 64)
    assert torch.count_nonzero(m(x)) == 0
    m.reset_classifier(3)
    assert m(x).shape == (2, 3)
    with pytest.raises(ValueError, match="expected 64x64 images, got 48x48"):
        m(torch.randn(1, 3, 48, 48))
    m.set_input_size(128)
    assert m(torch.randn(1, 3, 128, 128)).shape == (1, 3) and m.resnet.cfg.img_size == 128


@pytest.mark.parametrize("kw", [dict(posemb="learned_2d", posemb_placement="every_layer"), dict(posemb="relative"),
                                dict(posemb="none", pool="gap"), dict(representation_size=32), dict(patch_size=2)])
def test_hybrid_takes_every_vit_option(kw):
    m = tiny_hybrid(head_zero_init=False, **kw).eval()
    x = torch.randn(2, 3, 64, 64)
    assert m(x).shape == (2, 10)
    assert isinstance(m, HybridVisionTransformer)


def test_bad_fields_are_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown BiT field.*hidden.*allowed are img_size, layers, width_factor"):
        create_model("R50x1", hidden=3)
    with pytest.raises(ValueError, match="unknown hybrid field.*resnet_depth.*allowed are img_size.*resnet_layers"):
        model_config("R50+ViT-B/16", resnet_depth=3)
    with pytest.raises(ValueError, match="not a multiple of the total stride 32"):
        create_model("R50+ViT-B/32", img_size=240)
    with pytest.raises(ValueError, match="layers=.*must be 1 to 4 positive"):
        BiTConfig(layers=(3, 0))
    with pytest.raises(ValueError, match="unknown BiT variant 'R51x1'.*50, 101"):
        decode_bit_variant("R51x1")
    with pytest.raises(ValueError, match="unknown model 'ResNet50'"):
        create_model("ResNet50")
    assert isinstance(create_model("R26x1", layers=(1,), num_classes=0), BiTResNet)  # decodable depth
