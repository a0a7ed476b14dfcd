"""A min/max network program run over tiles of maps, compiled by Numba: the CPU engine of the exact median
filter (:func:`cliptrase.method.vote.median_filter2d`, which builds the program from its median plan).

The PyTorch engine evaluates each comparator of the plan as one ``torch.minimum`` / ``torch.maximum`` over
whole planes of pixels: about 300 passes over tens of MB per image, bound by memory. Here the same
comparators run over a tile of a few rows of one map at a time, so every intermediate stays in the core's
cache, and a step is a plain vectorised loop.

A program is straight-line code over one float32 scratch buffer of ``scratch_size`` values, laid out so
that every operand is a contiguous run of ``rows * padded_width`` values at a fixed offset:

- offsets ``0 .. (tile_rows + 2 pad) * padded_width``: the tile's padded source rows (reflected rows and
  columns gathered by ``rows`` / ``cols``), row after row; the window row ``i`` of the tile's output rows is
  the run at ``i * padded_width``;
- after it, the slots of every network of the plan, each ``tile_rows * padded_width`` values plus a margin.

``steps[i] = (is_max, a, b, dest)``: ``scratch[dest + p] = max/min(scratch[a + p], scratch[b + p])`` for
``p < rows * padded_width``, NaN propagating as ``torch.maximum`` / ``torch.minimum`` do; ``dest`` never
overlaps ``a`` or ``b``. A block of columns shifted by ``s`` is the run at ``offset + s``: the values past a
block's valid columns are junk that no valid output reads. The median of output row ``t``, column ``x`` of
the tile is ``scratch[output + t * padded_width + x]``.

Compiled on first use and cached on disk by Numba (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def run_program(maps, ids, rows, cols, steps, output, scratch_size, padded_width, tile_rows, out):
    """Run the program on the maps ``ids`` of ``maps`` (M, H, W), writing their filtered values to ``out``
    (same shape as ``maps``; other maps untouched).

    Args:
        maps: (M, H, W) float32, C-contiguous.
        ids: indices of the maps to filter.
        rows, cols: source row / column of each padded row / column (H + 2 pad, W + 2 pad).
        steps: (n, 4) int64 program (module doc).
        output: offset of the median's run.
        scratch_size: values in the scratch buffer.
        padded_width: W + 2 pad.
        tile_rows: output rows per tile.
        out: (M, H, W) float32 result.
    """
    height, width = maps.shape[1], maps.shape[2]
    pad = (padded_width - width) // 2
    scratch = np.zeros(scratch_size, np.float32)  # zeros: the junk columns are never read as garbage bits
    n_steps = steps.shape[0]
    for m in ids:
        for y0 in range(0, height, tile_rows):
            n_rows = min(tile_rows, height - y0)
            for t in range(n_rows + 2 * pad):
                src = rows[y0 + t]
                for c in range(padded_width):
                    scratch[t * padded_width + c] = maps[m, src, cols[c]]
            n = n_rows * padded_width
            for i in range(n_steps):
                a = scratch[steps[i, 1] : steps[i, 1] + n]
                b = scratch[steps[i, 2] : steps[i, 2] + n]
                dest = scratch[steps[i, 3] : steps[i, 3] + n]
                if steps[i, 0]:
                    for p in range(n):
                        u, v = a[p], b[p]
                        dest[p] = u if (u >= v) | (u != u) else v
                else:
                    for p in range(n):
                        u, v = a[p], b[p]
                        dest[p] = u if (u <= v) | (u != u) else v
            for t in range(n_rows):
                for x in range(width):
                    out[m, y0 + t, x] = scratch[output + t * padded_width + x]
