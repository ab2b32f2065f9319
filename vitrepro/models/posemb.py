"""Position embeddings of the ViT paper's ablation (Table 8, Appendix D.4) and their resampling.

Kinds (``posemb``):
  - ``none``: no positional information; the encoder is then permutation-equivariant over patches.
  - ``learned_1d``: one learned vector per sequence position (class token included), (1, L, D).
    The paper's default (Eq. 1, ``E_pos``); init normal(std 0.02) as vit_jax ``AddPositionEmbs``.
  - ``learned_2d``: two learned tables, X (gw, D/2) and Y (gh, D/2); a patch at row r, column c gets
    concat(X[c], Y[r]) (App. D.4: "X-embedding and Y-embedding, each with size D/2 ... concatenated").
    The class token has no grid position; it gets its own learned vector.
  - ``relative``: 1-D relative attention (App. D.4): every offset ``p_q - p_k`` between a query and a
    key position has a learned embedding; "extra attention" of the query content against the offset
    embeddings gives logits that are added as a bias to the content logits before the softmax. Each
    encoder layer owns one table of shape (2L - 1, D), split over heads as (2L - 1, H, D/H).

Placements (``posemb_placement``), for the additive kinds: ``stem`` (added once to the patch
embeddings, Eq. 1), ``every_layer`` (a separate learned embedding added at the start of every layer),
``every_layer_shared`` (one embedding added at the start of every layer). ``relative`` acts inside
every layer's attention and has no placement other than ``stem`` (Table 8 marks the rest N/A).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

POSEMB_KINDS = ("none", "learned_1d", "learned_2d", "relative")
POSEMB_PLACEMENTS = ("stem", "every_layer", "every_layer_shared")


def check_posemb(kind: str, placement: str) -> None:
    """Raise ``ValueError`` for an unknown kind or placement, or a combination Table 8 marks N/A."""
    if kind not in POSEMB_KINDS:
        raise ValueError(f"posemb={kind!r} is not one of {', '.join(POSEMB_KINDS)}")
    if placement not in POSEMB_PLACEMENTS:
        raise ValueError(f"posemb_placement={placement!r} is not one of {', '.join(POSEMB_PLACEMENTS)}")
    if kind in ("none", "relative") and placement != "stem":
        raise ValueError(
            f"posemb={kind!r} admits only posemb_placement='stem' (Table 8 marks {placement!r} N/A)")


class LearnedPosEmb1D(nn.Module):
    """Learned 1-D position embedding ``E_pos`` of shape (1, L, D), L = N (+1 with a class token).

    Source: vit_jax ``AddPositionEmbs`` (init normal std 0.02); paper Eq. 1.
    """

    def __init__(self, num_tokens: int, width: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, num_tokens, width).normal_(std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) -> x + E_pos, (B, L, D)."""
        return x + self.pos_embedding


