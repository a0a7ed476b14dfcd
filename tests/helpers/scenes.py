"""Seeded synthetic scenes in the PASCAL VOC 2012 and ADE20K on-disk layouts, for exactness tests against
peers' released harnesses (the reference label maps under ``tests/golden/peers/`` were computed by those
harnesses on exactly these files).

A scene: a two-colour linear gradient, ``n`` filled shapes (ellipse, rectangle, triangle in turn) each in a
colour of its own with a sinusoidal texture, Gaussian noise (sigma 12), saved as JPEG quality 90. Every
random draw comes from ``numpy.random.default_rng(seed)`` in a fixed order, so the files are the same on
every machine with the same Pillow JPEG encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

VOC_SCENES: tuple[tuple[str, int, int], ...] = (
    ("2007_000032", 375, 500),
    ("2007_000033", 500, 375),
    ("2007_000042", 333, 500),
    ("2007_000061", 366, 500),
)
"""(stem, height, width) of the VOC scenes; scene ``i`` uses seed ``1000 + i`` and ``3 + i % 2`` shapes."""

ADE_SCENES: tuple[tuple[str, int, int], ...] = tuple(
    (f"ADE_val_{i:08d}", h, w) for i, (h, w) in enumerate([(512, 683), (683, 512), (512, 512), (480, 640)], 1)
)
"""(stem, height, width) of the ADE20K scenes; scene ``i`` uses seed ``2000 + i`` and ``4 + i % 3`` shapes."""


def _voc_palette() -> list[int]:
    """The standard VOC colour map (bit-reversed interleave of the label bits)."""
    palette = []
    for label in range(256):
        rgb = [0, 0, 0]
        bits = label
        for shift in range(8):
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << (7 - shift)
            bits >>= 3
        palette.extend(rgb)
    return palette


def draw_scene(
    rng: np.random.Generator, height: int, width: int, n_shapes: int
) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 image and the index of the shape covering each pixel (-1: background)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = (rows / height * 0.6 + cols / width * 0.4)[..., None]
    image = (start * (1 - ramp) + end * ramp).astype(np.float32)
    canvas = Image.new("L", (width, height), 0)
    pen = ImageDraw.Draw(canvas)
    for k in range(n_shapes):
        cx, cy = rng.integers(width // 6, 5 * width // 6), rng.integers(height // 6, 5 * height // 6)
        rx, ry = rng.integers(width // 10, width // 4), rng.integers(height // 10, height // 4)
        left, top, right, bottom = int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)
        if k % 3 == 0:
            pen.ellipse([left, top, right, bottom], fill=k + 1)
        elif k % 3 == 1:
            pen.rectangle([left, top, right, bottom], fill=k + 1)
        else:
            pen.polygon([(left, bottom), (right, bottom), (int(cx), top)], fill=k + 1)
    shape = np.asarray(canvas).astype(np.int32) - 1
    for k in range(n_shapes):
        inside = shape == k
        colour = rng.integers(0, 256, 3).astype(np.float32)
        texture = 20 * np.sin(cols / rng.uniform(6, 20) + rows / rng.uniform(6, 20))[..., None]
        image[inside] = (colour + texture)[inside]
    image += rng.normal(0, 12, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), shape


def _void_ring(mask: np.ndarray, width: int = 3) -> np.ndarray:
    """Pixels within ``width`` (chessboard distance) of the mask's boundary: dilation minus erosion."""
    padded = np.pad(mask, width)
    h, w = mask.shape
    dilated = np.zeros_like(mask)
    eroded = np.ones_like(mask)
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            shifted = padded[width + dy : width + dy + h, width + dx : width + dx + w]
            dilated |= shifted
            eroded &= shifted
    return dilated & ~eroded


def write_voc_scenes(root: Path) -> Path:
    """The VOC scenes under ``root/VOCdevkit/VOC2012`` (JPEGs, palette label PNGs with a 255 ring, the val
    split); returns that folder."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for i, (stem, h, w) in enumerate(VOC_SCENES):
        rng = np.random.default_rng(1000 + i)
        n = 3 + i % 2
        classes = [int(c) for c in rng.choice(np.arange(1, 21), n, replace=False)]
        image, shape = draw_scene(rng, h, w, n)
        labels = np.zeros((h, w), np.uint8)
        for k, c in enumerate(classes):
            labels[shape == k] = c
        for k in range(n):
            labels[_void_ring(shape == k)] = 255
        Image.fromarray(image).save(voc / "JPEGImages" / f"{stem}.jpg", quality=90)
        png = Image.frombytes("P", (w, h), labels.tobytes())
        png.putpalette(_voc_palette())
        png.save(voc / "SegmentationClass" / f"{stem}.png")
    (voc / "ImageSets/Segmentation/val.txt").write_text("".join(f"{s}\n" for s, _, _ in VOC_SCENES))
    return voc


def write_ade_scenes(root: Path) -> Path:
    """The ADE20K scenes under ``root/ADEChallengeData2016`` (JPEGs, 8-bit label PNGs: ids 1..150, a top
    strip of 0 = other); returns that folder."""
    ade = root / "ADEChallengeData2016"
    for sub in ("images/validation", "annotations/validation"):
        (ade / sub).mkdir(parents=True, exist_ok=True)
    for i, (stem, h, w) in enumerate(ADE_SCENES):
        rng = np.random.default_rng(2000 + i)
        n = 4 + i % 3
        classes = [int(c) for c in rng.choice(np.arange(1, 151), n + 1, replace=False)]
        image, shape = draw_scene(rng, h, w, n)
        labels = np.full((h, w), classes[-1], np.uint8)
        for k in range(n):
            labels[shape == k] = classes[k]
        labels[: h // 20] = 0
        Image.fromarray(image).save(ade / "images/validation" / f"{stem}.jpg", quality=90)
        Image.fromarray(labels, mode="L").save(ade / "annotations/validation" / f"{stem}.png")
    return ade


def write_all(root: Path) -> Path:
    """Both miniatures under ``root`` (``VOCdevkit/VOC2012``, ``ADEChallengeData2016``); returns ``root``."""
    write_voc_scenes(root)
    write_ade_scenes(root)
    return root


if __name__ == "__main__":
    import sys

    write_all(Path(sys.argv[1]))
