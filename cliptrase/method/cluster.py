"""DBSCAN in torch that reproduces ``sklearn.cluster.DBSCAN`` label for label (docs/method.md §4 Step G).

``dbscan_torch`` is batched and vectorised (dense ``N x N`` neighbourhoods, runs on CPU or CUDA);
``dbscan_sklearn`` runs scikit-learn per batch element and is the oracle of ``tests/unit/test_dbscan.py``.
Both return int64 labels on ``x``'s device, ``-1`` for noise, and are registered in ``DBSCAN_BACKENDS``.

Why the torch version gives scikit-learn's labels (source read in scikit-learn 1.9.1 and diffed
against 1.5.2 and 1.8.0: ``cluster/_dbscan.py``, ``_dbscan_inner.pyx``, ``neighbors/_base.py``,
``_binary_tree.pxi.tp`` and ``metrics/_pairwise_distances_reduction`` behave the same in all three):

* **Neighbourhoods.** ``DBSCAN.fit`` builds ``NearestNeighbors(radius=eps)`` and calls
  ``radius_neighbors(X)`` with ``X`` passed explicitly, so each point is returned as its own neighbour
  (distance 0) and the count used for ``n_neighbors >= min_samples`` includes the point itself.
* **Clusters.** ``dbscan_inner`` walks ``i = 0, 1, ...`` and starts cluster ``label_num`` at the first
  core point that has no label yet, then labels everything reachable depth-first, expanding only core
  points. A cluster is therefore a connected component of the core-core graph (two cores are linked when
  one is in the other's eps-neighbourhood), and clusters are numbered in the order of the lowest index
  of their core points. Here: connected components by min-label hooking plus pointer jumping
  (``O(log N)`` dense rounds), each component's root being its smallest core index; the cluster number
  of a root is the number of roots before it.
* **Border points.** A non-core point is labelled by the first DFS that reaches it and keeps that label.
  Clusters are built one after another in increasing number, so a border point gets the *smallest*
  cluster number among its core neighbours. A non-core point with no core neighbour stays ``-1``.
* **The ``dist <= eps`` decision** (``metric="euclidean"``, default ``algorithm="auto"``). ``X`` is
  not upcast by ``DBSCAN.fit``; which code path decides depends on the shape of ``X``:

  - *KD-tree* when ``n_features <= 15`` and ``N >= 12`` (``auto`` picks brute force when
    ``n_features > 15`` or when the default ``n_neighbors=5 >= N // 2``). ``KDTree`` converts the data
    to float64 and, in leaves, accumulates ``d += (x_k - y_k) ** 2`` over features in order, in float64,
    keeping ``d <= eps * eps``. This is reproduced bit for bit: float64 upcast (exact for float32), one
    separate subtraction, multiplication and addition per feature, in feature order, no fused
    multiply-add. One known divergence: before its leaf test the tree accepts a whole node when the
    float64 bound ``sqrt(sum_k max offset_k ** 2) <= eps`` (a square root, not a square), so a point
    whose squared distance ``d2`` lies in the one-ulp band ``eps * eps < d2`` with
    ``sqrt(d2) == eps`` may be counted or not depending on the tree's layout. This needs ``eps * eps``
    to round below an attained ``d2``, e.g. ``eps = math.sqrt(3)`` on an integer grid
    (``eps * eps == 2.9999999999999996``); this code then always applies the leaf rule (excluded).
  - *Brute force* otherwise: ``RadiusNeighbors{64,32}`` (``metrics/_pairwise_distances_reduction``,
    used for C-contiguous float32/float64 input) computes ``max(0, (|x|^2 + (-2 x.y)) + |y|^2)`` in
    float64 (float32 rows are upcast to float64 before the row norms and the GEMM) and keeps it when
    ``<= r``. The threshold ``r`` comes from the dtype's ``EuclideanDistance{64,32}._dist_to_rdist``:
    ``eps * eps`` in float64 for float64 input, but ``float32(eps) * float32(eps)`` rounded to float32
    for float32 input (``0.25 * sqrt(2)`` squares to just below ``0.125`` there, so a dyadic-grid pair
    at exactly ``eps`` is *not* a neighbour). Both the expression and the threshold are reproduced
    here, in float64, in the same order; float16/bfloat16 input is treated as float32 (what
    ``dbscan_sklearn`` passes to scikit-learn). Exactly
    representable inputs (small integers, dyadic grids) give identical decisions; otherwise the last
    bits of a dot product depend on the BLAS summation order, so a pair whose squared distance lies
    within rounding error (~1e-16 * |x|^2) of ``eps * eps`` may be decided differently. This includes
    the point itself when ``eps`` is that small: scikit-learn then drops some points from their own
    neighbourhood (``min_samples=1`` yields noise), so does this code, but not necessarily the same
    points. The pair decision is symmetrised here (``adj & adj.T``); scikit-learn's may be asymmetric
    at the same rounding level.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
import torch
from torch import Tensor

from cliptrase.utils.name_registry import Registry

__all__ = ["DBSCAN_BACKENDS", "dbscan", "dbscan_sklearn", "dbscan_torch"]

logger = logging.getLogger(__name__)

DBSCAN_BACKENDS: Registry[Callable[[Tensor, float, int], Tensor]] = Registry("DBSCAN backend")

#: ``algorithm="auto"`` in scikit-learn uses a KD-tree up to this many features ...
_KD_TREE_MAX_FEATURES = 15
#: ... and brute force when NearestNeighbors' default ``n_neighbors`` (5) is ``>= N // 2``, i.e. N < 12.
_KD_TREE_MIN_SAMPLES = 12


def _validate(x: Tensor, eps: float, min_samples: int) -> tuple[Tensor, float, int, bool]:
    """Check the arguments; return ``x`` as (B, N, F), ``eps`` as float, ``min_samples``, batched flag."""
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if isinstance(eps, bool) or not isinstance(eps, Real) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, Integral) or min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")
    if x.ndim not in (2, 3):
        raise ValueError(f"x must be (N, F) or (B, N, F), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[-2] == 0:
        raise ValueError(f"x must have at least one point (N >= 1), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise ValueError(f"x must have at least one feature (F >= 1), got shape {tuple(x.shape)}")
    if x.numel() and not bool(torch.isfinite(x).all()):  # the one host sync of validation
        raise ValueError("x contains NaN or infinite values")
    batched = x.ndim == 3
    x = x.detach()  # labels are discrete: no autograd graph
    return (x if batched else x.unsqueeze(0)), float(eps), int(min_samples), batched


def _neighbourhoods(x: Tensor, eps: float) -> Tensor:
    """Boolean (B, N, N) eps-neighbourhoods decided as scikit-learn decides them (see module docstring).

    Args:
        x: (B, N, F) floating-point points.
        eps: neighbourhood radius.

    Returns:
        ``adj[b, i, j]`` true when ``j`` is within ``eps`` of ``i``; symmetric.
    """
    x64 = x.to(torch.float64)
    n, f = x64.shape[-2], x64.shape[-1]
    if f <= _KD_TREE_MAX_FEATURES and n >= _KD_TREE_MIN_SAMPLES:
        # KDTree (always float64) leaf test: d = 0; for k: t = x_k - y_k; d += t * t; keep d <= eps * eps.
        eps2 = eps * eps
        sq = torch.zeros(x64.shape[0], n, n, dtype=torch.float64, device=x64.device)
        for k in range(f):  # <= 15 vectorised steps, kept separate so no FMA can be contracted
            t = x64[:, :, None, k] - x64[:, None, :, k]
            sq = sq + t * t
        return sq <= eps2
    # RadiusNeighbors (brute force): max(0, (|x|^2 + (-2 x.y)) + |y|^2) in float64, kept when <= r, with
    # r = eps * eps computed in the input's precision (float32 for everything but float64).
    if x.dtype == torch.float64:
        eps2 = eps * eps
    else:
        with np.errstate(over="ignore", under="ignore"):  # inf / 0 as in scikit-learn's C code
            eps2 = float(np.float32(eps) * np.float32(eps))  # float32 product, rounded to float32
    norms = (x64 * x64).sum(-1)
    gram = torch.matmul(x64, x64.transpose(-1, -2))
    # |x|^2 + (-2) * x.y: the product by -2 is exact, so this equals sklearn's |x|^2 + (-2 x.y) with or
    # without a fused multiply-add. max(0, .) is left out: it cannot change ``<= eps2`` as eps2 >= 0.
    sq = torch.add(norms[:, :, None], gram, alpha=-2.0).add_(norms[:, None, :])
    adj = sq <= eps2
    return adj & adj.transpose(-1, -2)


def _small_int(n: int) -> torch.dtype:
    """Narrowest integer dtype holding ``-(n + 1) .. n + 1``.

    The dense (B, N, N) integer passes run far faster in int16: 7 ms against 50 ms for ``where`` +
    ``amin`` in int32 at B=8, N=1024 on one CPU core.
    """
    if n < 2**15 - 1:
        return torch.int16
    return torch.int32 if n < 2**31 - 1 else torch.int64


def _masked_min(adj: Tensor, values: Tensor, none: int) -> Tensor:
    """``out[b, i] = min(values[b, j] for j with adj[b, i, j])``, ``none`` when there is no such ``j``.

    ``values`` must lie in ``0 .. none``. Evaluated as ``none + min_j adj_ij * (values_j - none)`` in the
    narrowest integer dtype (a product and a reduction vectorise better than ``torch.where``).
    """
    small = _small_int(none)
    shifted = (values - none).to(small)  # in -none .. 0
    return (adj.to(small) * shifted[:, None, :]).amin(-1).to(torch.int64) + none


def _min_index_components(adj: Tensor, active: Tensor) -> Tensor:
    """Smallest index of each active node's connected component, for a batch of symmetric graphs.

    The graph has the edges of ``adj`` between two active nodes. FastSV-style: each round hooks every
    tree onto the smallest grandparent seen across its edges (stochastic and aggressive hooking), then
    shortcuts (pointer jumping), all with dense masked min reductions. Parents only decrease and always
    point into the same component, so the fixed point has every node pointing at its component's
    smallest index; it is reached in ``O(log N)`` rounds on typical graphs (a shuffled 4096-point chain
    takes 14). One host sync per round checks convergence.

    Args:
        adj: (B, N, N) boolean symmetric adjacency (the diagonal is ignored).
        active: (B, N) boolean mask of the nodes that take part (core points).

    Returns:
        (B, N) int64 ``root[b, i]`` = smallest active ``j`` connected to an active ``i``; ``i`` for an
        inactive or isolated ``i``.
    """
    b, n, _ = adj.shape
    parent = torch.arange(n, device=adj.device).expand(b, n).contiguous()
    rounds = 0
    while True:  # terminates: every round but the last lowers some parent, and none goes below 0
        rounds += 1
        grand = parent.gather(-1, parent)
        # smallest grandparent among the active neighbours of each active node (n when none)
        seen = _masked_min(adj, torch.where(active, grand, n), n)
        seen = torch.where(active, seen, n)
        new = parent.scatter_reduce(-1, parent, seen, reduce="amin", include_self=True)  # hook the root
        new = torch.minimum(torch.minimum(new, seen), grand)  # aggressive hooking + shortcut
        if torch.equal(new, parent):
            logger.debug("connected components converged in %d rounds (N=%d)", rounds, n)
            return parent
        parent = new


@DBSCAN_BACKENDS.register("torch")
def dbscan_torch(x: Tensor, eps: float, min_samples: int) -> Tensor:
    """DBSCAN of the rows of ``x``, equal label for label to scikit-learn's ``DBSCAN``.

    Equivalent to ``DBSCAN(eps=eps, min_samples=min_samples, metric="euclidean").fit(x_b).labels_`` for
    each batch element ``x_b``: a point is core when at least ``min_samples`` points (itself included)
    lie within ``eps``; clusters are the connected components of the core-core eps-graph, numbered by
    their lowest core index (the order in which scikit-learn's ``dbscan_inner`` loop starts them); a
    non-core point takes the smallest cluster number among its core neighbours (the first cluster whose
    DFS reaches it), else ``-1``. Distances are decided as scikit-learn decides them (module docstring).

    Vectorised over points and batch elements; memory is ``O(B * N^2)``. Host syncs: one finiteness
    check of ``x`` and one convergence check per connected-components round.

    Args:
        x: (N, F) or (B, N, F) floating-point points, on any device.
        eps: neighbourhood radius, finite and > 0.
        min_samples: neighbours (the point itself included) that make a point core, >= 1.

    Returns:
        int64 labels of shape (N,) or (B, N) on ``x``'s device; ``-1`` marks noise.

    Raises:
        ValueError: on a bad ``eps``/``min_samples``, a wrong shape or dtype, ``N == 0`` or a
            non-finite value in ``x``.
    """
    xb, eps, min_samples, batched = _validate(x, eps, min_samples)
    b, n, _ = xb.shape
    if b == 0:
        labels = torch.empty(0, n, dtype=torch.int64, device=x.device)
        return labels if batched else labels[0]
    adj = _neighbourhoods(xb, eps)  # (B, N, N), diagonal set except in the rounding corner case
    # neighbour counts (itself included); counts <= n, so the narrow dtype and the clamp are exact
    core = adj.sum(-1, dtype=_small_int(n)) >= min(min_samples, n + 1)  # (B, N)
    root = _min_index_components(adj, core)  # for a core point: its component's smallest core index
    is_root = core & (root == torch.arange(n, device=x.device))
    cluster_of_root = is_root.cumsum(-1) - 1  # clusters numbered by their smallest core index
    core_label = torch.where(core, cluster_of_root.gather(-1, root), n)  # n for non-core points
    # non-core points: smallest cluster number among core neighbours (n when none -> noise)
    border_label = _masked_min(adj, core_label, n)
    labels = torch.where(core, core_label, border_label)
    labels = torch.where(labels == n, -1, labels)
    return labels if batched else labels[0]


@DBSCAN_BACKENDS.register("sklearn")
def dbscan_sklearn(x: Tensor, eps: float, min_samples: int) -> Tensor:
    """Reference DBSCAN: ``sklearn.cluster.DBSCAN`` run on each batch element (the test oracle).

    Rows go to scikit-learn as C-contiguous float32/float64 numpy arrays (float16/bfloat16 are upcast
    to float32, which is exact; scikit-learn's brute-force path then upcasts to float64 like
    ``dbscan_torch`` does).

    Args:
        x: (N, F) or (B, N, F) floating-point points, on any device.
        eps: neighbourhood radius, finite and > 0.
        min_samples: neighbours (the point itself included) that make a point core, >= 1.

    Returns:
        int64 labels of shape (N,) or (B, N) on ``x``'s device; ``-1`` marks noise.

    Raises:
        ValueError: as ``dbscan_torch``.
    """
    from sklearn.cluster import DBSCAN  # imported lazily: the torch backend does not need it

    xb, eps, min_samples, batched = _validate(x, eps, min_samples)
    if xb.dtype not in (torch.float32, torch.float64):
        xb = xb.to(torch.float32)
    x_np = xb.detach().cpu().numpy()
    model = DBSCAN(eps=eps, min_samples=min_samples, metric="euclidean")
    out = np.empty(x_np.shape[:2], dtype=np.int64)
    for i, xi in enumerate(x_np):
        out[i] = model.fit(np.ascontiguousarray(xi)).labels_
    labels = torch.from_numpy(out).to(x.device)
    return labels if batched else labels[0]


def dbscan(x: Tensor, eps: float, min_samples: int, backend: str = "torch") -> Tensor:
    """DBSCAN of the rows of ``x`` with the backend registered as ``backend`` in ``DBSCAN_BACKENDS``.

    Args:
        x: (N, F) or (B, N, F) floating-point points.
        eps: neighbourhood radius, finite and > 0.
        min_samples: neighbours (the point itself included) that make a point core, >= 1.
        backend: ``"torch"`` (default) or ``"sklearn"``.

    Returns:
        int64 labels of shape (N,) or (B, N) on ``x``'s device; ``-1`` marks noise.

    Raises:
        KeyError: for an unknown backend, naming the valid ones.
        ValueError: for invalid arguments (see ``dbscan_torch``).
    """
    return DBSCAN_BACKENDS.get(backend)(x, eps, min_samples)
