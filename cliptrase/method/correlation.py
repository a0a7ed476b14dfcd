"""Patch self-correlation from a block's q, k, v (docs/method.md §4 Step B)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _unit_rows(x: Tensor) -> Tensor:
    """Rows of ``x`` (..., L, d) scaled to unit length, contiguous."""
    return F.normalize(x, dim=-1).contiguous()


def qkv_cosine_correlation(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """W = mean over heads of ``(cos(q_i, q_j) + cos(k_i, k_j) + cos(v_i, v_j)) / 3``.

    docs/method.md §4 Step B (authors' ``attn2.py:295-308, 339-340``): cosines per head over the head_dim
    vectors taken after ``in_proj`` with bias and before scaling, [CLS] included, averaged over heads. The
    result is symmetric with a unit diagonal.

    Bit for bit ``(gram(q̂) + gram(k̂) + gram(v̂)) / 3`` summed over heads and divided by their count
    (tests/unit/test_method.py). The normalised vectors are made contiguous first: the tower's q / k / v
    are strided views, on which the batched matmul takes a slow path (about 6x slower for 6 windows); the
    sums are in place, and k's and v's Gram matrices share one buffer.

    Args:
        q, k, v: (B, heads, L, head_dim).

    Returns:
        (B, L, L) correlation, [CLS] at index 0.
    """
    x = _unit_rows(q)
    per_head = x @ x.transpose(-2, -1)
    gram = torch.empty_like(per_head)
    for t in (k, v):
        x = _unit_rows(t)
        per_head.add_(torch.matmul(x, x.transpose(-2, -1), out=gram))
    return per_head.div_(3).sum(dim=1).div_(per_head.shape[1])


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
