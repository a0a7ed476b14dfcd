"""PyTorch's CPU bilinear upsampling (``align_corners=False``) evaluated at chosen pixels and channels, bit
for bit.

``F.interpolate(x, size, mode="bilinear", align_corners=False)`` on a contiguous float32 CPU tensor computes
every output value from two source rows and two source columns per axis (``aten/src/ATen/native/UpSample.h``
``area_pixel_compute_source_index``, ``compute_indices_weights_linear``)::

    src = scale * (dst + 0.5) - 0.5,  scale = in / out (float32),  clamped at 0
    i0 = floor(src),  i1 = i0 + 1 (i0 at the last index),  w1 = src - i0,  w0 = 1 - w1
    t(row) = x[row, j0] * u0 + x[row, j1] * u1            (columns)
    value  = t(i0) * w0 + t(i1) * w1                       (rows)

in float32, where the compiled kernel may fuse a multiply and the following add into one rounding (an FMA; the
x86-64 AVX2 build does, and so does its source-index arithmetic). :func:`arithmetic` finds out which of the
two the running PyTorch does, once per process, by comparing both with ``F.interpolate`` on a probe;
:func:`values` then gives the values of any (pixel, channel) pairs without computing the others. An FMA is
emulated exactly: the product in float64 is exact, the float64 sum's rounding error is recovered exactly
(Knuth's two-sum), and the one case where two roundings differ from one (the float64 sum exactly halfway
between two float32 values) is rounded by that error's sign.

Only the kernel's per-element path is reproduced: PyTorch vectorises across channels instead for outputs with
``H + W <= 128`` (:data:`SMALL_OUTPUT`) and, on one thread, for 3-channel inputs; callers keep those on
``F.interpolate``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Arithmetic = Literal["fma", "plain"]

MARGIN = 2.0**-16
"""Slack of a bound on upsampled values, relative to the largest |value|: every value is a convex combination
of its four source values to within the kernel's three multiply-adds' float32 rounding (< 2**-22 relative), so
a bound with this slack never excludes a value that can reach a pixel's top."""

SMALL_OUTPUT = 128
"""PyTorch's CPU bilinear kernel vectorises across channels when the output's ``H + W`` is at most this, so
there a channel's last bits depend on the other channels of the call: such outputs are upsampled in one call
(they are small: at most 4,096 pixels per prompt), and :func:`values` does not reproduce them."""


@dataclass(frozen=True)
class AxisWeights:
    """Source indices and weights of one axis (``n_out`` entries each)."""

    i0: Tensor  # int64
    i1: Tensor  # int64
    w0: Tensor  # float32
    w1: Tensor  # float32


@functools.lru_cache(maxsize=64)
def axis_weights(n_in: int, n_out: int, arithmetic: Arithmetic = "fma") -> AxisWeights:
    """Indices and weights along one axis, as the kernel computes them (on the CPU)."""
    scale = torch.tensor(n_in, dtype=torch.float32) / n_out
    centre = torch.arange(n_out, dtype=torch.float32) + 0.5  # exact below 2**23
    # "fma": one rounding of scale * centre - 0.5 (its float64 value is exact: at most 48 bits)
    src = (scale.double() * centre.double() - 0.5).float() if arithmetic == "fma" else scale * centre - 0.5
    src = src.clamp_min(0)
    i0 = src.long()
    w1 = (src - i0.float()).clamp(0, 1)
    return AxisWeights(i0, i0 + (i0 < n_in - 1).long(), 1 - w1, w1)


