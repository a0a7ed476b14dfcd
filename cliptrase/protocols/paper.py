"""The paper protocol: the authors' single-GPU evaluation script (docs/method.md §2.2, §5), as pure pieces.

* :func:`preprocess_image` — PIL bicubic resize of the short side to S, centre crop S, CLIP mean/std.
* :func:`preprocess_gt` — nearest resize + centre crop of the label map, cast to int16 (65535 -> -1).
* :func:`is_scored` — the script's "skip images whose GT holds only 255" rule (quirk 11.1 kept).
* :func:`map_gt` — ignore/background codes as scored (255 -> C on the with-background sets).
* :data:`PAPER_DATASETS` — the nine dataset keys with vocabularies, background handling and the
  S-dependent DBSCAN settings.

The transforms are torchvision's functional ops on PIL images, the very calls the script makes, so the
numbers match bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from cliptrase.method.trase import CLIPtraseOptions
from cliptrase.utils.class_names import class_names_file, read_class_names, read_lines

DBSCAN_BY_SIZE: dict[int, tuple[float, int]] = {224: (0.7, 3), 336: (1.1, 7)}
"""(eps, min_samples) of the authors' script per input side S (``clip_self_correlation.py:233-234``)."""


def dbscan_settings(size: int, grid: int | None = None) -> tuple[float, int]:
    """(eps, min_samples) for input side ``size`` with a ``grid`` x ``grid`` patch grid.

    The authors key their settings by S (224 -> 0.7 / 3, 336 -> 1.1 / 7, for 14 x 14 and 21 x 21 grids of
    ViT-B/16), and so does this function for those two sizes, whatever the patch size (what their script
    would do). For any other size the documented rule extrapolates their two points linearly in the grid
    side g, since the rows DBSCAN compares have g² entries and their distances grow about like g:
    ``eps = 0.7 + (g - 14) * 0.4 / 7`` and ``min_samples = round(3 + (g - 14) * 4 / 7)`` (at least 1).
    Set ``method.eps`` / ``method.min_samples`` to override.

    Raises:
        ValueError: a size outside the table without a grid to apply the rule to.
    """
    if size in DBSCAN_BY_SIZE:
        return DBSCAN_BY_SIZE[size]
    if grid is None:
        raise ValueError(
            f"the paper protocol defines DBSCAN settings for S in {sorted(DBSCAN_BY_SIZE)}, not {size}; "
            "set method.eps and method.min_samples explicitly"
        )
    eps = 0.7 + (grid - 14) * 0.4 / 7
    if eps <= 0:
        raise ValueError(f"no DBSCAN eps rule for a {grid} x {grid} grid; set method.eps explicitly")
    return round(eps, 4), max(1, round(3 + (grid - 14) * 4 / 7))


@dataclass(frozen=True)
class PaperDataset:
    """One dataset key of the authors' script (docs/method.md §3.3, §5.1).

    Attributes:
        key: the script's key (``VOC20``, ``COCO80_val``, ...).
        class_names: foreground vocabulary, verbatim (quirks kept).
        background_names: extra background prompts, or None.
        cls_product: multiply pixel logits by the [CLS] logits (the script does it for VOC20 only).
    """

    key: str
    class_names: tuple[str, ...]
    background_names: tuple[str, ...] | None
    cls_product: bool = False

    @property
    def n_foreground(self) -> int:
        """C, the number of foreground classes."""
        return len(self.class_names)

    @property
    def has_background(self) -> bool:
        """True on the with-background sets (VOC21, PC60, COCO80): prompts >= C collapse to C."""
        return self.background_names is not None

    @property
    def n_class_scored(self) -> int:
        """Classes in the confusion matrix: C, plus one background class on the with-background sets."""
        return self.n_foreground + int(self.has_background)

    @property
    def prompts(self) -> list[str]:
        """Foreground names then background names: the rows of the text classifier."""
        return list(self.class_names) + list(self.background_names or ())


PAPER_KEYS = ("VOC20", "VOC21", "PC59", "PC60", "PC459", "COCO80_val", "COCO171_val", "ADE150", "ADEfull")
"""The script's nine dataset keys, in the order it loops over them."""


