"""Steps 2-4 of :mod:`cliptrase.inference.region_labels` as compiled passes over the output pixels (Numba).

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
  (its fused multiply-adds by LLVM's ``llvm.fma.f32``: one rounding, exactly;
  :mod:`cliptrase.utils.bilinear_jit`), and the label is the smallest
  class among the prompts reaching the top score, as ``scores_to_labels`` takes it.

The labels are ``_winners``' (both are the full upsampling's): the bounds there drop only prompts that stay
more than ``margin`` below the top, so the prompts near the top, the exact top and its class are the same.
The best scores are too, except where a dropped prompt falls within float32 rounding of exactly ``margin``
below the top (the pixel then reads the exact top instead of the plain one, a few ulps apart);
``tests/unit/test_region_labels.py`` compares both paths value for value.

Step 4 (``prob_thd``; ``region_labels._improbable``), :func:`thresholds`, a second pass: a pixel reading one
row takes that row's verdict; any other compares its best score with two bounds on the logsumexp of its
values v, Jensen's above (``sum_k w_k L_k``) and the corner rows' tangent planes below
(``s * softmax(s * s_k) . v + H_k``, where ``softmax(s * s_k) . v = sum_m w_m softmax(s * s_k) . s_m`` from
row-pair dot products computed once each), in float64. The pixels these leave within ``LOG_SLACK`` of the
threshold go to ``_improbable``'s exact evaluation, as the vectorised path's do: the same labels (VOC21's
saved scores: about 9 -> 4 ms).

Compiled on first use and cached on disk by Numba (``cache=True``: next to this file, or Numba's user-wide
cache directory where that is read-only). The per-value arithmetic is
:mod:`cliptrase.utils.bilinear_jit`'s (after editing that module, clear this one's Numba cache).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from cliptrase.utils.bilinear import AxisWeights
from cliptrase.utils.bilinear_jit import axis_arrays
from cliptrase.utils.bilinear_jit import fused as _fused
from cliptrase.utils.bilinear_jit import plain as _plain


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


PROBABLE, IMPROBABLE, ROW_NEAR, OPEN = 0, 1, 2, 3
"""The verdicts of :func:`thresholds` per output pixel."""


PAIR_CACHE = 1 << 21
"""Most row pairs whose dot products :func:`thresholds` keeps (a float64 (A, A) table: 16 MB)."""


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _threshold_pixels(
    table, softmax, row_norm, row_verdict, index, i0, i1, w0, w1, j0, j1, u0, u1,
    best, scale, log_thd, slack, keep, verdict,
):  # fmt: skip
    # reassociation lets the float64 dot products vectorise; they only feed bounds that keep ``slack``
    n_rows, n_prompts = table.shape
    pair = np.full((n_rows, n_rows) if keep else (1, 1), np.nan)  # sigma_a . s_b, filled where read
    entropy = np.empty(n_rows, np.float64)  # H(sigma_r) = L_r - s * sigma_r . s_r
    for r in range(n_rows):
        entropy[r] = np.float64(row_norm[r]) - scale * _dot(softmax, table, r, r)
    corner = np.empty(4, np.int64)
    share = np.empty(4, np.float64)
    probable_above, improbable_below = log_thd + slack, log_thd - slack
    for y in range(verdict.shape[0]):
        ya, yb, wa, wb = i0[y], i1[y], np.float64(w0[y]), np.float64(w1[y])
        for x in range(verdict.shape[1]):
            xa, xb, ua, ub = j0[x], j1[x], np.float64(u0[x]), np.float64(u1[x])
            r0, r1, r2, r3 = index[ya, xa], index[ya, xb], index[yb, xa], index[yb, xb]
            if r0 == r1 and r0 == r2 and r0 == r3:  # one row: its own verdict (ROW_NEAR: the pixel's best)
                verdict[y, x] = row_verdict[r0]
                continue
            corner[0], corner[1], corner[2], corner[3] = r0, r1, r2, r3
            share[0], share[1], share[2], share[3] = wa * ua, wa * ub, wb * ua, wb * ub
            log_best = scale * np.float64(best[y, x])
            upper = 0.0  # Jensen: logsumexp(s * v) <= sum_k w_k L_k
            for k in range(4):
                upper += share[k] * row_norm[corner[k]]
            if log_best - upper >= probable_above:
                verdict[y, x] = PROBABLE
                continue
            # tangent planes: logsumexp(s * v) >= s * sigma_k . v + H(sigma_k), v = sum_m w_m s_m
            lower = -np.inf
            if keep:  # sigma_k . v = sum_m w_m sigma_k . s_m, from the pair table
                for k in range(4):
                    a = corner[k]
                    plane = 0.0
                    for m in range(4):
                        b = corner[m]
                        if np.isnan(pair[a, b]):
                            pair[a, b] = _dot(softmax, table, a, b)
                        plane += share[m] * pair[a, b]
                    lower = max(lower, scale * plane + entropy[a])
            else:  # the pixel's values v, then sigma_k . v
                d0 = d1 = d2 = d3 = 0.0
                fa, fb, ga, gb = w0[y], w1[y], u0[x], u1[x]
                for p in range(n_prompts):
                    v = _plain(table[r0, p], table[r1, p], table[r2, p], table[r3, p], ga, gb, fa, fb)
                    d0 += np.float64(softmax[r0, p]) * np.float64(v)
                    d1 += np.float64(softmax[r1, p]) * np.float64(v)
                    d2 += np.float64(softmax[r2, p]) * np.float64(v)
                    d3 += np.float64(softmax[r3, p]) * np.float64(v)
                lower = max(
                    max(scale * d0 + entropy[r0], scale * d1 + entropy[r1]),
                    max(scale * d2 + entropy[r2], scale * d3 + entropy[r3]),
                )
            verdict[y, x] = IMPROBABLE if log_best - lower < improbable_below else OPEN


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _dot(softmax, table, a, b):
    """``softmax[a] . table[b]`` in float64."""
    total = 0.0
    for p in range(table.shape[1]):
        total += np.float64(softmax[a, p]) * np.float64(table[b, p])
    return total


def thresholds(
    table: Tensor,
    index: Tensor,
    rows: AxisWeights,
    cols: AxisWeights,
    row_norm: Tensor,
    row_verdict: Tensor,
    best: Tensor,
    scale: float,
    log_thd: float,
    slack: float,
    keep_pairs: bool | None = None,
) -> Tensor:
    """(H, W) int8 verdicts on ``exp(s * best - logsumexp(s * v)) < prob_thd`` at every output pixel, v the
    pixel's upsampled scores: :data:`PROBABLE`, :data:`IMPROBABLE`, :data:`ROW_NEAR` (a pixel reading one row
    whose ``row_verdict`` is that) or :data:`OPEN` (its bounds leave it within ``slack`` of ``log_thd``).

    Args:
        table: (A, P) float32 rows (every score finite); index: (h, w) int64 row map.
        rows, cols: the two axes' weights.
        row_norm: (A,) float32 ``logsumexp(s * table)`` per row.
        row_verdict: (A,) int8, the verdict of a pixel reading only that row.
        best: (H, W) float32 best score at every pixel.
        scale: the logit scale s; log_thd: ``log(prob_thd)``; slack: the bounds' margin, in log units.
        keep_pairs: the tangent planes from a table of row-pair dot products ``softmax(s * s_a) . s_b``,
            each computed once (default: up to :data:`PAIR_CACHE` pairs), or from every open pixel's own
            values (the same verdicts).
    """
    if keep_pairs is None:
        keep_pairs = table.shape[0] ** 2 <= PAIR_CACHE
    softmax = torch.softmax(scale * table, dim=1)
    verdict = torch.empty(best.shape, dtype=torch.int8)
    rows_first = (t.contiguous().numpy() for t in (table, softmax, row_norm, row_verdict, index))
    _threshold_pixels(
        *rows_first, *axis_arrays(rows, cols), best.contiguous().numpy(), scale, log_thd, slack, keep_pairs,
        verdict.numpy(),
    )  # fmt: skip
    return verdict


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
        rows, cols: the two axes' weights (:func:`~cliptrase.utils.bilinear.axis_weights`).
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
    per_prompt = (t.contiguous().numpy() for t in (prompt_class, top_prompt, rival, same))
    _label_pixels(
        table.contiguous().numpy(), index.contiguous().numpy(), *axis_arrays(rows, cols), *per_prompt,
        np.float32(margin), arithmetic == "fma", with_best, labels.numpy(), best.numpy(),
    )  # fmt: skip
    return labels, best if with_best else None
