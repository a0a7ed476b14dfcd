"""Attention rules of a ViT block as pure functions of the projected q, k, v.

A rule takes ``q, k, v`` of shape ``(B, heads, L, head_dim)`` (after ``in_proj`` with bias, before any
scaling) and keyword context ``scale`` (``head_dim ** -0.5``) and ``grid_hw`` (patch grid, for rules that
need spatial structure), and returns the attended values ``(B, heads, L, head_dim)``. Rules are looked up
by name in :data:`ATTENTION`, so a block's rule is data, not a code path (style.md §3.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cliptrase.utils.registry import Registry

ATTENTION: Registry = Registry("attention rule")


def _affinity(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """Row-softmax of scaled dot products ``softmax(scale * a bᵀ)``, shape (B, H, L, L)."""
    return torch.softmax(scale * (a @ b.transpose(-2, -1)), dim=-1)


@ATTENTION.register("vanilla")
def vanilla_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float, grid_hw: tuple[int, int]) -> Tensor:
    """Standard CLIP attention ``softmax(q kᵀ · scale) v`` (fused scaled-dot-product kernel)."""
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


@ATTENTION.register("cliptrase")
def cliptrase_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float, grid_hw: tuple[int, int]) -> Tensor:
    """CLIPtrase last-block attention (method.md §4 Step C).

    ``A = softmax(s·qqᵀ) + softmax(s·kkᵀ) + softmax(s·vvᵀ)`` per head: a *sum* (rows sum to 3, no /3),
    scaled dot products (not cosines), mirroring ``clip_utils/attn2.py:254-290`` of the authors' code.
    """
    attn = _affinity(q, q, scale) + _affinity(k, k, scale) + _affinity(v, v, scale)
    return attn @ v
