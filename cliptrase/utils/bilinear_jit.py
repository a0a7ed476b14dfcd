"""PyTorch's CPU bilinear arithmetic (:mod:`cliptrase.utils.bilinear`) as Numba functions, and the first
argmax over channels of an upsampled stack without forming it.

:func:`plain` and :func:`fused` give one output value from its four source values and weights exactly as the
kernel rounds it (``fused``: LLVM's ``llvm.fma.f32``, one rounding per multiply-add). They are the building
blocks of the compiled passes here and in :mod:`cliptrase.inference.region_kernel`.

:func:`upsampled_argmax` is ``first_argmax(F.interpolate(planes[None], size, "bilinear"))`` (CLIPtrase's
region map, docs/method.md §4 Step H.5) in one pass over the output pixels. A "cell" of four source pixels
serves every output pixel that reads it, and each value is a convex combination of its cell's corners to
within a few float32 roundings (far below ``margin``). So, once per cell, a channel whose largest corner
value stays more than ``2 * margin`` below the largest smallest corner value loses at every pixel of the
cell; where one channel is left it wins them all, elsewhere the values of the channels left are computed
with the kernel's arithmetic and the first largest taken, NaN counting as ``-inf``.

Compiled on first use and cached on disk by Numba (``cache=True``). Numba tracks a cached function's own
source file only: after editing this module, clear the caches of the modules whose kernels call these
functions (``__pycache__/*.nbi``, ``*.nbc`` next to them).
"""

from __future__ import annotations

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from torch import Tensor

from cliptrase.utils import bilinear


@intrinsic
def _fma32(typingctx, a, b, c):
    """float32 ``a * b + c`` rounded once (``llvm.fma.f32``: never split, contracted or approximated)."""

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(f32, [f32, f32, f32]), "llvm.fma.f32"
        )
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(cache=True, nogil=True)
def plain(a, b, c, d, u0, u1, w0, w1):
    """``bilinear.gathered_values``' "plain": ``(a*u0 + b*u1)*w0 + (c*u0 + d*u1)*w1``, float32 steps."""
    return (a * u0 + b * u1) * w0 + (c * u0 + d * u1) * w1


@njit(cache=True, nogil=True)
def fused(a, b, c, d, u0, u1, w0, w1):
    """``bilinear.gathered_values``' "fma": ``fma(fma(a, u0, b*u1), w0, fma(c, u0, d*u1) * w1)``."""
    return _fma32(_fma32(a, u0, b * u1), w0, _fma32(c, u0, d * u1) * w1)


@njit(cache=True, nogil=True)
def _cell_candidates(planes, ya, yb, xa, xb, two_margin, out):
    """Write to ``out`` the channels that can win at some pixel of the cell, in order, and return how many:
    those whose largest corner value reaches the largest smallest corner value minus ``two_margin`` (all of
    them where a corner value is not finite)."""
    n = planes.shape[0]
    lead_low = -np.inf
    for k in range(n):
        a, b, c, d = planes[k, ya, xa], planes[k, ya, xb], planes[k, yb, xa], planes[k, yb, xb]
        if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c) and np.isfinite(d)):
            for j in range(n):
                out[j] = j
            return n
        lead_low = max(lead_low, min(min(a, b), min(c, d)))
    count = 0
    for k in range(n):
        a, b, c, d = planes[k, ya, xa], planes[k, ya, xb], planes[k, yb, xa], planes[k, yb, xb]
        if max(max(a, b), max(c, d)) >= lead_low - two_margin:
            out[count] = k
            count += 1
    return count


@njit(cache=True, nogil=True)
def _argmax_pixels(planes, i0, i1, w0, w1, j0, j1, u0, u1, margin, use_fma, out):
    n, h, w = planes.shape
    two_margin = margin + margin
    # per first source pixel of a cell: its candidate channels (count -1: not yet seen)
    count = np.full((h, w), -1, np.int64)
    candidates = np.empty((h, w, n), np.int64)
    neg_inf = np.float32(-np.inf)
    for y in range(out.shape[0]):
        ya, yb, wa, wb = i0[y], i1[y], w0[y], w1[y]
        for x in range(out.shape[1]):
            xa, xb, ua, ub = j0[x], j1[x], u0[x], u1[x]
            listed = count[ya, xa]
            if listed < 0:
                listed = _cell_candidates(planes, ya, yb, xa, xb, two_margin, candidates[ya, xa])
                count[ya, xa] = listed
            if listed == 1:
                out[y, x] = candidates[ya, xa, 0]
                continue
            top, at = neg_inf, 0  # NaN and -inf never win; all of them: channel 0
            for i in range(listed):
                k = candidates[ya, xa, i]
                a, b, c, d = planes[k, ya, xa], planes[k, ya, xb], planes[k, yb, xa], planes[k, yb, xb]
                v = fused(a, b, c, d, ua, ub, wa, wb) if use_fma else plain(a, b, c, d, ua, ub, wa, wb)
                if v > top:
                    top, at = v, k
            out[y, x] = at


