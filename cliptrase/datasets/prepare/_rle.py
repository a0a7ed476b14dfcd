"""COCO-style mask decoding with numpy, so PASCAL-in-Detail annotations need neither pycocotools nor Detail.

``trainval_merged.json`` stores each segment in the COCO mask formats: run-length encoding (RLE) of the
column-major mask, either as a list of run lengths or as pycocotools' compressed string (6-bit groups
offset by 48, sign-extended, each run after the second stored as a delta to the run two before), or as
polygons. This module mirrors pycocotools' ``rleFrString``/``rleDecode`` (``maskApi.c``) for RLE; its
output equals pycocotools 2.0.11's on random and blocky masks (``tests/unit/test_prepare.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

_CHAR_OFFSET = 48
_PAYLOAD_BITS = 5
_PAYLOAD_MASK = 0x1F
_MORE_FLAG = 0x20
_SIGN_FLAG = 0x10
_POLYGON_MIN_COORDS = 6  # three points
_DELTA_AFTER = 2  # runs after the second are stored as deltas to the run two before


def rle_counts_from_string(encoded: str | bytes) -> list[int]:
    """Decode pycocotools' compressed RLE string into the list of run lengths."""
    text = encoded.decode("ascii") if isinstance(encoded, bytes) else encoded
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            char = ord(text[pos]) - _CHAR_OFFSET
            value |= (char & _PAYLOAD_MASK) << shift
            more = bool(char & _MORE_FLAG)
            pos += 1
            shift += _PAYLOAD_BITS
            if not more and char & _SIGN_FLAG:
                value |= -1 << shift
        if len(counts) > _DELTA_AFTER:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode one RLE (``{"size": [h, w], "counts": str | list[int]}``) to a bool (h, w) mask."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = rle_counts_from_string(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    if sum(runs) != height * width:
        raise ValueError(f"RLE runs sum to {sum(runs)}, expected {height}x{width}={height * width}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True  # runs alternate, starting with background
    return np.repeat(values, runs).reshape((height, width), order="F")


def polygons_decode(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons (``[x0, y0, x1, y1, ...]`` each) to a bool (h, w) mask.

    Uses pycocotools' rasteriser when it is installed (pixel-exact with the reference converters); else
    PIL's, which can differ along edges. PASCAL-in-Detail stores RLE, so this path is a fallback.
    """
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for polygon in polygons:
            if len(polygon) >= _POLYGON_MIN_COORDS:
                draw.polygon([float(v) for v in polygon], fill=1)
        return np.asarray(canvas, dtype=bool)
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def segmentation_decode(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO ``segmentation`` field in any of its formats to a bool (h, w) mask."""
    if isinstance(segmentation, Mapping):
        return rle_decode(segmentation)
    if isinstance(segmentation, Sequence) and segmentation and isinstance(segmentation[0], Mapping):
        mask = np.zeros((height, width), dtype=bool)
        for part in segmentation:
            mask |= rle_decode(part)
        return mask
    if isinstance(segmentation, Sequence):
        return polygons_decode(segmentation, height, width)
    raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")
