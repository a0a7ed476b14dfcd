"""Synthetic ``save_predictions`` folders for the report tests, written through the one prediction writer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cliptrase.inference.prediction_files import write_prediction
from cliptrase.records.results import ResultRecord
from cliptrase.reporting.qualitative import PREDICTIONS_DIR

IGNORE = 255


def scene(
    index: int, hw: tuple[int, int], n_classes: int, *, bands: int = 3, noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image, int64 GT): ``bands`` horizontal bands of classes picked from 0..n_classes-1 by
    ``index``, a square of one more class, a 1-pixel ignore line; the image a smooth gradient per band
    (plus Gaussian ``noise``, which makes its JPEG as large as a photo's)."""
    h, w = hw
    classes = [(index * 5 + b) % n_classes for b in range(bands + 1)]
    gt = np.repeat(np.array(classes[:bands])[np.arange(h) * bands // h], w).reshape(h, w).astype(np.int64)
    gt[h // 4 : h // 2, w // 4 : w // 2] = classes[bands]
    gt[h // 2, :] = IGNORE
    ramp = np.linspace(60, 200, w)[None, :, None]
    tint = np.array([(37 * c) % 256 for c in range(n_classes)] + [0])[np.minimum(gt, n_classes)][..., None]
    image = ramp * np.array([1.0, 0.8, 0.6]) + tint * 0.3
    if noise:
        image = image + np.random.default_rng(index).normal(0.0, noise, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, gt


def prediction(gt: np.ndarray, method: int, n_classes: int) -> np.ndarray:
    """``gt`` with ignore filled by class 0 and a method-dependent block relabelled."""
    pred = np.where(gt == IGNORE, 0, gt)
    h, w = gt.shape
    top = (method * h // 5) % max(1, h - h // 4)
    pred[top : top + h // 4, : w // 2] = (method + 1) % n_classes
    return pred


def save_run(
    exp_dir: Path,
    record: ResultRecord,
    stems: Sequence[str],
    method: int,
    hw: tuple[int, int] = (30, 40),
    **scene_options: float,
) -> None:
    """Write ``record``'s predictions of ``stems`` as ``save_predictions`` does (labels, image, GT)."""
    names = record.class_names
    for i, stem in enumerate(stems):
        image, gt = scene(i, hw, len(names), **scene_options)
        write_prediction(
            exp_dir / PREDICTIONS_DIR / record.run,
            stem,
            prediction(gt, method, len(names)),
            names,
            image=Image.fromarray(image),
            gt=gt,
            grid_inputs=True,
        )
