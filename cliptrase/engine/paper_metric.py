"""The authors' metric (docs/method.md §5.2, ``configs/metric.py``) as pure functions.

One confusion matrix over the whole dataset; a pixel counts only if ``0 <= gt < n_class``.
pAcc = Σdiag / Σhist; mAcc = nanmean(diag / (row + 0.01)) over ALL classes (absent classes count 0);
IoU = diag / (row + col - diag + 0.01); mIoU = mean IoU over classes present in the GT; fwIoU = Σ freq·IoU
over classes with freq > 0. Values x100, rounded to 2 decimals. This is *not* mmseg's IoUMetric (which
averages over classes with non-zero union and has no +0.01); results record which one made a number.
"""

from __future__ import annotations

import numpy as np

PAPER_METRIC = "paper_scores"
"""Name recorded next to numbers produced by :func:`paper_scores`."""

_EPS = 0.01  # the authors' denominator offset (metric.py:16-18)


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, n_class: int) -> np.ndarray:
    """(n_class, n_class) int64 histogram, rows = GT, columns = prediction, over pixels with 0 <= gt < n.

    Predictions outside 0..n_class-1 on counted pixels are an error (they would corrupt the histogram).
    """
    gt = np.asarray(gt).astype(np.int64).ravel()
    pred = np.asarray(pred).astype(np.int64).ravel()
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred differ in size: {gt.shape} vs {pred.shape}")
    keep = (gt >= 0) & (gt < n_class)
    p = pred[keep]
    if p.size and (p.min() < 0 or p.max() >= n_class):
        raise ValueError(f"prediction labels must lie in 0..{n_class - 1}, found {p.min()}..{p.max()}")
    return np.bincount(n_class * gt[keep] + p, minlength=n_class * n_class).reshape(n_class, n_class)


def paper_scores(hist: np.ndarray) -> dict[str, float]:
    """pAcc, mAcc, fwIoU, mIoU (percent, 2 dp) and per-class IoU of a confusion matrix (authors' formulas)."""
    hist = hist.astype(np.float64)
    diag = np.diag(hist)
    rows, cols = hist.sum(axis=1), hist.sum(axis=0)
    total = hist.sum()
    iou = diag / (rows + cols - diag + _EPS)
    freq = rows / total if total else np.zeros_like(rows)
    present = rows > 0
    scores = {
        "pAcc": diag.sum() / total if total else float("nan"),
        "mAcc": np.nanmean(diag / (rows + _EPS)),
        "fwIoU": (freq[freq > 0] * iou[freq > 0]).sum(),
        "mIoU": iou[present].mean() if present.any() else float("nan"),
    }
    out = {k: round(float(v) * 100, 2) for k, v in scores.items()}
    out["per_class_IoU"] = [round(float(v) * 100, 2) if p else float("nan") for v, p in zip(iou, present)]
    return out
