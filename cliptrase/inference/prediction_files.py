"""The one writer (and reader) of saved predictions: ``cliptrase predict`` and ``save_predictions=K``
(:class:`cliptrase.engine.predictions.SavePredictionsHook`) both write through :func:`write_prediction`.

Per image ``<stem>``, in one folder:

- ``<stem>_labels.png``: the predicted label map at the prediction's resolution, 8-bit up to
  :data:`MAX_8BIT_CLASSES` classes, else 16-bit; always written.
- ``<stem>_overlay.png``: the image blended with the label colours, with a legend (``overlay=True``:
  ``cliptrase predict``).
- ``<stem>_image.jpg`` and ``<stem>_gt.png``: the image and the GT the run scored (after the protocol's
  resize / crop and label mapping), at display size (long side at most :data:`DISPLAY_SIDE`, nearest for
  the GT), for the qualitative grid of ``cliptrase-report`` (``grid_inputs=True``: the test loop).

Label PNGs hold class indices; a value outside 0..C-1 (GT void, the ignore index) is stored as the
largest value of the PNG's sample type (255 or 65535) and drawn as ignore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cliptrase.inference.overlay import render_overlay

LABELS_SUFFIX = "_labels.png"
OVERLAY_SUFFIX = "_overlay.png"
IMAGE_SUFFIX = "_image.jpg"
GT_SUFFIX = "_gt.png"
DISPLAY_SIDE = 320
"""Long side (pixels) of the grid's stored image and GT: a grid cell's size in the report."""
MAX_8BIT_CLASSES = 255
"""Label maps of at most this many classes are 8-bit (0..254, 255 left for ignore); larger ones 16-bit."""
_JPEG_QUALITY = 90


@dataclass(frozen=True)
class SavedPrediction:
    """The files written for one image (None: not asked for)."""

    labels: Path
    overlay: Path | None = None
    image: Path | None = None
    gt: Path | None = None


def label_image(labels: np.ndarray, n_classes: int) -> Image.Image:
    """``labels`` as an 8- or 16-bit PIL image (values outside 0..n_classes-1 become the ignore code)."""
    dtype = np.uint8 if n_classes <= MAX_8BIT_CLASSES else np.uint16
    labels = np.asarray(labels).astype(np.int64)
    stored = np.where((labels >= 0) & (labels < n_classes), labels, np.iinfo(dtype).max)
    return Image.fromarray(stored.astype(dtype))


def display_size(hw: tuple[int, int], side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(H, W) scaled so the long side is at most ``side`` (never enlarged)."""
    h, w = hw
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_labels(labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest resize of a label map to (H, W) (int64)."""
    labels = np.asarray(labels)
    if labels.shape == tuple(hw):
        return labels.astype(np.int64)
    image = Image.fromarray(labels.astype(np.int32))  # mode I: any label value, nearest keeps values
    return np.asarray(image.resize((hw[1], hw[0]), Image.NEAREST)).astype(np.int64)


def read_labels(path: Path) -> np.ndarray:
    """A saved label PNG as (H, W) int64."""
    with Image.open(path) as im:
        return np.asarray(im).astype(np.int64)


def write_prediction(
    out_dir: Path,
    stem: str,
    labels: np.ndarray,
    names: Sequence[str],
    *,
    image: Image.Image,
    gt: np.ndarray | None = None,
    overlay: bool = False,
    grid_inputs: bool = False,
) -> SavedPrediction:
    """Write one image's prediction files (module docstring) and return their paths.

    Args:
        out_dir: destination folder (created).
        stem: the image's file stem.
        labels: (H, W) predicted class indices into ``names``.
        names: the class list (its length decides 8- or 16-bit PNGs; the overlay's legend).
        image: the RGB image (any size: resized to the labels' size for the overlay).
        gt: (H, W) GT as scored, same size as ``labels`` (written with ``grid_inputs``).
        overlay: also write ``<stem>_overlay.png``.
        grid_inputs: also write ``<stem>_image.jpg`` (and ``<stem>_gt.png`` when ``gt`` is given) at
            display size.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels)
    hw = labels.shape[:2]
    saved = {"labels": out_dir / f"{stem}{LABELS_SUFFIX}"}
    label_image(labels, len(names)).save(saved["labels"])
    rgb = image.convert("RGB")
    if overlay:
        saved["overlay"] = out_dir / f"{stem}{OVERLAY_SUFFIX}"
        full = rgb if rgb.size == (hw[1], hw[0]) else rgb.resize((hw[1], hw[0]), Image.BILINEAR)
        render_overlay(full, labels, list(names)).save(saved["overlay"])
    if grid_inputs:
        dh, dw = display_size(hw)
        saved["image"] = out_dir / f"{stem}{IMAGE_SUFFIX}"
        rgb.resize((dw, dh), Image.BICUBIC).save(saved["image"], quality=_JPEG_QUALITY)
        if gt is not None:
            saved["gt"] = out_dir / f"{stem}{GT_SUFFIX}"
            label_image(resize_labels(gt, (dh, dw)), len(names)).save(saved["gt"])
    return SavedPrediction(**saved)
