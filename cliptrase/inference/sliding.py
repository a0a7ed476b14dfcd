"""Sliding-window inference: the only tiling code (style.md §3.3).

Window placement follows mmseg's ``EncoderDecoder.slide_inference`` (which the SCLIP/NACLIP/ClearCLIP
harnesses use): ``n = max(H - crop + stride - 1, 0) // stride + 1`` windows per axis at ``i * stride``,
the last ones clamped to the border, so every pixel is covered. Outputs of overlapping windows are summed
and divided by the per-pixel window count. Windows of all images in the batch are stacked and processed
``max_batch`` at a time, so small images do not leave the device idle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis (last window clamped to the border)."""
    if crop <= 0 or stride <= 0:
        raise ValueError(f"crop and stride must be > 0, got crop={crop}, stride={stride}")
    if stride > crop:
        raise ValueError(f"stride {stride} > crop {crop} would leave pixels uncovered")
    n = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(n)]


def window_boxes(
    hw: tuple[int, int], crop: tuple[int, int], stride: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of every window over an image of size ``hw``."""
    h, w = hw
    return [
        (y, min(y + crop[0], h), x, min(x + crop[1], w))
        for y in window_starts(h, crop[0], stride[0])
        for x in window_starts(w, crop[1], stride[1])
    ]


def sliding_window(
    fn: Callable[[Tensor], Tensor],
    images: Tensor,
    *,
    crop: int | tuple[int, int],
    stride: int | tuple[int, int],
    max_batch: int = 16,
) -> Tensor:
    """Apply ``fn`` to every window of every image and average the overlapping outputs.

    Args:
        fn: maps a batch of equally sized windows (n, 3, h, w) to per-pixel outputs (n, C, h, w).
            Windows at the border of an image smaller than the crop have the image's size.
        images: (B, 3, H, W).
        crop: window size (h, w) or one int.
        stride: step (h, w) or one int.
        max_batch: windows per call of ``fn``.

    Returns:
        (B, C, H, W) averaged outputs.
    """
    crop_hw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    stride_hw = (stride, stride) if isinstance(stride, int) else tuple(stride)
    b, _, h, w = images.shape
    boxes = window_boxes((h, w), crop_hw, stride_hw)
    jobs = [(i, box) for i in range(b) for box in boxes]
    out: Tensor | None = None
    count = torch.zeros(1, 1, h, w, device=images.device)
    for y1, y2, x1, x2 in boxes:
        count[..., y1:y2, x1:x2] += 1
    assert bool((count > 0).all()), "sliding windows leave pixels uncovered"
    # Windows clamped to a small image all share one size, so any slice of jobs stacks.
    for start in range(0, len(jobs), max_batch):
        chunk = jobs[start : start + max_batch]
        crops = torch.stack([images[i, :, y1:y2, x1:x2] for i, (y1, y2, x1, x2) in chunk])
        res = fn(crops)
        if out is None:
            out = images.new_zeros(b, res.shape[1], h, w, dtype=res.dtype)
        for r, (i, (y1, y2, x1, x2)) in zip(res, chunk):
            out[i, :, y1:y2, x1:x2] += r
    return out / count
