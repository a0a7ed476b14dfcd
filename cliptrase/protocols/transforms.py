"""mmcv transforms of the paper protocol (method.md §2.2, §5): the authors' resize + centre crop of the
image and of the GT, their int16 cast, skip rule and background mapping, inside an mmseg pipeline."""

from __future__ import annotations

import numpy as np
import torchvision.transforms.functional as TF
from mmcv.transforms import BaseTransform
from PIL import Image
from torchvision.transforms import InterpolationMode

from cliptrase.protocols.paper import is_scored
from cliptrase.registry import TRANSFORMS

PAPER_GT_RULES = ("identity", "reduce_zero")
"""How a dataset's on-disk labels become the authors' GT encoding: as is, or 0 -> 255 and k -> k-1 (the
detectron2 preparation scripts of VOC, Pascal Context 59/60 and ADE20K-150)."""


def to_paper_gt(labels: np.ndarray, rule: str) -> np.ndarray:
    """On-disk labels (int) -> the authors' stored encoding (before the int16 cast)."""
    if rule == "identity":
        return labels
    if rule == "reduce_zero":
        out = labels - 1
        out[(labels == 0) | (labels == 255)] = 255
        return out
    raise ValueError(f"unknown paper GT rule {rule!r}; valid: {', '.join(PAPER_GT_RULES)}")


@TRANSFORMS.register_module()
class PaperResizeCrop(BaseTransform):
    """Resize the short side to S and centre-crop S x S, image (bicubic, PIL) and GT (nearest, PIL).

    Reads ``img`` (BGR uint8, mmcv convention) and ``gt_seg_map`` (on-disk integer labels); writes them back
    cropped, with the GT as the authors score it: ``rule`` applied, cast to int16 (16-bit 65535 -> -1),
    ``paper_scored`` = False for images the script skips, then 255 -> ``background`` on the
    with-background sets.

    Args:
        size: S (224 or 336).
        rule: ``identity`` or ``reduce_zero`` (see :data:`PAPER_GT_RULES`).
        background: the background label C on the with-background sets, else None.
    """

    def __init__(self, size: int, rule: str = "identity", background: int | None = None) -> None:
        if rule not in PAPER_GT_RULES:
            raise ValueError(f"unknown paper GT rule {rule!r}; valid: {', '.join(PAPER_GT_RULES)}")
        self.size, self.rule, self.background = size, rule, background

    def transform(self, results: dict) -> dict:
        rgb = Image.fromarray(np.ascontiguousarray(results["img"][..., ::-1]))
        rgb = TF.center_crop(TF.resize(rgb, self.size, interpolation=InterpolationMode.BICUBIC), self.size)
        results["img"] = np.ascontiguousarray(np.asarray(rgb.convert("RGB"))[..., ::-1])
        results["img_shape"] = results["img"].shape[:2]
        if "gt_seg_map" in results:
            gt = to_paper_gt(np.asarray(results["gt_seg_map"]).astype(np.int64), self.rule)
            pil = Image.fromarray(gt.astype(np.int32), mode="I")  # nearest resize only selects pixels
            pil = TF.center_crop(
                TF.resize(pil, self.size, interpolation=InterpolationMode.NEAREST), self.size
            )
            gt16 = np.asarray(pil).astype(np.int16)
            results["paper_scored"] = is_scored(gt16)
            if self.background is not None:
                gt16 = gt16.copy()
                gt16[gt16 == 255] = self.background
            results["gt_seg_map"] = gt16.astype(np.int64)
        results["ori_shape"] = results["img_shape"]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, rule={self.rule!r}, background={self.background})"
