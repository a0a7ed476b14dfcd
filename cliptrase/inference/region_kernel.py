"""Steps 2-3 of :mod:`cliptrase.inference.region_labels` as one compiled pass over the output pixels (Numba).

The vectorised PyTorch path (``region_labels._winners``) spends its time in gathers, masks and index lists
over the whole image, about 25 operations of a few ms each at 512 x 683; a loop that reads each pixel's four
corner rows once and settles it there does the same work in a fraction of the time (ADE-150's stitched
scores: about 25 -> 6 ms; PC-459's: 77 -> 19 ms). Per pixel:

- step 2, as ``_winners``: where the four corner rows share the first corner's best prompt (with
  ``prob_thd``; else its class) and that prompt leads each corner's rival by more than ``2 * margin``, the
  pixel takes it (its best score: that prompt's value in plain float32);
- step 3, any other pixel: every prompt's value in plain float32 (one branch-free pass, which the compiler
  vectorises, instead of ``_winners``' bounds per corner combination), the top, and the prompts within
  ``margin`` of it; where those are of different classes, their values as PyTorch's kernel rounds them
  (its fused multiply-adds by LLVM's ``llvm.fma.f32``: one rounding, exactly), and the label is the smallest
  class among the prompts reaching the top score, as ``scores_to_labels`` takes it.

The labels are ``_winners``' (both are the full upsampling's): the bounds there drop only prompts that stay
more than ``margin`` below the top, so the prompts near the top, the exact top and its class are the same.
The best scores are too, except where a dropped prompt falls within float32 rounding of exactly ``margin``
below the top (the pixel then reads the exact top instead of the plain one, a few ulps apart);
``tests/unit/test_region_labels.py`` compares both paths value for value.

Compiled on first use and cached on disk by Numba (``cache=True``: next to this file, or Numba's user-wide
cache directory where that is read-only).
"""

from __future__ import annotations

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from torch import Tensor

from cliptrase.inference.bilinear import AxisWeights


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
def _plain(a, b, c, d, u0, u1, w0, w1):
    """``bilinear.gathered_values``' "plain": ``(a*u0 + b*u1)*w0 + (c*u0 + d*u1)*w1``, float32 steps."""
    return (a * u0 + b * u1) * w0 + (c * u0 + d * u1) * w1


@njit(cache=True, nogil=True)
def _fused(a, b, c, d, u0, u1, w0, w1):
    """``bilinear.gathered_values``' "fma": ``fma(fma(a, u0, b*u1), w0, fma(c, u0, d*u1) * w1)``."""
    return _fma32(_fma32(a, u0, b * u1), w0, _fma32(c, u0, d * u1) * w1)


@njit(cache=True, nogil=True)
def _label_pixels(
    table, index, i0, i1, w0, w1, j0, j1, u0, u1,
    prompt_class, top_prompt, rival, same, margin, use_fma, with_best, labels, best,
):  # fmt: skip
    n_prompts = table.shape[1]
    two_margin = margin + margin
    neg_inf = np.float32(-np.inf)  # every score stays float32, as in the PyTorch path
    no_class = np.int64(1) << 62
    values = np.empty(n_prompts, np.float32)
    near = np.empty(n_prompts, np.int64)
    clear = np.empty(table.shape[0], np.bool_)  # a row's best prompt ahead of its rivals by the margin
    for r in range(table.shape[0]):
        clear[r] = table[r, top_prompt[r]] - rival[r] > two_margin
    for y in range(labels.shape[0]):
        ya, yb, wa, wb = i0[y], i1[y], w0[y], w1[y]
        for x in range(labels.shape[1]):
            xa, xb, ua, ub = j0[x], j1[x], u0[x], u1[x]
            r0, r1, r2, r3 = index[ya, xa], index[ya, xb], index[yb, xa], index[yb, xb]
            win = top_prompt[r0]
            if r0 == r1 and r0 == r2 and r0 == r3:  # one row: its own margin decides (most pixels)
                settled = clear[r0]
            else:
                settled = True
                for r in (r1, r2, r3, r0):
                    if same[r] != same[r0] or not table[r, win] - rival[r] > two_margin:
                        settled = False
                        break
            if settled:  # step 2
                labels[y, x] = prompt_class[win]
                if with_best:
                    a, b, c, d = table[r0, win], table[r1, win], table[r2, win], table[r3, win]
                    best[y, x] = _plain(a, b, c, d, ua, ub, wa, wb)
                continue
            # step 3: every prompt's value at the pixel, plain float32 (branch-free: vectorised); the top is
            # at least the first corner's winner's value, so only prompts within the margin of that are read
            for p in range(n_prompts):
                values[p] = _plain(table[r0, p], table[r1, p], table[r2, p], table[r3, p], ua, ub, wa, wb)
            guess = values[win] - margin
            n_near = 0
            top = values[win]
            for p in range(n_prompts):
                if values[p] >= guess:
                    near[n_near] = p
                    n_near += 1
                    if values[p] > top:
                        top = values[p]
            floor = top - margin
            low_class, high_class = no_class, np.int64(-1)
            for i in range(n_near):
                p = near[i]
                if values[p] >= floor:
                    low_class = min(low_class, prompt_class[p])
                    high_class = max(high_class, prompt_class[p])
            if low_class == high_class:
                labels[y, x] = low_class
                if with_best:
                    best[y, x] = top
                continue
            # prompts of different classes within the margin: their values as the kernel rounds them
            exact_top = neg_inf
            label = no_class
            for i in range(n_near):
                p = near[i]
                if values[p] >= floor:
                    v = (
                        _fused(table[r0, p], table[r1, p], table[r2, p], table[r3, p], ua, ub, wa, wb)
                        if use_fma
                        else values[p]
                    )
                    if v > exact_top:
                        exact_top, label = v, prompt_class[p]
                    elif v == exact_top:
                        label = min(label, prompt_class[p])
            labels[y, x] = label
            if with_best:
                best[y, x] = exact_top


def winners(
    table: Tensor,
    index: Tensor,
    rows: AxisWeights,
    cols: AxisWeights,
    prompt_class: Tensor,
    leaders: tuple[Tensor, Tensor, Tensor],
    margin: float,
    arithmetic: str,
    with_best: bool,
) -> tuple[Tensor, Tensor | None]:
    """(H, W) int64 labels and, with ``with_best``, (H, W) float32 best scores of region rows (CPU).

    Args:
        table: (A, P) float32 region rows; index: (h, w) int64 row map.
        rows, cols: the two axes' weights (:func:`~cliptrase.inference.bilinear.axis_weights`).
        prompt_class: (P,) int64 class of every prompt.
        leaders: (A,) each row's best prompt, its rival's value, and what the corners must share (the best
            prompt with ``prob_thd``, else its class).
        margin: the bounds' slack (a float32 value).
        arithmetic: the bilinear kernel's (``"fma"`` or ``"plain"``).
        with_best: also return the best score at every pixel.
    """
    height, width = rows.i0.numel(), cols.i0.numel()
    labels = torch.empty((height, width), dtype=torch.long)
    best = torch.empty((height, width) if with_best else (1, 1), dtype=torch.float32)
    top_prompt, rival, same = leaders
    arrays = (table, index, rows.i0, rows.i1, rows.w0, rows.w1, cols.i0, cols.i1, cols.w0, cols.w1)
    arrays += (prompt_class, top_prompt, rival, same)
    _label_pixels(
        *(t.contiguous().numpy() for t in arrays), np.float32(margin), arithmetic == "fma", with_best,
        labels.numpy(), best.numpy(),
    )  # fmt: skip
    return labels, best if with_best else None
