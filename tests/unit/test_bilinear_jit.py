"""The compiled upsample-and-argmax of the region map (``utils/bilinear_jit.py``) against ``F.interpolate``
and ``first_argmax``, index for index."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliptrase.method import vote
from cliptrase.utils import bilinear

bilinear_jit = pytest.importorskip("cliptrase.utils.bilinear_jit", reason="numba is not installed")


def _reference(planes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    up = F.interpolate(planes[None], size=size, mode="bilinear", align_corners=False)[0]
    return torch.where(up.isnan(), -torch.inf, up).argmax(dim=0)  # NaN as -inf, ties to the first


def _planes(seed: int, k: int, hw: tuple[int, int], *, near: bool) -> torch.Tensor:
    """Smooth blob-like maps (regions that lead clearly) or, with ``near``, maps a few ulps apart, repeated
    channels (exact ties) and a NaN pixel and a ``-inf`` pixel."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(k, max(hw[0] // 6, 2), max(hw[1] // 6, 2), generator=g)
    planes = F.interpolate(coarse[None], size=hw, mode="bilinear", align_corners=False)[0].contiguous()
    if near:
        planes = planes[:1].repeat(k, 1, 1) + torch.randint(0, 3, (k, *hw), generator=g) * 2.0**-22
        planes[1] = planes[0]  # an exact tie: the first channel wins
        planes[0, 3, 4] = torch.nan
        planes[k - 1, 5, 2] = -torch.inf
    return planes


@pytest.mark.parametrize(
    ("k", "near"),
    [(1, False), (2, False), (2, True), (4, False), (4, True), (7, True), (13, False), (13, True)],
)
@pytest.mark.parametrize(
    ("hw", "size"), [((56, 56), (224, 224)), ((14, 14), (70, 90)), ((50, 61), (47, 130))]
)
def test_equals_interpolate_and_first_argmax(k, near, hw, size):
    """Near ties (two channels at least): maps a few ulps apart, an exact tie, a NaN and a -inf pixel."""
    if bilinear.arithmetic() is None:
        pytest.skip("this PyTorch's CPU bilinear kernel is neither arithmetic bilinear.py reproduces")
    planes = _planes(k + hw[0], k, hw, near=near)
    got = bilinear_jit.upsampled_argmax(planes, size)
    assert got is not None and got.dtype == torch.int64
    assert torch.equal(got, _reference(planes, size))
    assert torch.equal(got, vote.first_argmax(F.interpolate(planes[None], size=size, mode="bilinear"))[0])


def test_cells_are_settled_and_open():
    """Regions that lead settle many cells at once (one candidate); near ties leave cells open, and there the
    kernel's own arithmetic decides: the other one (plain float32 for fused multiply-adds, or the reverse)
    moves some index."""
    arithmetic = bilinear.arithmetic()
    if arithmetic is None:
        pytest.skip("this PyTorch's CPU bilinear kernel is neither arithmetic bilinear.py reproduces")
    clear = _planes(0, 6, (56, 56), near=False)
    listed = []
    for planes in (clear, _planes(1, 6, (56, 56), near=True)):
        out = torch.empty(6, dtype=torch.int64).numpy()
        x = planes.numpy()
        counts = [
            bilinear_jit._cell_candidates(x, i, i + 1, j, j + 1, 2 * bilinear.MARGIN, out)
            for i in range(55)
            for j in range(55)
        ]
        listed.append(sum(c == 1 for c in counts) / len(counts))
    assert listed[0] > 0.4 and listed[1] < 0.1
    moved = 0
    for seed in range(4):
        planes = _planes(seed, 6, (56, 56), near=True)
        other = "plain" if arithmetic == "fma" else "fma"
        rows_o, cols_o = bilinear.axis_weights(56, 224, other), bilinear.axis_weights(56, 224, other)
        out = torch.empty((224, 224), dtype=torch.long)
        arrays = (
            planes,
            rows_o.i0,
            rows_o.i1,
            rows_o.w0,
            rows_o.w1,
            cols_o.i0,
            cols_o.i1,
            cols_o.w0,
            cols_o.w1,
        )
        bilinear_jit._argmax_pixels(
            *(t.numpy() for t in arrays), torch.tensor(0.0).numpy()[()], other == "fma", out.numpy()
        )
        moved += int((out != _reference(planes, (224, 224))).sum())
    assert moved > 0


def test_declines_what_it_does_not_reproduce():
    planes = _planes(2, 4, (20, 20), near=False)
    assert bilinear_jit.upsampled_argmax(planes, (40, 40)) is None  # H + W <= 128: vectorised kernel
    assert bilinear_jit.upsampled_argmax(planes[:3].contiguous(), (70, 80)) is None
    assert bilinear_jit.upsampled_argmax(planes.double(), (70, 80)) is None


def test_region_map_takes_it_with_the_same_regions(monkeypatch):
    """region_map's ids with the compiled argmax and with the PyTorch one (the path without numba)."""
    g = torch.Generator().manual_seed(4)
    masks = torch.rand(3, 9, 196, generator=g)
    masks[1, 6:] = torch.nan
    masks[2, :] = masks[2, :1] + torch.randint(0, 2, (9, 196), generator=g) * 2.0**-22  # near ties
    fast = vote.region_map(masks, (14, 14), (224, 224))
    monkeypatch.setattr(vote, "upsampled_argmax", None)
    assert torch.equal(vote.region_map(masks, (14, 14), (224, 224)), fast)