def _fma(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """``a * b + c`` of float32 tensors rounded once to float32 (round to nearest, ties to even)."""
    product, addend = a.double() * b.double(), c.double()  # the product is exact in float64
    total = product + addend
    back = total - product  # two-sum: total + error == product + addend exactly
    error = (product - (total - back)) + (addend - back)
    nearest = total.float()
    # a float64 sum exactly halfway between two float32 values was rounded to even; the exact sum lies on the
    # side of the error
    toward = torch.where(total > nearest.double(), torch.inf, -torch.inf).float()
    other = torch.nextafter(nearest, toward)
    halfway = (total == (nearest.double() + other.double()) / 2) & (error != 0)
    if not bool(halfway.any()):
        return nearest
    up = torch.where(nearest > other, nearest, other)
    down = torch.where(nearest > other, other, nearest)
    return torch.where(halfway, torch.where(error > 0, up, down), nearest)


def _combine(x0: Tensor, w0: Tensor, x1: Tensor, w1: Tensor, arithmetic: Arithmetic) -> Tensor:
    """``x0 * w0 + x1 * w1`` as the kernel rounds it."""
    if arithmetic == "fma":
        return _fma(x0, w0, x1 * w1)
    return x0 * w0 + x1 * w1


def values(
    source: Tensor,
    rows: AxisWeights,
    cols: AxisWeights,
    y: Tensor,
    x: Tensor,
    arithmetic: Arithmetic = "fma",
) -> Tensor:
    """Upsampled values of ``source`` (..., h, w) at output pixels ``(y, x)`` (equal-shaped index tensors).

    Args:
        source: float32 input; its leading dimensions broadcast against the shape of ``y``.
        rows, cols: :func:`axis_weights` of the two axes.
        y, x: output rows and columns.
        arithmetic: :func:`arithmetic`.

    Returns:
        ``source[..., y, x]``-shaped values, equal bit for bit to ``F.interpolate``'s where ``arithmetic`` is
        the running kernel's.
    """
    i0, i1, w0, w1 = rows.i0[y], rows.i1[y], rows.w0[y], rows.w1[y]
    j0, j1, u0, u1 = cols.i0[x], cols.i1[x], cols.w0[x], cols.w1[x]
    corners = (source[..., i, j] for i in (i0, i1) for j in (j0, j1))
    return gathered_values(*corners, u0, u1, w0, w1, arithmetic)


def gathered_values(
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
    u0: Tensor,
    u1: Tensor,
    w0: Tensor,
    w1: Tensor,
    arithmetic: Arithmetic,
) -> Tensor:
    """The kernel's value from already gathered sources: ``a, b`` the two columns of the first source row,
    ``c, d`` of the second; ``u`` the column weights, ``w`` the row weights (all broadcastable)."""
    return _combine(
        _combine(a, u0, b, u1, arithmetic), w0, _combine(c, u0, d, u1, arithmetic), w1, arithmetic
    )


PROBE_SHAPES = ((5, 37, 53, 71, 97), (4, 29, 23, 64, 200), (6, 50, 61, 47, 90))
"""(channels, h, w, H, W) of the probes: up- and downsampling, non-integer ratios, outputs with ``H + W >
128``."""


@functools.lru_cache(maxsize=1)
def arithmetic() -> Arithmetic | None:
    """The arithmetic of this PyTorch's CPU bilinear kernel (``"fma"`` or ``"plain"``), or None when neither
    reproduces it bit for bit on the probes (callers then use ``F.interpolate``)."""
    gen = torch.Generator().manual_seed(0)
    probes = []
    for c, h, w, out_h, out_w in PROBE_SHAPES:
        x = torch.randn(c, h, w, generator=gen)
        probes.append(
            (x, F.interpolate(x[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0])
        )
    for candidate in ("fma", "plain"):
        ok = True
        for x, ref in probes:
            rows = axis_weights(x.shape[1], ref.shape[1], candidate)
            cols = axis_weights(x.shape[2], ref.shape[2], candidate)
            y, xx = torch.meshgrid(torch.arange(ref.shape[1]), torch.arange(ref.shape[2]), indexing="ij")
            if not torch.equal(values(x, rows, cols, y, xx, candidate), ref):
                ok = False
                break
        if ok:
            return candidate
    return None
