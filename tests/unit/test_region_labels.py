"""Region rows labelled without prompt maps (``inference/region_labels.py``) against the full upsampling, and
the replica of PyTorch's CPU bilinear kernel it rests on (``utils/bilinear.py``)."""

from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cliptrase.inference import region_labels as region_labels_module
from cliptrase.inference.region_labels import region_kernel, region_labels
from cliptrase.inference.scoring import scores_to_labels, upsampled_labels
from cliptrase.inference.window_scores import RegionScores
from cliptrase.utils import bilinear

try:
    from cliptrase.utils import bilinear_jit
except ImportError:  # no numba: the compiled tests skip
    bilinear_jit = None


def _kernel_arithmetic() -> str:
    found = bilinear.arithmetic()
    if found is None:
        pytest.skip(
            "this PyTorch's CPU bilinear kernel is neither of the two arithmetics bilinear.py reproduces"
        )
    return found


@pytest.mark.parametrize(
    ("channels", "hw", "size"),
    [
        (5, (14, 14), (224, 224)),
        (4, (336, 448), (512, 683)),
        (6, (448, 598), (512, 683)),
        (7, (50, 61), (23, 130)),
    ],
)
def test_replica_equals_interpolate_bit_for_bit(channels, hw, size):
    arithmetic = _kernel_arithmetic()
    x = torch.randn(channels, *hw, generator=torch.Generator().manual_seed(channels))
    ref = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
    rows, cols = (
        bilinear.axis_weights(hw[0], size[0], arithmetic),
        bilinear.axis_weights(hw[1], size[1], arithmetic),
    )
    y, xx = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    assert torch.equal(bilinear.values(x, rows, cols, y, xx, arithmetic), ref)


def _f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _round_to_f32(exact: Fraction) -> float:
    """The float32 nearest to ``exact``, ties to even (an independent oracle: rational comparisons)."""
    guess = np.float32(float(exact))
    below, above = np.nextafter(guess, np.float32(-np.inf)), np.nextafter(guess, np.float32(np.inf))
    best = min(
        (below, guess, above),
        key=lambda v: (abs(Fraction(float(v)) - exact), int(np.float32(v).view(np.uint32)) & 1),
    )
    return float(best)


def test_fused_multiply_add_rounds_once():
    gen = np.random.default_rng(0)
    a = (gen.standard_normal(3000) * 2.0 ** gen.integers(-30, 30, 3000)).astype(np.float32)
    b = gen.random(3000).astype(np.float32)
    c = (gen.standard_normal(3000) * 2.0 ** gen.integers(-30, 30, 3000)).astype(np.float32)
    # a float64 sum that lands exactly halfway between two float32 values while the exact sum does not:
    # 1 + 2**-23 + (2**-12 (1 + 2**-23)) (2**-12 (1 - 2**-23)) = 1 + 2**-23 + 2**-24 - 2**-70
    x, y, z = _f32(2**-12 * (1 + 2**-23)), _f32(2**-12 * (1 - 2**-23)), _f32(1 + 2**-23)
    tricky = [(x, y, z), (-x, y, -z), (x, y, 1.0)]  # the first two: rounding twice goes wrong
    a = np.concatenate([a, [t[0] for t in tricky]]).astype(np.float32)
    b = np.concatenate([b, [t[1] for t in tricky]]).astype(np.float32)
    c = np.concatenate([c, [t[2] for t in tricky]]).astype(np.float32)
    got = bilinear._fma(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)).numpy()
    want = [
        _round_to_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
        for x, y, z in zip(a, b, c)
    ]
    assert got.tolist() == want
    naive = (a.astype(np.float64) * b + c).astype(np.float32)  # rounded twice
    assert naive[-3] != want[-3] and naive[-2] != want[-2]


