"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, "Single-Stage Semantic Segmentation from Image
Labels", CVPR 2020), the post-processing NACLIP runs by default (docs/protocols.md §1b, §2: ``pamr_steps=10``,
``pamr_stride=(8, 16)``).

The masks are repeatedly replaced by a weighted average of themselves at neighbouring pixels, with weights
that are large where the image colour is similar, so class scores spread within image regions and stop at
colour edges. Written from the published algorithm:

1. Neighbourhood. For every dilation ``d`` the 8 pixels of the 3x3 window around a pixel at distance ``d``
   (the centre excluded), so ``P = 8·len(dilations)`` neighbours. Outside the image the border pixel is
   repeated (replicate padding).
2. Local scale. Per pixel and channel, σ = standard deviation (unbiased) of the image over the 3x3 windows
   of all dilations, centre included (``9·len(dilations)`` samples).
3. Affinity. ``κ_p = −|I(x) − I(x + o_p)| / (std_scale·σ + 1e-8)`` per channel, averaged over the channels;
   ``α_p = softmax_p(κ_p)`` over the P neighbours. ``std_scale = 0.1`` is the temperature of the
   authors' release (and of NACLIP, which uses it unchanged).
4. Propagation, ``steps`` times: ``m(x) ← Σ_p α_p(x) · m(x + o_p)``.

Since α is a convex combination, a probability map stays a probability map, and a flat image (σ = 0, all
κ = 0) gives plain uniform averaging over the neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

PAMR_STD_EPS = 1e-8
"""Added to the scaled local std so flat image regions give zero (not NaN) affinity logits."""


def _offsets(dilations: Sequence[int], *, centre: bool) -> list[tuple[int, int]]:
    """(dy, dx) of the 3x3 windows at each dilation, row-major, optionally with the centre."""
    return [
        (dy * d, dx * d)
        for d in dilations
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if centre or (dy, dx) != (0, 0)
    ]


def _shift(padded: Tensor, pad: int, offset: tuple[int, int], hw: tuple[int, int]) -> Tensor:
    """``x(p + offset)`` for every pixel p, read from a tensor replicate-padded by ``pad`` on each side."""
    (dy, dx), (h, w) = offset, hw
    return padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def pamr_affinity(
    image: Tensor, dilations: Sequence[int] = (8, 16), *, std_scale: float = 0.1
) -> tuple[Tensor, list[tuple[int, int]]]:
    """Neighbour weights α of PAMR (steps 1–3 of the module docstring).

    Args:
        image: (B, K, H, W) image (any normalisation; the weights are invariant to a per-channel scale).
        dilations: neighbourhood dilations in pixels.
        std_scale: temperature multiplying the local std.

    Returns:
        α of shape (B, P, H, W), summing to 1 over P, and the P (dy, dx) offsets it refers to.
    """
    h, w = image.shape[-2:]
    pad = max(dilations)
    padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")
    window = torch.stack([_shift(padded, pad, o, (h, w)) for o in _offsets(dilations, centre=True)], dim=2)
    sigma = window.std(dim=2)  # (B, K, H, W)
    offsets = _offsets(dilations, centre=False)
    denom = std_scale * sigma + PAMR_STD_EPS
    kappa = torch.stack(
        [(-(image - _shift(padded, pad, o, (h, w))).abs() / denom).mean(dim=1) for o in offsets], dim=1
    )
    return torch.softmax(kappa, dim=1), offsets


def pamr(
    image: Tensor,
    masks: Tensor,
    *,
    steps: int = 10,
    dilations: tuple[int, ...] = (8, 16),
    std_scale: float = 0.1,
) -> Tensor:
    """Refine per-class masks with pixel-adaptive, image-guided averaging (PAMR; see the module docstring).

    NACLIP applies it to the full-resolution logits with ``steps=10`` and ``dilations=(8, 16)``. The image
    and masks must already have the same spatial size (resize the image or the masks before calling).
    Computed in float32 (the affinity softmax is sensitive to half precision) and returned in the masks'
    dtype. Pure: the inputs are not modified.

    Args:
        image: (B, K, H, W) guidance image, usually the normalised RGB input (K = 3).
        masks: (B, C, H, W) per-class scores or probabilities.
        steps: propagation steps; 0 returns the masks unchanged.
        dilations: neighbourhood dilations in pixels (3x3 windows, centre excluded).
        std_scale: temperature multiplying the local std of the image.

    Returns:
        (B, C, H, W) refined masks.

    Raises:
        ValueError: on mismatched shapes, a negative step count or non-positive dilations.
    """
    if image.ndim != 4 or masks.ndim != 4:
        raise ValueError(
            f"pamr expects (B, K, H, W) image and (B, C, H, W) masks, got {tuple(image.shape)} "
            f"and {tuple(masks.shape)}"
        )
    if image.shape[0] != masks.shape[0] or image.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"pamr: image {tuple(image.shape)} and masks {tuple(masks.shape)} differ in batch "
            "or spatial size; resize one to the other first"
        )
    if steps < 0:
        raise ValueError(f"pamr: steps must be >= 0, got {steps}")
    if not dilations or any(int(d) != d or d < 1 for d in dilations):
        raise ValueError(f"pamr: dilations must be positive integers, got {dilations}")
    if steps == 0:
        return masks
    dilations = tuple(int(d) for d in dilations)
    alpha, offsets = pamr_affinity(image.float(), dilations, std_scale=std_scale)
    h, w = masks.shape[-2:]
    pad = max(dilations)
    out = masks.float()
    for _ in range(steps):
        padded = F.pad(out, (pad, pad, pad, pad), mode="replicate")
        out = sum(alpha[:, p : p + 1] * _shift(padded, pad, o, (h, w)) for p, o in enumerate(offsets))
    return out.to(masks.dtype)
