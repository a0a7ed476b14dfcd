"""``save_predictions=K``: label PNGs and overlays of the first K images, written by a read-only test-loop
hook (it never changes what is scored)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from mmengine.hooks import Hook
from PIL import Image

from cliptrase.inference.overlay import render_overlay

logger = logging.getLogger(__name__)


class SavePredictionsHook(Hook):
    """Write ``<stem>_labels.png`` and ``<stem>_overlay.png`` for the first ``limit`` test images.

    Args:
        out_dir: destination folder.
        limit: number of images.
        class_names: names for the legend, indexed by label.
    """

    priority = "LOW"

    def __init__(self, out_dir: Path, limit: int, class_names: list[str]) -> None:
        self.out_dir, self.limit, self.class_names = Path(out_dir), limit, list(class_names)
        self.saved = 0

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        for sample in outputs or []:
            if self.saved >= self.limit:
                return
            labels = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.int64)
            path = Path(sample.metainfo["img_path"])
            with Image.open(path) as im:
                image = im.convert("RGB").resize((labels.shape[1], labels.shape[0]), Image.BILINEAR)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            valid = np.clip(labels, 0, len(self.class_names) - 1)
            dtype = np.uint8 if len(self.class_names) <= 255 else np.uint16
            Image.fromarray(valid.astype(dtype)).save(self.out_dir / f"{path.stem}_labels.png")
            render_overlay(image, valid, self.class_names).save(self.out_dir / f"{path.stem}_overlay.png")
            self.saved += 1
        if self.saved >= self.limit:
            logger.info("saved %d predictions under %s", self.saved, self.out_dir)
