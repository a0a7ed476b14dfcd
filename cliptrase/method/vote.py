"""Cluster soft masks, region map and region vote (docs/method.md §4 Steps H and I), batched in torch."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor


def _symmetric_index(n: int, pad: int, device: torch.device) -> Tensor:
    """Indices of a length-``n`` axis padded by ``pad`` on both sides with edge-repeating reflection.

    scipy.ndimage's ``mode="reflect"`` extends ``a b c d`` as ``c b a | a b c d | d c b a`` (numpy's
    "symmetric"); torch's ``reflect`` padding does not repeat the edge, so the index map is built here.
    """
    idx = torch.arange(-pad, n + pad, device=device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - 1 - idx, idx)


MEDIAN_CHUNK_VALUES = 1 << 22
"""Window values :func:`median_filter2d` gathers at once (16 MiB in fp32): bounded, so the buffer is reused
from the heap rather than freshly mapped (and page-faulted) for every batch of maps."""


def median_filter2d(x: Tensor, size: int) -> Tensor:
    """2-D median filter equal to ``scipy.ndimage.median_filter(x, size=size)`` (mode ``reflect``).

    The median of an odd-sized window is one of its values, so this is exact, not approximate. Maps are
    filtered a chunk at a time (:data:`MEDIAN_CHUNK_VALUES`), and a map that is NaN everywhere (an empty
    cluster slot) is NaN in the output without being filtered (every window median of it is NaN).

    Args:
        x: (..., H, W) float tensor; each (H, W) map is filtered independently.
        size: odd window side.

    Returns:
        Tensor of the same shape.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"median filter size must be a positive odd integer, got {size}")
    if size == 1:
        return x.clone()
    pad = size // 2
    h, w = x.shape[-2:]
    rows = _symmetric_index(h, pad, x.device)
    cols = _symmetric_index(w, pad, x.device)
    maps = x.reshape(-1, h, w)
    out = torch.full_like(maps, torch.nan)
    todo = (~torch.isnan(maps).flatten(1).all(dim=1)).nonzero().squeeze(1)
    per_chunk = max(MEDIAN_CHUNK_VALUES // (h * w * size * size), 1)
    for ids in todo.split(per_chunk):
        padded = maps[ids][:, rows, :][:, :, cols]
        windows = padded.unfold(-2, size, 1).unfold(-2, size, 1)  # (n, H, W, size, size)
        out[ids] = windows.flatten(-2).median(dim=-1).values
    return out.reshape(x.shape)


def cluster_soft_masks(corr: Tensor, labels: Tensor, n_clusters: int) -> Tensor:
    """Mean row of ``corr`` over the members of each cluster (docs/method.md §4 Step H.1).

    Args:
        corr: (B, N, N) denoised correlation (the rows DBSCAN clustered).
        labels: (B, N) DBSCAN labels, -1 = noise.
        n_clusters: number of mask slots K (>= max label + 1 over the batch).

    Returns:
        (B, K, N) masks; slots without members are all-NaN.
    """
    onehot = F.one_hot((labels + 1).clamp_min(0), n_clusters + 1)[..., 1:].to(corr.dtype)  # (B, N, K)
    sums = onehot.transpose(1, 2) @ corr
    counts = onehot.sum(dim=1).unsqueeze(-1)
    return sums / counts


def region_map(
    masks: Tensor, grid_hw: tuple[int, int], out_hw: tuple[int, int], *, ratio: int = 4, median_size: int = 7
) -> Tensor:
    """Upsample each cluster mask, median-filter it, upsample to the output and take the argmax.

    docs/method.md §4 Step H.2-5: bilinear (``align_corners=False``) to (ratio*h, ratio*w), scipy-equivalent
    median filter of side ``median_size`` (the authors' 2*4-1 = 7), bilinear to the output size, argmax
    over clusters (ties to the first). Empty slots (NaN masks) never win.

    Args:
        masks: (B, K, N) soft masks from :func:`cluster_soft_masks`.
        grid_hw: patch grid (h, w), N = h * w.
        out_hw: output size.

    Returns:
        (B, H, W) int64 region ids in 0..K-1.
    """
    b, k, _ = masks.shape
    h, w = grid_hw
    x = masks.reshape(b, k, h, w)
    x = F.interpolate(x, size=(ratio * h, ratio * w), mode="bilinear", align_corners=False)
    x = median_filter2d(x, median_size)
    x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)
    return first_argmax(torch.nan_to_num(x, nan=-torch.inf))


def first_argmax(x: Tensor) -> Tensor:
    """``x.argmax(dim=1)`` for NaN-free (B, K, H, W) with few channels: a running maximum over K.

    Strict ``>`` keeps the first maximum, as ``argmax`` does (ties to the smallest index; all ``-inf``
    gives 0). Over NCHW the reduction strides across whole planes and is slow on CPU; K full-plane
    comparisons are not. Falls back to ``argmax`` beyond 64 channels.
    """
    if x.shape[1] > 64:
        return x.argmax(dim=1)
    best = x[:, 0]
    idx = torch.zeros(best.shape, dtype=torch.long, device=x.device)
    for k in range(1, x.shape[1]):
        v = x[:, k]
        better = v > best
        idx.masked_fill_(better, k)
        best = torch.where(better, v, best)
    return idx


