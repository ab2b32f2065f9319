"""The inspection figures (``vitrepro analyze``) and ``vitrepro figures``: numbers saved without pickle,
figures redrawn from them, one-line errors for what cannot be drawn."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vitrepro.cli import main
from vitrepro.models import create_model
from vitrepro.report import inspection

ROOT = Path(__file__).resolve().parents[1]


def subject(**fields) -> inspection.Subject:
    torch.manual_seed(0)
    model = create_model("ViT-C/4", depth=2, **fields).eval()
    return inspection.Subject(model, "tiny", {}, "none", None)


@pytest.mark.parametrize("kind", inspection.KINDS)
def test_each_kind_measures_saves_and_redraws(kind, tmp_path):
    npz, png, md = inspection.analyze(kind, [subject()], tmp_path, "tiny", "vitrepro analyze test", images=4)
    arrays, meta = inspection.load_measures(npz)
    assert meta["kind"] == kind and meta["labels"] == ["tiny"] and png.stat().st_size > 5_000
    shapes = {"filters": {"components": (28, 3, 4, 4), "random_components": (28, 3, 4, 4)},
              "posemb": {"s0_stem": (8, 8, 8, 8)}, "distance": {"trained": (2, 4), "random": (2, 4)},
              "rollout": {"images": (4, 32, 32, 3), "maps": (4, 8, 8), "random_maps": (4, 8, 8)}}
    assert {k: v.shape for k, v in arrays.items()} == shapes[kind]
    png.unlink()
    assert inspection.redraw(npz) == png and png.exists()
    assert "Command: `vitrepro analyze test`" in md.read_text()


def test_the_uniform_attention_reference_is_the_mean_patch_distance():
    from vitrepro.evaluation.inspection_measures import uniform_attention_distance

    # a 2x2 grid of 4-pixel patches: each patch has 0, 4, 4 and 4*sqrt(2) to the four patches
    assert uniform_attention_distance(2, 4) == pytest.approx((0 + 4 + 4 + 4 * 2 ** 0.5) / 4)


def test_distance_of_a_random_model_is_the_random_twins():
    s = subject()
    arrays, _ = inspection.measure("distance", [s], images=4)
    twin = inspection.random_twin(s.model)  # same seed, same architecture: the same weights as ``subject``
    assert all(torch.equal(a, b) for a, b in zip(s.model.state_dict().values(), twin.state_dict().values()))
    np.testing.assert_allclose(arrays["trained"], arrays["random"], rtol=1e-5)


def test_distance_of_a_hybrid_beside_a_vit_is_one_row_each_over_its_own_patch_grid(tmp_path):
    torch.manual_seed(0)
    hybrid = inspection.Subject(create_model("R50+ViT-C/8", depth=2, resnet_layers=(1, 1), num_classes=10).eval(),
                                "hybrid", {}, "none", None)
    npz, png, md = inspection.analyze("distance", [subject(), hybrid], tmp_path, "fig11", "vitrepro analyze test",
                                      images=4)
    arrays, meta = inspection.load_measures(npz)
    assert {k: v.shape for k, v in arrays.items()} == {"trained": (2, 4), "random": (2, 4), "trained_1": (2, 4),
                                                       "random_1": (2, 4)}
    assert meta["labels"] == ["tiny", "hybrid"] and meta["patch_pxs"] == [4, 8]
    assert (arrays["trained_1"] <= 8 * 2 ** 0.5 * 3).all()  # a 4x4 grid of 8-pixel patches: at most the diagonal
    text = md.read_text()
    assert "per layer of tiny" in text and "per layer of hybrid" in text and png.stat().st_size > 5_000
    with pytest.raises(ValueError, match="different image sizes"):
        inspection.measure("distance", [subject(), subject(img_size=64)])


def test_posemb_of_an_every_layer_model_has_one_table_per_layer():
    arrays, _ = inspection.measure("posemb", [subject(posemb_placement="every_layer"), subject()])
    assert sorted(arrays) == ["s0_layer0", "s0_layer1", "s1_stem"]
    with pytest.raises(ValueError, match="none of the models has a position-embedding table"):
        inspection.measure("posemb", [subject(posemb="none")])


def test_measures_file_is_read_without_pickle(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __meta__=np.array('{"kind": "filters", "labels": ["x"]}'), components=np.array([object()]))
    with pytest.raises(ValueError, match="allow_pickle"):
        inspection.load_measures(path)


def test_analyze_command_on_a_run_and_its_errors(pretrained_run, tmp_path, capsys):
    assert main(["analyze", "rollout", str(pretrained_run), "--images", "3", "--results-dir", str(tmp_path)]) == 0
    md = tmp_path / "analysis" / f"rollout_{pretrained_run.name}.md"
    text = md.read_text()
    assert "trained by `vitrepro run" in text and "bundled sample" in text
    assert main(["analyze", "rollout", str(pretrained_run), str(pretrained_run), "--results-dir", str(tmp_path)]) == 2
    assert "posemb and distance take several" in capsys.readouterr().err
    assert main(["analyze", "filters", str(tmp_path), "--results-dir", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err


@pytest.mark.slow  # every committed report and figure, about 20 s
def test_figures_command_regenerates_every_committed_figure(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results, ignore=shutil.ignore_patterns("scratch", "checkpoints", "*.ckpt"))
    pngs = sorted(p for p in results.rglob("*.png") if p.parent.name != "benchmarks")  # a benchmark draws its own
    for p in pngs:
        p.unlink()
    assert main(["figures", "--results-dir", str(results), "--experiments", str(ROOT / "experiments")]) == 0
    assert all(p.exists() for p in pngs)  # every committed figure drawn again
    for md in results.glob("*/*_cpu.md"):  # the tables are the committed ones, word for word
        committed = (ROOT / "results" / md.relative_to(results)).read_text()
        assert md.read_text().replace(str(results), "results") == committed
