"""CLIPtrase (Shao et al., ECCV 2024): the method class and its labelling as a chain of small batched
functions; tensors in, tensors out.

:class:`CLIPtrase` asks the tower for the q/k/v of the correlation block (block d-1), runs the last block
with the ``cliptrase`` rule (or an ablation's) and labels through :func:`cliptrase_segment`.

Call graph of :func:`cliptrase_segment` (docs/method.md §1.1; every step cites its section)::

    DenseFeatures (last block = "cliptrase" rule, q/k/v of block d-1 collected)
      -> grid_logits, label_grid §4 E.1-2   logit_scale * patches @ textᵀ, bilinear to the output
                                            (mean vote: on first read only)
      -> cls_logits              §4 E.3     VOC20 only: times the [CLS] logits per class
      -> argmax, collapse_background  §4 E.4-5
      -> qkv_cosine_correlation  §4 B       block d-1, mean over heads, [CLS] included
      -> subtract_cls_row        §4 F       [CLS]-row denoise and clamp
      -> dbscan                  §4 G
      -> cluster_soft_masks, region_map  §4 H   x4 bilinear, 7x7 median, bilinear, argmax
      -> majority_vote           §4 I       ties to the smallest id; raw argmax when no cluster exists
         or grid_region_means    §10        mean_logits: the upsampled logits' region means, from the grid

No dataset names appear here: the dataset supplies ``n_foreground`` (background collapse) and
``cls_product`` through :class:`CLIPtraseOptions`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from cliptrase.method.cluster import DBSCAN_BACKENDS, dbscan
from cliptrase.method.correlation import CORRELATIONS
from cliptrase.method.denoise import drop_cls, subtract_cls_row
from cliptrase.method.interface import METHODS, DenseMethod, method_options
from cliptrase.method.labels import (
    Deferred,
    SegmentOutput,
    argmax_channels,
    cls_logits,
    collapse_background,
    grid_logits,
    label_grid,
)
from cliptrase.method.vote import (
    cluster_soft_masks,
    grid_region_means,
    majority_vote,
    region_map,
    spread_regions,
)
from cliptrase.models.dense import DenseFeatures, LastBlockSpec, TowerRequest
from cliptrase.utils.profiling import stage

logger = logging.getLogger(__name__)

CLIPTRASE_LAST_BLOCK = LastBlockSpec(attention="cliptrase", keep_residual=True, keep_ffn=True)
"""docs/method.md §4 Step C: sum of three softmaxes, residual and FFN kept."""


@dataclass(frozen=True)
class CLIPtraseOptions:
    """Settings of the post-processing; defaults are the authors' (docs/method.md §4).

    Attributes:
        eps: DBSCAN radius (0.7 at 224, 1.1 at 336 in the authors' script).
        min_samples: DBSCAN core-point threshold (3 at 224, 7 at 336).
        n_foreground: number of foreground classes C when background prompts follow them (every label
            >= C collapses to C); None when the vocabulary has no background prompts.
        cls_product: multiply the pixel logits by the [CLS] logits per class (the authors do it on VOC20).
        denoise: subtract the [CLS] row before clustering (§4 F).
        cluster: cluster and vote; False returns the per-pixel argmax.
        vote: ``majority`` (the single-GPU script) or ``mean_logits`` (the d2 version, §10).
        upsample_ratio: mask upsampling before the median filter (4).
        median_size: median filter side (7 = 2 * 4 - 1).
        dbscan: DBSCAN backend, ``torch`` or ``sklearn`` (the oracle).
        correlation_block: block whose q/k/v give the correlation, relative to depth (-2 = block 11 of 12).
        correlation: ``qkv_cosine`` (the authors') or ``attention`` (ablation: the plain attention map).
    """

    eps: float
    min_samples: int
    n_foreground: int | None = None
    cls_product: bool = False
    denoise: bool = True
    cluster: bool = True
    vote: Literal["majority", "mean_logits"] = "majority"
    upsample_ratio: int = 4
    median_size: int = 7
    dbscan: str = "torch"
    correlation_block: int = -2
    correlation: str = "qkv_cosine"

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"method.eps must be a finite number > 0, got {self.eps!r}")
        if int(self.min_samples) != self.min_samples or self.min_samples < 1:
            raise ValueError(f"method.min_samples must be an integer >= 1, got {self.min_samples!r}")
        if self.n_foreground is not None and self.n_foreground < 1:
            raise ValueError(f"n_foreground must be >= 1 or None, got {self.n_foreground}")
        if self.vote not in ("majority", "mean_logits"):
            raise ValueError(f"method.vote must be 'majority' or 'mean_logits', got {self.vote!r}")
        if self.upsample_ratio < 1:
            raise ValueError(f"method.upsample_ratio must be >= 1, got {self.upsample_ratio}")
        if self.median_size < 1 or self.median_size % 2 == 0:
            raise ValueError(f"method.median_size must be a positive odd integer, got {self.median_size}")
        if self.dbscan not in DBSCAN_BACKENDS:
            raise ValueError(f"method.dbscan must be one of {sorted(DBSCAN_BACKENDS)}, got {self.dbscan!r}")
        if self.correlation not in CORRELATIONS:
            raise ValueError(
                f"method.correlation must be one of {sorted(CORRELATIONS)}, got {self.correlation!r}"
            )
        if self.correlation_block >= 0:
            raise ValueError(
                f"method.correlation_block is relative to depth and must be < 0, got {self.correlation_block}"
            )


def correlation_matrix(features: DenseFeatures, block: int, source: str = "qkv_cosine") -> Tensor:
    """(B, 1 + N, 1 + N) correlation of ``block`` (which the encoder must have collected), §4 B."""
    if block not in features.qkv:
        raise KeyError(f"q/k/v of block {block} were not collected; encode with collect=({block},)")
    return CORRELATIONS[source](*features.qkv[block])


def cliptrase_segment(
    features: DenseFeatures,
    text: Tensor,
    logit_scale: float,
    out_hw: tuple[int, int],
    opts: CLIPtraseOptions,
) -> SegmentOutput:
    """CLIPtrase prediction for a batch of equally sized inputs (docs/method.md §1.1).

    Args:
        features: dense features from the CLIPtrase-modified tower with ``opts.correlation_block`` collected.
        text: (C', E) classifier, foreground rows first.
        logit_scale: CLIP's ``logit_scale.exp()``.
        out_hw: output size (S, S in the paper protocol).
        opts: post-processing options.
    """
    mean_vote = opts.cluster and opts.vote == "mean_logits"
    with stage("logits"):
        grid = grid_logits(features, text, logit_scale)
        factor = cls_logits(features, text, logit_scale) if opts.cls_product else None
    # the mean vote needs only the grid: the full-size logits are formed if someone reads them
    out = label_grid(grid, out_hw, n_foreground=opts.n_foreground, cls_factor=factor, lazy=mean_vote)
    if not opts.cluster:
        return out

    with stage("clustering"):
        corr = correlation_matrix(features, opts.correlation_block, opts.correlation)
        dbscan_in = subtract_cls_row(corr) if opts.denoise else drop_cls(corr)
        labels = dbscan(dbscan_in, opts.eps, opts.min_samples, backend=opts.dbscan)
        n_clusters = int(labels.max()) + 1
    out.corr, out.dbscan_in, out.labels = corr, dbscan_in, labels
    if n_clusters == 0:  # no image of the batch has a cluster: raw argmax (§4 G)
        return out
    with stage("post-processing"):
        masks = cluster_soft_masks(dbscan_in, labels, n_clusters)
        regions = region_map(
            masks, features.grid_hw, out_hw, ratio=opts.upsample_ratio, median_size=opts.median_size
        )
        clustered = labels.max(dim=1).values >= 0
        out.regions, out.clustered = regions, clustered
        if not mean_vote:
            n_labels = grid.shape[1] if opts.n_foreground is None else opts.n_foreground + 1
            voted = majority_vote(out.raw_pred, regions, n_clusters, n_labels)
            out.pred = torch.where(clustered[:, None, None], voted, out.raw_pred)
            return out
        # the region means of the upsampled logits, computed on the grid (the [CLS] product is a
        # per-channel factor); the maps they make and their argmax are read lazily (sliding windows score
        # the K rows per window, never the H x W maps)
        scaled = grid if factor is None else grid * factor[:, :, None, None]
        out.region_logits = grid_region_means(scaled, regions, n_clusters)
        out.raw_logits = out.stored("logits")
        _vote_lazily(out, opts.n_foreground)
    return out


def _vote_lazily(out: SegmentOutput, n_foreground: int | None) -> None:
    """``out.logits`` / ``out.pred`` as :class:`Deferred` maps of the region means (``region_logits``) for
    the clustered images, the raw logits / argmax for the others (read only if some image has no cluster)."""
    means, regions, clustered = out.region_logits, out.regions, out.clustered
    raw_logits, raw_pred = out.stored("raw_logits"), out.stored("raw_pred")
    every = bool(clustered.all())

    def voted_logits() -> Tensor:
        spread = spread_regions(means, regions)
        if every:
            return spread
        return torch.where(clustered[:, None, None, None], spread, Deferred.read(raw_logits))

    def voted_pred() -> Tensor:
        voted = collapse_background(argmax_channels(spread_regions(means, regions)), n_foreground)
        return voted if every else torch.where(clustered[:, None, None], voted, Deferred.read(raw_pred))

    out.logits, out.pred = Deferred(voted_logits), Deferred(voted_pred)


@METHODS.register("CLIPtrase")
class CLIPtrase(DenseMethod):
    """CLIPtrase and its ablations: the last block with the config's rule (``cliptrase`` = qq+kk+vv), the
    q/k/v of ``correlation_block`` kept for the clustering, :func:`cliptrase_segment` for the labels."""

    default_last_block = CLIPTRASE_LAST_BLOCK

    def __init__(self, cfg: Any, dataset: str | None = None) -> None:
        super().__init__(cfg, dataset)
        self.cluster = bool(getattr(cfg, "cluster", True))
        self.correlation_block = int(getattr(cfg, "correlation_block", -2))

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """CLIPtrase clusters (``method.cluster``); its knobs are the config's fields, not ``params``."""
        method_options(cls.Options, getattr(cfg, "params", {}) or {}, cls.__name__)

    def request(self, depth: int) -> TowerRequest:
        """The q/k/v of the correlation block when clustering (docs/method.md §4 B)."""
        return TowerRequest(qkv=(self.correlation_block,) if self.cluster else ())

    def segment(
        self,
        features: DenseFeatures,
        text: Tensor,
        logit_scale: float,
        out_hw: tuple[int, int],
        opts: CLIPtraseOptions,
    ) -> SegmentOutput:
        """Clustering and the region vote (:func:`cliptrase_segment`)."""
        return cliptrase_segment(features, text, logit_scale, out_hw, opts)