def majority_vote(preds: Tensor, regions: Tensor, n_regions: int, n_labels: int) -> Tensor:
    """Give every region the most frequent label of ``preds`` inside it, ties to the smallest label id.

    docs/method.md §4 Step I (``torch.unique`` counts + argmax in the authors' code; argmax returns the first
    maximum, i.e. the smallest label). Computed for the whole batch with one bincount.

    Args:
        preds: (B, H, W) int64 labels in 0..n_labels-1.
        regions: (B, H, W) int64 region ids in 0..n_regions-1.

    Returns:
        (B, H, W) voted labels.
    """
    b = preds.shape[0]
    flat = (regions * n_labels + preds).reshape(b, -1)
    offsets = torch.arange(b, device=preds.device).unsqueeze(1) * (n_regions * n_labels)
    counts = torch.bincount((flat + offsets).reshape(-1), minlength=b * n_regions * n_labels)
    winner = counts.reshape(b, n_regions, n_labels).argmax(dim=-1)  # (B, K)
    return torch.gather(winner, 1, regions.reshape(b, -1)).reshape(preds.shape)


def region_means(logits: Tensor, regions: Tensor, n_regions: int) -> Tensor:
    """Mean logits of every region (the table :func:`mean_logits_vote` spreads over its pixels).

    Args:
        logits: (B, C, H, W), any memory format.
        regions: (B, H, W) region ids.

    Returns:
        (B, K, C) means; a region without pixels has zeros.
    """
    b, c, h, w = logits.shape
    onehot = F.one_hot(regions.reshape(b, -1), n_regions).to(logits.dtype)  # (B, HW, K)
    pixels = logits.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view when logits are channels-last
    sums = onehot.transpose(1, 2) @ pixels  # (B, K, C)
    return sums / onehot.sum(dim=1).clamp_min(1).unsqueeze(-1)


@functools.lru_cache(maxsize=32)
def interpolation_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(n_out, n_in) weights of bilinear interpolation (``align_corners=False``) along one axis.

    The library's own weights: ``F.interpolate`` applied to the n_in one-hot rows (the other axis kept at
    size 1, where the weights are 1), so ``Wy @ g @ Wxᵀ`` is ``F.interpolate(g, (H, W))`` up to float
    rounding. Cached per size pair (the result is shared: do not modify it).
    """
    eye = torch.eye(n_in, dtype=dtype, device=device).reshape(1, n_in, 1, n_in)
    weights = F.interpolate(eye, size=(1, n_out), mode="bilinear", align_corners=False)  # (1, n_in, 1, n_out)
    return weights[0, :, 0, :].t().contiguous()


def grid_region_means(grid: Tensor, regions: Tensor, n_regions: int) -> Tensor:
    """:func:`region_means` of the grid logits bilinear to the regions' size, without forming them.

    Bilinear upsampling is linear and separable, ``up = Wy · g · Wxᵀ`` (:func:`interpolation_matrix`), so
    region k's sum is ``Σ_ij M_k[i, j] g[:, i, j]`` with ``M_k = Wyᵀ R_k Wx`` (R_k the region's indicator):
    a (K, h·w) weight table per image times the (h·w, C) grid. Equal to
    ``region_means(F.interpolate(grid, regions' size, bilinear), regions, n_regions)`` up to float rounding
    (a different summation order).

    Args:
        grid: (B, C, h, w) logits on the patch grid, any memory format.
        regions: (B, H, W) region ids in 0..n_regions-1.

    Returns:
        (B, K, C) means; a region without pixels has zeros.
    """
    b, c, h, w = grid.shape
    big_h, big_w = regions.shape[-2:]
    wy = interpolation_matrix(h, big_h, grid.dtype, grid.device)  # (H, h)
    wx = interpolation_matrix(w, big_w, grid.dtype, grid.device)  # (W, w)
    onehot = torch.zeros(b, big_h, big_w, n_regions, dtype=grid.dtype, device=grid.device)
    onehot.scatter_(3, regions.unsqueeze(-1), 1.0)  # (B, H, W, K)
    rows = wy.t() @ onehot.reshape(b, big_h, big_w * n_regions)  # (B, h, W·K): Σ_y Wy[y, i] R_k[y, x]
    table = rows.reshape(b, h, big_w, n_regions).transpose(2, 3) @ wx  # (B, h, K, w)
    table = table.permute(0, 2, 1, 3).reshape(b, n_regions, h * w)  # (B, K, h·w): M_k flattened
    pixels = grid.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view when the grid is channels-last
    counts = onehot.sum(dim=(1, 2))  # (B, K) pixels per region, exact
    return (table @ pixels) / counts.clamp_min(1).unsqueeze(-1)


def spread_regions(means: Tensor, regions: Tensor) -> Tensor:
    """(B, C, H, W) channels-last: each pixel gets row ``regions[b, y, x]`` of ``means[b]`` (B, K, C)."""
    b, _, c = means.shape
    h, w = regions.shape[-2:]
    out = torch.gather(means, 1, regions.reshape(b, -1, 1).expand(b, -1, c))  # (B, HW, C)
    return out.reshape(b, h, w, c).permute(0, 3, 1, 2)


def mean_logits_vote(logits: Tensor, regions: Tensor, n_regions: int) -> Tensor:
    """Replace each pixel's logits by the mean logits of its region (the authors' d2 variant, §10).

    Args:
        logits: (B, C, H, W), any memory format.
        regions: (B, H, W) region ids.

    Returns:
        (B, C, H, W) region-averaged logits, channels-last (each pixel's C means are adjacent, which the
        channel argmax and the window stitching read fast).
    """
    return spread_regions(region_means(logits, regions, n_regions), regions)