def _regions(seed, n_prompts, hw, *, n_rows=40, block=5, near_ties=False):
    """Region rows over a blocky random row map; synonyms (repeated columns), repeated rows: exact ties."""
    gen = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, n_rows, (hw[0] // block + 1, hw[1] // block + 1), generator=gen)
    index = cells.repeat_interleave(block, 0).repeat_interleave(block, 1)[: hw[0], : hw[1]].to(torch.int32)
    table = 0.2 + 0.01 * torch.randn(n_rows, n_prompts, generator=gen)
    table[:, 1] = table[:, 0]  # a synonym: same values as prompt 0
    table[3] = table[2]  # two rows alike
    if near_ties:  # runners-up one ulp below the best
        best, at = table.max(dim=1)
        table[torch.arange(n_rows), (at + 2) % n_prompts] = torch.nextafter(best, torch.tensor(0.0))
    return RegionScores(table, index)


CASES = [
    # (prompts, classes, hw, size)
    (21, 21, (67, 90), (103, 137)),  # up, non-integer ratio
    (40, 17, (84, 112), (84, 112)),  # same size
    (53, 21, (90, 120), (61, 250)),  # down in one axis, up in the other
    (150, 150, (45, 60), (70, 91)),
    (4, 2, (30, 40), (97, 33)),
]


ENGINES = ["torch", pytest.param("numba", marks=pytest.mark.skipif(region_kernel is None, reason="no numba"))]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("prob_thd", "area_thd"), [(0.0, None), (0.09, None), (0.0, 0.1), (0.09, 0.1)])
@pytest.mark.parametrize("near_ties", [False, True])
@pytest.mark.parametrize("engine", ENGINES)
def test_equals_the_full_upsampling(case, prob_thd, area_thd, near_ties, engine):
    _kernel_arithmetic()
    n_prompts, n_classes, hw, size = case
    scores = _regions(n_prompts + hw[0], n_prompts, hw, near_ties=near_ties)
    gen = torch.Generator().manual_seed(1)
    p2c = torch.cat(
        [torch.arange(n_classes), torch.randint(0, n_classes, (n_prompts - n_classes,), generator=gen)]
    )
    p2c[1] = p2c[0]  # the synonym column is a synonym
    full = F.interpolate(scores.dense().contiguous()[None], size=size, mode="bilinear", align_corners=False)[
        0
    ]
    ref = scores_to_labels(full, p2c, n_classes, 40.0, prob_thd, area_thd=area_thd)
    ours = region_labels(scores, size, p2c, n_classes, 40.0, prob_thd, area_thd, engine=engine)
    assert ours is not None and ours.dtype == torch.int64
    assert torch.equal(ours, ref)
    assert torch.equal(upsampled_labels(scores, size, p2c, n_classes, 40.0, prob_thd, area_thd), ref)


def test_cases_reach_every_branch(monkeypatch):
    """The cases above leave cells open (step 3), need the kernel's exact values (near ties of different
    classes), and reach both sides of prob_thd."""
    arithmetic = _kernel_arithmetic()
    n_prompts, n_classes, hw, size = CASES[0]
    scores = _regions(n_prompts + hw[0], n_prompts, hw, near_ties=True)
    p2c = torch.arange(n_prompts)
    calls = []
    real = bilinear.gathered_values

    def counting(*args):
        calls.append(args[-1])
        return real(*args)

    monkeypatch.setattr(bilinear, "gathered_values", counting)
    exact_norms = []
    pixel_rows = region_labels_module._Grid.pixel_rows

    def counting_rows(grid, table, pixels):
        exact_norms.append(pixels.numel())
        return pixel_rows(grid, table, pixels)

    monkeypatch.setattr(region_labels_module._Grid, "pixel_rows", counting_rows)
    labels = region_labels(scores, size, p2c, n_classes, 40.0, engine="torch")
    thresholded = region_labels(scores, size, p2c, n_classes, 40.0, prob_thd=0.09, engine="torch")
    assert "plain" in calls and arithmetic in calls
    assert 0 < sum(exact_norms) < 0.05 * size[0] * size[1]  # bounds decide nearly everywhere
    suppressed = int(((thresholded == 0) & (labels != 0)).sum())
    assert 0 < suppressed < int((labels != 0).sum())


def test_falls_back_where_the_replica_does_not_apply():
    scores = _regions(0, 6, (20, 20))
    p2c = torch.arange(6)
    _kernel_arithmetic()
    assert region_labels(scores, (70, 80), p2c, 6, 40.0) is not None
    assert region_labels(scores, (40, 40), p2c, 6, 40.0) is None  # H + W <= 128: vectorised kernel
    three = RegionScores(scores.table[:, :3].contiguous(), scores.index)
    assert region_labels(three, (70, 80), p2c[:3], 3, 40.0) is None
    double = RegionScores(scores.table.double(), scores.index)
    assert region_labels(double, (70, 80), p2c, 6, 40.0) is None
    inf = scores.table.clone()
    inf[0, 0] = -torch.inf
    assert region_labels(RegionScores(inf, scores.index), (70, 80), p2c, 6, 40.0) is None
    # the chunked path takes over, with the same labels as the full upsampling
    full = F.interpolate(
        three.dense().contiguous()[None], size=(70, 80), mode="bilinear", align_corners=False
    )[0]
    assert torch.equal(
        upsampled_labels(three, (70, 80), p2c[:3], 3, 40.0), scores_to_labels(full, p2c[:3], 3, 40.0)
    )


