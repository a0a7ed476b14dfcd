"""Label maps drawn in colour: plain colour maps (the qualitative grid) and overlays with a legend
(``cliptrase predict``, the grid's ``--overlay`` option). Colours come from the package's one palette
(:mod:`cliptrase.utils.colours`); PIL and numpy only, so ``predict`` needs no mmengine."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cliptrase.utils.colours import IGNORE_COLOUR, distinct_colours

OVERLAY_ALPHA = 0.5


def colour_map(labels: np.ndarray, colours: np.ndarray) -> Image.Image:
    """RGB image of ``labels`` (H, W) with ``colours[c]`` for class c; a value outside 0..len(colours)-1
    (GT void, ignore index) in :data:`~cliptrase.utils.colours.IGNORE_COLOUR`."""
    labels = np.asarray(labels).astype(np.int64)
    table = np.concatenate([np.asarray(colours, dtype=np.uint8), np.array([IGNORE_COLOUR], np.uint8)])
    index = np.where((labels >= 0) & (labels < len(colours)), labels, len(colours))
    return Image.fromarray(table[index])


def blend(image: Image.Image, labels: np.ndarray, colours: np.ndarray) -> Image.Image:
    """``image`` blended with the colour map of ``labels`` (same size) at :data:`OVERLAY_ALPHA`."""
    mixed = np.asarray(image.convert("RGB"), dtype=np.float32) * (1 - OVERLAY_ALPHA)
    mixed += np.asarray(colour_map(labels, colours), dtype=np.float32) * OVERLAY_ALPHA
    return Image.fromarray(mixed.astype(np.uint8))


def render_overlay(
    image: Image.Image, labels: np.ndarray, names: Sequence[str], colours: np.ndarray | None = None
) -> Image.Image:
    """Image blended with the label colours, plus a legend of the classes present.

    ``colours`` defaults to :func:`~cliptrase.utils.colours.distinct_colours` of the class list (a free
    class list has no published palette).
    """
    colours = distinct_colours(len(names)) if colours is None else colours
    canvas_img = blend(image, labels, colours)
    present = [int(c) for c in np.unique(labels) if 0 <= c < len(names)]
    row_h = 18
    legend_w = 12 + 8 * max((len(names[c]) for c in present), default=0) + 24
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
