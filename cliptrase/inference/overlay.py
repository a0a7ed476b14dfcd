"""Label maps drawn as colour overlays with a legend: ``cliptrase predict`` and the ``save_predictions=K``
hook (:mod:`cliptrase.engine.predictions`) draw with these; PIL and numpy only, so ``predict`` needs no
mmengine."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

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