def test_cropped_region_rows():
    """Region rows cropped out of padded windows (``RegionScores.crop``: a strided row map) label as their
    dense scores do."""
    _kernel_arithmetic()
    scores = _regions(3, 9, (80, 100)).crop(5, 75, 7, 95)
    assert not scores.index.is_contiguous()
    p2c = torch.arange(9) % 5
    dense = scores.dense().contiguous()[None]
    full = F.interpolate(dense, size=(90, 110), mode="bilinear", align_corners=False)[0]
    assert torch.equal(region_labels(scores, (90, 110), p2c, 5, 40.0), scores_to_labels(full, p2c, 5, 40.0))
    index64 = RegionScores(scores.table, _regions(3, 9, (80, 100)).index.long()[5:75, 7:95])
    assert torch.equal(region_labels(index64, (90, 110), p2c, 5, 40.0), scores_to_labels(full, p2c, 5, 40.0))


@pytest.mark.parametrize("offset", [-5e-4, -2e-4, 2e-4, 5e-4, -3e-3, 3e-3])
@pytest.mark.parametrize("engine", ENGINES)
def test_rows_near_prob_thd_are_decided_per_pixel(offset, engine, monkeypatch):
    """A row whose winning probability lies within LOG_SLACK of prob_thd is not decided by the row: the
    pixels of its cells use their own best score; outside the slack the row decides. Both equal the full
    upsampling."""
    arithmetic = _kernel_arithmetic()
    prob_thd, scale, n_prompts, size = 0.3, 40.0, 6, (97, 121)
    scores = _regions(7, n_prompts, (40, 50), n_rows=12)
    table = scores.table.clone()
    # row 0's best prompt gets probability p = prob_thd * exp(offset):
    # s * v = log(p / (1 - p)) + logsumexp(s * others)
    others = torch.logsumexp(scale * table[0, 1:].double(), dim=0)
    p = prob_thd * float(np.exp(offset))
    table[0, 0] = float((np.log(p / (1 - p)) + others) / scale)
    scores = RegionScores(table, scores.index)
    p2c = torch.arange(n_prompts)
    read = []
    at = region_labels_module._Best.at
    monkeypatch.setattr(region_labels_module._Best, "at", lambda self, px: (read.append(px), at(self, px))[1])
    full = F.interpolate(scores.dense()[None], size=size, mode="bilinear", align_corners=False)[0]
    ref = scores_to_labels(full, p2c, n_prompts, scale, prob_thd)
    assert torch.equal(region_labels(scores, size, p2c, n_prompts, scale, prob_thd, engine=engine), ref)
    grid = region_labels_module._Grid(scores.index.long(), *size, arithmetic)
    row_0 = grid.per_pixel((grid.corners == 0).all(dim=0)).view(-1)  # pixels of cells reading row 0 only
    assert bool(row_0.any())
    was_read = torch.zeros_like(row_0)
    for px in read:
        was_read[px] = True
    near_row = abs(offset) <= region_labels_module.LOG_SLACK
    assert bool(was_read[row_0].all()) == near_row and bool(was_read[row_0].any()) == near_row


@pytest.mark.parametrize("masked", [False, True])
def test_combination_verdicts_hold_at_every_convex_combination(masked):
    """_verdicts' bounds: a combination called improbable (1) has log p < log prob_thd at any convex
    combination of its corner rows, one called probable (0) has log p >= log prob_thd; all three verdicts
    occur. ``masked``: the best score from a table with some prompts at -inf (area_thd), the logsumexp from
    the full one."""
    gen = torch.Generator().manual_seed(5)
    n_rows, n_prompts, scale, prob_thd = 30, 8, 40.0, 0.45
    table = 0.2 + 0.03 * torch.randn(n_rows, n_prompts, generator=gen)
    table[:10, 0] += 0.15  # confident rows
    kept = table.clone()
    if masked:
        kept[:, 5:] = -torch.inf
    quads = torch.randint(0, n_rows, (400, 4), generator=gen)
    quads[:100] = quads[:100, :1]  # combinations of one row, some confident
    quads[:30, :] = torch.randint(0, 10, (30, 1), generator=gen)
    row_norm = torch.logsumexp(scale * table, dim=1)
    log_thd = float(np.log(prob_thd))
    verdict = region_labels_module._verdicts(table, kept, quads, row_norm, scale, log_thd)
    assert {int(v) for v in verdict.unique()} == {-1, 0, 1}
    weights = torch.distributions.Dirichlet(torch.ones(4)).sample((400, 64)).double()  # (T, n, 4)
    corners, corners_kept = table.double()[quads], kept.double()[quads]  # (T, 4, P)
    v, v_kept = weights @ corners, weights @ corners_kept.nan_to_num(neginf=-1e30)
    log_p = scale * v_kept.amax(dim=-1) - torch.logsumexp(scale * v, dim=-1)  # (T, n)
    assert bool((log_p[verdict == 1] < log_thd).all())
    assert bool((log_p[verdict == 0] >= log_thd).all())


