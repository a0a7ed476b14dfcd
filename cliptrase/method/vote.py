"""Cluster soft masks, region map and region vote (docs/method.md §4 Steps H and I), batched in torch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cliptrase.utils import bilinear

try:  # numba is a dependency; without it (a stripped install) the region map's argmax and the median run
    # in PyTorch
    from cliptrase.utils import median_jit
    from cliptrase.utils.bilinear_jit import axis_arrays, region_weight_sums, upsampled_argmax
except ImportError:  # pragma: no cover
    median_jit = upsampled_argmax = region_weight_sums = axis_arrays = None


def _symmetric_index(n: int, pad: int, device: torch.device) -> Tensor:
    """Indices of a length-``n`` axis padded by ``pad`` on both sides with edge-repeating reflection.

    scipy.ndimage's ``mode="reflect"`` extends ``a b c d`` as ``c b a | a b c d | d c b a`` (numpy's
    "symmetric"); torch's ``reflect`` padding does not repeat the edge, so the index map is built here.
    """
    idx = torch.arange(-pad, n + pad, device=device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - 1 - idx, idx)


FIRST_ARGMAX_MAX_CHANNELS = 64
"""Most channels :func:`first_argmax` reduces by a running maximum over planes; beyond, ``argmax``."""

MEDIAN_NETWORK_MAX_SIZE = 15
"""Largest window side :func:`median_filter2d` computes with min/max networks (:func:`_median_plan`; 2674
operations per pixel at 15, two to three times faster than the gather there); wider windows gather their
values and take ``median``."""

MEDIAN_CHUNK_VALUES = 1 << 22
"""Window values the gather fallback of :func:`median_filter2d` (windows wider than
:data:`MEDIAN_NETWORK_MAX_SIZE`) materialises at once (16 MiB in fp32); off CPU, the padded pixels of one
chunk of the median networks."""

MEDIAN_CHUNK_PIXELS = 1 << 18
"""Padded pixels (maps x (H + 2 pad) x (W + 2 pad)) in one chunk of the median networks on CPU: large
enough that each of the ~300 operations of a chunk spreads over torch's threads (one image's masks are one
or two chunks), small enough to bound the work buffers (tens of MB). Chunks spread over Python threads
instead were slower on the idle machine and, worse, slowed everything after them: every calling thread
gets its own OpenMP team, whose spinning threads took the cores from the image encoder (the standard
protocol's encoder ran 5-10 % slower, measured by ``scripts/bench.py vocab``)."""


MEDIAN_TILE_ROWS = 8
"""Output rows of one map the compiled median evaluates at once (:mod:`cliptrase.utils.median_jit`): its
scratch (the padded rows and every network's slots, ~150 KB for 56-pixel rows and size 7) stays in cache."""


CompareExchange = Callable[[int, int], tuple[int, int]]
"""Adds a compare-exchange of two wires to a network being built and returns its (min, max) wires."""


class _Network(NamedTuple):
    """A straight-line program of elementwise ``minimum`` / ``maximum`` over ``n_inputs`` planes.

    ``steps`` are ``(is_max, a, b, slot)``: operands index the inputs (``0..n_inputs-1``) or, from
    ``n_inputs`` on, a slot of the work buffer; the result is written to ``slot``. ``outputs`` index the
    same way.
    """

    n_inputs: int
    n_slots: int
    steps: tuple[tuple[bool, int, int, int], ...]
    outputs: tuple[int, ...]


def _odd_even_merge(ce: CompareExchange, a: list[int], b: list[int]) -> list[int]:
    """Batcher's odd-even merge of two sorted wire lists of any lengths; ``ce`` adds a compare-exchange."""
    if not a or not b:
        return a + b
    if len(a) == 1 and len(b) == 1:
        return list(ce(a[0], b[0]))
    even = _odd_even_merge(ce, a[0::2], b[0::2])
    odd = _odd_even_merge(ce, a[1::2], b[1::2])
    out = [even[0]]
    i = 0
    while i < len(odd) and i + 1 < len(even):
        out += ce(odd[i], even[i + 1])
        i += 1
    return out + odd[i:] + even[i + 1 :]


def _merge_all(ce: CompareExchange, lists: list[list[int]]) -> list[int]:
    """Merge sorted wire lists pairwise, level by level, into one sorted list."""
    while len(lists) > 1:
        merged = [_odd_even_merge(ce, lists[i], lists[i + 1]) for i in range(0, len(lists) - 1, 2)]
        lists = merged + lists[len(merged) * 2 :]
    return lists[0]


def _compile(n_inputs: int, build: Callable[[CompareExchange], list[int]]) -> _Network:
    """Build a network with ``build(ce)`` (wires ``0..n_inputs-1`` are the inputs; it returns the wanted
    output wires), drop every min/max no output depends on, and give each result a buffer slot that is
    reused once its last reader has run."""
    nodes: list[tuple[bool, int, int]] = []  # wire n_inputs + i is nodes[i]

    def ce(a: int, b: int) -> tuple[int, int]:
        nodes.extend(((False, a, b), (True, a, b)))
        return n_inputs + len(nodes) - 2, n_inputs + len(nodes) - 1

    outputs = build(ce)
    live = set(outputs)
    for wire in range(n_inputs + len(nodes) - 1, n_inputs - 1, -1):
        if wire in live:
            live.update(nodes[wire - n_inputs][1:])
    kept = [w for w in range(n_inputs, n_inputs + len(nodes)) if w in live]
    last_read: dict[int, int] = {}
    for step, wire in enumerate(kept):
        for operand in nodes[wire - n_inputs][1:]:
            last_read[operand] = step
    slot_of: dict[int, int] = {}
    free: list[int] = []
    n_slots = 0
    steps = []
    for step, wire in enumerate(kept):
        is_max, a, b = nodes[wire - n_inputs]
        # an operand read for the last time here frees its slot for this very result (same memory,
        # elementwise: safe); a compare-exchange's two halves both read a and b, so the first half
        # never frees them
        for operand in {a, b}:
            if operand >= n_inputs and last_read[operand] == step and operand not in outputs:
                free.append(slot_of[operand])
        if free:
            slot_of[wire] = free.pop()
        else:
            slot_of[wire] = n_slots
            n_slots += 1
        index = {w: (w if w < n_inputs else n_inputs + slot_of[w]) for w in (a, b)}
        steps.append((is_max, index[a], index[b], slot_of[wire]))
    outs = tuple(w if w < n_inputs else n_inputs + slot_of[w] for w in outputs)
    return _Network(n_inputs, n_slots, tuple(steps), outs)


def _reads(net: _Network) -> set[int]:
    """The inputs ``net`` reads."""
    used = {o for step in net.steps for o in step[1:3]} | set(net.outputs)
    return {i for i in used if i < net.n_inputs}


def _pick(wires: list[int], ranks: list[int]) -> list[int]:
    """``wires[q]`` for each q in ``ranks``."""
    return [wires[q] for q in ranks]


def _merge_ranks(m: int, ranks: list[int]) -> Callable[[CompareExchange], list[int]]:
    """Builder for :func:`_compile`: merge sorted inputs ``0..m-1`` and ``m..2m-1``, keep ``ranks``."""

    def build(ce: CompareExchange) -> list[int]:
        return _pick(_odd_even_merge(ce, list(range(m)), list(range(m, 2 * m))), ranks)

    return build


class _MedianPlan(NamedTuple):
    """Min/max networks of a ``size`` x ``size`` median (:func:`_median_plan`).

    A block of ``k`` adjacent columns (k a power of two) at every padded column position is a sorted list of
    ``k * size`` window values; only ``ranks[k]`` of it are computed. ``column`` sorts a column (k = 1);
    ``stages`` (k = 2, 4, ...) merge the blocks of k / 2 at c and c + k / 2; ``final`` takes
    ``final_inputs`` (k, rank, column offset in the window) and returns the window's middle value.
    """

    column: _Network
    stages: tuple[tuple[int, _Network], ...]
    ranks: dict[int, tuple[int, ...]]
    final: _Network
    final_inputs: tuple[tuple[int, int, int], ...]


@functools.cache
def _median_plan(size: int) -> _MedianPlan:
    """Plan the median of ``size`` x ``size`` windows as min/max networks shared by neighbouring windows.

    Every sorted column is shared by the ``size`` windows that contain it, and every block of 2, 4, ...
    columns (merged with Batcher's odd-even merge) by the windows that contain the block. A window is cut
    into blocks by the binary digits of ``size`` (7 = 4 + 2 + 1). Of a block of n values, rank q lies at
    rank q .. q + size**2 - n of the window, so only ranks that can be the middle one enter the final merge
    (smallest blocks first), the middle rank lowered by the count dropped below; then every comparator half
    no output depends on is dropped (size 7: 294 minimum / maximum per pixel; 394 with sorted columns but
    no shared blocks). Min/max networks select by value, so ties give the value a full sort gives,
    and a NaN anywhere in a window reaches its output (every input of a selection network has a path to it,
    and ``minimum`` / ``maximum`` propagate NaN), as ``median`` returns NaN for it.
    """
    n = size * size
    middle = (n - 1) // 2
    widths = [1 << b for b in reversed(range(size.bit_length())) if size >> b & 1]  # columns per block
    offsets = [sum(widths[:i]) for i in range(len(widths))]
    lists: list[list[int]] = []
    final_inputs: list[tuple[int, int, int]] = []
    rank = middle
    for k, offset in sorted(zip(widths, offsets)):
        low, high = max(0, middle - (n - k * size)), min(k * size - 1, middle)
        rank -= low
        lists.append(list(range(len(final_inputs), len(final_inputs) + high - low + 1)))
        final_inputs += [(k, q, offset) for q in range(low, high + 1)]
    final = _compile(len(final_inputs), lambda ce: [_merge_all(ce, lists)[rank]])
    need: dict[int, set[int]] = {}
    for i in _reads(final):
        k, q, _ = final_inputs[i]
        need.setdefault(k, set()).add(q)
    stages = []
    k = widths[0]
    while k > 1:
        m = k // 2 * size
        net = _compile(2 * m, _merge_ranks(m, sorted(need[k])))
        need.setdefault(k // 2, set()).update(i % m for i in _reads(net))
        stages.append((k, net))
        k //= 2
    column_ranks = sorted(need[1])
    column = _compile(size, lambda ce: _pick(_merge_all(ce, [[i] for i in range(size)]), column_ranks))
    ranks = {k: tuple(sorted(q)) for k, q in need.items()}
    return _MedianPlan(column, tuple(reversed(stages)), ranks, final, tuple(final_inputs))


class _MedianProgram(NamedTuple):
    """A :class:`_MedianPlan` as one program of :func:`cliptrase.utils.median_jit.run_program` for rows of
    ``width`` pixels (the program format is that module's doc)."""

    steps: np.ndarray
    output: int
    scratch_size: int
    padded_width: int
    tile_rows: int


def _ssa_slots(net: _Network) -> tuple[list[tuple[bool, int, int, int]], int, list[int]]:
    """``net`` with its slots reassigned so that no step writes a slot it reads (a vectorised loop may then
    run it without checking its operands' overlap): (steps, n_slots, outputs), operands as in ``net``."""
    n = net.n_inputs
    holds: dict[int, int] = {}  # slot -> the wire it holds
    nodes: list[tuple[bool, int, int]] = []  # wire n + i is nodes[i]

    def wire(operand: int) -> int:
        return operand if operand < n else holds[operand - n]

    for is_max, a, b, slot in net.steps:
        nodes.append((is_max, wire(a), wire(b)))
        holds[slot] = n + len(nodes) - 1
    outputs = [wire(o) for o in net.outputs]
    last_read = {w: i for i, (_, a, b) in enumerate(nodes) for w in (a, b)}
    last_read.update({w: len(nodes) for w in outputs})
    slot_of: dict[int, int] = {}
    free: list[int] = []
    n_slots = 0
    steps = []
    for i, (is_max, a, b) in enumerate(nodes):
        if free:
            slot_of[n + i] = free.pop()
        else:
            slot_of[n + i] = n_slots
            n_slots += 1
        operand = {w: w if w < n else n + slot_of[w] for w in (a, b)}
        steps.append((is_max, operand[a], operand[b], n + slot_of[n + i]))
        free += [slot_of[w] for w in {a, b} if w >= n and last_read[w] == i]  # after: never its own result
    return steps, n_slots, [w if w < n else n + slot_of[w] for w in outputs]


@functools.cache
def _median_program(size: int, width: int, tile_rows: int = MEDIAN_TILE_ROWS) -> _MedianProgram:
    """The :func:`_median_plan` of ``size`` for maps ``width`` pixels wide, in the layout of
    :mod:`cliptrase.utils.median_jit`: the column network reads the tile's padded rows at ``i * padded``;
    a block of ``k`` columns merges the blocks of ``k / 2`` at shifts 0 and ``k / 2``; the final network
    reads its blocks at their column offsets in the window."""
    plan = _median_plan(size)
    padded = width + size - 1
    run = tile_rows * padded + 2 * size  # a slot: the tile's rows, and a margin for the shifted reads
    base = (tile_rows + size - 1) * padded + 2 * size  # the padded source rows come first
    outputs: dict[int, dict[int, int]] = {}  # block columns k -> rank -> offset (k = 0: the median)
    steps: list[tuple[int, int, int, int]] = []
    for k, net in ((1, plan.column), *plan.stages, (0, plan.final)):
        ssa, n_slots, outs = _ssa_slots(net)
        if k == 1:  # window row i of the column
            inputs = {i: i * padded for i in range(size)}
        elif k == 0:  # (block, rank, column offset) of the window
            inputs = {i: outputs[b][q] + shift for i, (b, q, shift) in enumerate(plan.final_inputs)}
        else:  # the two halves of the block, k / 2 columns apart
            m = k // 2 * size
            half = outputs[k // 2]
            inputs = {i: half[i % m] + (k // 2 if i >= m else 0) for i in _reads(net)}
        # operand -> offset: the inputs where they lie (-1: never read), the slots after ``base``
        where = [inputs.get(i, -1) for i in range(net.n_inputs)] + [base + j * run for j in range(n_slots)]
        steps += [(int(is_max), where[a], where[b], where[dest]) for is_max, a, b, dest in ssa]
        ranks = plan.ranks[k] if k else (0,)
        outputs[k] = {q: where[o] for q, o in zip(ranks, outs)}
        base += n_slots * run
    return _MedianProgram(np.array(steps, dtype=np.int64), outputs[0][0], base, padded, tile_rows)


def _run_network(net: _Network, inputs: list[Tensor | None], work: Tensor) -> list[Tensor]:
    """Evaluate ``net`` on equally shaped ``inputs`` (``None`` where it reads none) with ``work``
    (n_slots, *shape) as its slots."""
    values = [*inputs, *work.unbind(0)]
    for is_max, a, b, slot in net.steps:
        (torch.maximum if is_max else torch.minimum)(values[a], values[b], out=values[net.n_inputs + slot])
    return [values[o] for o in net.outputs]


class _MedianWork:
    """Work buffers of the networks of one :class:`_MedianPlan` for chunks of up to ``n`` (H, W) maps."""

    def __init__(self, plan: _MedianPlan, h: int, w: int, n: int, like: Tensor):
        pad = (plan.column.n_inputs - 1) // 2
        width = w + 2 * pad  # padded columns; a block of k columns starts at width - k + 1 of them
        self.h, self.w = h, w
        self.spans = {1: width, **{k: width - k + 1 for k, _ in plan.stages}, 0: w}
        self.networks = {1: plan.column, **dict(plan.stages), 0: plan.final}
        self.buffers = {
            k: like.new_empty(net.n_slots * self.spans[k] * h * n) for k, net in self.networks.items()
        }

    def slots(self, k: int, m: int) -> Tensor:
        """Network ``k``'s slots for a chunk of ``m`` maps, each a contiguous (span, H, m) plane."""
        n_slots, span = self.networks[k].n_slots, self.spans[k]
        return self.buffers[k][: n_slots * span * self.h * m].view(n_slots, span, self.h, m)


def _median_of_chunk(plan: _MedianPlan, padded: Tensor, work: _MedianWork) -> Tensor:
    """(W, H, m) medians of padded maps laid out (W + 2 pad, H + 2 pad, m)."""
    size, h, w, m = plan.column.n_inputs, work.h, work.w, padded.shape[-1]
    column = _run_network(plan.column, [padded[:, i : i + h] for i in range(size)], work.slots(1, m))
    blocks = {1: dict(zip(plan.ranks[1], column))}
    for k, net in plan.stages:
        half, span = blocks[k // 2], work.spans[k]
        inputs = [half.get(q) for q in range(k // 2 * size)]
        shifted = [p[k // 2 : k // 2 + span] if p is not None else None for p in inputs]
        inputs = [p[:span] if p is not None else None for p in inputs]
        blocks[k] = dict(zip(plan.ranks[k], _run_network(net, inputs + shifted, work.slots(k, m))))
    windows = [blocks[k][q][offset : offset + w] for k, q, offset in plan.final_inputs]
    return _run_network(plan.final, windows, work.slots(0, m))[0]


def median_filter2d(x: Tensor, size: int, *, compiled: bool | None = None) -> Tensor:
    """2-D median filter equal to ``scipy.ndimage.median_filter(x, size=size)`` (mode ``reflect``).

    The median of an odd-sized window is one of its values, so this is exact, not approximate: up to
    :data:`MEDIAN_NETWORK_MAX_SIZE` it is selected by min/max networks (:func:`_median_plan`): on CPU in
    float32 by the compiled program of :func:`_median_program` (a few rows of a map at a time, in cache),
    else over whole planes of pixels in PyTorch, on CPU :data:`MEDIAN_CHUNK_PIXELS` at a time;
    wider windows gather their values and take ``median``. Both engines run the same comparators, so they
    give the same values. A window containing a NaN gives NaN, and a map that is NaN everywhere (an empty
    cluster slot) is NaN in the output without being filtered.

    Args:
        x: (..., H, W) float tensor; each (H, W) map is filtered independently.
        size: odd window side.
        compiled: use the compiled networks (None: where they run, i.e. float32 on CPU with Numba).

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
    if size > MEDIAN_NETWORK_MAX_SIZE:
        per_chunk = max(MEDIAN_CHUNK_VALUES // (h * w * size * size), 1)
        for ids in todo.split(per_chunk):
            padded = maps[ids][:, rows, :][:, :, cols]
            windows = padded.unfold(-2, size, 1).unfold(-2, size, 1)  # (n, H, W, size, size)
            out[ids] = windows.flatten(-2).median(dim=-1).values
        return out.reshape(x.shape)
    runnable = median_jit is not None and maps.device.type == "cpu" and maps.dtype == torch.float32
    if compiled is None:
        compiled = runnable
    elif compiled and not runnable:
        raise ValueError("the compiled median runs on float32 CPU maps with Numba installed")
    if compiled:
        program = _median_program(size, w)
        result = out.numpy()  # shares out's memory
        median_jit.run_program(
            maps.contiguous().numpy(), todo.numpy(), rows.numpy(), cols.numpy(), program.steps,
            program.output, program.scratch_size, program.padded_width, program.tile_rows, result,
        )  # fmt: skip
        return out.reshape(x.shape)
    plan = _median_plan(size)
    width = w + 2 * pad
    if maps.device.type == "cpu":
        per_chunk = max(MEDIAN_CHUNK_PIXELS // (width * (h + 2 * pad)), 1)
    else:  # one launch per operation: as few chunks as possible
        per_chunk = max(MEDIAN_CHUNK_VALUES // (width * (h + 2 * pad)), 1)
    # planes are laid out (column, row, map): a shift by whole columns is then a contiguous slice
    columns_first = maps.permute(2, 1, 0)
    work = _MedianWork(plan, h, w, min(per_chunk, len(todo)), maps)
    for ids in todo.split(per_chunk):
        padded = columns_first[:, :, ids][cols][:, rows].contiguous()  # (width, H + 2 pad, m)
        out[ids] = _median_of_chunk(plan, padded, work).permute(2, 1, 0)
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

    Each image's masks are upsampled as the authors upsample one image's: a (1, K_i, h, w) stack of its own
    K_i clusters, without the empty slots that pad a batch to its largest cluster count. That matters for
    the bits, not only the time: PyTorch's CPU bilinear kernel vectorises across channels when the output
    is small (output height + width <= 128, e.g. 14 x 14 -> 56 x 56) and computes the channels of a full
    vector and the remainder differently in the last bits, so a mask's values would otherwise depend on the
    batch it came in. The median (a selection, exact in any layout) runs over all images' planes at once; an
    image without a cluster gets region 0 everywhere, as the argmax of all-NaN masks; empty slots between
    clusters are skipped too, and the ids stay slot ids.

    Args:
        masks: (B, K, N) soft masks from :func:`cluster_soft_masks`.
        grid_hw: patch grid (h, w), N = h * w.
        out_hw: output size.

    Returns:
        (B, H, W) int64 region ids in 0..K-1.
    """
    b = masks.shape[0]
    h, w = grid_hw
    used = ~torch.isnan(masks).all(dim=-1)  # (B, K): the slots with members
    slots = [
        (i, ids) for i, ids in enumerate(used.nonzero()[:, 1].split(used.sum(dim=1).tolist())) if len(ids)
    ]
    out = torch.zeros((b, *out_hw), dtype=torch.long, device=masks.device)
    if not slots:  # no image has a cluster
        return out
    up = (ratio * h, ratio * w)
    planes = [
        F.interpolate(
            masks[i, ids].reshape(1, len(ids), h, w), size=up, mode="bilinear", align_corners=False
        )[0]
        for i, ids in slots
    ]
    filtered = median_filter2d(torch.cat(planes), median_size).split([len(ids) for _, ids in slots])
    for (i, ids), x in zip(slots, filtered):
        best = _upsampled_first_argmax(x, out_hw)
        out[i] = best if int(ids[-1]) == len(ids) - 1 else ids[best]  # slot ids (empty slots in between)
    return out


def _upsampled_first_argmax(planes: Tensor, size: tuple[int, int]) -> Tensor:
    """``first_argmax`` of ``planes`` (K, h, w) upsampled bilinearly to ``size``: on the CPU by
    :func:`~cliptrase.utils.bilinear_jit.upsampled_argmax` (the same indices, without the (K, H, W) stack;
    decided once per source cell where one region leads at its four corners), else by ``F.interpolate``."""
    fast = None if upsampled_argmax is None else upsampled_argmax(planes, size)
    if fast is not None:
        return fast
    return first_argmax(F.interpolate(planes[None], size=size, mode="bilinear", align_corners=False))[0]


def first_argmax(x: Tensor) -> Tensor:
    """``x.argmax(dim=1)`` with NaN counted as ``-inf``, for (B, K, H, W) with few channels: a running
    maximum over K.

    Strict ``>`` keeps the first maximum, as ``argmax`` does (ties to the smallest index; all ``-inf``
    gives 0), and a NaN, like ``-inf``, never beats the running maximum (only channel 0 is converted). Over
    NCHW the reduction strides across whole planes and is slow on CPU; K full-plane comparisons are not.
    Falls back to ``argmax`` beyond :data:`FIRST_ARGMAX_MAX_CHANNELS` channels.
    """
    if x.shape[1] > FIRST_ARGMAX_MAX_CHANNELS:
        return _nan_below(x).argmax(dim=1)
    best = _nan_below(x[:, 0])  # a copy, updated in place: fmax keeps it NaN-free
    idx = torch.zeros(best.shape, dtype=torch.long, device=x.device)
    better = torch.empty(best.shape, dtype=torch.bool, device=x.device)
    for k in range(1, x.shape[1]):
        v = x[:, k]
        torch.gt(v, best, out=better)
        idx.masked_fill_(better, k)
        torch.fmax(best, v, out=best)
    return idx


def _nan_below(x: Tensor) -> Tensor:
    """``x`` with NaN as ``-inf`` (infinities kept)."""
    return torch.nan_to_num(x, nan=-torch.inf, posinf=torch.inf, neginf=-torch.inf)


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


def grid_region_means(
    grid: Tensor, regions: Tensor, n_regions: int, *, compiled: bool | None = None
) -> Tensor:
    """Mean of the grid logits bilinear to the regions' size over each region, without forming them.

    Bilinear upsampling is linear and separable, ``up = Wy · g · Wxᵀ`` (:func:`interpolation_matrix`), so
    region k's sum is ``Σ_ij M_k[i, j] g[:, i, j]`` with ``M_k = Wyᵀ R_k Wx`` (R_k the region's indicator):
    a (K, h·w) weight table per image times the (h·w, C) grid. On CPU the table is summed in one compiled
    pass over the region map in float64 (:func:`~cliptrase.utils.bilinear_jit.region_weight_sums`: each
    pixel adds its two column weights to its region's row sums, each row spreads them to its two grid
    rows); elsewhere by matrix products of the one-hot region maps. Equal to the means of
    ``F.interpolate(grid, regions' size, bilinear)`` over each region up to float rounding (a different
    summation order).

    Args:
        grid: (B, C, h, w) logits on the patch grid, any memory format.
        regions: (B, H, W) region ids in 0..n_regions-1.
        compiled: the compiled table (None: on CPU with Numba installed).

    Returns:
        (B, K, C) means; a region without pixels has zeros.
    """
    b, c, h, w = grid.shape
    big_h, big_w = regions.shape[-2:]
    runnable = region_weight_sums is not None and grid.device.type == "cpu"
    if compiled is None:
        compiled = runnable
    elif compiled and not runnable:
        raise ValueError("the compiled region weights run on CPU with Numba installed")
    if compiled:  # the kernel's own per-axis weights (the interpolation matrices' non-zero entries)
        arithmetic = bilinear.arithmetic() or "fma"
        taps = axis_arrays(
            bilinear.axis_weights(h, big_h, arithmetic), bilinear.axis_weights(w, big_w, arithmetic)
        )
        sums = torch.zeros(b, n_regions, h, w, dtype=torch.float64)
        pixels_in = torch.zeros(b, n_regions, dtype=torch.int64)
        region_weight_sums(regions.long().contiguous().numpy(), *taps, sums.numpy(), pixels_in.numpy())
        table = sums.reshape(b, n_regions, h * w).to(grid.dtype)
        counts = pixels_in.to(grid.dtype)  # exact below 2**24 pixels, as the one-hot sums
    else:
        wy = interpolation_matrix(h, big_h, grid.dtype, grid.device)  # (H, h)
        wx = interpolation_matrix(w, big_w, grid.dtype, grid.device)  # (W, w)
        onehot = torch.zeros(b, big_h, big_w, n_regions, dtype=grid.dtype, device=grid.device)
        onehot.scatter_(3, regions.unsqueeze(-1), 1.0)  # (B, H, W, K)
        rows = wy.t() @ onehot.reshape(b, big_h, big_w * n_regions)  # (B, h, W·K): Σ_y Wy[y, i] R_k[y, x]
        table = rows.reshape(b, h, big_w, n_regions).transpose(2, 3) @ wx  # (B, h, K, w)
        table = table.permute(0, 2, 1, 3).reshape(b, n_regions, h * w)  # (B, K, h·w): M_k flattened
        counts = onehot.sum(dim=(1, 2))  # (B, K) pixels per region, exact
    pixels = grid.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view when the grid is channels-last
    return (table @ pixels) / counts.clamp_min(1).unsqueeze(-1)


def spread_regions(means: Tensor, regions: Tensor) -> Tensor:
    """(B, C, H, W) channels-last: each pixel gets row ``regions[b, y, x]`` of ``means[b]`` (B, K, C)."""
    b, _, c = means.shape
    h, w = regions.shape[-2:]
    out = torch.gather(means, 1, regions.reshape(b, -1, 1).expand(b, -1, c))  # (B, HW, C)
    return out.reshape(b, h, w, c).permute(0, 3, 1, 2)
