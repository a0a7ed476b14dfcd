"""Patch self-correlation from a block's q, k, v (docs/method.md §4 Step B)."""

from __future__ import annotations

import torch
from torch import Tensor

_NORMALIZE_EPS = 1e-12
"""``F.normalize``'s default ``eps``."""


def qkv_cosine_correlation(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """W = mean over heads of ``(cos(q_i, q_j) + cos(k_i, k_j) + cos(v_i, v_j)) / 3``.

    docs/method.md §4 Step B (authors' ``attn2.py:295-308, 339-340``): cosines per head over the head_dim
    vectors taken after ``in_proj`` with bias and before scaling, [CLS] included, averaged over heads. The
    result is symmetric (exactly: one Gram matrix) with a diagonal of 1 up to rounding.

    The sum over heads and over q, k, v of the per-head cosine Gram matrices is the Gram matrix of the
    rows laid end to end: each token's 3 x heads unit vectors (``F.normalize``'s arithmetic, written
    straight into one (B, L, 3, heads, d) buffer) form one row of length 3 x width, and a single batched
    matmul with inner size 3 x width sums all ``3 * heads`` terms, then divides by their count. That is
    the formula in another summation order: it differs from the per-head sums by a few float32 ulps
    (about 5e-7 on unit cosines; tests/unit/test_method.py) and runs about 3.5x faster than 3 x heads
    matmuls of inner size d (6 windows of ViT-B/16: 4.5 against 16 ms on 2 CPU threads). Which DBSCAN
    decisions that could move, and how many label pixels did on the references, is in docs/method.md §4 B.

    Args:
        q, k, v: (B, heads, L, head_dim).

    Returns:
        (B, L, L) correlation, [CLS] at index 0.
    """
    b, heads, n, d = q.shape
    rows = q.new_empty(b, n, 3, heads, d)
    for i, t in enumerate((q, k, v)):  # F.normalize(t, dim=-1), written in place of the copy
        norm = torch.linalg.vector_norm(t, dim=-1, keepdim=True).clamp_min_(_NORMALIZE_EPS)
        torch.div(t, norm, out=rows[:, :, i].transpose(1, 2))
    x = rows.view(b, n, 3 * heads * d)
    return torch.bmm(x, x.transpose(1, 2)).div_(3 * heads)


def attention_map_correlation(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Ablation: the block's plain attention map ``softmax(q kᵀ / sqrt(d))`` averaged over heads.

    The correlation CLIPtrase replaces (docs/method.md §7: the [CLS] and patch attention maps of Fig. 1),
    offered as a switch so its contribution can be measured. ``v`` is unused.

    Returns:
        (B, L, L), rows sum to 1.
    """
    scale = q.shape[-1] ** -0.5
    return torch.softmax(scale * q @ k.transpose(-2, -1), dim=-1).mean(dim=1)


CORRELATIONS = {"qkv_cosine": qkv_cosine_correlation, "attention": attention_map_correlation}
"""Correlation sources selectable by ``method.correlation``."""
