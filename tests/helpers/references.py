"""Full-size forms of steps the package computes another way: the oracles its faster paths are tested against.

The package forms CLIPtrase's region means from the patch grid (``grid_region_means``) and the [CLS] product
as a per-channel factor; these are the authors' forms on the full-size logits (docs/method.md §4 E.3, §10).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from cliptrase.method.labels import cls_logits
from cliptrase.method.vote import spread_regions
from cliptrase.models.dense import DenseFeatures


def region_means(logits: Tensor, regions: Tensor, n_regions: int) -> Tensor:
    """(B, K, C) mean logits of every region of (B, C, H, W) ``logits`` (any memory format) over (B, H, W)
    ``regions``; a region without pixels has zeros."""
    b, c, h, w = logits.shape
    onehot = F.one_hot(regions.reshape(b, -1), n_regions).to(logits.dtype)  # (B, HW, K)
    pixels = logits.permute(0, 2, 3, 1).reshape(b, h * w, c)
    sums = onehot.transpose(1, 2) @ pixels  # (B, K, C)
    return sums / onehot.sum(dim=1).clamp_min(1).unsqueeze(-1)


def mean_logits_vote(logits: Tensor, regions: Tensor, n_regions: int) -> Tensor:
    """Each pixel's logits replaced by the mean logits of its region (the authors' d2 variant, §10):
    (B, C, H, W), channels-last."""
    return spread_regions(region_means(logits, regions, n_regions), regions)


def apply_cls_product(logits: Tensor, features: DenseFeatures, text: Tensor, logit_scale: float) -> Tensor:
    """Each class channel of the full-size logits times the [CLS] logit of that class (§4 E.3, VOC20)."""
    return logits * cls_logits(features, text, logit_scale)[:, :, None, None]
