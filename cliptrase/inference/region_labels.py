"""Full-resolution labels of region scores without upsampling every prompt, bit for bit (CPU).

The standard protocol upsamples the stitched (P, h, w) prompt scores bilinearly to the GT size and takes, per
pixel, the class of the best prompt (:func:`~cliptrase.inference.scoring.scores_to_labels`). CLIPtrase's voted
windows leave scores as few distinct rows (:class:`~cliptrase.inference.window_scores.RegionScores`: A rows of
P values and an (h, w) row map), which this module labels without forming any prompt map:

1. Every output pixel reads two source rows and two source columns, a "cell" of four source pixels, so four
   rows of the table (the corners). Its value of prompt p is a convex combination of the corners' values,
   computed in float32: within a few rounding errors (far below ``margin``) of the exact combination.
2. Per row: its best prompt and class, and the best value among the prompts of other classes. A cell whose
   four corners have the same best class, where the first corner's best prompt p* beats every prompt of
   another class at each corner by more than ``2 * margin``, has that class at all its pixels (p*'s value is
   a convex combination of its corner values, every other class's value at most the same combination of the
   corners' runner-up values). A few operations per cell; they settle most cells.
3. The other cells: per distinct corner combination, the candidate prompts (those whose largest corner value
   reaches the best smallest corner value and that neither of two strong prompts beats at all four corners:
   :func:`_candidates`); at their pixels the candidates' values in float32, and, where candidates of different
   classes come within ``margin`` of the top, their values with the kernel's own arithmetic
   (:mod:`cliptrase.utils.bilinear`), equal bit for bit to ``F.interpolate``'s; the label is then taken as
   ``scores_to_labels`` takes it (the smallest class among the prompts reaching the top score).
4. ``prob_thd`` needs the winner's probability ``exp(s * best - logsumexp(s * scores))``. Step 2 then requires
   the same best prompt at the four corners and the runner-up over all other prompts (same class included), so
   that p* is the best prompt and its value the best score; the logsumexp is the row's where the four corners
   share one row, else computed from every prompt's value at the pixel. Both are float32 values within a few
   rounding errors of the full upsampling's, as the chunked path's logsumexp is
   (:func:`~cliptrase.inference.scoring.upsampled_labels`): labels may differ from one ``torch.logsumexp`` of
   the full upsampling only where the probability lies within a few ulps of ``prob_thd``.
5. ``area_thd`` (SCLIP's rule) drops the prompts of small classes (``-inf``) and labels again; the logsumexp
   stays that of all prompts, as in the chunked path.

Cost: a few operations per cell and per output pixel, plus the vocabulary only at the cells step 2 leaves
open.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from cliptrase.utils import bilinear
from cliptrase.utils.bilinear import MARGIN

try:  # numba is a dependency; without it (a stripped install) steps 2-4 run in PyTorch
    from cliptrase.inference import region_kernel
except ImportError:  # pragma: no cover
    region_kernel = None
from cliptrase.inference.scoring import small_classes, upsampled_labels
from cliptrase.inference.window_scores import RegionScores, StitchedScores

ENGINES = ("auto", "numba", "torch")
"""Implementations of steps 2-4 (:func:`region_labels`' ``engine``)."""

PAIR_CHUNK = 1 << 18
"""(pixel, prompt) values evaluated at once."""


def stitched_labels(
    scores: StitchedScores,
    size: tuple[int, int],
    prompt_to_class: Tensor,
    n_classes: int,
    logit_scale: float,
    prob_thd: float = 0.0,
    area_thd: float | None = None,
) -> Tensor:
    """Labels at ``size`` of stitched window scores, as
    :func:`~cliptrase.inference.scoring.upsampled_labels` gives them: region rows by :func:`region_labels`
    where it applies, everything else by ``upsampled_labels`` (a chunk of prompts at a time)."""
    args = (prompt_to_class, n_classes, logit_scale, prob_thd, area_thd)
    labels = region_labels(scores, size, *args) if isinstance(scores, RegionScores) else None
    return upsampled_labels(scores, size, *args) if labels is None else labels


def region_labels(
    scores: RegionScores,
    size: tuple[int, int],
    prompt_to_class: Tensor,
    n_classes: int,
    logit_scale: float,
    prob_thd: float = 0.0,
    area_thd: float | None = None,
    *,
    engine: str = "auto",
) -> Tensor | None:
    """Labels of ``F.interpolate(scores.dense()[None], size, "bilinear")`` as
    :func:`~cliptrase.inference.scoring.scores_to_labels` gives them, or None where this path does not apply
    (not on the CPU, not float32, a non-finite score, an output PyTorch vectorises differently, or a PyTorch
    whose bilinear kernel :func:`~cliptrase.utils.bilinear.arithmetic` does not reproduce).

    Args:
        scores: (P, h, w) scores as region rows.
        size: (H, W) output size.
        prompt_to_class, n_classes, logit_scale, prob_thd, area_thd: as ``scores_to_labels``.
        engine: steps 2-4 compiled (``"numba"``: :mod:`~cliptrase.inference.region_kernel`), vectorised in
            PyTorch (``"torch"``), or the compiled one where Numba is installed (``"auto"``); the same labels.

    Returns:
        (H, W) int64 labels, or None.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    compiled = engine == "numba" or (engine == "auto" and region_kernel is not None)
    if compiled and region_kernel is None:
        raise RuntimeError("engine='numba' needs the numba package (pip install numba)")
    table = scores.table
    height, width = int(size[0]), int(size[1])
    if (
        table.device.type != "cpu"
        or table.dtype != torch.float32
        or table.shape[1] in (1, 3)  # 3: PyTorch's channel-vectorised path (see bilinear)
        or height + width <= bilinear.SMALL_OUTPUT
        or not bool(torch.isfinite(table).all())
    ):
        return None
    arithmetic = bilinear.arithmetic()
    if arithmetic is None:
        return None
    grid = _Grid(scores.index.long().contiguous(), height, width, arithmetic)
    prompt_class = prompt_to_class.cpu().long()
    margin = MARGIN * float(table.abs().max())
    with_best = bool(prob_thd)
    winners = _compiled_winners if compiled else _winners

    best, labels = winners(table, grid, prompt_class, margin, arithmetic, with_best)
    if area_thd is not None:
        small = small_classes(labels, n_classes, area_thd)
        if bool(small.any()):
            kept = table.masked_fill(small[prompt_class][None, :], -torch.inf)
            best, labels = winners(kept, grid, prompt_class, margin, arithmetic, with_best)
    if prob_thd:
        labels.masked_fill_(_improbable(table, grid, logit_scale, best, prob_thd, compiled), 0)
    return labels


class _Grid:
    """The cells of an (h, w) row map upsampled to (H, W); what a path does not read is not formed.

    Attributes:
        rows, cols: the axes' :class:`~cliptrase.utils.bilinear.AxisWeights`.
        corners: (4, n_y, n_x) row ids of the cells some output pixel reads (first source row: its two
            columns, then the second source row).
        mixed: (n_y, n_x) bool, the cells whose corners are not all one row.
        y_cell, x_cell: (H,), (W,) the cell row / column of every output row / column.
        index: the (h, w) row map.
    """

    def __init__(self, index: Tensor, height: int, width: int, arithmetic: str) -> None:
        self.index = index
        self.rows = bilinear.axis_weights(index.shape[0], height, arithmetic)
        self.cols = bilinear.axis_weights(index.shape[1], width, arithmetic)

    @functools.cached_property
    def _cells(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        used_y, y_cell = torch.unique(self.rows.i0, return_inverse=True)
        used_x, x_cell = torch.unique(self.cols.i0, return_inverse=True)
        return used_y, y_cell, used_x, x_cell

    @property
    def y_cell(self) -> Tensor:
        return self._cells[1]

    @property
    def x_cell(self) -> Tensor:
        return self._cells[3]

    @functools.cached_property
    def corners(self) -> Tensor:
        used_y, _, used_x, _ = self._cells
        index = self.index
        next_y = (used_y + 1).clamp_max(index.shape[0] - 1)  # i1 of every output row starting at used_y
        next_x = (used_x + 1).clamp_max(index.shape[1] - 1)
        top, bottom = index[used_y], index[next_y]
        return torch.stack([top[:, used_x], top[:, next_x], bottom[:, used_x], bottom[:, next_x]])

    @functools.cached_property
    def mixed(self) -> Tensor:
        c = self.corners
        return (c[1] != c[0]) | (c[2] != c[0]) | (c[3] != c[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        return (self.rows.i0.numel(), self.cols.i0.numel())

    def per_pixel(self, per_cell: Tensor) -> Tensor:
        """(H, W) values of an (n_y, n_x) per-cell tensor (columns first: the row gather then copies whole
        rows)."""
        return per_cell.index_select(1, self.x_cell).index_select(0, self.y_cell)

    def pixel_cells(self, pixels: Tensor) -> Tensor:
        """Flat cell index (into (n_y, n_x)) of flat output ``pixels``."""
        y, x = pixels.div(self.shape[1], rounding_mode="floor"), pixels.remainder(self.shape[1])
        return self.y_cell.take(y).mul_(self.corners.shape[2]).add_(self.x_cell.take(x))

    def sources(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """(4, n) source row ids and (4, n) weights (column u0, u1, row w0, w1) of flat output ``pixels``."""
        y, x = pixels.div(self.shape[1], rounding_mode="floor"), pixels.remainder(self.shape[1])
        r, c = self.rows, self.cols
        i0, i1, j0, j1 = r.i0.take(y), r.i1.take(y), c.i0.take(x), c.i1.take(x)
        rows = torch.stack([self.source_rows(i, j) for i in (i0, i1) for j in (j0, j1)])
        weights = torch.stack([c.w0.take(x), c.w1.take(x), r.w0.take(y), r.w1.take(y)])
        return rows, weights

    def pair_values(
        self, table: Tensor, prompts: Tensor, sources: tuple[Tensor, Tensor], arithmetic: str
    ) -> Tensor:
        """Upsampled values of ``prompts`` (n,) at the pixels whose :meth:`sources` are given (4, n each):
        the kernel's arithmetic (``"fma"``/``"plain"``, bit for bit) or ``"approx"`` (plain float32, within a
        few roundings)."""
        rows, weights = sources
        corners = _flat(table, prompts)(rows)  # (4, n)
        return bilinear.gathered_values(*corners, *weights, "plain" if arithmetic == "approx" else arithmetic)

    def pixel_rows(self, table: Tensor, pixels: Tensor) -> Tensor:
        """(n, P) upsampled values of every prompt at flat output ``pixels`` (n,), plain float32."""
        rows, weights = self.sources(pixels)
        corners = (table.index_select(0, r) for r in rows)
        return bilinear.gathered_values(*corners, *weights[:, :, None], "plain")

    def combinations(self, cells: Tensor, n_rows: int) -> tuple[Tensor, Tensor]:
        """The distinct corner combinations of the ``cells`` (n_y, n_x) bool, row ids below ``n_rows``:
        ((T, 4) row ids, (n_y, n_x) the combination of each of those cells, -1 elsewhere)."""
        at = cells.nonzero()
        quads, combination = _distinct_rows(self.corners[:, at[:, 0], at[:, 1]].t(), n_rows)
        per_cell = torch.full(cells.shape, -1, dtype=torch.long)
        per_cell[at[:, 0], at[:, 1]] = combination
        return quads, per_cell

    def source_rows(self, i: Tensor, j: Tensor) -> Tensor:
        """Row ids of the source pixels ``(i, j)``."""
        return self.index.view(-1).take(i * self.index.shape[1] + j)


class _Best:
    """The winning score at every output pixel (``prob_thd``), formed where read: step 3 sets it at the pixels
    it decides; elsewhere it is the winner's upsampled value in plain float32 (:meth:`_Grid.pair_values`'s
    ``"approx"``), computed on the first read. The compiled pass gives it at every pixel (``values``, (H, W);
    no ``winner`` then)."""

    def __init__(
        self, table: Tensor, grid: _Grid, winner: Tensor | None, values: Tensor | None = None
    ) -> None:
        self.table, self.grid, self.winner = table, grid, winner  # winner: (n_y, n_x) prompt of each cell
        n = grid.shape[0] * grid.shape[1]
        self.values = torch.empty(n) if values is None else values.reshape(n)
        self.known = torch.full((n,), values is not None, dtype=torch.bool)

    def set(self, pixels: Tensor, values: Tensor) -> None:
        self.values[pixels] = values
        self.known[pixels] = True

    def at(self, pixels: Tensor) -> Tensor:
        """(n,) scores at flat output ``pixels``."""
        missing = pixels[~self.known.take(pixels)]
        for ids in missing.split(PAIR_CHUNK) if missing.numel() else ():
            prompts = self.winner.view(-1).take(self.grid.pixel_cells(ids))
            self.set(ids, self.grid.pair_values(self.table, prompts, self.grid.sources(ids), "approx"))
        return self.values.take(pixels)


def _compiled_winners(
    table: Tensor, grid: _Grid, prompt_class: Tensor, margin: float, arithmetic: str, with_best: bool
) -> tuple[_Best | None, Tensor]:
    """:func:`_winners` by :func:`~cliptrase.inference.region_kernel.winners`: the same rows' best prompts
    and rivals, then one compiled pass over the output pixels."""
    top_prompt, top_class, rival = _row_leaders(table, prompt_class, with_best)
    leaders = (top_prompt, rival, top_prompt if with_best else top_class)
    labels, values = region_kernel.winners(
        table, grid.index, grid.rows, grid.cols, prompt_class, leaders, margin, arithmetic, with_best
    )
    return (None if values is None else _Best(table, grid, None, values)), labels


def _row_leaders(table: Tensor, prompt_class: Tensor, with_best: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per row: its best prompt, that prompt's class, and the best value of its rivals (with ``prob_thd``
    every other prompt, so that the best prompt's value is the best score; else the prompts of other
    classes)."""
    top_prompt = table.argmax(dim=1)
    top_class = prompt_class.take(top_prompt)
    if with_best:
        rival = table.scatter(1, top_prompt[:, None], -torch.inf).amax(dim=1)
    else:
        rival = table.masked_fill(prompt_class[None, :] == top_class[:, None], -torch.inf).amax(dim=1)
    return top_prompt, top_class, rival