@cache
def paper_dataset(key: str) -> PaperDataset:
    """The :class:`PaperDataset` of ``key``; unknown keys raise ``KeyError`` listing the valid ones."""
    if key not in PAPER_KEYS:
        raise KeyError(f"unknown paper dataset key {key!r}; valid: {', '.join(PAPER_KEYS)}")
    background = class_names_file("paper", f"{key}.background.txt")
    return PaperDataset(
        key=key,
        class_names=tuple(read_class_names("paper", f"{key}.txt")),
        background_names=tuple(read_lines(background)) if background.is_file() else None,
        cls_product=key == "VOC20",
    )


def paper_options(dataset: PaperDataset, size: int) -> CLIPtraseOptions:
    """The method options the authors' script uses for ``dataset`` at side ``size``.

    docs/method.md §4 and §5.
    """
    eps, min_samples = dbscan_settings(size)
    return CLIPtraseOptions(
        eps=eps,
        min_samples=min_samples,
        cls_product=dataset.cls_product,
        n_foreground=dataset.n_foreground if dataset.has_background else None,
    )


def preprocess_image(
    image: Image.Image, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """``Resize(S, BICUBIC)`` → ``CenterCrop(S)`` → RGB → ``ToTensor`` → ``Normalize`` (docs/method.md §2.2).

    Returns:
        (3, S, S) float32.
    """
    image = TF.center_crop(TF.resize(image, size, interpolation=InterpolationMode.BICUBIC), size)
    x = TF.to_tensor(image.convert("RGB"))
    return TF.normalize(x, mean=list(mean), std=list(std))


def gt_to_image(gt: np.ndarray) -> Image.Image:
    """A label array as the PIL image the script would have opened (``L`` for uint8, ``I;16`` for uint16)."""
    if gt.dtype in (np.uint8, np.uint16):
        return Image.fromarray(gt)  # Pillow picks "L" for uint8 and "I;16" for uint16
    raise ValueError(f"label maps must be uint8 or uint16, got {gt.dtype}")


def preprocess_gt(gt: Image.Image, size: int) -> np.ndarray:
    """``Resize(S, NEAREST)`` → ``CenterCrop(S)`` → ``np.int16``; uint16 65535 becomes -1.

    docs/method.md §2.2.
    """
    gt = TF.center_crop(TF.resize(gt, size, interpolation=InterpolationMode.NEAREST), size)
    return np.asarray(gt).astype(np.int16)


def is_scored(gt: np.ndarray) -> bool:
    """False when the script skips the image: its GT has no label besides 255 (``:132-141``).

    The script also compares ``label_set[-1].float`` (a bound method) with 65535, which is always False
    (docs/method.md §11.1), so a GT holding only the 16-bit ignore code (-1 after the int16 cast) is *not*
    skipped; it is simply ignored by the metric.
    """
    labels = np.unique(gt)
    if labels.size and labels[-1] == 255:
        labels = labels[:-1]
    return labels.size > 0


def map_gt(gt: np.ndarray, dataset: PaperDataset) -> np.ndarray:
    """On the with-background sets, 255 (void / unlabeled) becomes background C (``:164-166``)."""
    if not dataset.has_background:
        return gt
    out = gt.copy()
    out[out == 255] = dataset.n_foreground
    return out


PAPER_GT: dict[str, tuple[str, str | None]] = {
    "VOC20": ("reduce_zero", None),
    "VOC21": ("reduce_zero", None),
    "PC59": ("reduce_zero", None),
    "PC60": ("reduce_zero", None),
    "PC459": ("identity", None),
    "COCO171_val": ("identity", None),
    # The authors score COCO-Object on the 171-class stuff+thing maps, not the instance maps (docs/method.md
    # §5.1).
    "COCO80_val": ("identity", "_labelTrainIds.png"),
    "ADE150": ("reduce_zero", None),
    "ADEfull": ("identity", None),
}
"""Per paper key: how the dataset's on-disk labels become the authors' GT encoding (``reduce_zero`` =
their detectron2 preparation: 0 -> 255, k -> k-1), and a label-file suffix override where the authors read
other files than the standard protocol."""
