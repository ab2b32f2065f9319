"""The inspection figures of Sec. 4.5 (Figures 6, 7 and 11) drawn from any checkpoint: ``vitrepro analyze``.

Kinds (``KINDS``), each one figure (``<out>/<kind>_<name>.png``), the numbers it draws (``.npz``: ``vitrepro
figures`` redraws the figure from them, without the checkpoint) and a caption beside it (``.md``: what it
shows, the paper's panel, the runs and the commands that trained them, the data copy, the hardware and the
wall time):

- ``filters``: Figure 7 left, the first 28 principal components of the patch-embedding filters;
- ``posemb``: Figure 7 centre, the cosine similarity of each patch's position embedding to every other's,
  one mosaic per table (the stem's, or each layer's for the every-layer placement), one row per run;
- ``distance``: Figure 7 right, the mean attention distance of each head against network depth, the
  trained model beside a randomly initialized one of the same architecture; several models one row each
  (Figure 11: the hybrid beside the ViT);
- ``rollout``: Figure 6, attention rollout maps of the class token over test images.

The measures are ``vitrepro.evaluation.inspection_measures``; models of the uniform API (ViT and hybrids: ours, converted timm
weights, a Google ``.npz``).
"""
from __future__ import annotations

import json
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.transforms import denormalize
from ..evaluation import inspection_measures as measures
from ..atomic import save_figure, write_text

KINDS = ("filters", "posemb", "distance", "rollout")
PANELS = {"filters": "Figure 7 (left): RGB embedding filters, first 28 principal components",
          "posemb": "Figure 7 (centre): position-embedding similarity",
          "distance": "Figure 7 (right) / Figure 11: mean attention distance by head and depth",
          "rollout": "Figure 6: attention rollout of the class token (Abnar and Zuidema 2020)"}


@dataclass
class Subject:
    """A model to inspect: the network (eval mode), its label in figures (model and budget, ``run_label``),
    its data config (the run's, or {}), the checkpoint it came from, the command that trained it (None for
    outside weights) and ``name``: the run id or file stem that names the output files (the label when
    unset)."""

    model: nn.Module
    label: str
    data: dict[str, Any]
    checkpoint: str
    command: str | None
    name: str | None = None

    def __post_init__(self):
        self.name = self.name or self.label


def load_subject(source: str | None, model_name: str | None = None, checkpoint: str | None = None,
                 model: dict[str, Any] | None = None) -> Subject:
    """A run directory of ``vitrepro run``, a ``.ckpt`` of ours (both name their architecture), or
    ``model_name`` with outside weights (``checkpoint``: timm state_dict or Google ``.npz``), through the one
    resolver ``models.checkpoint.resolve_weights``; ``model``: more model fields. Raises
    ``FileNotFoundError`` (with the command that writes a missing run checkpoint), ``ValueError`` for a model
    without attention (a BiT ResNet)."""
    from ..models import model_defaults
    from ..models.checkpoint import load_pretrained, model_from_checkpoint, resolve_weights

    if source and checkpoint:
        raise ValueError("analyze: give run directories or checkpoint files, or --checkpoint PATH, not both")
    if not (source or checkpoint):
        raise ValueError("analyze: give a run directory or a checkpoint file (or --model NAME --checkpoint PATH)")
    weights = resolve_weights(source or checkpoint, {**({"name": model_name} if model_name else {}), **(model or {})},
                              named=bool(model_name or (model or {}).get("name")))
    data = dict(weights.run["config"]["data"]) if weights.run else {}
    command = weights.run.get("command") if weights.run else None
    if weights.img_size is not None and not model:  # ours, as trained
        net = model_from_checkpoint(weights.checkpoint)
    else:
        fields = dict(weights.model)
        name = fields.pop("name")
        d = model_defaults(name)
        net = load_pretrained(name, weights.checkpoint, num_classes=d.get("num_classes", 1000),
                              img_size=weights.img_size or fields.pop("img_size", None) or d["img_size"], **fields)
    if not hasattr(net, "transformer"):
        raise ValueError(f"analyze: {weights.label} is a {type(net).__name__}, which has no attention or position "
                         "embedding (allowed: ViT and hybrid models)")
    label = run_label(weights.run["config"]) if weights.run else weights.label
    return Subject(net.eval(), label, data, str(weights.checkpoint), command, weights.label)