@pytest.mark.skipif(region_kernel is None, reason="numba is not installed")
def test_compiled_threshold_verdicts_hold_at_every_pixel():
    """region_kernel.thresholds: a pixel called improbable has log p < log prob_thd, one called probable
    log p >= log prob_thd (log p from every prompt's upsampled value, float64); the open ones and the near
    row's pixels are the only ones left; the pair table and the per-pixel values give the same verdicts; all
    four verdicts occur."""
    arithmetic = _kernel_arithmetic()
    scale, prob_thd, size = 40.0, 0.45, (113, 137)
    scores = _regions(11, 8, (50, 60), n_rows=30)
    table = scores.table.clone()
    gen = torch.Generator().manual_seed(2)
    table[:12, 0] += 0.03 + 0.12 * torch.rand(12, generator=gen)  # confident rows, some near the threshold
    others = torch.logsumexp(scale * table[5, 1:].double(), dim=0)  # row 5: p = prob_thd * exp(2e-4)
    p = prob_thd * float(np.exp(2e-4))
    table[5, 0] = float((np.log(p / (1 - p)) + others) / scale)
    scores = RegionScores(table, scores.index)
    grid = region_labels_module._Grid(scores.index.long(), *size, arithmetic)
    full = F.interpolate(scores.dense()[None].double(), size=size, mode="bilinear", align_corners=False)[0]
    best = full.amax(dim=0).float()
    log_p = scale * best.double() - torch.logsumexp(scale * full, dim=0)
    row_norm = torch.logsumexp(scale * table, dim=1)
    log_thd = float(np.log(prob_thd))
    row_log_p = scale * table.amax(dim=1) - row_norm
    near = (row_log_p - log_thd).abs() <= region_labels_module.LOG_SLACK
    row_verdict = torch.where(near, region_kernel.ROW_NEAR, (row_log_p < log_thd).to(torch.int8)).to(
        torch.int8
    )
    args = (table, grid.index, grid.rows, grid.cols, row_norm, row_verdict, best, scale, log_thd)
    verdict = region_kernel.thresholds(*args, region_labels_module.LOG_SLACK, keep_pairs=True)
    assert torch.equal(
        region_kernel.thresholds(*args, region_labels_module.LOG_SLACK, keep_pairs=False), verdict
    )
    assert {int(v) for v in verdict.unique()} == {0, 1, 2, 3}
    assert bool((log_p[verdict == region_kernel.IMPROBABLE] < log_thd).all())
    assert bool((log_p[verdict == region_kernel.PROBABLE] >= log_thd).all())
    one_row = grid.per_pixel((grid.corners == 5).all(dim=0))
    assert torch.equal(verdict == region_kernel.ROW_NEAR, one_row)
    assert int((verdict == region_kernel.OPEN).sum()) < 0.05 * verdict.numel()  # the bounds decide most


def test_stitched_labels_takes_the_region_path_where_it_applies(monkeypatch):
    """The segmentor's entry: region rows through region_labels where it applies, dense scores and the cases
    region_labels declines through the chunked path; the labels of the full upsampling either way."""
    _kernel_arithmetic()
    scores = _regions(3, 6, (30, 40))
    p2c = torch.arange(6)
    used = []
    real = region_labels_module.region_labels
    monkeypatch.setattr(region_labels_module, "region_labels", lambda *a: used.append(real(*a)) or used[-1])
    # (70, 90): region_labels applies; (40, 50): H + W <= 128, it declines
    for s, size in ((scores, (70, 90)), (scores.dense(), (70, 90)), (scores, (40, 50))):
        full = F.interpolate(scores.dense()[None], size=size, mode="bilinear", align_corners=False)[0]
        ref = scores_to_labels(full, p2c, 6, 40.0, 0.1, area_thd=0.1)
        assert torch.equal(region_labels_module.stitched_labels(s, size, p2c, 6, 40.0, 0.1, 0.1), ref)
    assert len(used) == 2 and used[0] is not None and used[1] is None  # dense scores never ask it


