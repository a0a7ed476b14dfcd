"""``cliptrase.method.cluster``: the torch DBSCAN must give scikit-learn's labels, label for label.

scikit-learn's ``DBSCAN`` is the oracle throughout. Every random case is generated from ``(kind, seed)``
so a failure names the case (``test_matches_sklearn[grid-17]``) and reproduces alone.

Radii are chosen so that no pair sits within rounding error of ``eps`` unless the arithmetic is exact:
either at the midpoint between two consecutive distinct pairwise distances, or, on integer / dyadic
grids, exactly at a grid distance (``d == eps``), which both implementations decide identically. Grid
radii ``sqrt(k)`` whose float64 square rounds below ``k`` are avoided (scikit-learn's KD-tree is itself
inconsistent there, see ``cliptrase.method.cluster``); those whose *float32* square rounds below ``k``
are kept on purpose: scikit-learn's brute-force path squares eps in float32 for float32 input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.cluster import DBSCAN
from threadpoolctl import threadpool_limits

from cliptrase.method.cluster import DBSCAN_BACKENDS, dbscan, dbscan_sklearn, dbscan_torch

MIN_SAMPLES = (1, 2, 3, 7)


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Run with one thread for torch, OpenMP and BLAS.

    These matrices are small; on a loaded 2-core machine thread hand-offs cost more than the work (the
    torch side of the suite ran ~7x slower with 2 threads).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Case:
    x: np.ndarray  # (N, F) float32 / float64, C-contiguous
    eps: float
    min_samples: int


def sklearn_labels(x: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    return DBSCAN(eps=eps, min_samples=min_samples, metric="euclidean").fit(x).labels_


def assert_same_labels(got: torch.Tensor, x: np.ndarray, eps: float, min_samples: int) -> None:
    ref = sklearn_labels(x, eps, min_samples)
    got_np = got.cpu().numpy()
    assert got.dtype == torch.int64
    assert got_np.shape == ref.shape
    bad = np.flatnonzero(got_np != ref)
    n, f = x.shape
    path = "kd_tree" if (f <= 15 and n >= 12) else "brute"
    assert bad.size == 0, (
        f"{bad.size}/{n} labels differ (N={n}, F={f}, {x.dtype}, eps={eps!r}, min_samples={min_samples}, "
        f"sklearn path={path}, clusters sklearn={ref.max() + 1} torch={got_np.max() + 1}); "
        f"first at {bad[:8].tolist()}: sklearn {ref[bad[:8]].tolist()} torch {got_np[bad[:8]].tolist()}"
    )


# ---------------------------------------------------------------------------------------------------
# case generators: each takes a seeded Generator and returns a Case


def _sq_dists(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return cdist(x64, x64, "sqeuclidean")


def _midpoint_eps(x: np.ndarray, rng: np.random.Generator, lo_q: float = 0.0, hi_q: float = 1.0) -> float:
    """An eps halfway between two consecutive distinct pairwise distances (no pair near the boundary)."""
    d = np.unique(np.sqrt(_sq_dists(x)))
    d = d[d > 0]
    if d.size == 0:
        return float(rng.uniform(0.1, 2.0))
    if d.size == 1:
        return float(d[0] * rng.choice([0.5, 1.5]))
    gaps = np.flatnonzero(np.diff(d) > 1e-6 * d[1:])  # well-separated neighbours only
    if gaps.size == 0:
        return float(d[-1] * 1.5)
    lo, hi = int(lo_q * (gaps.size - 1)), math.ceil(hi_q * (gaps.size - 1))
    k = int(gaps[rng.integers(lo, hi + 1)])
    return float((d[k] + d[k + 1]) / 2)


def _dtype(rng: np.random.Generator) -> type:
    return np.float32 if rng.random() < 0.5 else np.float64


def _min_samples(rng: np.random.Generator) -> int:
    return int(rng.choice(MIN_SAMPLES)) if rng.random() < 0.8 else int(rng.integers(1, 13))


def _n(rng: np.random.Generator, hi: int = 300) -> int:
    """Mostly small N (2..60), sometimes up to ``hi``: keeps the suite fast while covering both paths."""
    return int(rng.integers(2, 61)) if rng.random() < 0.7 else int(rng.integers(61, hi + 1))


def _features(rng: np.random.Generator) -> int:
    return int(rng.choice([1, 2, 3, 5, 8, 15, 16, 24, 64]))


def gen_blobs(rng: np.random.Generator) -> Case:
    n, f = _n(rng), _features(rng)
    k = int(rng.integers(1, 7))
    centers = rng.normal(scale=rng.choice([1.0, 5.0, 20.0]), size=(k, f))
    std = rng.choice([0.1, 0.5, 1.0, 2.0], size=k)
    member = rng.integers(0, k, size=n)
    x = (centers[member] + rng.normal(size=(n, f)) * std[member, None]).astype(_dtype(rng))
    return Case(x, _midpoint_eps(x, rng, 0.0, 0.5), _min_samples(rng))


def gen_uniform(rng: np.random.Generator) -> Case:
    n, f = _n(rng), _features(rng)
    x = (rng.random((n, f)) * rng.choice([1.0, 10.0, 1000.0]) - rng.choice([0.0, 3.0])).astype(_dtype(rng))
    return Case(x, _midpoint_eps(x, rng), _min_samples(rng))


def gen_duplicates(rng: np.random.Generator) -> Case:
    n, f = _n(rng), _features(rng)
    uniq = int(rng.integers(1, max(2, n // 2) + 1))
    base = rng.normal(size=(uniq, f))
    if rng.random() < 0.3:
        base = np.round(base * 2)  # exact values: duplicates at distance exactly 0 in every path
    x = base[rng.integers(0, uniq, size=n)].astype(_dtype(rng))
    eps = _midpoint_eps(x, rng, 0.0, 0.3) if rng.random() < 0.8 else 1e-3
    return Case(x, eps, _min_samples(rng))


# sqrt(k) whose float square does not round below k: an exact grid distance of sqrt(k) is within eps
_GRID_K = tuple(k for k in range(1, 21) if math.sqrt(k) * math.sqrt(k) >= k)


def gen_grid(rng: np.random.Generator) -> Case:
    """Points on a dyadic integer lattice with eps exactly a lattice distance (distance == eps)."""
    n = _n(rng, hi=200)
    if rng.random() < 0.75:
        f = int(rng.integers(1, 4))
        side = int(rng.integers(2, 9))
        x = rng.integers(0, side, size=(n, f)).astype(np.float64)
        if rng.random() < 0.3:  # embed in more than 15 features: brute-force path in sklearn
            pad = int(rng.integers(14, 20))
            x = np.concatenate([x, np.zeros((n, pad))], axis=1)
    else:
        f = int(rng.integers(4, 25))
        x = rng.integers(0, 3, size=(n, f)).astype(np.float64)
    scale = float(rng.choice([1.0, 0.5, 0.25, 2.0, 8.0]))
    k = int(rng.choice([k for k in _GRID_K if k <= 8]))
    eps = scale * math.sqrt(k)
    assert eps * eps >= scale * scale * k
    return Case((x * scale).astype(_dtype(rng)), eps, _min_samples(rng))


def gen_tiny_eps(rng: np.random.Generator) -> Case:
    """eps below every nonzero distance: all noise (min_samples > 1) or singletons (min_samples == 1)."""
    n, f = _n(rng), int(rng.choice([2, 3, 16, 32]))
    x = rng.random((n, f)).astype(_dtype(rng))
    d = np.sqrt(_sq_dists(x))
    eps = float(d[d > 0].min() * 0.25) if (d > 0).any() else 1e-3
    # far above the rounding level of the brute-force |x|^2 + |y|^2 - 2 x.y (~1e-16 * F)
    eps = max(eps, 1e-5)
    return Case(x, eps, int(rng.choice([1, 2, 3])))


def gen_huge_eps(rng: np.random.Generator) -> Case:
    n, f = _n(rng), _features(rng)
    x = rng.normal(size=(n, f)).astype(_dtype(rng))
    diameter = float(np.sqrt(_sq_dists(x).max()))
    return Case(x, diameter * float(rng.uniform(1.01, 10.0)) + 1e-3, _min_samples(rng))


def correlation_rows(rng: np.random.Generator, n: int, dtype: type = np.float32) -> np.ndarray:
    """(n, n) clamped cosine-similarity matrix of clustered unit features, as DBSCAN sees it."""
    d = 64
    k = int(rng.integers(2, 9))
    protos = rng.normal(size=(k, d))
    feats = protos[rng.integers(0, k, size=n)] + rng.normal(scale=rng.uniform(0.3, 1.5), size=(n, d))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    corr = feats @ feats.T
    if rng.random() < 0.5:  # "denoised": subtract a [CLS]-like row before clamping
        corr = corr - 0.5 * corr[rng.integers(0, n)][None, :]
    return np.clip(corr, 0.0, None).astype(dtype)


def gen_corr(rng: np.random.Generator) -> Case:
    n = int(rng.choice([4, 9, 11, 16, 25, 36, 49, 64, 100, 144]))
    x = correlation_rows(rng, n, _dtype(rng))
    eps = _midpoint_eps(x, rng, 0.0, 0.6) if rng.random() < 0.7 else float(rng.choice([0.7, 1.1]))
    return Case(x, eps, int(rng.choice([1, 2, 3, 7])))


def gen_chain(rng: np.random.Generator) -> Case:
    """Long random-walk chains, shuffled: stresses the O(log N) component search."""
    n, f = int(rng.integers(20, 300)), int(rng.choice([1, 2, 3, 20]))
    steps = rng.normal(size=(n, f))
    steps /= np.linalg.norm(steps, axis=1, keepdims=True)
    steps *= rng.uniform(0.5, 1.0, size=(n, 1))
    n_chains = int(rng.integers(1, 4))
    starts = np.zeros((n, f))
    starts[rng.choice(n, size=n_chains - 1, replace=False)] = rng.normal(scale=100.0, size=(n_chains - 1, f))
    x = np.cumsum(steps + starts, axis=0)[rng.permutation(n)].astype(_dtype(rng))
    eps = float(rng.uniform(1.0, 1.5))  # chained steps are at most 1 apart; random, so no ties
    return Case(x, eps, int(rng.choice([1, 2, 3])))


def gen_contested(rng: np.random.Generator) -> Case:
    """Sparse integer points in a small box: many border points touch cores of several clusters."""
    n = int(rng.integers(12, 120))
    f = 2 if rng.random() < 0.7 else 20  # 20: the first two coordinates used, brute-force path
    side = int(rng.integers(4, 15))
    x = np.zeros((n, f))
    x[:, :2] = rng.integers(0, side, size=(n, 2))
    eps = float(rng.choice([1.0, math.sqrt(2), 2.0]))
    return Case(x.astype(_dtype(rng)), eps, int(rng.integers(3, 7)))


GENERATORS: dict[str, tuple[Callable[[np.random.Generator], Case], int]] = {
    "blobs": (gen_blobs, 90),
    "uniform": (gen_uniform, 60),
    "duplicates": (gen_duplicates, 70),
    "grid": (gen_grid, 90),
    "tiny_eps": (gen_tiny_eps, 30),
    "huge_eps": (gen_huge_eps, 30),
    "corr": (gen_corr, 40),
    "chain": (gen_chain, 30),
    "contested": (gen_contested, 60),
}
KIND_INDEX = {kind: i for i, kind in enumerate(GENERATORS)}
CASES = [(kind, seed) for kind, (_, count) in GENERATORS.items() for seed in range(count)]


def make_case(kind: str, seed: int) -> Case:
    rng = np.random.default_rng([KIND_INDEX[kind], seed])
    case = GENERATORS[kind][0](rng)
    case.x = np.ascontiguousarray(case.x)
    return case


@pytest.mark.parametrize(("kind", "seed"), CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_matches_sklearn(kind: str, seed: int) -> None:
    case = make_case(kind, seed)
    got = dbscan_torch(torch.from_numpy(case.x), case.eps, case.min_samples)
    assert_same_labels(got, case.x, case.eps, case.min_samples)


# A few large cases (N up to 1024), including the real shapes: rows of a clamped (N, N) correlation
# matrix at N = 196 (224 px input) and N = 441 (336 px) with the authors' eps / min_samples.
LARGE = [
    ("corr196-paper", 196, 0.7, 3),
    ("corr196-mid", 196, None, 3),
    ("corr441-paper", 441, 1.1, 7),
    ("corr441-mid", 441, None, 7),
    ("corr1024-mid", 1024, None, 5),
    ("blobs2d-1024", 1024, None, 7),
    ("line-1024", 1024, None, 2),
]


@pytest.mark.parametrize(("name", "n", "eps", "min_samples"), LARGE, ids=[c[0] for c in LARGE])
def test_large_matches_sklearn(name: str, n: int, eps: float | None, min_samples: int) -> None:
    rng = np.random.default_rng([100, n, min_samples])
    if name.startswith("corr"):
        x = correlation_rows(rng, n)
        eps = _midpoint_eps(x, rng, 0.0, 0.3) if eps is None else eps
    elif name.startswith("blobs"):
        x = np.concatenate([rng.normal(loc=c, scale=0.6, size=(n // 4, 2)) for c in (0.0, 3.0, 6.0, 9.0)])
        eps = _midpoint_eps(x[:200], rng, 0.02, 0.05)
    else:  # one long chain on a line, shuffled: the worst case for label propagation
        x = (np.arange(n, dtype=np.float64) * 0.5)[rng.permutation(n), None]
        x[rng.choice(n, size=8, replace=False)] += 1000.0 * np.arange(1, 9)[:, None]
        eps = 0.75
    x = np.ascontiguousarray(x)
    got = dbscan_torch(torch.from_numpy(x), eps, min_samples)
    assert_same_labels(got, x, eps, min_samples)


def _contested_border_points(x: np.ndarray, eps: float, min_samples: int) -> int:
    """Non-core points whose core neighbours belong to more than one scikit-learn cluster."""
    model = DBSCAN(eps=eps, min_samples=min_samples).fit(x)
    core = np.zeros(len(x), dtype=bool)
    core[model.core_sample_indices_] = True
    near = _sq_dists(x) <= eps * eps
    count = 0
    for i in np.flatnonzero(~core):
        clusters = set(model.labels_[near[i] & core].tolist())
        count += len(clusters) > 1
    return count


def test_suite_exercises_contested_border_points() -> None:
    """The random cases must include border points that two clusters compete for (min-label rule)."""
    contested = sum(
        _contested_border_points(c.x, c.eps, c.min_samples)
        for c in (make_case("contested", seed) for seed in range(GENERATORS["contested"][1]))
    )
    assert contested >= 20, f"only {contested} contested border points in the 'contested' cases"


@pytest.mark.parametrize("seed", range(20))
def test_contested_border_takes_smallest_cluster(seed: int) -> None:
    """Two plus-shaped clusters share one border point at distance eps from both; order shuffled."""
    left = [(-1, 0), (-1, 1), (-1, -1), (-2, 0)]
    right = [(1, 0), (1, 1), (1, -1), (2, 0)]
    pts = np.array([*left, *right, (0, 0)], dtype=np.float64)
    perm = np.random.default_rng(seed).permutation(len(pts))
    x = np.ascontiguousarray(pts[perm])
    eps, min_samples = 1.0, 4
    ref = sklearn_labels(x, eps, min_samples)
    border = int(np.flatnonzero(perm == len(pts) - 1)[0])
    assert ref.max() == 1 and ref[border] == 0  # the oracle really has a contested border point
    for x_in in (x, np.ascontiguousarray(np.pad(x, ((0, 0), (0, 18))))):  # kd-tree and brute paths
        assert_same_labels(dbscan_torch(torch.from_numpy(x_in), eps, min_samples), x_in, eps, min_samples)


@pytest.mark.parametrize("min_samples", [1, 2, 3, 5])
def test_grid_distance_exactly_eps(min_samples: int) -> None:
    """On a full 6x6 unit grid with eps = 1 the 4-neighbours lie at exactly eps and are neighbours."""
    xs = np.array([(i, j) for i in range(6) for j in range(6)], dtype=np.float64)
    corner = np.isin(xs, [0, 5]).all(axis=1)
    # min_samples <= 3: every point is core (a corner has itself + 2); 5: edges are border, corners noise
    expected = np.where(corner & (min_samples == 5), -1, 0)
    for x in (xs, np.ascontiguousarray(np.pad(xs, ((0, 0), (0, 20)))), xs.astype(np.float32)):
        got = dbscan_torch(torch.from_numpy(x), 1.0, min_samples)
        assert_same_labels(got, x, 1.0, min_samples)
        assert got.tolist() == expected.tolist()


def test_float32_threshold_of_brute_force_path() -> None:
    """float32 input, > 15 features: sklearn keeps d^2 <= float32(eps)^2 (in float32), not eps^2.

    With eps = sqrt(2) / 4 on a 1/4-spaced grid the diagonal neighbours (d == eps exactly) are in for
    float64 input but out for float32 input (float32(eps) ** 2 == 0.12499999...).
    """
    eps = 0.25 * math.sqrt(2)
    assert float(np.float32(eps) * np.float32(eps)) < 0.125 <= eps * eps
    xs = np.zeros((4, 20))
    xs[:, :2] = [(0, 0), (0.25, 0.25), (0.5, 0.5), (0.75, 0.75)]  # a diagonal chain, steps of exactly eps
    for dtype, expected in ((np.float64, [0, 0, 0, 0]), (np.float32, [-1, -1, -1, -1])):
        x = xs.astype(dtype)
        got = dbscan_torch(torch.from_numpy(x), eps, 2)
        assert_same_labels(got, x, eps, 2)
        assert got.tolist() == expected


def test_batched_equals_per_element() -> None:
    rng = np.random.default_rng(7)
    cases = [correlation_rows(rng, 49, np.float32) for _ in range(3)]
    cases.append(np.round(rng.random((49, 49)) * 4).astype(np.float32) / 4)  # exact values
    cases.append(cases[0][rng.permutation(49)])
    x = torch.from_numpy(np.stack(cases))
    eps = _midpoint_eps(cases[0], rng, 0.0, 0.3)
    for min_samples in (1, 3, 7):
        batched = dbscan_torch(x, eps, min_samples)
        assert batched.shape == (5, 49) and batched.dtype == torch.int64
        for b in range(len(cases)):
            assert torch.equal(batched[b], dbscan_torch(x[b], eps, min_samples))
            assert_same_labels(batched[b], cases[b], eps, min_samples)
        assert torch.equal(dbscan_sklearn(x, eps, min_samples), batched)
    # kd-tree path batched too (F <= 15)
    pts = torch.from_numpy(rng.normal(size=(4, 80, 2)))
    for b, labels in enumerate(dbscan_torch(pts, 0.3, 3)):
        assert_same_labels(labels, pts[b].numpy(), 0.3, 3)


def test_empty_batch() -> None:
    assert dbscan_torch(torch.zeros(0, 5, 3), 1.0, 2).shape == (0, 5)


def test_sklearn_backend_is_the_oracle() -> None:
    rng = np.random.default_rng(3)
    for kind, seed in [("blobs", 1), ("grid", 2), ("corr", 3), ("duplicates", 4)]:
        case = make_case(kind, seed)
        got = dbscan_sklearn(torch.from_numpy(case.x), case.eps, case.min_samples)
        assert_same_labels(got, case.x, case.eps, case.min_samples)
    x = torch.from_numpy(rng.normal(size=(30, 4)))
    assert dbscan_sklearn(x, 0.8, 2).shape == (30,)


def test_half_precision_and_non_contiguous_inputs() -> None:
    rng = np.random.default_rng(11)
    x32 = rng.normal(size=(3, 60)).astype(np.float32)
    t = torch.from_numpy(x32).t()  # (60, 3) non-contiguous view
    assert not t.is_contiguous()
    eps = _midpoint_eps(np.ascontiguousarray(x32.T), rng, 0.0, 0.3)
    assert_same_labels(dbscan_torch(t, eps, 3), np.ascontiguousarray(x32.T), eps, 3)
    assert torch.equal(dbscan_sklearn(t, eps, 3), dbscan_torch(t, eps, 3))
    leaf = t.double().requires_grad_(True)  # autograd inputs are accepted (and detached)
    assert torch.equal(dbscan_torch(leaf, eps, 3), dbscan_sklearn(leaf, eps, 3))
    for half in (torch.float16, torch.bfloat16):
        h = t.to(half)
        exact = h.float().contiguous().numpy()  # the half values, exactly, in float32
        assert_same_labels(dbscan_torch(h, eps, 3), exact, eps, 3)
        assert torch.equal(dbscan_sklearn(h, eps, 3), dbscan_torch(h, eps, 3))


def test_dispatch_and_registry() -> None:
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(40, 3)))
    assert "torch" in DBSCAN_BACKENDS and "sklearn" in DBSCAN_BACKENDS
    assert sorted(DBSCAN_BACKENDS) == ["sklearn", "torch"]
    assert DBSCAN_BACKENDS.get("torch") is dbscan_torch
    assert DBSCAN_BACKENDS.get("sklearn") is dbscan_sklearn
    assert torch.equal(dbscan(x, 0.5, 3), dbscan_torch(x, 0.5, 3))
    assert torch.equal(dbscan(x, 0.5, 3, backend="sklearn"), dbscan_torch(x, 0.5, 3))
    with pytest.raises(KeyError, match=r"'cuml'.*valid: sklearn, torch"):
        dbscan(x, 0.5, 3, backend="cuml")


GOOD = torch.zeros(5, 3)
BAD_INPUTS = [
    ("eps-zero", GOOD, 0.0, 3, r"^eps must be a finite number > 0, got 0\.0$"),
    ("eps-negative", GOOD, -1.0, 3, r"^eps must be a finite number > 0, got -1\.0$"),
    ("eps-nan", GOOD, float("nan"), 3, r"^eps must be a finite number > 0, got nan$"),
    ("eps-inf", GOOD, float("inf"), 3, r"^eps must be a finite number > 0, got inf$"),
    ("eps-str", GOOD, "0.5", 3, r"^eps must be a finite number > 0, got '0\.5'$"),
    ("min-samples-zero", GOOD, 0.5, 0, r"^min_samples must be an integer >= 1, got 0$"),
    ("min-samples-negative", GOOD, 0.5, -2, r"^min_samples must be an integer >= 1, got -2$"),
    ("min-samples-float", GOOD, 0.5, 2.5, r"^min_samples must be an integer >= 1, got 2\.5$"),
    ("ndim-1", torch.zeros(5), 0.5, 3, r"^x must be \(N, F\) or \(B, N, F\), got shape \(5,\)$"),
    ("ndim-4", torch.zeros(1, 2, 5, 3), 0.5, 3, r"^x must be \(N, F\) or \(B, N, F\), got shape \(1, 2, 5"),
    ("n-zero", torch.zeros(0, 3), 0.5, 3, r"^x must have at least one point \(N >= 1\), got shape \(0, 3\)$"),
    ("n-zero-batched", torch.zeros(2, 0, 3), 0.5, 3, r"^x must have at least one point \(N >= 1\)"),
    ("f-zero", torch.zeros(5, 0), 0.5, 3, r"^x must have at least one feature \(F >= 1\)"),
    ("nan", torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), 0.5, 1, r"^x contains NaN or infinite values$"),
    ("inf", torch.tensor([[0.0, 1.0], [0.0, float("-inf")]]), 0.5, 1, r"^x contains NaN or infinite values$"),
    ("int-dtype", torch.zeros(5, 3, dtype=torch.int64), 0.5, 3, r"^x must be a floating-point tensor"),
    ("not-tensor", np.zeros((5, 3)), 0.5, 3, r"^x must be a torch\.Tensor, got ndarray$"),
]


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
@pytest.mark.parametrize(
    ("x", "eps", "min_samples", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_validation_errors(backend: str, x: object, eps: object, min_samples: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dbscan(x, eps, min_samples, backend=backend)  # type: ignore[arg-type]


@pytest.mark.gpu
def test_cuda_matches_cpu_and_sklearn() -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    dev = torch.device("cuda")
    for kind, seed in [(k, s) for k in GENERATORS for s in range(8)]:
        case = make_case(kind, seed)
        x = torch.from_numpy(case.x)
        got = dbscan_torch(x.to(dev), case.eps, case.min_samples)
        assert got.device.type == "cuda"
        assert torch.equal(got.cpu(), dbscan_torch(x, case.eps, case.min_samples)), f"{kind}-{seed}"
        assert_same_labels(got, case.x, case.eps, case.min_samples)
    rng = np.random.default_rng(0)
    for n, eps, min_samples in [(196, 0.7, 3), (441, 1.1, 7)]:
        batch = np.stack([correlation_rows(rng, n) for _ in range(4)])
        got = dbscan_torch(torch.from_numpy(batch).to(dev), eps, min_samples)
        assert got.shape == (4, n) and got.device.type == "cuda"
        for b in range(4):
            assert_same_labels(got[b], batch[b], eps, min_samples)
        assert torch.equal(dbscan(torch.from_numpy(batch).to(dev), eps, min_samples, backend="sklearn"), got)