def run_label(config: dict[str, Any]) -> str:
    """A run's model, budget and learning rate as a figure's legend names it, e.g. ``ViT-C/4 depth=12, 500
    steps of 128 at lr 0.001 (4,000 images, seed 0)``: never its run id."""
    from ..experiments.records import section_label
    from ..models.checkpoint import TRAINING_FIELDS

    fields = {k: v for k, v in (config.get("model") or {}).items() if k not in TRAINING_FIELDS}
    model = section_label(fields) if fields.get("name") else "model"
    trainer, data = config.get("trainer") or {}, config.get("data") or {}
    steps = trainer.get("max_steps")
    lr = (config.get("optim") or config.get("mpp") or {}).get("lr")
    budget = (f"{steps} steps" if steps not in (None, -1) else f"{trainer.get('max_epochs')} epochs") + \
        f" of {data.get('batch_size', '?')}" + (f" at lr {lr:g}" if isinstance(lr, (int, float)) else "")
    extra = [f"{data['train_size']:,} images" if data.get("train_size") else None, f"seed {config.get('seed', 0)}"]
    return f"{model}, {budget} ({', '.join(e for e in extra if e)})"


def random_twin(model: nn.Module, seed: int = 0) -> nn.Module:
    """A randomly initialized model of ``model``'s architecture (its own initialization scheme)."""
    torch.manual_seed(seed)
    return type(model)(model.cfg).eval()


def pixel_patch(model: nn.Module) -> int:
    """Pixels per patch side: ``patch_size``, times the ResNet's stride for a hybrid."""
    return model.cfg.patch_size * getattr(model.cfg, "resnet_stride", 1)


def eval_images(data: dict[str, Any], n: int, img_size: int) -> tuple[torch.Tensor, str]:
    """``n`` images spread evenly over the test split of ``data`` (``ImageClassificationDataModule``
    arguments; a test split sorted by class gives every class its share), normalized as in training,
    (n, 3, img_size, img_size), and the data set's description."""
    from ..data import ImageClassificationDataModule

    keep = {k: v for k, v in data.items() if k in ("dataset", "root", "seed", "val_fraction", "train_size")}
    dm = ImageClassificationDataModule(**keep, img_size=img_size, num_workers=0)
    dm.setup()
    n = min(n, len(dm.test_set))
    picks = np.linspace(0, len(dm.test_set) - 1, n).round().astype(int)
    return torch.stack([dm.test_set[int(i)][0] for i in picks]), dm.describe()


