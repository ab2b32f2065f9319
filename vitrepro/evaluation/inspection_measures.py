"""What a ViT learns: the inspection measures of Sec. 4.5 (Figures 6, 7, 11 and 14).

Every function works on a model of the uniform API (ours, converted timm weights, a Google ``.npz``
loaded into ours) or on the attention weights ``forward_features(x, return_attention=True)`` returns:
a list of L tensors (B, H, N, N), N tokens with the class token first when the model has one.

- ``mean_attention_distance``: Figure 7 (right) and Figure 11, the "attention distance" per layer and head;
- ``attention_rollout``: Figures 6 and 14, Abnar and Zuidema (2020);
- ``posemb_similarity``: Figure 7 (centre), cosine similarity between position embeddings;
- ``embedding_filters_pca``: Figure 7 (left), principal components of the patch-embedding filters.
"""
from __future__ import annotations

import torch
from torch import nn


def _patch_centres(grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Pixel coordinates (y, x) of the centre of each patch, row-major: (gh * gw, 2)."""
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    return (torch.stack([ys, xs], -1).reshape(-1, 2).double() + 0.5) * patch_size


def mean_attention_distance(attentions: list[torch.Tensor], grid_size: int | tuple[int, int],
                            patch_size: int) -> torch.Tensor:
    """Mean attention distance in pixels, (L, H): for each layer and head, the image-space distance
    between a query patch and every key patch weighted by the attention weights, summed over keys and
    averaged over query patches and images (Sec. 4.5, Figure 7 right: "analogous to receptive field size").

    Args:
        attentions: L tensors (B, H, N, N) with N = prefix + gh * gw; prefix tokens (the class token) are
            dropped as queries and as keys, and each query's weights over the patches renormalized.
        grid_size: the patch grid, g or (gh, gw).
        patch_size: pixels per patch side (the distance unit is the pixel).

    Raises ``ValueError`` when N is smaller than the grid.
    """
    grid = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    n = grid[0] * grid[1]
    centres = _patch_centres(grid, patch_size)
    dist = torch.cdist(centres, centres)  # (n, n)
    out = []
    for attn in attentions:
        if attn.shape[-1] < n:
            raise ValueError(f"attention over {attn.shape[-1]} tokens cannot hold a {grid[0]}x{grid[1]} grid")
        a = attn[..., -n:, -n:].double()
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
        out.append((a * dist).sum(-1).mean(dim=(0, 2)))  # (H,)
    return torch.stack(out).float()


def uniform_attention_distance(grid_size: int | tuple[int, int], patch_size: int) -> float:
    """The mean attention distance (pixels) of a head that attends to every patch alike: the reference line
    of the attention-distance figure (a head above it looks farther than uniform, below it more locally).
    ``mean_attention_distance`` of uniform weights over the grid."""
    grid = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    n = grid[0] * grid[1]
    return float(mean_attention_distance([torch.full((1, 1, n, n), 1.0 / n)], grid, patch_size)[0, 0])


def attention_rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar and Zuidema 2020), as Figures 6 and 14: each layer's attention averaged
    over heads, the identity added for the residual connection, rows renormalized, and the matrices
    multiplied from the first layer up. (B, N, N); row ``i`` is how much token ``i`` of the last layer
    draws on each input token (row 0, the class token's, is the attention map over the image)."""
    rollout = None
    for attn in attentions:
        a = attn.double().mean(1)
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout.float()


def rollout_map(attentions: list[torch.Tensor], grid_size: int | tuple[int, int]) -> torch.Tensor:
    """The class token's row of the rollout over the patches, as an image grid (B, gh, gw), scaled to a
    maximum of 1 per image (the paper's attention maps). Raises ``ValueError`` for a model without a class
    token (N equal to the grid)."""
    grid = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    roll = attention_rollout(attentions)
    n = grid[0] * grid[1]
    if roll.shape[-1] == n:
        raise ValueError("rollout_map needs a class token (pool='token'); this model has none")
    row = roll[:, 0, -n:]
    return (row / row.amax(-1, keepdim=True)).reshape(-1, *grid)


def _cosine_grid(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    t = nn.functional.normalize(table.reshape(-1, table.shape[-1]).double(), dim=-1)
    return (t @ t.T).reshape(*grid, *grid).float()


def posemb_similarity(model: nn.Module) -> dict[str, torch.Tensor]:
    """Cosine similarity of each patch's position embedding to every other's, (gh, gw, gh, gw) per table
    (Figure 7 centre: entry ``[i, j]`` is the map of patch (i, j)'s similarity to all patches). Keys:
    ``"stem"`` (the embedding added at the stem or shared by every layer), ``"layer<k>"`` for each layer's
    own table (``every_layer``). The class token's embedding is left out. A model without a table
    (``none``, ``relative``) gives ``{}``."""
    cfg = model.cfg
    grid = cfg.grid_size
    tables = {}
    enc = model.transformer
    sources = [("stem", enc.posembed_input)] if enc.posembed_input is not None else []
    if enc.posembed_layers is not None:
        sources += [(f"layer{k}", m) for k, m in enumerate(enc.posembed_layers)]
    n = grid[0] * grid[1]
    for name, module in sources:
        table = module.table() if hasattr(module, "table") else module.pos_embedding[:, -n:]
        tables[name] = _cosine_grid(table.detach(), grid)
    return tables


def neighbourhood_similarity(sim: torch.Tensor) -> dict[str, float]:
    """How much grid topology a position-embedding similarity ``sim`` (gh, gw, gh, gw) holds: the mean cosine
    similarity of each patch to its 4 neighbours (``neighbours``), to every other patch (``others``), to the
    other patches of its row (``same_row``) and of its column (``same_column``), the patch itself left out.
    Figure 7's JFT-trained table: neighbours near 1, others near 0, rows and columns bright."""
    gh, gw = sim.shape[:2]
    r = torch.arange(gh).view(gh, 1, 1, 1)
    c = torch.arange(gw).view(1, gw, 1, 1)
    r2, c2 = r.view(1, 1, gh, 1), c.view(1, 1, 1, gw)
    hops = (r - r2).abs() + (c - c2).abs()
    other = hops > 0
    masks = {"neighbours": hops == 1, "others": hops > 1, "same_row": other & (r == r2), "same_column": other & (c == c2)}
    return {k: float(sim[m.expand_as(sim)].mean()) for k, m in masks.items()}


def embedding_filters_pca(model: nn.Module, k: int = 28) -> torch.Tensor:
    """The first ``k`` principal components of the patch-embedding filters as RGB images, (k, 3, P, P),
    each scaled to [0, 1] (Figure 7 left). The filters are the D rows of the linear patch embedding, each
    a 3 x P x P image; the components are the top right-singular vectors of the centred (D, 3 P P) matrix.
    Raises ``ValueError`` when ``k`` exceeds min(D, 3 P P)."""
    w = model.embedding.weight.detach().double()  # (D, C, P, P)
    d, c, p, q = w.shape
    flat = w.reshape(d, -1)
    if k > min(flat.shape):
        raise ValueError(f"k={k} principal components asked of {d} filters of {flat.shape[1]} values")
    flat = flat - flat.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(flat, full_matrices=False)
    comps = vh[:k].reshape(k, c, p, q)
    lo = comps.amin(dim=(1, 2, 3), keepdim=True)
    hi = comps.amax(dim=(1, 2, 3), keepdim=True)
    return ((comps - lo) / (hi - lo).clamp_min(1e-12)).float()


__all__ = ["mean_attention_distance", "uniform_attention_distance", "attention_rollout", "rollout_map", "posemb_similarity",
           "neighbourhood_similarity",
           "embedding_filters_pca"]