def _winners(
    table: Tensor, grid: _Grid, prompt_class: Tensor, margin: float, arithmetic: str, with_best: bool
) -> tuple[_Best | None, Tensor]:
    """(the best score (:class:`_Best`) or None, (H, W) int64 label); prompts scoring ``-inf`` in ``table``
    are out."""
    # step 2: cells settled by their corners' best prompt
    top_prompt, top_class, rival = _row_leaders(table, prompt_class, with_best)
    corners = grid.corners
    winner = top_prompt.take(corners[0])
    # a cell reading one row (most of them) is settled by that row's own margin; the test of the others
    # (below) gives the same there
    clear = _flat(table, top_prompt)(torch.arange(table.shape[0])) - rival > 2 * margin
    settled = clear.take(corners[0])
    mixed = grid.mixed.nonzero()
    if mixed.numel():
        cells = corners[:, mixed[:, 0], mixed[:, 1]]  # (4, n) the corners of the cells reading several rows
        first = cells[0]
        prompt = top_prompt.take(first)
        values = _flat(table, prompt[None])(cells)  # (4, n): the winner's value at each corner
        # each corner's best prompt (with prob_thd: its best score is read) or class must be the winner's
        same = top_prompt if with_best else top_class
        ok = torch.ones(first.shape, dtype=torch.bool)
        for k in range(4):
            ok &= (same.take(cells[k]) == same.take(first)) & (values[k] - rival.take(cells[k]) > 2 * margin)
        settled[mixed[:, 0], mixed[:, 1]] = ok
    labels = grid.per_pixel(prompt_class.take(winner))
    best = _Best(table, grid, winner) if with_best else None

    # step 3: the other cells, per distinct corner combination
    if bool(settled.all()):
        return best, labels
    quads, cell_combination = grid.combinations(~settled, table.shape[0])
    candidates = _candidates(table, quads, margin)
    pixel_combination = grid.per_pixel(cell_combination).reshape(-1)
    pixels = (pixel_combination >= 0).nonzero().squeeze(1)
    pixel_combination = pixel_combination.take(pixels)
    flat_labels = labels.view(-1)

    # the candidates as one sorted list: combination t owns flat[offsets[t] : offsets[t] + n_cand[t]]
    owner, flat = candidates.nonzero().unbind(1)
    n_cand = torch.bincount(owner, minlength=quads.shape[0])
    offsets = torch.cumsum(n_cand, 0) - n_cand
    per_pixel = n_cand.take(pixel_combination)
    one = per_pixel == 1
    single = pixels[one]
    only = flat.take(offsets.take(pixel_combination[one]))  # the one candidate
    flat_labels[single] = prompt_class.take(only)
    if best is not None:
        for ids in torch.arange(single.numel()).split(PAIR_CHUNK):
            best.set(single[ids], grid.pair_values(table, only[ids], grid.sources(single[ids]), "approx"))

    several, combos, per_pixel = pixels[~one], pixel_combination[~one], per_pixel[~one]
    if not several.numel():
        return best, labels
    # the candidates of every combination with several, combination after combination
    none = int(prompt_class.max()) + 1  # above every class: the identity of a class minimum
    start = 0
    for stop in _chunk_bounds(per_pixel, PAIR_CHUNK):
        px, k, combo = several[start:stop], per_pixel[start:stop], combos[start:stop]
        start = stop
        local = torch.repeat_interleave(torch.arange(px.numel()), k)
        first = torch.cumsum(k, 0) - k  # each pixel's first pair
        prompts = flat.take(offsets.take(combo).sub_(first).take(local).add_(torch.arange(local.numel())))
        rows, weights = grid.sources(px)
        sources = (rows.index_select(1, local), weights.index_select(1, local))  # each pair's pixel's
        approx = grid.pair_values(table, prompts, sources, "approx")
        top = torch.full((px.numel(),), -torch.inf).scatter_reduce_(0, local, approx, reduce="amax")
        near = approx >= top.take(local) - margin  # holds every prompt reaching the exact top
        near_class = prompt_class.take(prompts[near])
        low = torch.full((px.numel(),), none).scatter_reduce_(0, local[near], near_class, reduce="amin")
        high = torch.full((px.numel(),), -1).scatter_reduce_(0, local[near], near_class, reduce="amax")
        flat_labels[px] = low
        if best is not None:
            best.set(px, top)
        undecided = low != high  # candidates of different classes within the margin: exact values decide
        if bool(undecided.any()):
            pairs = (near & undecided.take(local)).nonzero().squeeze(1)
            exact_sources = (sources[0].index_select(1, pairs), sources[1].index_select(1, pairs))
            exact = grid.pair_values(table, prompts.take(pairs), exact_sources, arithmetic)
            at = local.take(pairs)
            exact_top = torch.full((px.numel(),), -torch.inf).scatter_reduce_(0, at, exact, reduce="amax")
            reach = exact == exact_top.take(at)
            cls = torch.full((px.numel(),), none).scatter_reduce_(
                0, at[reach], prompt_class.take(prompts.take(pairs[reach])), reduce="amin"
            )
            flat_labels[px[undecided]] = cls[undecided]
            if best is not None:
                best.set(px[undecided], exact_top[undecided])
    return best, labels