def attentions_of(model: nn.Module, x: torch.Tensor, batch: int = 64) -> list[torch.Tensor]:
    """Per layer, the attention weights (B, H, N, N) of ``x`` (B, 3, H, W), in batches."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model.forward_features(x[i:i + batch], return_attention=True)[1])
    return [torch.cat([o[layer] for o in outs]) for layer in range(len(outs[0]))]


def _mosaic(sim: torch.Tensor, gap: int = 1) -> np.ndarray:
    """(g, g, g, g) similarity maps -> one (g*(g+gap), g*(g+gap)) image, NaN in the gaps."""
    gh, gw = sim.shape[:2]
    out = np.full((gh * (gh + gap), gw * (gw + gap)), np.nan)
    for i in range(gh):
        for j in range(gw):
            out[i * (gh + gap):i * (gh + gap) + gh, j * (gw + gap):j * (gw + gap) + gw] = sim[i, j].numpy()
    return out


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def measure(kind: str, subjects: list[Subject], images: int = 8, data: dict[str, Any] | None = None
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The numbers a figure of ``kind`` draws, as arrays (saved beside it as ``.npz``, so ``vitrepro
    figures`` redraws it without the checkpoint), and its facts (labels, sizes, data). Raises
    ``ValueError`` for an unknown kind, several models for a kind that takes one, or no table to show."""
    if kind not in KINDS:
        raise ValueError(f"analyze: unknown kind {kind!r} (allowed: {', '.join(KINDS)})")
    if kind not in ("posemb", "distance") and len(subjects) != 1:
        raise ValueError(f"analyze {kind}: takes one run or checkpoint, got {len(subjects)} (posemb and distance "
                         f"take several)")
    meta: dict[str, Any] = {"kind": kind, "labels": [s.label for s in subjects]}
    if kind == "filters":  # beside the random initialization's, as the rollout and distance figures
        return {"components": measures.embedding_filters_pca(subjects[0].model, 28).numpy(),
                "random_components": measures.embedding_filters_pca(random_twin(subjects[0].model), 28).numpy()}, meta
    if kind == "posemb":
        arrays = {}
        for i, s in enumerate(subjects):
            for name, sim in measures.posemb_similarity(s.model).items():
                arrays[f"s{i}_{name}"] = sim.numpy()
        if not arrays:
            raise ValueError("analyze posemb: none of the models has a position-embedding table (none, relative)")
        return arrays, meta
    s = subjects[0]
    sizes = {t.model.cfg.img_size for t in subjects}
    if len(sizes) > 1:
        raise ValueError(f"analyze {kind}: the models take different image sizes {sorted(sizes)}; give models of one size")
    data = {**s.data, **(data or {})}
    x, meta["data"] = eval_images(data, images if kind == "rollout" else max(images, 64), s.model.cfg.img_size)
    meta.update(images=len(x), img_size=int(x.shape[-1]), patch_px=pixel_patch(s.model))
    grid = s.model.cfg.grid_size
    if kind == "rollout":
        maps = measures.rollout_map(attentions_of(s.model, x), grid)
        random_maps = measures.rollout_map(attentions_of(random_twin(s.model), x), grid)
        pixels = denormalize(x).permute(0, 2, 3, 1)
        return {"images": pixels.numpy(), "maps": maps.numpy(), "random_maps": random_maps.numpy()}, meta
    arrays = {}
    meta["patch_pxs"] = [pixel_patch(t.model) for t in subjects]
    for i, t in enumerate(subjects):  # the first model's keys are "trained" and "random", as before several
        px, g, suffix = pixel_patch(t.model), t.model.cfg.grid_size, f"_{i}" if i else ""
        arrays[f"trained{suffix}"] = measures.mean_attention_distance(attentions_of(t.model, x), g, px).numpy()
        arrays[f"random{suffix}"] = measures.mean_attention_distance(attentions_of(random_twin(t.model), x), g, px).numpy()
    return arrays, meta


def _short(data_text: str) -> str:
    from .pos_emb_figure import data_set_name

    return data_set_name(data_text)


