"""Deterministic synthetic miniatures of PASCAL VOC 2012 and ADE20K in their official on-disk layouts: the
data of the peer-exactness references in ``tests/golden/peers/`` (the label maps a peer's own harness
predicted on exactly these files; ``tests/golden/peers/README.md``). Changing anything here changes the
images and invalidates those references.

Usage: python tests/helpers/peer_data.py OUT_ROOT

Writes
  OUT_ROOT/VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png (palette 'P'),
                               ImageSets/Segmentation/val.txt}
  OUT_ROOT/ADEChallengeData2016/{images/validation/*.jpg, annotations/validation/*.png (8-bit 'L')}

Images: smooth colour gradient background + filled ellipses / rectangles / triangles in distinct colours +
Gaussian noise (sigma 12), JPEG quality 90. Label maps follow the shapes (VOC: class 1..20 with a 255 void
ring of width 3 around each object, background 0; ADE: ids 1..150 for every region incl. background
region, 0 = 'other' for a few unlabelled strips). Everything is seeded (numpy default_rng(seed)).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

VOC_SIZES = [(375, 500), (500, 375), (333, 500), (366, 500)]  # (H, W)
VOC_STEMS = ["2007_000032", "2007_000033", "2007_000042", "2007_000061"]
ADE_SIZES = [(512, 683), (683, 512), (512, 512), (480, 640)]
ADE_STEMS = [f"ADE_val_{i:08d}" for i in (1, 2, 3, 4)]


def voc_palette() -> list[int]:
    pal = []
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def scene(rng: np.random.Generator, h: int, w: int, n_shapes: int, ids: list[int]):
    """Return (uint8 HxWx3 image, int32 HxW label of shape index (-1 = background), list of shape masks)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = (yy / h * 0.6 + xx / w * 0.4)[..., None]
    img = (c0 * (1 - t) + c1 * t).astype(np.float32)
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for k in range(n_shapes):
        kind = k % 3
        cx, cy = rng.integers(w // 6, 5 * w // 6), rng.integers(h // 6, 5 * h // 6)
        rx, ry = rng.integers(w // 10, w // 4), rng.integers(h // 10, h // 4)
        box = [int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)]
        if kind == 0:
            draw.ellipse(box, fill=k + 1)
        elif kind == 1:
            draw.rectangle(box, fill=k + 1)
        else:
            draw.polygon([(box[0], box[3]), (box[2], box[3]), (int(cx), box[1])], fill=k + 1)
    shape_idx = np.asarray(canvas).astype(np.int32) - 1
    for k in range(n_shapes):
        m = shape_idx == k
        col = rng.integers(0, 256, 3).astype(np.float32)
        tex = 20 * np.sin(xx / rng.uniform(6, 20) + yy / rng.uniform(6, 20))[..., None]
        img[m] = (col + tex)[m]
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img, shape_idx


def ring(mask: np.ndarray, width: int = 3) -> np.ndarray:
    """Pixels within `width` (chessboard) of the mask boundary, outside-or-on-edge."""
    pad = np.pad(mask, width)
    dil = np.zeros_like(pad)
    ero = np.ones_like(pad)
    H, W = mask.shape
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            sh = pad[width + dy : width + dy + H, width + dx : width + dx + W]
            dil[width : width + H, width : width + W] |= sh
            ero[width : width + H, width : width + W] &= sh
    return (dil & ~ero)[width : width + H, width : width + W]


def write_voc(out: Path) -> None:
    root = out / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i, (stem, (h, w)) in enumerate(zip(VOC_STEMS, VOC_SIZES)):
        rng = np.random.default_rng(1000 + i)
        n = 3 + i % 2
        ids = [int(v) for v in rng.choice(np.arange(1, 21), n, replace=False)]
        img, idx = scene(rng, h, w, n, ids)
        lab = np.zeros((h, w), np.uint8)
        for k, cid in enumerate(ids):
            lab[idx == k] = cid
        for k in range(n):
            lab[ring(idx == k)] = 255
        Image.fromarray(img).save(root / "JPEGImages" / f"{stem}.jpg", quality=90)
        p = Image.frombytes("P", (w, h), lab.tobytes())
        p.putpalette(voc_palette())
        p.save(root / "SegmentationClass" / f"{stem}.png")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(VOC_STEMS) + "\n")


def write_ade(out: Path) -> None:
    root = out / "ADEChallengeData2016"
    for d in ("images/validation", "annotations/validation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i, (stem, (h, w)) in enumerate(zip(ADE_STEMS, ADE_SIZES)):
        rng = np.random.default_rng(2000 + i)
        n = 4 + i % 3
        ids = [int(v) for v in rng.choice(np.arange(1, 151), n + 1, replace=False)]
        img, idx = scene(rng, h, w, n, ids)
        lab = np.full((h, w), ids[-1], np.uint8)  # background region gets a real ADE id
        for k in range(n):
            lab[idx == k] = ids[k]
        lab[: h // 20] = 0  # an unlabelled ('other') strip at the top
        Image.fromarray(img).save(root / "images/validation" / f"{stem}.jpg", quality=90)
        Image.fromarray(lab, mode="L").save(root / "annotations/validation" / f"{stem}.png")


def write_all(out: Path) -> Path:
    """Both miniatures under ``out`` (``VOCdevkit/VOC2012``, ``ADEChallengeData2016``); returns ``out``."""
    write_voc(out)
    write_ade(out)
    return out


if __name__ == "__main__":
    write_all(Path(sys.argv[1]))