def upsampled_argmax(planes: Tensor, size: tuple[int, int]) -> Tensor | None:
    """``argmax`` over channels (first maximum, NaN as ``-inf``) of
    ``F.interpolate(planes[None], size, mode="bilinear", align_corners=False)[0]``, or None where the kernel's
    values are not reproduced (not a float32 CPU tensor, 3 channels, ``H + W <=``
    :data:`~cliptrase.utils.bilinear.SMALL_OUTPUT`, or an unknown arithmetic).

    Args:
        planes: (K, h, w) float32 maps.
        size: (H, W) output size.

    Returns:
        (H, W) int64 channel indices, or None.
    """
    height, width = int(size[0]), int(size[1])
    if (
        planes.device.type != "cpu"
        or planes.dtype != torch.float32
        or planes.shape[0] == 3  # PyTorch vectorises 3 channels across them (bilinear's module doc)
        or height + width <= bilinear.SMALL_OUTPUT
    ):
        return None
    arithmetic = bilinear.arithmetic()
    if arithmetic is None:
        return None
    rows = bilinear.axis_weights(planes.shape[1], height, arithmetic)
    cols = bilinear.axis_weights(planes.shape[2], width, arithmetic)
    finite = planes[torch.isfinite(planes)]
    margin = bilinear.MARGIN * float(finite.abs().max()) if finite.numel() else 0.0
    out = torch.empty((height, width), dtype=torch.long)
    _argmax_pixels(
        planes.contiguous().numpy(), *axis_arrays(rows, cols), np.float32(margin), arithmetic == "fma",
        out.numpy(),
    )  # fmt: skip
    return out


def axis_arrays(rows: bilinear.AxisWeights, cols: bilinear.AxisWeights) -> tuple[np.ndarray, ...]:
    """The two axes' weights in the order the kernels take them: ``i0, i1, w0, w1`` of the rows, then
    ``j0, j1, u0, u1`` of the columns."""
    axes = (rows.i0, rows.i1, rows.w0, rows.w1, cols.i0, cols.i1, cols.w0, cols.w1)
    return tuple(t.contiguous().numpy() for t in axes)


@njit(cache=True, nogil=True)
def region_weight_sums(regions, i0, i1, v0, v1, j0, j1, u0, u1, out, counts):
    """``out[b, k, i, j] += Σ Wy[y, i] Wx[x, j]`` over the pixels (y, x) of region k of image b: the weight
    of grid cell (i, j) in region k's sum of a bilinearly upsampled grid, accumulated in float64; and
    ``counts[b, k] +=`` the region's pixels.

    Each output row y reads grid rows ``i0[y]``, ``i1[y]`` with weights ``v0[y]``, ``v1[y]`` (one row twice at
    the border), each column x columns ``j0[x]``, ``j1[x]`` with ``u0[x]``, ``u1[x]``: the two axes'
    :func:`~cliptrase.utils.bilinear.axis_weights`, in :func:`axis_arrays`' order. A row's per-region column
    sums are formed once and spread to its two grid rows.

    Args:
        regions: (B, H, W) int64 region ids in ``0 .. K - 1``.
        out: (B, K, h, w) float64, zeros.
        counts: (B, K) int64, zeros.
    """
    n_regions, width = out.shape[1], out.shape[3]
    row = np.empty((n_regions, width), np.float64)
    for b in range(regions.shape[0]):
        for y in range(regions.shape[1]):
            row[:] = 0.0
            for x in range(regions.shape[2]):
                k = regions[b, y, x]
                row[k, j0[x]] += u0[x]
                row[k, j1[x]] += u1[x]
                counts[b, k] += 1
            ya, yb, wa, wb = i0[y], i1[y], np.float64(v0[y]), np.float64(v1[y])
            for k in range(n_regions):
                for j in range(width):
                    out[b, k, ya, j] += wa * row[k, j]
                    out[b, k, yb, j] += wb * row[k, j]