def plot_filters(arrays: dict[str, np.ndarray], meta: dict[str, Any]):
    """The trained model's components, and the random initialization's beside them when measured (figures
    measured before the random panel existed have none)."""
    panels = [("trained: " + meta["labels"][0], arrays["components"])]
    if "random_components" in arrays:
        panels.append(("random initialization", arrays["random_components"]))
    cols = 7
    rows = -(-len(panels[0][1]) // cols)
    fig = _figure(1.0 * cols * len(panels) + 0.2 * (len(panels) - 1), 1.0 * rows + 0.6)
    for sub, (title, comps) in zip(fig.subfigures(1, len(panels), squeeze=False).flat, panels):
        for i, ax in enumerate(sub.subplots(rows, cols, squeeze=False).flat):
            ax.axis("off")
            if i < len(comps):
                ax.imshow(comps[i].transpose(1, 2, 0), interpolation="nearest")
        sub.suptitle(title, fontsize=7)
    fig.suptitle(PANELS["filters"], fontsize=8)
    return fig


def plot_posemb(arrays: dict[str, np.ndarray], meta: dict[str, Any]):
    labels = meta["labels"]
    rows = [[(k.split("_", 1)[1], v) for k, v in arrays.items() if k.startswith(f"s{i}_")] for i in range(len(labels))]
    cols = max(len(r) for r in rows)
    fig = _figure(min(max(1.6 * cols + 0.8, 6.0), 10), 1.75 * len(labels) + 0.6)
    axes = fig.subplots(len(labels), cols, squeeze=False)
    im = None
    for ax_row, label, tables in zip(axes, labels, rows):
        for ax in ax_row:
            ax.axis("off")
        if not tables:
            ax_row[0].set_title(f"{label}\nno table (none or relative)", fontsize=6)
        for ax, (name, sim) in zip(ax_row, tables):
            im = ax.imshow(_mosaic(torch.from_numpy(sim)), cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
            g = sim.shape[0]
            ax.set_title(f"{label}\n{name} table ({g}x{g} patches)" if ax is ax_row[0] else f"{name} table", fontsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, location="bottom", aspect=30, label="cosine similarity",
                     ticks=[-1, -0.5, 0, 0.5, 1])
    fig.suptitle(f"{PANELS['posemb']}\ntile (i, j): patch (i, j)'s similarity to every patch", fontsize=8)
    return fig


def plot_distance(arrays: dict[str, np.ndarray], meta: dict[str, Any]):
    """One row a model (Figure 11: several): its trained heads beside its random initialization's, with the
    distance of uniform attention over its own patch grid."""
    n = len(meta["labels"])
    pxs = meta.get("patch_pxs") or [meta["patch_px"]]
    fig = _figure(6.0, 2.3 * n + 0.3)
    axes = fig.subplots(n, 2, sharey=True, squeeze=False)
    for i, (row, label, px) in enumerate(zip(axes, meta["labels"], pxs)):
        suffix = f"_{i}" if i else ""
        for ax, dist, what in zip(row, (arrays[f"trained{suffix}"], arrays[f"random{suffix}"]),
                                  ("trained: " + label, "random initialization")):
            L, H = dist.shape
            for h in range(H):
                ax.scatter(np.arange(L) + 0.08 * (h - H / 2), dist[:, h], s=8, label=f"head {h + 1}")
            ax.set_xticks(range(L), [str(j + 1) for j in range(L)])
            ax.set_xlabel("network depth (layer)", fontsize=8)
            ax.set_title(what, fontsize=7)
            ax.tick_params(labelsize=7)
        uniform = measures.uniform_attention_distance(meta["img_size"] // px, px)
        for ax in row:
            ax.axhline(uniform, ls="--", lw=0.8, color="grey", label=f"uniform attention ({uniform:.1f} px)")
        row[0].set_ylabel("mean attention distance (pixels)", fontsize=8)
        row[1].legend(fontsize=5, loc="lower right", ncol=2)
    patches = ", ".join(f"{p}" for p in pxs)
    fig.suptitle(f"{PANELS['distance']}\n{meta['images']} test images at {meta['img_size']}x{meta['img_size']} "
                 f"({_short(meta['data'])}); patches of {patches} pixels", fontsize=7)
    return fig


def plot_rollout(arrays: dict[str, np.ndarray], meta: dict[str, Any]):
    images, maps = arrays["images"].astype(np.float32) / 255, torch.from_numpy(arrays["maps"])
    up = nn.functional.interpolate(maps[:, None], size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
    rows = [up]
    if "random_maps" in arrays:  # measured with the random-initialization panel
        rand = torch.from_numpy(arrays["random_maps"])
        rows.append(nn.functional.interpolate(rand[:, None], size=images.shape[1:3], mode="bilinear",
                                              align_corners=False)[:, 0])
    n = len(images)
    fig = _figure(max(0.9 * n + 0.3, 5.0), 1.25 * (len(rows) + 1))
    axes = fig.subplots(len(rows) + 1, n, squeeze=False)
    for i in range(n):
        axes[0, i].imshow(images[i], interpolation="nearest")
        for r, maps_up in enumerate(rows, start=1):
            axes[r, i].imshow(images[i] * maps_up[i, ..., None].numpy(), interpolation="nearest")
        for ax in axes[:, i]:
            ax.axis("off")
    below = "input x rollout map of the trained model" + (", then of its random initialization" if len(rows) > 1 else "")
    width = int(16 * max(0.9 * n + 0.3, 5.0))  # characters a 7-point line holds at this figure's width
    fig.suptitle("\n".join([PANELS["rollout"], *textwrap.wrap(f"{meta['labels'][0]}; {_short(meta['data'])}, test images",
                                                               width), *textwrap.wrap(f"input (top), {below}", width)]),
                 fontsize=7)
    return fig


PLOTS = {"filters": plot_filters, "posemb": plot_posemb, "distance": plot_distance, "rollout": plot_rollout}


def save_measures(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """``arrays`` and ``meta`` (as JSON text) in one ``.npz`` (read back without pickle: ``load_measures``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, __meta__=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)
    return path


def load_measures(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and facts ``save_measures`` wrote; never unpickles (a file handed to us runs no code)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
        meta = json.loads(str(z["__meta__"]))
    return arrays, meta


def redraw(npz: Path) -> Path:
    """Draw the figure of a saved ``<kind>_<name>.npz`` into the ``.png`` beside it; return its path."""
    arrays, meta = load_measures(npz)
    if meta.get("kind") not in PLOTS:
        raise ValueError(f"{npz}: key 'kind': {meta.get('kind')!r} is not one of {', '.join(PLOTS)}")
    return save_figure(PLOTS[meta["kind"]](arrays, meta), Path(npz).with_suffix(".png"))


def analyze(kind: str, subjects: list[Subject], out_dir: Path, name: str, command: str, images: int = 8,
            data: dict[str, Any] | None = None) -> list[Path]:
    """Measure ``kind`` (one of ``KINDS``) for ``subjects`` and write ``out_dir/<kind>_<name>.npz`` (the
    numbers), ``.png`` (the figure) and ``.md`` (its caption: the paper's panel, the command, the models and
    the commands that trained them, the data copy, the hardware, the wall time); return the paths.
    ``data`` (data-module arguments) replaces the run's data entries (``distance``, ``rollout``). Raises as
    ``measure``."""
    from ..experiments.runner import hardware_description

    t0 = time.time()
    arrays, meta = measure(kind, subjects, images, data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    npz, md = out_dir / f"{kind}_{name}.npz", out_dir / f"{kind}_{name}.md"
    png = redraw(save_measures(npz, arrays, meta))
    lines = [f"# {PANELS[kind]}", "", f"![{kind}]({png.name})", "", f"Command: `{command}`", "", "Models:"]
    lines += [f"- `{s.name}`: {s.label} ({type(s.model).__name__}, {s.model.cfg.img_size}x{s.model.cfg.img_size}, "
              f"patch {pixel_patch(s.model)} px): checkpoint `{s.checkpoint}`"
              + (f", trained by `{s.command}`" if s.command else "")
              + (f" on `{s.data.get('dataset')}` at `{s.data.get('root') or 'the bundled sample'}`" if s.data else "")
              for s in subjects]
    if "data" in meta:
        lines += ["", f"Data: {meta['data']}"]
    lines += ["", f"Hardware: {hardware_description()}; wall time {time.time() - t0:.1f} s. Numbers: `{npz.name}` "
              "(`vitrepro figures` redraws the figure from them)."]
    if kind == "posemb":
        lines += ["", "Grid topology of each table: mean cosine similarity of a patch's embedding to its 4 neighbours, "
                  "to the other patches, to its row and to its column (itself left out):", "",
                  "| model | table | neighbours | others | same row | same column |", "|---|---|---|---|---|---|"]
        for key, sim in arrays.items():
            i, table = key[1:].split("_", 1)
            st = measures.neighbourhood_similarity(torch.from_numpy(sim))
            lines.append(f"| {subjects[int(i)].label} | {table} | {st['neighbours']:.3f} | {st['others']:.3f} | "
                         f"{st['same_row']:.3f} | {st['same_column']:.3f} |")
    if kind == "distance":
        for i, subject in enumerate(subjects):
            tr, rd = arrays["trained" + (f"_{i}" if i else "")], arrays["random" + (f"_{i}" if i else "")]
            lines += ["", f"Mean attention distance (pixels) per layer of {subject.label}, mean over heads [min-max]:", "",
                      "| layer | trained | random init |", "|---|---|---|"]
            lines += [f"| {j + 1} | {tr[j].mean():.2f} [{tr[j].min():.2f}-{tr[j].max():.2f}] | "
                      f"{rd[j].mean():.2f} [{rd[j].min():.2f}-{rd[j].max():.2f}] |" for j in range(len(tr))]
    write_text(md, "\n".join(lines) + "\n")
    return [npz, png, md]


__all__ = ["KINDS", "PANELS", "PLOTS", "Subject", "load_subject", "random_twin", "pixel_patch", "eval_images",
           "attentions_of", "measure", "plot_filters", "plot_posemb", "plot_distance", "plot_rollout",
           "save_measures", "load_measures", "redraw", "analyze"]
