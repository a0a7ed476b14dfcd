"""Miniature benchmark copies in the official layouts and encodings, written into ``tmp_path``.

Each writer creates a data root holding one benchmark with a few tiny samples whose label maps carry the
awkward encodings: VOC's 255 void ring, PC-459/ADE-847 uint16 TIFFs with ids >= 256 and 65535, COCO's two
suffixes side by side with the raw maps, Cityscapes' nested city folders next to ``labelIds`` files. The
writers return the raw label map of every val stem, so tests compute what the loader must produce.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from cliptrase.datasets.demo import write_voc_layout

HW = (10, 12)
VOC_PALETTE = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]] + [
    [i, i, i] for i in range(5, 256)
]

Writer = Callable[[Path], dict[str, np.ndarray]]


def write_image(path: Path, height: int, width: int, seed: int = 0) -> None:
    """A random RGB image; JPEG or PNG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(random_image(height, width, seed)).save(path)


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 noise, seeded."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def palette_label(labels: np.ndarray) -> Image.Image:
    """A VOC-style palette (mode P) label image whose indices are ``labels``."""
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.astype(np.uint8).tobytes())
    image.putpalette([c for colour in VOC_PALETTE for c in colour])
    return image


def write_label(path: Path, labels: np.ndarray, *, palette: bool = False) -> None:
    """A label map: palette PNG (VOC), 8-bit PNG, or uint16 TIFF when ``labels`` is uint16."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (palette_label(labels) if palette else Image.fromarray(labels)).save(path)


def label_with(values: list[int], dtype: type = np.uint8, *, ring: int | None = None) -> np.ndarray:
    """A (10, 12) map made of horizontal bands of ``values``, optionally with a ``ring`` value border."""
    labels = np.zeros(HW, dtype=dtype)
    bands = np.array_split(np.arange(HW[0]), len(values))
    for band, value in zip(bands, values):
        labels[band] = value
    if ring is not None:
        labels[0, :] = labels[-1, :] = labels[:, 0] = labels[:, -1] = ring
    return labels


def write_split(path: Path, stems: list[str], *, blank_line: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(stems) + ("\n\n" if blank_line else "\n"))


def write_pairs(
    samples: dict[str, np.ndarray],
    img_dir: Path,
    img_suffix: str,
    ann_dir: Path,
    ann_suffix: str,
    *,
    palette: bool = False,
) -> dict[str, np.ndarray]:
    """One image (seeded by its position) and one label map per sample, as ``<dir>/<stem><suffix>``."""
    for i, (stem, labels) in enumerate(samples.items()):
        write_image(img_dir / f"{stem}{img_suffix}", *HW, seed=i)
        write_label(ann_dir / f"{stem}{ann_suffix}", labels, palette=palette)
    return samples


def write_voc(data_root: Path) -> dict[str, np.ndarray]:
    root = data_root / "VOCdevkit" / "VOC2012"
    samples = {
        "2007_000032": label_with([0, 1, 15], ring=255),
        "2007_000033": label_with([20, 0], ring=255),
        "2007_000042": label_with([0]),
    }
    pairs = {
        stem: (random_image(*HW, seed=i), palette_label(labels))
        for i, (stem, labels) in enumerate(samples.items())
    }
    write_voc_layout(root, pairs, blank_line=True)
    write_image(root / "JPEGImages" / "2007_000039.jpg", *HW)  # a train image with its label, not in val
    write_label(root / "SegmentationClass" / "2007_000039.png", label_with([3]), palette=True)
    return samples


def write_context(data_root: Path) -> dict[str, np.ndarray]:
    root = data_root / "VOCdevkit" / "VOC2010"
    samples = {"2008_000002": label_with([0, 1, 59]), "2008_000080": label_with([30, 0])}
    write_pairs(samples, root / "JPEGImages", ".jpg", root / "SegmentationClassContext", ".png")
    write_split(root / "ImageSets" / "SegmentationContext" / "val.txt", list(samples))
    return samples


def write_context459(data_root: Path) -> dict[str, np.ndarray]:
    root = data_root / "VOCdevkit" / "VOC2010"
    samples = {
        "2008_000002": label_with([0, 300, 458], np.uint16),
        "2008_000080": label_with([255, 65535, 12], np.uint16),
    }
    write_pairs(samples, root / "JPEGImages", ".jpg", root / "annotations_detectron2" / "pc459_val", ".tif")
    write_split(root / "ImageSets" / "SegmentationContext" / "val.txt", list(samples))
    return samples


def _write_coco(data_root: Path, suffix: str, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    root = data_root / "coco_stuff164k"
    write_pairs(samples, root / "images" / "val2017", ".jpg", root / "annotations" / "val2017", suffix)
    for stem in samples:
        write_label(root / "annotations" / "val2017" / f"{stem}.png", label_with([181, 255]))  # raw map
    return samples


def write_coco_stuff171(data_root: Path) -> dict[str, np.ndarray]:
    samples = {"000000000139": label_with([0, 170, 255]), "000000000285": label_with([80, 3])}
    return _write_coco(data_root, "_labelTrainIds.png", samples)


def write_coco_object(data_root: Path) -> dict[str, np.ndarray]:
    samples = {"000000000139": label_with([0, 1, 80]), "000000000285": label_with([0])}
    return _write_coco(data_root, "_instanceTrainIds.png", samples)


def write_ade150(data_root: Path) -> dict[str, np.ndarray]:
    root = data_root / "ade" / "ADEChallengeData2016"
    samples = {"ADE_val_00000001": label_with([0, 1, 150]), "ADE_val_00000002": label_with([7, 8])}
    write_pairs(samples, root / "images" / "validation", ".jpg", root / "annotations" / "validation", ".png")
    return samples


def write_ade847(data_root: Path) -> dict[str, np.ndarray]:
    root = data_root / "ADE20K_2021_17_01"
    samples = {
        "ADE_val_00000001": label_with([0, 300, 846], np.uint16),
        "ADE_val_00000002": label_with([65535, 255, 256], np.uint16),
    }
    write_pairs(
        samples,
        root / "images_detectron2" / "validation",
        ".jpg",
        root / "annotations_detectron2" / "validation",
        ".tif",
    )
    return samples


def write_cityscapes(data_root: Path) -> dict[str, np.ndarray]:
    root = data_root / "cityscapes"
    samples = {
        "frankfurt/frankfurt_000000_000294": label_with([0, 18, 255]),
        "lindau/lindau_000000_000019": label_with([10, 13]),
    }
    val_img, val_ann = root / "leftImg8bit" / "val", root / "gtFine" / "val"
    write_pairs(samples, val_img, "_leftImg8bit.png", val_ann, "_gtFine_labelTrainIds.png")
    for stem in samples:
        write_label(val_ann / f"{stem}_gtFine_labelIds.png", label_with([7, 33]))
    return samples


WRITERS: dict[str, Writer] = {
    "voc21": write_voc,
    "voc20": write_voc,
    "context60": write_context,
    "context59": write_context,
    "context459": write_context459,
    "coco_stuff171": write_coco_stuff171,
    "coco_object": write_coco_object,
    "ade150": write_ade150,
    "ade847": write_ade847,
    "cityscapes": write_cityscapes,
}
"""Miniature writer per benchmark config name (the demo generates itself)."""
