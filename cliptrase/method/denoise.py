""" "Global patch" denoising of the correlation matrix (docs/method.md §4 Step F)."""

from __future__ import annotations

from torch import Tensor


def subtract_cls_row(corr: Tensor) -> Tensor:
    """``max(W[1:, 1:] - W[0, 1:], 0)``: remove each patch's correlation with [CLS] from every row.

    docs/method.md §4 Step F (``clip_self_correlation.py:146-152``): the [CLS] row is broadcast over the rows,
    so column j loses cos-corr(CLS, patch j); patches that correlate with [CLS] (the "global patches")
    are suppressed everywhere. Negative entries are set to 0.

    Args:
        corr: (B, 1 + N, 1 + N) correlation with [CLS] at index 0.

    Returns:
        (B, N, N) non-negative matrix whose rows DBSCAN clusters.
    """
    return (corr[:, 1:, 1:] - corr[:, :1, 1:]).clamp_min(0)


def drop_cls(corr: Tensor) -> Tensor:
    """The patch block ``W[1:, 1:]`` without denoising (ablation: denoise off)."""
    return corr[:, 1:, 1:]
