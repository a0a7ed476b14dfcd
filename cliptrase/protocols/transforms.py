"""mmcv transforms of the paper protocol (docs/method.md §2.2, §5): the authors' resize + centre crop of the
image and of the GT, their int16 cast, skip rule and background mapping, inside an mmseg pipeline."""

from __future__ import annotations

import io

import mmengine.fileio as fileio
import numpy as np
import torchvision.transforms.functional as TF
from mmcv.transforms import BaseTransform
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import InterpolationMode

from cliptrase.errors import DataError, DataNotFoundError
from cliptrase.protocols.paper import gt_to_image, is_scored, preprocess_gt
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


def read_image_as_authors(path: str, backend_args: dict | None = None) -> np.ndarray:
    """``Image.open(path).convert("RGB")`` as an RGB uint8 array: the authors' decoding (docs/method.md §2.2).

    PIL's ``open`` + ``convert`` ignores the EXIF orientation tag (unlike mmcv's pillow and cv2 decoders with
    flag ``color``), converts greyscale, CMYK and palette images with PIL's own rules, and drops alpha.
    """
    try:
        with Image.open(io.BytesIO(fileio.get(path, backend_args=backend_args))) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataNotFoundError(f"image {path} not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"image {path} cannot be decoded ({err}); run `cliptrase data check`") from None


@TRANSFORMS.register_module()
class LoadImageAsAuthors(BaseTransform):
    """Decode ``img_path`` exactly as the authors' script does (:func:`read_image_as_authors`).

    Writes ``img`` (BGR uint8, the mmcv convention the rest of the pipeline expects), ``img_shape`` and
    ``ori_shape``, like mmcv's ``LoadImageFromFile``.
    """

    def __init__(self, backend_args: dict | None = None) -> None:
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        rgb = read_image_as_authors(results["img_path"], self.backend_args)
        results["img"] = np.ascontiguousarray(rgb[..., ::-1])
        results["img_shape"] = results["img"].shape[:2]
        results["ori_shape"] = results["img"].shape[:2]
        return results


def paper_crop_gt(labels: np.ndarray, size: int, rule: str, file_dtype: str | np.dtype | None) -> np.ndarray:
    """On-disk labels -> the authors' scored GT crop: ``rule``, then their PIL resize + crop + int16 cast.

    The resize runs on the label map in the sample type of its file (``L`` for 8-bit, ``I;16`` for 16-bit
    maps), through :func:`~cliptrase.protocols.paper.preprocess_gt`, the function the golden suite checks:
    Pillow's nearest resize picks other source pixels in mode ``I`` than in ``I;16``. The rule maps values
    only, so applying it before the resize selects the same pixels as the authors' prepared files.
    """
    gt = to_paper_gt(np.asarray(labels).astype(np.int64), rule)
    dtype = (
        np.dtype(file_dtype)
        if file_dtype is not None
        else (np.uint8 if gt.max(initial=0) < 256 else np.uint16)
    )
    if dtype not in (np.uint8, np.uint16):
        raise DataError(f"label maps must be 8- or 16-bit for the paper protocol, got {dtype}")
    info = np.iinfo(dtype)
    if gt.size and (gt.min() < info.min or gt.max() > info.max):
        raise DataError(f"labels {gt.min()}..{gt.max()} do not fit the file's {dtype.name} samples")
    return preprocess_gt(gt_to_image(gt.astype(dtype)), size)


@TRANSFORMS.register_module()
class PaperResizeCrop(BaseTransform):
    """Resize the short side to S and centre-crop S x S, image (bicubic, PIL) and GT (nearest, PIL).

    Reads ``img`` (BGR uint8, mmcv convention) and ``gt_seg_map`` (on-disk integer labels, with the file's
    sample type in ``gt_seg_map_dtype``); writes them back cropped, with the GT as the authors score it
    (:func:`paper_crop_gt`: ``rule`` applied, resized in the file's mode, cast to int16 so 16-bit 65535
    -> -1), ``paper_scored`` = False for images the script skips, then 255 -> ``background`` on the
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
            gt16 = paper_crop_gt(results["gt_seg_map"], self.size, self.rule, results.get("gt_seg_map_dtype"))
            results["paper_scored"] = is_scored(gt16)
            if self.background is not None:
                gt16 = gt16.copy()
                gt16[gt16 == 255] = self.background
            results["gt_seg_map"] = gt16.astype(np.int64)
        results["ori_shape"] = results["img_shape"]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, rule={self.rule!r}, background={self.background})"
