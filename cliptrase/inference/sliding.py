"""Sliding-window inference: the only tiling code (docs/style.md §3.3).

Window placement follows mmseg's ``EncoderDecoder.slide_inference`` (which the SCLIP/NACLIP/ClearCLIP
harnesses use): ``n = max(H - crop + stride - 1, 0) // stride + 1`` windows per axis at ``i * stride``,
the last ones clamped to the border, so every pixel is covered. Outputs of overlapping windows are summed
and divided by the per-pixel window count. Windows of all images in the batch are stacked and processed
``max_batch`` at a time, so small images do not leave the device idle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from cliptrase.inference.window_scores import Box, RegionScores, add_window, dense_scores, stitch_regions


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
    return torch.stack(sliding_window_list(fn, list(images), crop=crop, stride=stride, max_batch=max_batch))


def sliding_window_list(
    fn: Callable[[Tensor], Tensor | Sequence[Tensor | RegionScores]],
    images: list[Tensor],
    *,
    crop: int | tuple[int, int],
    stride: int | tuple[int, int],
    max_batch: int = 16,
    keep_regions: bool = False,
) -> list[Tensor | RegionScores]:
    """:func:`sliding_window` over images of different sizes, their windows encoded together.

    Windows of all images are grouped by shape (full crops, and the smaller windows of images below the
    crop size) and passed to ``fn`` up to ``max_batch`` at a time, so a batch of images fills the device
    even when each image has few windows.

    ``fn`` may return, instead of one (n, C, h, w) tensor, one output per window, each a (C, h, w) tensor
    or :class:`~cliptrase.inference.window_scores.RegionScores`.

    Args:
        images: list of (3, H_i, W_i).
        keep_regions: an image whose windows all gave ``RegionScores`` is returned as ``RegionScores``
            (:func:`~cliptrase.inference.window_scores.stitch_regions`: one row per distinct combination of
            rows, the canvas's values bit for bit), without forming its (C, H, W) canvas.

    Returns:
        list of (C, H_i, W_i) averaged outputs (or ``RegionScores``, see ``keep_regions``).
    """
    crop_hw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    stride_hw = (stride, stride) if isinstance(stride, int) else tuple(stride)
    jobs: dict[tuple[int, int], list[tuple[int, Box]]] = {}
    counts = []
    for i, image in enumerate(images):
        h, w = image.shape[-2:]
        count = torch.zeros(1, h, w, device=image.device)
        for box in window_boxes((h, w), crop_hw, stride_hw):
            y1, y2, x1, x2 = box
            count[:, y1:y2, x1:x2] += 1
            jobs.setdefault((y2 - y1, x2 - x1), []).append((i, box))
        assert bool((count > 0).all()), "sliding windows leave pixels uncovered"
        counts.append(count)
    outs: list[Tensor | None] = [None] * len(images)  # dense canvases
    pending: list[list[tuple[Box, RegionScores]]] = [[] for _ in images]  # RegionScores not yet added
    for group in jobs.values():
        for start in range(0, len(group), max_batch):
            chunk = group[start : start + max_batch]
            crops = torch.stack([images[i][:, y1:y2, x1:x2] for i, (y1, y2, x1, x2) in chunk])
            for r, (i, box) in zip(fn(crops), chunk):
                if keep_regions and isinstance(r, RegionScores) and outs[i] is None:
                    pending[i].append((box, r))
                    continue
                for earlier_box, earlier in pending[i]:  # a dense window: the canvas takes all, in order
                    outs[i] = add_window(outs[i], earlier.dense(), earlier_box, counts[i])
                pending[i] = []
                outs[i] = add_window(outs[i], dense_scores(r), box, counts[i])
    return [
        stitch_regions(parts, tuple(count.shape[-2:])) if parts else out.div_(count)
        for out, parts, count in zip(outs, pending, counts)
    ]


def fit_to_patches(
    windows: Tensor, patch: int, pad_to: int
) -> tuple[Tensor, tuple[int, int], tuple[int, int, int, int] | None]:
    """Make a batch of windows encodable by a ViT with square patches of side ``patch``, as the peers do.

    1. ``pad_to > 0``: zero-pad (in the normalised space) to multiples of ``pad_to``, the extra split as
       ``left = pad // 2``, ``right = pad - left`` (top/bottom alike); the logits over the padded window are
       cropped back with the returned box (ClearCLIP ``clearclip_segmentor.py:168-180, 246-258`` with the
       patch size 16, ProxyCLIP ``proxyclip_segmentor.py:218-231`` with 56).
    2. Floor the patch grid: the patch convolution (stride = kernel) ignores the last ``H mod patch`` rows and
       ``W mod patch`` columns, so they are cut here, and the logits are stretched over the whole (padded)
       window (SCLIP ``clip_segmentor.py:68-74``, NACLIP ``naclip.py:64-68``; ProxyCLIP's 56-multiples are
       not all multiples of 16, and its grid is floored the same way, ``proxyclip_segmentor.py:111``).

    Args:
        windows: (n, 3, H, W) normalised windows.
        patch: the ViT patch size.
        pad_to: 0 (no padding) or the padding multiple.

    Returns:
        The windows to encode; the size the logits are resized to (the padded window); and the (y1, y2,
        x1, x2) crop of those logits back to the window (None without padding).
    """
    h, w = windows.shape[-2:]
    box = None
    pad_h, pad_w = (-h % pad_to, -w % pad_to) if pad_to else (0, 0)
    if pad_h or pad_w:
        top, left = pad_h // 2, pad_w // 2
        windows = torch.nn.functional.pad(windows, (left, pad_w - left, top, pad_h - top))
        box = (top, top + h, left, left + w)
    out_hw = (windows.shape[-2], windows.shape[-1])
    return windows[..., : out_hw[0] // patch * patch, : out_hw[1] // patch * patch], out_hw, box
