"""Bootstrap over images, computed exactly as each metric is computed (vectorised over resamples).

A resample draws N images with replacement. Both metric definitions are functions of the dataset's
confusion matrix summed over images, so a resample's numbers are the metric applied to the
multiplicity-weighted sum of the per-image matrices: ``weights (R, N) @ marginals (N, 3C)`` gives, for
all R resamples at once, the summed intersections, GT areas and prediction areas (mmseg's ``IoUMetric``
sums exactly these; the authors' ``paper_scores`` needs nothing else of the matrix, docs/method.md §5.2).
The metric is then applied per resample with the same formulas as :mod:`cliptrase.engine.metrics`
(mmseg: NaN for classes without union, means over the others; paper: +0.01 denominators, mIoU over the
classes present in the resample's GT). Sums are integers below 2**53, exact in float64, so identical
inputs give bit-identical resamples.

Intervals are percentile intervals (2.5 and 97.5 percentiles of the resampled values). Paired
comparisons resample the same images for both rows (same weights), so per-image correlation cancels.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
_CHUNK_ELEMENTS = 2**22  # resample-weight elements per matmul chunk (32 MB of float64)
_PAPER_EPS = 0.01  # the authors' denominator offset (paper_metric.py)
PER_CLASS = "per_class_IoU"
"""Key of the (..., C) per-class IoU in :func:`scores`."""


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval (NaN bounds when no resample gave a finite value)."""

    lo: float
    hi: float

    @property
    def width(self) -> float:
        """hi - lo."""
        return self.hi - self.lo

    def excludes_zero(self) -> bool:
        """True when 0 lies outside [lo, hi] (a difference the resamples consistently agree on)."""
        return bool(self.lo > 0 or self.hi < 0)


def resample_rng(seed: int, column: str, image_ids: Sequence[str]) -> np.random.Generator:
    """Generator of one dataset's resamples, fixed by seed, dataset name and image list.

    Every row evaluated on the same images of a dataset therefore gets the same resamples, which is what
    makes paired comparisons paired, and the intervals do not depend on which other rows are tabulated.
    """
    ids = zlib.crc32("\n".join(sorted(image_ids)).encode())
    return np.random.default_rng([int(seed), zlib.crc32(column.encode()), ids, len(image_ids)])


def resample_weights(rng: np.random.Generator, n_images: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Chunks of (r, N) float64 multiplicities (each row sums to N) of ``n_resamples`` resamples."""
    if n_images < 1 or n_resamples < 1:
        raise ValueError(f"need at least one image and one resample, got {n_images} and {n_resamples}")
    per_chunk = max(1, _CHUNK_ELEMENTS // n_images)
    for start in range(0, n_resamples, per_chunk):
        r = min(per_chunk, n_resamples - start)
        draws = rng.integers(0, n_images, size=(r, n_images))
        flat = draws + (np.arange(r) * n_images)[:, None]
        yield np.bincount(flat.ravel(), minlength=r * n_images).reshape(r, n_images).astype(np.float64)


def resampled_sums(
    marginals: Sequence[np.ndarray], rng: np.random.Generator, n_resamples: int
) -> list[np.ndarray]:
    """(3, R, C) resampled [intersection, GT, prediction] sums of each (3, N, C) marginal array.

    All arrays share one weight matrix per chunk and one matmul, so several rows cost about as much as
    one.
    """
    n = marginals[0].shape[1]
    if any(m.shape[1] != n for m in marginals):
        raise ValueError("rows resampled together must have the same images")
    widths = [3 * m.shape[2] for m in marginals]
    stacked = np.concatenate([m.transpose(1, 0, 2).reshape(n, -1) for m in marginals], axis=1)
    sums = np.concatenate([w @ stacked for w in resample_weights(rng, n, n_resamples)], axis=0)
    parts = np.split(sums, np.cumsum(widths)[:-1], axis=1)
    return [p.reshape(n_resamples, 3, -1).transpose(1, 0, 2) for p, m in zip(parts, marginals)]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0 (as torch's 0/0 in mmseg), without warnings."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (no warning) where every value is NaN."""
    finite = ~np.isnan(values)
    count = finite.sum(axis=-1)
    total = np.where(finite, values, 0.0).sum(axis=-1)
    return _ratio(total, count.astype(np.float64))


def mmseg_scores(inter: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """mmseg ``IoUMetric`` (nan_to_num None) of summed areas (..., C): aAcc, mIoU, mAcc and per-class IoU
    in percent, unrounded (mmseg rounds the summary to 2 dp)."""
    iou = _ratio(inter, gt + pred - inter)
    return {
        "aAcc": 100 * _ratio(inter.sum(-1), gt.sum(-1)),
        "mIoU": 100 * _nanmean(iou),
        "mAcc": 100 * _nanmean(_ratio(inter, gt)),
        PER_CLASS: 100 * iou,
    }


def paper_scores_vec(inter: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """The authors' ``paper_scores`` of summed areas (..., C), percent, unrounded: pAcc, mAcc, fwIoU, mIoU
    (over classes present in the GT) and per-class IoU (NaN for absent classes)."""
    total = gt.sum(-1)
    iou = inter / (gt + pred - inter + _PAPER_EPS)
    present = gt > 0
    freq = _ratio(gt, total[..., None])
    return {
        "pAcc": 100 * _ratio(inter.sum(-1), total),
        "mAcc": 100 * (inter / (gt + _PAPER_EPS)).mean(-1),
        "fwIoU": 100 * np.where(present, np.nan_to_num(freq) * iou, 0.0).sum(-1),
        "mIoU": 100 * _nanmean(np.where(present, iou, np.nan)),
        PER_CLASS: 100 * np.where(present, iou, np.nan),
    }


SCORERS = {"mmseg_iou": mmseg_scores, "paper_scores": paper_scores_vec}
"""Vectorised metric of each metric definition (keys as recorded in ``ResultRecord.metric_definition``)."""


def scores(sums: np.ndarray, metric_definition: str) -> dict[str, np.ndarray]:
    """The metric of ``metric_definition`` applied to (3, ..., C) [intersection, GT, prediction] sums."""
    try:
        scorer = SCORERS[metric_definition]
    except KeyError:
        raise ValueError(
            f"no bootstrap for metric definition {metric_definition!r}; known: {', '.join(SCORERS)}"
        ) from None
    return scorer(sums[0], sums[1], sums[2])


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> Interval | np.ndarray:
    """Percentile interval over axis 0 of (R,) or (R, C) resampled values, ignoring NaN resamples.

    Returns an :class:`Interval` for (R,) input, else a (2, C) array of bounds.
    """
    tail = 100 * (1 - confidence) / 2
    finite = ~np.isnan(values)
    bounds = np.full((2, *values.shape[1:]), np.nan)
    if finite.all():
        bounds = np.percentile(values, [tail, 100 - tail], axis=0)
    elif finite.any():
        columns = finite.any(axis=0) if values.ndim > 1 else True
        bounds[:, columns] = np.nanpercentile(values[:, columns], [tail, 100 - tail], axis=0)
    if values.ndim == 1:
        return Interval(float(bounds[0]), float(bounds[1]))
    return bounds


def share_better(a: np.ndarray, b: np.ndarray) -> float:
    """Share of resamples (with both values defined) where ``a`` is strictly above ``b``; NaN if none."""
    both = ~(np.isnan(a) | np.isnan(b))
    return float((a[both] > b[both]).mean()) if both.any() else float("nan")
