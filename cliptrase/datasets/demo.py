"""A built-in synthetic benchmark: six small street-like scenes, generated on first use.

The quick start and the integration tests need a dataset that exists on every machine without a download.
:func:`ensure_demo_dataset` draws the scenes from a fixed seed into a cache directory in the on-disk layout of
VOC 2012 (``JPEGImages``, palette-PNG ``SegmentationClass`` with a 255 void ring around each ball,
``ImageSets/Segmentation/val.txt``), so the demo exercises the same loader paths as a real benchmark.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from cliptrase.datasets.base import OVSSDataset
from cliptrase.datasets.spec import register_dataset
from cliptrase.paths import cache_dir

logger = logging.getLogger(__name__)

DEMO_CLASSES: tuple[str, ...] = ("sky", "grass", "road", "ball", "box")
DEMO_PALETTE: list[list[int]] = [
    [135, 206, 235],
    [34, 139, 34],
    [128, 128, 128],
    [220, 20, 60],
    [255, 215, 0],
]
DEMO_SIZES_HW: tuple[tuple[int, int], ...] = (
    (224, 320),
    (320, 224),
    (256, 256),
    (240, 352),
    (200, 300),
    (288, 224),
)
DEMO_SEED = 0
DEMO_VERSION = "1"
"""Bumped whenever the generator changes, so stale caches are regenerated."""

_MARKER = ".cliptrase-demo"
_VOID = 255
_VOID_RING_PX = 2.0  # width of the ignored ring around each ball, like VOC's object boundaries
_NOISE_STD = 6.0  # pixel noise, so images are not flat colour fields
_JPEG_QUALITY = 95
_SKY, _GRASS, _ROAD, _BALL, _BOX = range(len(DEMO_CLASSES))


def default_demo_root() -> Path:
    """``$CLIPTRASE_CACHE/demo``, else ``~/.cache/cliptrase/demo``."""
    return cache_dir() / "demo"


def _draw_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: sky, grass and road bands, a box and a ball; returns (RGB uint8 image, uint8 labels)."""
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    horizon = int(height * rng.uniform(0.3, 0.45))
    kerb = int(height * rng.uniform(0.65, 0.8))
    labels = np.full((height, width), _SKY, dtype=np.uint8)
    labels[horizon:kerb] = _GRASS
    labels[kerb:] = _ROAD
    box_h, box_w = int(height * rng.uniform(0.15, 0.3)), int(width * rng.uniform(0.15, 0.3))
    top, left = int(rng.integers(0, height - box_h)), int(rng.integers(0, width - box_w))
    labels[top : top + box_h, left : left + box_w] = _BOX
    radius = min(height, width) * rng.uniform(0.1, 0.16)
    cy, cx = rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)
    distance = np.sqrt((rows - cy) ** 2 + (cols - cx) ** 2)
    labels[distance <= radius] = _BALL
    image = np.asarray(DEMO_PALETTE, dtype=np.float64)[labels]
    image += rng.normal(0.0, _NOISE_STD, size=image.shape)
    labels[(distance > radius) & (distance <= radius + _VOID_RING_PX)] = _VOID
    return np.clip(image, 0, 255).astype(np.uint8), labels


def _palette_png(labels: np.ndarray) -> Image.Image:
    """A mode-P label image, as VOC ships them (indices, with colours only for display)."""
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels).tobytes())
    flat = [channel for colour in DEMO_PALETTE for channel in colour]
    flat += [0] * (3 * _VOID - len(flat)) + [224, 224, 192]  # VOC's cream void colour at index 255
    image.putpalette(flat)
    return image