class LearnedPosEmb2D(nn.Module):
    """Learned 2-D position embedding: X (gw, D/2) and Y (gh, D/2) tables, concatenated per patch.

    Tokens are in row-major patch order (as the patch embedding flattens them); with a class token,
    ``cls_embedding`` (1, 1, D) is added to it. Source: paper App. D.4. Raises ``ValueError`` if D is odd.
    """

    def __init__(self, grid_size: tuple[int, int], width: int, num_prefix_tokens: int):
        super().__init__()
        if width % 2:
            raise ValueError(f"learned_2d needs an even width, got D={width}")
        self.grid_size = grid_size
        self.num_prefix_tokens = num_prefix_tokens
        gh, gw = grid_size
        self.pos_embedding_x = nn.Parameter(torch.empty(gw, width // 2).normal_(std=0.02))
        self.pos_embedding_y = nn.Parameter(torch.empty(gh, width // 2).normal_(std=0.02))
        self.cls_embedding = (nn.Parameter(torch.empty(1, num_prefix_tokens, width).normal_(std=0.02))
                              if num_prefix_tokens else None)

    def table(self) -> torch.Tensor:
        """The embedding of every patch, (1, gh * gw, D), row-major."""
        gh, gw = self.grid_size
        x = self.pos_embedding_x[None, :, :].expand(gh, gw, -1)
        y = self.pos_embedding_y[:, None, :].expand(gh, gw, -1)
        return torch.cat([x, y], dim=-1).reshape(1, gh * gw, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        pos = self.table()
        if self.cls_embedding is not None:
            pos = torch.cat([self.cls_embedding, pos], dim=1)
        return x + pos


class RelativePositionBias(nn.Module):
    """1-D relative attention logits (paper App. D.4), one table per encoder layer.

    For queries q (B, H, L, Dh) returns the bias (B, H, L, L) with
    ``bias[b, h, i, j] = q[b, h, i] . R[j - i + L - 1, h]``, where R is (2L - 1, H, Dh), init normal(0.02).
    The caller scales q by 1/sqrt(Dh) first, as for the content logits, and adds the bias before
    the softmax (``scaled_dot_product_attention``'s float ``attn_mask``).
    """

    def __init__(self, num_tokens: int, num_heads: int, head_dim: int):
        super().__init__()
        self.num_tokens = num_tokens
        self.rel_embedding = nn.Parameter(torch.empty(2 * num_tokens - 1, num_heads, head_dim).normal_(std=0.02))
        idx = torch.arange(num_tokens)
        self.register_buffer("rel_index", idx[None, :] - idx[:, None] + num_tokens - 1, persistent=False)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q: (B, H, L, Dh) -> bias (B, H, L, L)."""
        B, H, L, _ = q.shape
        if L != self.num_tokens:
            raise ValueError(f"relative position bias built for L={self.num_tokens} tokens, got {L}")
        logits = torch.einsum("bhid,rhd->bhir", q, self.rel_embedding)  # (B, H, L, 2L-1)
        return torch.gather(logits, 3, self.rel_index.expand(B, H, L, L))


def make_additive_posemb(kind: str, grid_size: tuple[int, int], width: int, num_prefix_tokens: int) -> nn.Module:
    """Build one additive embedding module of ``kind`` in {learned_1d, learned_2d}."""
    if kind == "learned_1d":
        return LearnedPosEmb1D(grid_size[0] * grid_size[1] + num_prefix_tokens, width)
    if kind == "learned_2d":
        return LearnedPosEmb2D(grid_size, width, num_prefix_tokens)
    raise ValueError(f"{kind!r} is not an additive position embedding (learned_1d, learned_2d)")


def resample_posemb_grid(posemb: torch.Tensor, new_grid: tuple[int, int], num_prefix_tokens: int = 1,
                         mode: str = "bilinear", align_corners: bool = True) -> torch.Tensor:
    """Resample a learned 1-D position embedding (1, prefix + gh*gw, D) to a new patch grid in 2-D.

    The prefix (class token) embedding is kept; the patch embeddings are interpolated by their place in
    the image, as the paper's fine-tuning at higher resolution (Sec. 3.2). ``mode='bilinear'`` with
    ``align_corners=True`` equals the official ``scipy.ndimage.zoom(order=1)`` (vit_jax
    ``checkpoint.py``); ``align_corners=False`` gives timm's resampling. Returns (1, prefix + nh*nw, D).
    Raises ``ValueError`` when the patch tokens do not form a square grid.
    """
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    n = grid.shape[1]
    g = int(math.isqrt(n))
    if g * g != n:
        raise ValueError(f"position embedding of {n} patch tokens is not a square grid")
    grid = grid.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    kwargs = {"align_corners": align_corners} if mode in ("bilinear", "bicubic") else {}
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode=mode, **kwargs).to(posemb.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], -1)
    return torch.cat([prefix, grid], dim=1)


def resample_posemb_1d(table: torch.Tensor, n: int, mode: str, align_corners: bool) -> torch.Tensor:
    """Resample a (g, C) table of one grid axis to (n, C): the 2-D ``mode`` on a 1 x g image, so it is
    the same interpolation along that axis (``bilinear`` -> linear)."""
    kwargs = {"align_corners": align_corners} if mode in ("bilinear", "bicubic") else {}
    img = table.float().t()[None, :, None, :]  # (1, C, 1, g)
    out = F.interpolate(img, size=(1, n), mode=mode, **kwargs)
    return out[0, :, 0, :].t().to(table.dtype).contiguous()