@pytest.mark.skipif(region_kernel is None, reason="numba is not installed")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_best", [False, True])
def test_compiled_steps_equal_the_vectorised_ones(case, with_best):
    """The compiled pass gives the PyTorch path's labels and best scores, value for value, on near ties."""
    arithmetic = _kernel_arithmetic()
    n_prompts, n_classes, hw, size = case
    scores = _regions(n_prompts + hw[0], n_prompts, hw, near_ties=True)
    p2c = torch.arange(n_prompts) % n_classes
    grid = region_labels_module._Grid(scores.index.long(), *size, arithmetic)
    margin = region_labels_module.MARGIN * float(scores.table.abs().max())
    args = (scores.table, grid, p2c, margin, arithmetic, with_best)
    best, labels = region_labels_module._winners(*args)
    compiled_best, compiled_labels = region_labels_module._compiled_winners(*args)
    assert torch.equal(compiled_labels, labels)
    if with_best:
        everywhere = torch.arange(labels.numel())
        assert torch.equal(compiled_best.at(everywhere), best.at(everywhere))


@pytest.mark.skipif(region_kernel is None, reason="numba is not installed")
def test_compiled_exact_values_decide_near_ties():
    """Near ties of different classes reach the compiled pass's exact values: with the other arithmetic
    (plain float32 in place of the kernel's fused multiply-adds, or the reverse) some label differs from the
    full upsampling, with the kernel's own none does."""
    arithmetic = _kernel_arithmetic()
    n_prompts, n_classes, hw, size = CASES[0]
    wrong = 0
    for seed in range(6):
        scores = _regions(seed, n_prompts, hw, near_ties=True)
        p2c = torch.arange(n_prompts)
        dense = scores.dense().contiguous()[None]
        ref = scores_to_labels(
            F.interpolate(dense, size=size, mode="bilinear", align_corners=False)[0], p2c, n_classes, 40.0
        )
        grid = region_labels_module._Grid(scores.index.long(), *size, arithmetic)
        top_prompt, top_class, rival = region_labels_module._row_leaders(scores.table, p2c, False)
        margin = region_labels_module.MARGIN * float(scores.table.abs().max())
        for used in ("fma", "plain"):
            labels, _ = region_kernel.winners(
                scores.table, grid.index, grid.rows, grid.cols, p2c, (top_prompt, rival, top_class), margin,
                used, False,
            )  # fmt: skip
            if used == arithmetic:
                assert torch.equal(labels, ref)
            else:
                wrong += int((labels != ref).sum())
    assert wrong > 0


@pytest.mark.skipif(region_kernel is None, reason="numba is not installed")
def test_compiled_bilinear_values_round_as_the_kernel():
    """region_kernel's per-value arithmetic equals bilinear.gathered_values (itself checked against
    F.interpolate and against exact rationals above), including a double-rounding trap."""
    gen = np.random.default_rng(3)
    corners = (gen.standard_normal((4, 2000)) * 2.0 ** gen.integers(-20, 20, (4, 2000))).astype(np.float32)
    weights = gen.random((2, 2000)).astype(np.float32)
    u0, u1, w0, w1 = 1 - weights[0], weights[0], 1 - weights[1], weights[1]
    x, y, z = _f32(2**-12 * (1 + 2**-23)), _f32(2**-12 * (1 - 2**-23)), _f32(1 + 2**-23)
    # fma(z, 1, x * y) * ... : the trap of test_fused_multiply_add_rounds_once inside the first combination
    corners[:, 0], u0[0], u1[0], w0[0], w1[0] = (z, x, 0.0, 0.0), 1.0, y, 1.0, 0.0
    for kind, compiled in (("fma", bilinear_jit.fused), ("plain", bilinear_jit.plain)):
        want = bilinear.gathered_values(*map(torch.from_numpy, (*corners, u0, u1, w0, w1)), kind).numpy()
        got = [compiled(*map(np.float32, (*corners[:, i], u0[i], u1[i], w0[i], w1[i]))) for i in range(2000)]
        assert np.array_equal(np.array(got, np.float32), want), kind


def test_engine_is_checked():
    scores = _regions(0, 6, (20, 20))
    with pytest.raises(ValueError, match="engine must be one of"):
        region_labels(scores, (70, 80), torch.arange(6), 6, 40.0, engine="cuda")
