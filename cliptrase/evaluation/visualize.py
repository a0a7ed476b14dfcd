"""Label maps drawn as colour overlays with a legend (``cliptrase predict``), and ``save_predictions=K``:
label PNGs and overlays of the first K images, written by a read-only hook (it never changes what is
scored)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from mmengine.hooks import Hook
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

OVERLAY_ALPHA = 0.5


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct colours (golden-angle hues), deterministic."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    out = []
    for h in hues:
        rgb = Image.new("HSV", (1, 1), (int(h * 255), 200, 230)).convert("RGB").getpixel((0, 0))
        out.append(rgb)
    return np.array(out, dtype=np.uint8)


def render_overlay(image: Image.Image, labels: np.ndarray, names: list[str]) -> Image.Image:
    """Image blended with the label colours, plus a legend of the classes present."""
    colours = palette(len(names))
    blended = np.asarray(image, dtype=np.float32) * (1 - OVERLAY_ALPHA) + colours[labels] * OVERLAY_ALPHA
    canvas_img = Image.fromarray(blended.astype(np.uint8))
    present = [int(c) for c in np.unique(labels)]
    row_h, legend_w = 18, 12 + 8 * max(len(names[c]) for c in present) + 24
    canvas = Image.new(
        "RGB", (canvas_img.width + legend_w, max(canvas_img.height, row_h * len(present) + 8)), "white"
    )
    canvas.paste(canvas_img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, c in enumerate(present):
        y = 4 + row * row_h
        x = canvas_img.width + 6
        draw.rectangle([x, y, x + 12, y + 12], fill=tuple(int(v) for v in colours[c]), outline="black")
        draw.text((x + 18, y), names[c], fill="black")
    return canvas


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