def _flat(table: Tensor, columns: Tensor):
    """``rows -> table[rows, columns]`` (broadcast) by one flat ``take``, much faster than 2-D indexing."""
    flat, width = table.view(-1), table.shape[1]
    return lambda rows: flat.take(rows * width + columns)


def _distinct_rows(quads: Tensor, n_rows: int) -> tuple[Tensor, Tensor]:
    """(distinct (T, 4) rows of ``quads``, the distinct row of each input row)."""
    if n_rows**4 < 2**62:  # one int64 key per row: unique over keys is much faster than over rows
        key = ((quads[:, 0] * n_rows + quads[:, 1]) * n_rows + quads[:, 2]) * n_rows + quads[:, 3]
        keys, inverse = torch.unique(key, return_inverse=True)
        digits = [keys // n_rows**3, keys // n_rows**2 % n_rows, keys // n_rows % n_rows, keys % n_rows]
        return torch.stack(digits, dim=1), inverse
    return torch.unique(quads, dim=0, return_inverse=True)


SHORTLIST = 16
"""Prompts per row among which :func:`_candidates` looks first (its best ones)."""


def _candidates(table: Tensor, quads: Tensor, margin: float) -> Tensor:
    """(T, P) bool: the prompts that can reach a pixel's top score in each corner combination.

    A prompt is out when its largest corner value stays below the largest smallest corner value (minus twice
    ``margin``), or when one of two strong prompts (the largest smallest corner, the largest corner sum) beats
    it by more than ``margin`` at all four corners. The search looks at the corners' :data:`SHORTLIST` best
    prompts first; it is complete when every corner's last listed value already falls below that bound (every
    prompt outside the lists then does too), else the combination is searched over all prompts.
    """
    n_prompts = table.shape[1]
    out = torch.zeros(quads.shape[0], n_prompts, dtype=torch.bool)
    listed = min(SHORTLIST, n_prompts)
    top = table.topk(listed, dim=1)
    last = top.values[:, -1]  # each row's last listed value
    full = []
    for ids in torch.arange(quads.shape[0]).split(max(PAIR_CHUNK // (16 * listed), 1)):
        quad = quads[ids]
        pool = top.indices.index_select(0, quad.reshape(-1)).view(ids.numel(), -1)  # (n, 4 * listed), repeats
        keep, low = _bounded(_flat(table, pool[:, None, :])(quad[:, :, None]), margin)
        out[ids] = torch.zeros_like(out[ids]).scatter_(1, pool, keep)  # repeats: equal columns, equal keep
        full.append(ids[(last.take(quad) + margin >= low - margin).any(dim=1)])
    full = torch.cat(full)
    for ids in full.split(max(PAIR_CHUNK // (4 * n_prompts), 1)):
        out[ids] = _bounded(table.index_select(0, quads[ids].reshape(-1)).view(-1, 4, n_prompts), margin)[0]
    return out


def _bounded(corners: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Step 3's bounds over the prompts of ``corners`` (n, 4, k): (n, k) kept, (n, 1) best smallest corner.

    The reductions over the four corners are written out (a reduction over a middle dimension of size 4 is
    several times slower on the CPU)."""
    c = corners.unbind(1)
    low, strongest = torch.minimum(torch.minimum(c[0], c[1]), torch.minimum(c[2], c[3])).max(
        dim=1, keepdim=True
    )
    high = torch.maximum(torch.maximum(c[0], c[1]), torch.maximum(c[2], c[3]))
    keep = high.add_(margin) >= low - margin
    total = (c[0] + c[1]).add_(c[2]).add_(c[3])
    for champion in (strongest, total.argmax(dim=1, keepdim=True)):
        beaten = None
        for corner in c:  # the champion beats the prompt by more than margin at this corner
            here = corner.gather(1, champion) >= corner + margin
            beaten = here if beaten is None else beaten.logical_and_(here)
        keep.logical_and_(beaten.logical_not_())
    return keep, low


def _chunk_bounds(weights: Tensor, budget: int) -> list[int]:
    """Stops of consecutive chunks of entries whose ``weights`` sum to about ``budget`` (>= one entry)."""
    total = torch.cumsum(weights, 0)
    stops, done = [], 0
    while done < weights.numel():
        limit = (int(total[done - 1]) if done else 0) + budget
        stop = max(int(torch.searchsorted(total, limit, right=True)), done + 1)
        stops.append(min(stop, weights.numel()))
        done = stops[-1]
    return stops


LOG_SLACK = 1e-3
"""Slack, in log units, of the bounds :func:`_improbable` decides with (float32 errors are ~1e-5 here)."""


def _improbable(
    table: Tensor, grid: _Grid, logit_scale: float, best: _Best, prob_thd: float, compiled: bool
) -> Tensor:
    """(H, W) bool: the winner's probability ``exp(s * best - logsumexp(s * scores))`` is below ``prob_thd``.

    Where the four corners share one row, the logsumexp is the row's (module doc, step 4) and the best score
    the row's largest within a few roundings, so the row decides for all its cells unless its probability
    lies within :data:`LOG_SLACK` of ``prob_thd`` (then its pixels are decided with their own best score).
    Elsewhere the pixel's scores are a convex combination ``v = sum_k w_k s_k`` of its corner rows, and the
    logsumexp, a convex function, lies between the tangent planes at the corners, ``L_k + s * softmax(s * s_k)
    . (v - s_k)``, and the combination of its corner values ``sum_k w_k L_k`` (Jensen): only pixels whose
    probability these bounds leave within :data:`LOG_SLACK` of ``prob_thd`` compute it from every prompt's
    value. ``compiled``: the bounds per pixel in one pass
    (:func:`~cliptrase.inference.region_kernel.thresholds`); else vectorised, first per corner combination
    (:func:`_verdicts`), then per pixel where those leave it open. Both send the same pixels' undecided
    cases to the same exact evaluation, so the labels are the same.
    """
    row_norm = torch.logsumexp(logit_scale * table, dim=1)  # (A,)
    log_thd = float(torch.log(torch.tensor(prob_thd)))
    row_log_p = logit_scale * best.table.amax(dim=1) - row_norm  # the winner's, where a cell reads one row
    row_near = (row_log_p - log_thd).abs_().le(LOG_SLACK)
    if compiled:
        row_verdict = torch.where(row_near, region_kernel.ROW_NEAR, (row_log_p < log_thd).to(torch.int8)).to(
            torch.int8
        )
        verdict = region_kernel.thresholds(
            table, grid.index, grid.rows, grid.cols, row_norm, row_verdict,
            best.values.view(grid.shape), logit_scale, log_thd, LOG_SLACK,
        )  # fmt: skip
        out = verdict == region_kernel.IMPROBABLE
        flat = out.view(-1)
        near = (verdict.view(-1) == region_kernel.ROW_NEAR).nonzero().squeeze(1)
        _decide_by_row(flat, near, grid, row_norm, best, logit_scale, prob_thd)
        hard = (verdict.view(-1) == region_kernel.OPEN).nonzero().squeeze(1)
        _decide_exactly(flat, hard, best.at(hard), table, grid, logit_scale, prob_thd)
        return out
    corners = grid.corners
    out = grid.per_pixel((row_log_p < log_thd).take(corners[0]))
    flat = out.view(-1)
    mixed_cells = grid.mixed
    near_cells = row_near.take(corners[0]) & ~mixed_cells
    if bool(near_cells.any()):
        near = grid.per_pixel(near_cells).view(-1).nonzero().squeeze(1)
        _decide_by_row(flat, near, grid, row_norm, best, logit_scale, prob_thd)
    if not bool(mixed_cells.any()):
        return out
    quads, cell_combination = grid.combinations(mixed_cells, table.shape[0])
    verdict = _verdicts(table, best.table, quads, row_norm, logit_scale, log_thd)
    pixel_combination = grid.per_pixel(cell_combination).reshape(-1)
    mixed = (pixel_combination >= 0).nonzero().squeeze(1)
    combo = pixel_combination.take(mixed)
    verdict_px = verdict.take(combo)
    flat[mixed] = verdict_px == 1
    mixed, combo = mixed[verdict_px < 0], combo[verdict_px < 0]  # the pixels their combination leaves open
    if not mixed.numel():
        return out
    # per open combination: D[k, j] = softmax(s * s_k) . s_j
    open_quads, combo = torch.unique(combo, return_inverse=True)
    dots = torch.empty(open_quads.numel(), 4, 4)
    softmax = torch.softmax(logit_scale * table, dim=1)
    for ids in torch.arange(open_quads.numel()).split(max(PAIR_CHUNK // (4 * table.shape[1]), 1)):
        rows = quads[open_quads[ids]].reshape(-1)
        sig = softmax.index_select(0, rows).view(-1, 4, table.shape[1])
        dots[ids] = sig @ table.index_select(0, rows).view(-1, 4, table.shape[1]).transpose(1, 2)

    u0, u1, w0, w1 = grid.sources(mixed)[1]
    weights = torch.stack([w0 * u0, w0 * u1, w1 * u0, w1 * u1], dim=1)  # the four corners' shares
    corner_norm = row_norm[quads[open_quads[combo]]]  # (n, 4)
    upper = (weights * corner_norm).sum(dim=1)
    d = dots[combo]  # (n, 4, 4)
    tangent = corner_norm + logit_scale * ((d @ weights[:, :, None])[..., 0] - d.diagonal(dim1=1, dim2=2))
    lower = tangent.amax(dim=1)
    best_mixed = best.at(mixed)
    log_best = logit_scale * best_mixed
    flat[mixed] = log_best - lower < log_thd  # decided where the two bounds agree (below)
    unsure = (log_best - upper < log_thd + LOG_SLACK) & (log_best - lower >= log_thd - LOG_SLACK)
    _decide_exactly(flat, mixed[unsure], best_mixed[unsure], table, grid, logit_scale, prob_thd)
    return out


def _decide_by_row(
    flat: Tensor,
    near: Tensor,
    grid: _Grid,
    row_norm: Tensor,
    best: _Best,
    logit_scale: float,
    prob_thd: float,
) -> None:
    """``flat[near]``: the verdict at pixels reading one row, with that row's logsumexp and their own best
    score."""
    if near.numel():
        norm = row_norm.take(grid.sources(near)[0][0])
        flat[near] = torch.exp(logit_scale * best.at(near) - norm) < prob_thd


def _decide_exactly(
    flat: Tensor,
    pixels: Tensor,
    best: Tensor,
    table: Tensor,
    grid: _Grid,
    logit_scale: float,
    prob_thd: float,
) -> None:
    """``flat[pixels]``: the verdict with the logsumexp of every prompt's (plain float32) value."""
    for ids in torch.arange(pixels.numel()).split(max(PAIR_CHUNK // table.shape[1], 1)):
        px = pixels[ids]
        norm = torch.logsumexp(logit_scale * grid.pixel_rows(table, px), dim=1)
        flat[px] = torch.exp(logit_scale * best[ids] - norm) < prob_thd


def _verdicts(
    table: Tensor, kept: Tensor, quads: Tensor, row_norm: Tensor, logit_scale: float, log_thd: float
) -> Tensor:
    """(T,) int8 per corner combination: 1 where every pixel of its cells is improbable, 0 where none is, -1
    where :func:`_improbable`'s per-pixel bounds decide.

    At a pixel whose scores ``v`` are a convex combination of the corner rows ``s_k`` (scores of ``table``;
    the best score from ``kept``, the table the labels came from), every ``v_j`` lies between ``min_k s_kj``
    and ``max_k s_kj``. So the best score lies between ``max_j min_k kept_kj`` and ``max_k max_j kept_kj``;
    the logsumexp, increasing in every prompt, is at least ``logsumexp_j(s * min_k s_kj)``, and, convex, at
    most ``max_k L_k`` (Jensen). A combination is decided where these put ``log p`` more than
    :data:`LOG_SLACK` from ``log prob_thd``.
    """
    n_prompts = table.shape[1]
    verdict = torch.full((quads.shape[0],), -1, dtype=torch.int8)
    row_best = kept.amax(dim=1)
    for ids in torch.arange(quads.shape[0]).split(max(PAIR_CHUNK // (4 * n_prompts), 1)):
        rows = quads[ids]
        low = table.index_select(0, rows.reshape(-1)).view(-1, 4, n_prompts).amin(dim=1)
        low_kept = (
            low if kept is table else kept.index_select(0, rows.reshape(-1)).view(-1, 4, n_prompts).amin(1)
        )
        most = logit_scale * row_best[rows].amax(dim=1) - torch.logsumexp(logit_scale * low, dim=1)
        least = logit_scale * low_kept.amax(dim=1) - row_norm[rows].amax(dim=1)
        verdict[ids] = torch.where(
            most < log_thd - LOG_SLACK, 1, torch.where(least >= log_thd + LOG_SLACK, 0, -1)
        ).to(torch.int8)
    return verdict
