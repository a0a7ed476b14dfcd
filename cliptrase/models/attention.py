"""Attention rules of a ViT block as pure functions of the projected q, k, v.

A rule takes ``q, k, v`` of shape ``(B, heads, L, head_dim)`` (after ``in_proj`` with bias, before any
scaling) and keyword context ``scale`` (``head_dim ** -0.5``) and ``grid_hw`` (patch grid, for rules that
need spatial structure), and returns the attended values ``(B, heads, L, head_dim)``. Rules are looked up
by name in :data:`ATTENTION`, so a block's rule is data, not a code path (docs/style.md §3.2).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from cliptrase.utils.name_registry import Registry

ATTENTION: Registry = Registry("attention rule")


def _affinity(a: Tensor, scale: float) -> Tensor:
    """Row-softmax of scaled self dot products ``softmax(scale * a aᵀ)``, shape (B, H, L, L); the scale is
    applied in place."""
    return torch.softmax((a @ a.transpose(-2, -1)).mul_(scale), dim=-1)


@ATTENTION.register("vanilla")
def vanilla_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float, grid_hw: tuple[int, int]) -> Tensor:
    """Standard CLIP attention ``softmax(q kᵀ · scale) v`` (fused scaled-dot-product kernel)."""
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


@ATTENTION.register("cliptrase")
def cliptrase_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float, grid_hw: tuple[int, int]) -> Tensor:
    """CLIPtrase last-block attention (docs/method.md §4 Step C).

    ``A = softmax(s·qqᵀ) + softmax(s·kkᵀ) + softmax(s·vvᵀ)`` per head: a *sum* (rows sum to 3, no /3),
    scaled dot products (not cosines), mirroring ``clip_utils/attn2.py:254-290`` of the authors' code.

    On CPU the batch is computed one image (window) at a time: its (heads, L, L) affinities stay in cache,
    where a whole batch's do not (11 MB per affinity for 6 ViT-B/16 windows), so 6 windows take ~12 instead of
    ~20 ms and 16 windows ~32 instead of ~80 ms on 2 cores; every operation is per head, and an image's values
    are those it gets alone (the paper protocol's batch of one).
    """
    # the block's q, k, v are strided views of the fused projection, on which the batched matmuls take a
    # slower path (the same bits): contiguous copies first
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if q.device.type != "cpu":  # one launch per operation for the whole batch
        return _affinity_sum(q, k, v, scale) @ v
    out = torch.empty_like(v)
    for i in range(q.shape[0]):
        torch.matmul(_affinity_sum(q[i], k[i], v[i], scale), v[i], out=out[i])
    return out


def _affinity_sum(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """``softmax(s·qqᵀ) + softmax(s·kkᵀ) + softmax(s·vvᵀ)``, summed left to right."""
    attn = _affinity(q, scale)
    attn += _affinity(k, scale)  # in place: the same left-to-right sum, one (..., L, L) buffer
    attn += _affinity(v, scale)
    return attn


@ATTENTION.register("maskclip")
def maskclip_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float, grid_hw: tuple[int, int]) -> Tensor:
    """MaskCLIP: identity attention, each token attends only to itself, so the output is ``v``.

    docs/protocols.md §2: ClearCLIP's harness implements MaskCLIP as a mask of −inf off the diagonal and 0 on
    it, whose softmax is the identity matrix, so ``A·v = v`` exactly
    (``mc-lan/ClearCLIP:open_clip/transformer.py``, ``custom_attn`` with ``model_type='MaskCLIP'``).
    ``q`` and ``k`` are unused.
    """
    return v


@ATTENTION.register("sclip")
def sclip_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float, grid_hw: tuple[int, int]) -> Tensor:
    """SCLIP correlative self-attention: ``A = softmax(s·qqᵀ) + softmax(s·kkᵀ)``, a *sum* (rows sum to 2).

    docs/protocols.md §2, mirroring ``wangf3014/SCLIP:clip/model.py`` ``custom_attn`` with ``csa=True``.
    Computed as two fused attention calls, ``softmax(s·qqᵀ)v + softmax(s·kkᵀ)v``, which equals ``A·v``.
    """
    return F.scaled_dot_product_attention(q, q, v, scale=scale) + F.scaled_dot_product_attention(
        k, k, v, scale=scale
    )


@ATTENTION.register("clearclip")
def clearclip_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float, grid_hw: tuple[int, int]) -> Tensor:
    """ClearCLIP query–query attention: ``A = softmax(s·qqᵀ)``.

    docs/protocols.md §2, mirroring ``mc-lan/ClearCLIP:open_clip/transformer.py`` ``custom_attn`` with
    ``model_type='ClearCLIP'``. ``k`` is unused.
    """
    return F.scaled_dot_product_attention(q, q, v, scale=scale)


@functools.lru_cache(maxsize=32)
def neighbourhood_bias(
    grid_hw: tuple[int, int], sigma: float, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """NACLIP's Gaussian neighbourhood term Ω, shape (1 + h·w, 1 + h·w), built once per key.

    docs/protocols.md §2: for patch tokens i, j at grid positions (r, c) (row-major, [CLS] at index 0),
    ``Ω_ij = exp(−((r_i − r_j)² + (c_i − c_j)²) / (2σ²))``; the [CLS] row and column are 0. NACLIP builds
    the same matrix by convolving one-hot grid maps with a (2h−1)×(2w−1) Gaussian window (zero "same"
    padding); the closed form used here gives the same values without the convolution. Computed in float64,
    then cast.

    The returned tensor is shared between callers through the cache: never modify it in place.

    Args:
        grid_hw: patch grid (h, w).
        sigma: Gaussian standard deviation in patches (NACLIP's ``gaussian_std``).
        device: device of the result.
        dtype: dtype of the result (that of the attention logits it is added to).
    """
    if not sigma > 0:
        raise ValueError(f"gaussian_std must be > 0, got {sigma}")
    h, w = grid_hw
    rows = torch.arange(h, dtype=torch.float64).repeat_interleave(w)
    cols = torch.arange(w, dtype=torch.float64).repeat(h)
    dist2 = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    omega = torch.zeros(1 + h * w, 1 + h * w, dtype=torch.float64)
    omega[1:, 1:] = torch.exp(-dist2 / (2.0 * sigma**2))
    return omega.to(device=device, dtype=dtype)


@ATTENTION.register("naclip")
def naclip_attention(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float, grid_hw: tuple[int, int], gaussian_std: float = 5.0
) -> Tensor:
    """NACLIP neighbourhood attention: ``A = softmax(s·kkᵀ + Ω)``, Ω added unscaled before the softmax.

    docs/protocols.md §2 (default ``attn_strategy='naclip'``), mirroring ``sinahmr/NACLIP:clip/model.py``:
    key–key affinities plus the Gaussian neighbourhood term of :func:`neighbourhood_bias`
    (σ = ``gaussian_std``, NACLIP's default 5.0). ``q`` is unused.

    Raises:
        ValueError: when the token count is not ``1 + h·w`` for ``grid_hw``.
    """
    h, w = grid_hw
    if k.shape[-2] != 1 + h * w:
        raise ValueError(f"naclip: {k.shape[-2]} tokens do not match 1 + {h}x{w} patches of grid {grid_hw}")
    omega = neighbourhood_bias((int(h), int(w)), float(gaussian_std), k.device, k.dtype)
    return F.scaled_dot_product_attention(k, k, v, attn_mask=omega, scale=scale)


@ATTENTION.register("cliptrase_mean")
def cliptrase_mean_attention(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float, grid_hw: tuple[int, int]
) -> Tensor:
    """Ablation of :func:`cliptrase_attention`: the *mean* of the three softmaxes (rows sum to 1)."""
    return cliptrase_attention(q, k, v, scale=scale, grid_hw=grid_hw) / 3
