"""Prompt scores that take few distinct values per pixel, kept as a table of rows and a map of row ids.

A CLIPtrase window voted with ``mean_logits`` gives every pixel of a region the region's mean logits, and a
``majority`` vote gives it a one-hot row: the window's (P, h, w) scores are K rows indexed by the (h, w)
region map (:class:`RegionScores`). Stitching overlapping windows keeps that form (:func:`stitch_regions`): a
pixel's average depends only on the rows of the windows covering it, so it is computed once per distinct
combination ("atom") with the same additions, in the same order, and the same division as the dense canvas
of :func:`~cliptrase.inference.sliding.sliding_window_list`. The scoring step then forms a chunk of prompts
at a time (:meth:`RegionScores.prompt_maps`): every value is bit-identical to the dense path, and neither the
window maps nor the image's (P, H, W) canvas is ever formed.

Dense windows (every other method, windows without a cluster) are added to the canvas in the windows'
channels-last layout (:func:`add_window`): forming prompt chunks from them instead reads every window with
a stride of P values per pixel, slower than the canvas and its chunk copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from torch import Tensor

try:  # numba is a dependency; without it the stitching runs in PyTorch
    from cliptrase.inference import stitch_kernel
except ImportError:  # pragma: no cover
    stitch_kernel = None


@dataclass(frozen=True)
class RegionScores:
    """(P, H, W) scores whose pixel ``(y, x)`` holds row ``index[y, x]`` of ``table``.

    Attributes:
        table: (A, P) rows.
        index: (H, W) integer row ids in ``0 .. A - 1`` (int32 is the fastest to gather with).
    """

    table: Tensor
    index: Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        """(P, H, W) of the dense scores."""
        return (self.table.shape[1], *self.index.shape)

    @property
    def device(self) -> torch.device:
        return self.table.device

    def crop(self, y1: int, y2: int, x1: int, x2: int) -> RegionScores:
        """The scores of rows ``y1:y2`` and columns ``x1:x2``."""
        return RegionScores(self.table, self.index[y1:y2, x1:x2])

    def dense(self) -> Tensor:
        """(P, H, W) scores, channels-last (each pixel's P values adjacent, as windows' logits are)."""
        return self.table[self.index].permute(2, 0, 1)

    def prompt_maps(self, start: int, stop: int) -> Tensor:
        """(stop - start, H, W) contiguous maps of prompts ``start .. stop - 1`` (prompt-major)."""
        rows = self.table[:, start:stop].t().contiguous()  # (k, A): each prompt's A values adjacent
        # index_select: ~3x faster than advanced indexing on CPU (~5x with int32 ids)
        return torch.index_select(rows, 1, self.index.reshape(-1)).view(-1, *self.index.shape)


def stitch_regions(
    parts: Sequence[tuple[tuple[int, int, int, int], RegionScores]],
    hw: tuple[int, int],
    *,
    compiled: bool | None = None,
) -> RegionScores:
    """Overlapping windows' :class:`RegionScores` summed and divided by the per-pixel window count.

    The values equal those of the dense canvas, bit for bit: that canvas starts at zero, adds each window's
    maps in ``parts`` order and divides by the count; here each atom (the pixels covered by the same windows
    with the same row ids) starts at zero, adds the same rows in the same order and divides by the same
    count.

    Args:
        parts: ((y1, y2, x1, x2) box, the window's scores) in the order the dense canvas adds them.
        hw: (H, W) of the image; every pixel must be covered.
        compiled: find the atoms and add their rows in the compiled passes of
            :mod:`~cliptrase.inference.stitch_kernel` (atoms numbered by first appearance) rather than
            PyTorch's (numbered by key); None: where they run (float32 rows on CPU, Numba installed).

    Returns:
        The image's scores: one row per atom.
    """
    runnable = stitch_kernel is not None and all(
        p.device.type == "cpu" and p.table.dtype == torch.float32 for _, p in parts
    )
    if compiled is None:
        compiled = runnable
    elif compiled and not runnable:
        raise ValueError("the compiled stitching runs on float32 CPU rows with Numba installed")
    if compiled:
        return _stitch_compiled(parts, hw)
    h, w = hw
    device = parts[0][1].device
    key = torch.zeros(h, w, dtype=torch.int64, device=device)
    bound = 1  # every key is < bound
    for (y1, y2, x1, x2), part in parts:
        base = part.table.shape[0] + 1  # digit 0: the window does not cover the pixel
        if bound * base >= 2**62:
            bound, key = _renumber(key)
        key.mul_(base)
        key[y1:y2, x1:x2] += part.index + 1
        bound *= base
    n_atoms, atom = _renumber(key)
    flat = atom.reshape(-1)
    first = torch.full((n_atoms,), h * w, dtype=torch.int64, device=device)
    first.scatter_reduce_(0, flat, torch.arange(h * w, device=device), reduce="amin")
    ys, xs = first // w, first % w  # one pixel of each atom
    sums = torch.zeros(n_atoms, parts[0][1].table.shape[1], dtype=parts[0][1].table.dtype, device=device)
    count = torch.zeros(n_atoms, device=device)
    for (y1, y2, x1, x2), part in parts:
        inside = ((ys >= y1) & (ys < y2) & (xs >= x1) & (xs < x2)).nonzero().squeeze(1)
        sums[inside] += part.table[part.index[ys[inside] - y1, xs[inside] - x1]]
        count[inside] += 1
    if not bool((count > 0).all()):
        raise AssertionError("sliding windows leave pixels uncovered")
    return RegionScores(sums / count[:, None], atom.to(torch.int32) if n_atoms < 2**31 else atom)


def _stitch_compiled(parts: Sequence[tuple[Box, RegionScores]], hw: tuple[int, int]) -> RegionScores:
    boxes = np.array([box for box, _ in parts], dtype=np.int64).reshape(-1, 4)
    ids = [p.index.reshape(-1).long() for _, p in parts]
    starts = np.cumsum([0] + [len(i) for i in ids[:-1]], dtype=np.int64)
    table_starts = np.cumsum([0] + [p.table.shape[0] for _, p in parts[:-1]], dtype=np.int64)
    index = torch.cat(ids).numpy()
    atom = np.empty(hw, dtype=np.int32)
    n_atoms, first = stitch_kernel.atom_map(hw[0], hw[1], boxes, index, starts, atom)
    tables = torch.cat([p.table for _, p in parts]).contiguous()
    rows = torch.zeros(n_atoms, tables.shape[1], dtype=torch.float32)
    uncovered = stitch_kernel.atom_rows(
        first, hw[1], boxes, index, starts, tables.numpy(), table_starts, rows.numpy()
    )
    if uncovered:
        raise AssertionError("sliding windows leave pixels uncovered")
    return RegionScores(rows, torch.from_numpy(atom))


def _renumber(key: Tensor) -> tuple[int, Tensor]:
    """(number of distinct keys, the keys renumbered 0 .. n - 1 in increasing order)."""
    distinct, inverse = torch.unique(key, return_inverse=True)
    return distinct.numel(), inverse


Box = tuple[int, int, int, int]
"""(y1, y2, x1, x2) of a window in its image."""


def add_window(canvas: Tensor | None, r: Tensor, box: Box, count: Tensor) -> Tensor:
    """``canvas[:, box] += r``, the canvas (zeros, the size of ``count``) created with ``r``'s layout at the
    first window (channels-last outputs into a prompt-major canvas would be slow strided adds)."""
    if canvas is None:
        h, w = count.shape[-2:]
        cl = r.stride(0) == 1 and r.shape[0] > 1
        canvas = r.new_zeros(h, w, r.shape[0]).permute(2, 0, 1) if cl else r.new_zeros(r.shape[0], h, w)
    y1, y2, x1, x2 = box
    canvas[:, y1:y2, x1:x2] += r
    return canvas


StitchedScores = Union[Tensor, RegionScores]  # noqa: UP007 (a runtime alias)
"""(P, H, W) scores of an image as sliding windows leave them: dense, or region rows."""


def prompt_maps(scores: StitchedScores, start: int, stop: int) -> Tensor:
    """(stop - start, H, W) contiguous (prompt-major) maps of prompts ``start .. stop - 1`` of ``scores``."""
    if isinstance(scores, RegionScores):
        return scores.prompt_maps(start, stop)
    return scores[start:stop].contiguous()


def dense_scores(scores: StitchedScores) -> Tensor:
    """``scores`` as a (P, H, W) tensor."""
    return scores if isinstance(scores, Tensor) else scores.dense()
