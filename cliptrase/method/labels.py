"""Labels from dense features, shared by every method: patch logits against the text classifier, bilinear to
the output, the [CLS] product (the authors' VOC20 rule), the argmax and the background collapse of the
paper protocol (docs/method.md §4 E). CLIPtrase's clustering and vote build on it (``method/trase.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from cliptrase.models.dense import DenseFeatures
from cliptrase.utils.profiling import stage


class Deferred:
    """A :class:`SegmentOutput` field computed on its first read, once: a field nobody reads costs nothing
    (e.g. the argmax over hundreds of prompt maps where only the logits are scored)."""

    __slots__ = ("_fn", "_value")

    def __init__(self, fn: Callable[[], Tensor]) -> None:
        self._fn: Callable[[], Tensor] | None = fn
        self._value: Tensor | None = None

    def value(self) -> Tensor:
        """The tensor (computed now if it was not yet)."""
        if self._fn is not None:
            self._value, self._fn = self._fn(), None
        return self._value

    @staticmethod
    def read(value: Tensor | Deferred) -> Tensor:
        """``value`` itself, or the tensor of a :class:`Deferred`."""
        return value.value() if isinstance(value, Deferred) else value

    @property
    def computed(self) -> bool:
        """Whether the tensor was computed (read at least once)."""
        return self._fn is None


class _Field:
    """A :class:`SegmentOutput` attribute: holds a tensor or a :class:`Deferred`, reads as the tensor."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.slot]
        if isinstance(value, Deferred):
            value = obj.__dict__[self.slot] = value.value()
        return value

    def __set__(self, obj: Any, value: Tensor | Deferred | None) -> None:
        obj.__dict__[self.slot] = value


class SegmentOutput:
    """Everything a method computed for a batch, for scoring and for golden comparisons (the clustering
    fields are None for methods that do not cluster). ``pred``, ``logits``, ``raw_pred`` and ``raw_logits``
    may be given as :class:`Deferred`: they are computed when first read.

    Attributes:
        pred: (B, H, W) final labels (background collapsed).
        logits: (B, C', H, W) pixel logits (region-averaged when ``vote="mean_logits"``).
        raw_pred: (B, H, W) per-pixel argmax after background collapse, before voting.
        corr: (B, 1 + N, 1 + N) q/k/v correlation of the correlation block.
        dbscan_in: (B, N, N) rows given to DBSCAN.
        labels: (B, N) DBSCAN labels (-1 = noise).
        regions: (B, H, W) region ids, or None when no image of the batch had a cluster.
        region_logits: ``vote="mean_logits"``: (B, K, C') mean logits per region, so that
            ``logits[b, :, y, x] == region_logits[b, regions[b, y, x]]`` for the images with a cluster
            (``clustered``); None otherwise. Lets a consumer use the K rows instead of the H x W maps.
        raw_logits: (B, C', H, W) pixel logits before the vote (``logits`` of the images without a cluster);
            with ``vote="mean_logits"`` computed on first read (the region means come from the grid).
        clustered: (B,) bool, the images whose labels were voted over regions.
    """

    pred = _Field()
    logits = _Field()
    raw_pred = _Field()
    raw_logits = _Field()

    def __init__(
        self,
        pred: Tensor | Deferred,
        logits: Tensor | Deferred,
        raw_pred: Tensor | Deferred,
        corr: Tensor | None = None,
        dbscan_in: Tensor | None = None,
        labels: Tensor | None = None,
        regions: Tensor | None = None,
        region_logits: Tensor | None = None,
        raw_logits: Tensor | Deferred | None = None,
        clustered: Tensor | None = None,
    ) -> None:
        self.pred, self.logits, self.raw_pred = pred, logits, raw_pred
        self.corr, self.dbscan_in, self.labels, self.regions = corr, dbscan_in, labels, regions
        self.region_logits, self.raw_logits, self.clustered = region_logits, raw_logits, clustered

    def stored(self, name: str) -> Tensor | Deferred | None:
        """Field ``name`` as stored: a :class:`Deferred` stays uncomputed (for a later field built on it)."""
        if isinstance(type(self).__dict__.get(name), _Field):
            return self.__dict__[f"_{name}"]
        return getattr(self, name)