def write_voc_layout(
    root: Path,
    samples: Mapping[str, tuple[np.ndarray, np.ndarray | Image.Image]],
    *,
    jpeg_quality: int | None = None,
    blank_line: bool = False,
) -> Path:
    """Write ``{stem: (RGB image, label map)}`` in VOC2012's layout under ``root`` and return ``root``.

    The one writer of synthetic VOC copies (the demo benchmark, the tests, ``scripts/bench.py``):
    ``JPEGImages/<stem>.jpg``, ``SegmentationClass/<stem>.png`` (an array is saved as it is, e.g. 8-bit; a
    PIL image, e.g. a palette PNG, too) and the split ``ImageSets/Segmentation/val.txt`` listing the stems in
    order. ``jpeg_quality`` None keeps PIL's default; ``blank_line`` ends the split with an empty line, as
    some hand-edited copies do.
    """
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem, (image, labels) in samples.items():
        quality = {} if jpeg_quality is None else {"quality": jpeg_quality}
        Image.fromarray(image).save(root / "JPEGImages" / f"{stem}.jpg", **quality)
        label_image = labels if isinstance(labels, Image.Image) else Image.fromarray(labels)
        label_image.save(root / "SegmentationClass" / f"{stem}.png")
    ending = "\n\n" if blank_line else "\n"
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(samples) + ending)
    return root


def _write_demo(root: Path) -> None:
    """Write every scene, the split file and the marker into ``root`` (an empty directory)."""
    samples = {}
    for index, (height, width) in enumerate(DEMO_SIZES_HW):
        image, labels = _draw_scene(np.random.default_rng(DEMO_SEED + index), height, width)
        samples[f"demo_{index:03d}"] = (image, _palette_png(labels))
    write_voc_layout(root, samples, jpeg_quality=_JPEG_QUALITY)
    (root / _MARKER).write_text(DEMO_VERSION)


def ensure_demo_dataset(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the demo dataset root, generating it first if it is missing or stale.

    Generation goes to a sibling temporary directory renamed into place, so concurrent callers (parallel
    test workers) never see a half-written dataset.

    Args:
        root: Where the dataset lives; ``None`` uses :func:`default_demo_root`.

    Raises:
        ValueError: ``root`` exists, is not empty and is not a demo dataset (nothing is deleted).
    """
    root = Path(root) if root is not None else default_demo_root()
    marker = root / _MARKER
    if marker.is_file() and marker.read_text().strip() == DEMO_VERSION:
        return root
    if marker.is_file():
        logger.info("regenerating the demo dataset at %s (generator version changed)", root)
        shutil.rmtree(root)
    elif root.is_dir() and any(root.iterdir()):
        raise ValueError(f"{root} exists and is not a cliptrase demo dataset; remove it or pick another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _write_demo(staging / "data")
        if root.is_dir():
            root.rmdir()  # empty, checked above
        try:
            os.replace(staging / "data", root)
        except OSError:
            if not (marker.is_file() and marker.read_text().strip() == DEMO_VERSION):
                raise  # not a concurrent writer that won the race
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("generated the demo dataset (%d images) at %s", len(DEMO_SIZES_HW), root)
    return root


def prepare_demo(raw: Path | None, out: Path | None, *, workers: int) -> Path:
    """The demo needs no download: generate it at ``out`` (``None``: the cache it is read from by default)."""
    del raw, workers  # the converters' signature; nothing to read, nothing to parallelise
    return ensure_demo_dataset(out)


@register_dataset(converter=prepare_demo, needs_raw=False, column=10)
class DemoDataset(OVSSDataset):
    """The synthetic demo benchmark; ``data_root=None`` means the cache, generated on first use."""

    CONFIG_NAME = "demo"
    IMG_DIR = "JPEGImages"
    ANN_DIR = "SegmentationClass"
    SPLIT = "ImageSets/Segmentation/val.txt"
    EXPECTED_VAL_IMAGES = len(DEMO_SIZES_HW)
    METAINFO: ClassVar[dict] = dict(classes=DEMO_CLASSES, palette=DEMO_PALETTE)

    def __init__(self, expected_num_images: int | None = None, **kwargs: Any) -> None:
        kwargs["data_root"] = str(ensure_demo_dataset(kwargs.get("data_root")))
        super().__init__(expected_num_images=expected_num_images, **kwargs)

    @classmethod
    def prepare_hint(cls, data_root: str | os.PathLike[str] | None = None) -> str:
        """The demo is generated on first use; a broken copy is deleted and regenerated."""
        root = data_root or default_demo_root()
        return f"run `cliptrase data prepare demo --out {root}` (delete {root} first if it is broken)"
