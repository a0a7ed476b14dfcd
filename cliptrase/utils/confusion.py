"""One image's confusion counts under mmseg's rule for which pixels count, in one compiled pass.

mmseg's ``IoUMetric.intersect_and_union`` drops the pixels whose GT is ``ignore_index`` and counts a pixel's
prediction in its class even where its GT lies outside ``0..C-1`` (and the reverse). With one extra row and
column (index ``side - 1 = C``) for labels outside the classes, every number of that metric is a sum of
cells of this (side, side) matrix (:mod:`cliptrase.engine.metrics`). NumPy needs about ten passes over the
image for it (casts, the ignore mask, two range clamps, the flat index, ``bincount``); this is one.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency; without it the NumPy passes below count the same cells
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None


def confusion_counts_numpy(gt: np.ndarray, pred: np.ndarray, side: int, ignore_index: int) -> np.ndarray:
    """:func:`confusion_counts` in NumPy (the fallback, and the tests' reference)."""
    gt, pred = gt.astype(np.int64).ravel(), pred.astype(np.int64).ravel()
    keep = gt != ignore_index
    gt, pred = gt[keep], pred[keep]
    outside = side - 1
    gt = np.where((gt >= 0) & (gt < outside), gt, outside)
    pred = np.where((pred >= 0) & (pred < outside), pred, outside)
    return np.bincount(side * gt + pred, minlength=side * side)


def _count(gt, pred, side, ignore_index, hist):  # compiled below: one pass, int64 counts
    outside = side - 1
    for i in range(gt.size):
        g = gt[i]
        if g == ignore_index:
            continue
        p = pred[i]
        if g < 0 or g >= outside:
            g = outside
        if p < 0 or p >= outside:
            p = outside
        hist[g * side + p] += 1


_count_compiled = njit(cache=True, nogil=True)(_count) if njit is not None else None


def confusion_counts(gt: np.ndarray, pred: np.ndarray, side: int, ignore_index: int) -> np.ndarray:
    """Flat (side * side,) int64 counts of ``gt * side + pred`` over the pixels whose GT is not
    ``ignore_index``, labels outside ``0..side-2`` counted at ``side - 1``.

    Args:
        gt: GT labels, any integer dtype and shape.
        pred: predicted labels, as many as ``gt``.
        side: C + 1 for C classes.
        ignore_index: the GT value that is not scored.
    """
    if gt.size != pred.size:
        raise ValueError(f"GT has {gt.size} pixels, the prediction {pred.size}")
    if _count_compiled is None:  # pragma: no cover
        return confusion_counts_numpy(gt, pred, side, ignore_index)
    hist = np.zeros(side * side, dtype=np.int64)
    _count_compiled(
        np.ascontiguousarray(gt).ravel(), np.ascontiguousarray(pred).ravel(), side, ignore_index, hist
    )
    return hist