def grid_logits(features: DenseFeatures, text: Tensor, logit_scale: float) -> Tensor:
    """Logits on the patch grid: ``logit_scale · patches @ textᵀ`` (§4 E.1).

    Args:
        features: dense output (normalised tokens).
        text: (C', E) classifier rows.
        logit_scale: CLIP's ``logit_scale.exp()`` (100 for OpenAI weights; argmax-neutral, kept for parity).

    Returns:
        (B, C', h, w), a channels-last view of the (B, N, C') product.
    """
    b = features.tokens.shape[0]
    h, w = features.grid_hw
    logits = logit_scale * features.patches @ text.t()  # (B, N, C')
    # (B, C', h, w) as a channels-last view of the (B, N, C') product. The authors' transpose + reshape
    # gives the same strides (for B = 1 up to the stride of the size-1 batch dim), and PyTorch computes
    # both with its channels-last bilinear kernel, so the values are bit-identical (tested); spelling it
    # as a permute lets PyTorch see the layout for B = 1 too and take the fast path (~10x at 224 on CPU).
    # The result is channels-last, which also makes the channel argmax cheap.
    return logits.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def upsample_logits(grid: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Grid logits bilinear (``align_corners=False``) to ``out_hw`` (§4 E.2)."""
    return torch.nn.functional.interpolate(grid, size=out_hw, mode="bilinear", align_corners=False)


def patch_logits(
    features: DenseFeatures, text: Tensor, logit_scale: float, out_hw: tuple[int, int]
) -> Tensor:
    """Pixel logits: ``logit_scale · patches @ textᵀ`` on the grid, bilinear to ``out_hw`` (§4 E.1-2).

    Returns:
        (B, C', H, W), channels-last.
    """
    return upsample_logits(grid_logits(features, text, logit_scale), out_hw)


def cls_logits(features: DenseFeatures, text: Tensor, logit_scale: float) -> Tensor:
    """(B, C') logits of the [CLS] token, the per-class factor of the [CLS] product (§4 E.3)."""
    return logit_scale * features.cls @ text.t()


def argmax_channels(logits: Tensor) -> Tensor:
    """``logits.argmax(1)`` on a channels-last layout (a no-op for :func:`patch_logits` output): same values
    and ties, ~5x faster on CPU than the strided reduction over NCHW."""
    return logits.contiguous(memory_format=torch.channels_last).argmax(dim=1)


def collapse_background(preds: Tensor, n_foreground: int | None) -> Tensor:
    """Map every background prompt (label >= C) onto the single background label C (§4 E.5)."""
    if n_foreground is None:
        return preds
    return preds.clamp_max(n_foreground)


def label_patches(
    features: DenseFeatures,
    text: Tensor,
    logit_scale: float,
    out_hw: tuple[int, int],
    *,
    n_foreground: int | None = None,
    cls_product: bool = False,
) -> SegmentOutput:
    """Per-pixel labels of dense features: logits at ``out_hw``, [CLS] product, argmax, collapse (§4 E); the
    labels are :class:`Deferred` (computed when ``pred`` or ``raw_pred`` is first read)."""
    with stage("logits"):
        grid = grid_logits(features, text, logit_scale)
        factor = cls_logits(features, text, logit_scale) if cls_product else None
    return label_grid(grid, out_hw, n_foreground=n_foreground, cls_factor=factor)


def label_grid(
    grid: Tensor,
    out_hw: tuple[int, int],
    *,
    n_foreground: int | None = None,
    cls_factor: Tensor | None = None,
    lazy: bool = False,
) -> SegmentOutput:
    """Per-pixel labels of grid logits (:func:`grid_logits`): bilinear to ``out_hw``, times ``cls_factor``
    per channel (the [CLS] product, (B, C')) if given, argmax, collapse.

    The labels are :class:`Deferred`; with ``lazy`` the full-size logits are too, so a consumer that needs
    only statistics of the grid (CLIPtrase's region means) never forms the (B, C', H, W) maps.
    """

    def full_size() -> Tensor:
        with stage("logits"):
            logits = upsample_logits(grid, out_hw)
            return logits if cls_factor is None else logits * cls_factor[:, :, None, None]

    logits = Deferred(full_size) if lazy else full_size()
    # on first read only: scoring windows by their logits never needs it
    pred = Deferred(lambda: collapse_background(argmax_channels(Deferred.read(logits)), n_foreground))
    return SegmentOutput(pred=pred, logits=logits, raw_pred=pred)
