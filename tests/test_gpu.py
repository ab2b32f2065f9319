"""GPU checks (skipped without CUDA): fused attention on the GPU matches the explicit path; a bf16
training step of every Table 8 cell runs and moves the weights."""
import pytest
import torch

from vitrepro.models import create_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CELLS = [("none", "stem"), ("learned_1d", "every_layer"), ("learned_2d", "every_layer_shared"), ("relative", "stem")]


@pytest.mark.parametrize("posemb,placement", CELLS)
def test_fused_attention_matches_explicit_on_gpu(posemb, placement):
    torch.manual_seed(0)
    m = create_model("ViT-C/4", posemb=posemb, posemb_placement=placement, head_zero_init=False).cuda().eval()
    x = torch.randn(8, 3, 32, 32, device="cuda")
    with torch.no_grad():
        fused = m.forward_features(x)
        explicit, _ = m.forward_features(x, return_attention=True)
    torch.testing.assert_close(fused, explicit, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("posemb,placement", CELLS)
def test_bf16_training_step(posemb, placement):
    torch.manual_seed(0)
    m = create_model("ViT-C/4", posemb=posemb, posemb_placement=placement, head_zero_init=False).cuda().train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.0)
    before = m.embedding.weight.detach().clone()
    x, y = torch.randn(16, 3, 32, 32, device="cuda"), torch.randint(0, 10, (16,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(m(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, m.embedding.weight)


def test_the_from_scratch_recipe_runs_on_the_gpu_input_path():
    """RandAugment in per-op groups and Mixup/CutMix on CUDA tensors, seeded like the CPU path."""
    from vitrepro.data.device import DeviceAugment
    from vitrepro.data.transforms import randaugment
    from vitrepro.tasks.recipe import Mixer, MixConfig

    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device="cuda")
    aug = DeviceAugment("pad_crop", 32, True, randaugment(2, 9))
    a = aug(x, torch.Generator(device="cuda").manual_seed(0))
    assert a.is_cuda and torch.equal(a, aug(x, torch.Generator(device="cuda").manual_seed(0)))
    mixed, soft = Mixer(MixConfig(), 10)(a, torch.randint(0, 10, (64,), device="cuda"), seed=3)
    assert mixed.is_cuda and soft.is_cuda and soft.shape == (64, 10)
