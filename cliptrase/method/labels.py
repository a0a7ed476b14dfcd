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
    fields are None for methods that do not cluster). ``pred``, ``logits`` and ``raw_pred`` may be given as
    :class:`Deferred`: they are computed when first read.

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
        raw_logits: (B, C', H, W) pixel logits before the vote (``logits`` of the images without a cluster).
        clustered: (B,) bool, the images whose labels were voted over regions.
    """

    pred = _Field()
    logits = _Field()
    raw_pred = _Field()

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
        raw_logits: Tensor | None = None,
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


def patch_logits(
    features: DenseFeatures, text: Tensor, logit_scale: float, out_hw: tuple[int, int]
) -> Tensor:
    """Pixel logits: ``logit_scale · patches @ textᵀ`` on the grid, bilinear to ``out_hw`` (§4 E.1-2).

    Args:
        features: dense output (normalised tokens).
        text: (C', E) classifier rows.
        logit_scale: CLIP's ``logit_scale.exp()`` (100 for OpenAI weights; argmax-neutral, kept for parity).
        out_hw: output size.

    Returns:
        (B, C', H, W).
    """
    b = features.tokens.shape[0]
    h, w = features.grid_hw
    logits = logit_scale * features.patches @ text.t()  # (B, N, C')
    # (B, C', h, w) as a channels-last view of the (B, N, C') product. The authors' transpose + reshape
    # gives the same strides (for B = 1 up to the stride of the size-1 batch dim), and PyTorch computes
    # both with its channels-last bilinear kernel, so the values are bit-identical (tested); spelling it
    # as a permute lets PyTorch see the layout for B = 1 too and take the fast path (~10x at 224 on CPU).
    # The result is channels-last, which also makes the channel argmax cheap.
    logits = logits.reshape(b, h, w, -1).permute(0, 3, 1, 2)
    return torch.nn.functional.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)


def apply_cls_product(logits: Tensor, features: DenseFeatures, text: Tensor, logit_scale: float) -> Tensor:
    """Multiply each class channel by the [CLS] logit of that class (§4 E.3; the authors' VOC20 rule)."""
    cls_logits = logit_scale * features.cls @ text.t()  # (B, C')
    return logits * cls_logits[:, :, None, None]


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
        logits = patch_logits(features, text, logit_scale, out_hw)
        if cls_product:
            logits = apply_cls_product(logits, features, text, logit_scale)
    # on first read only: scoring windows by their logits never needs it
    pred = Deferred(lambda: collapse_background(argmax_channels(logits), n_foreground))
    return SegmentOutput(pred=pred, logits=logits, raw_pred=pred)
