"""CLIPtrase on one image with a free class list (``cliptrase predict``): whole image, no crop.

The image is resized (bicubic) so its short side is ``size`` and both sides are multiples of the patch
size, segmented whole, and the label map is resized (nearest) back to the original size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import InterpolationMode

from cliptrase.errors import DataError, DataNotFoundError
from cliptrase.method.runner import Predictor
from cliptrase.method.trase import CLIPtraseOptions
from cliptrase.models.clip import LoadedClip
from cliptrase.protocols.paper import dbscan_settings


def load_image(path: Path) -> Image.Image:
    """Open and decode an image as RGB, with a one-line error when it cannot be read.

    Raises:
        DataNotFoundError: no such file.
        DataError: PIL cannot decode it.
    """
    if not path.is_file():
        raise DataNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None


def input_size(hw: tuple[int, int], short: int, patch: int) -> tuple[int, int]:
    """(H, W) with the short side ``short`` and both sides rounded to multiples of ``patch``."""
    h, w = hw
    scale = short / min(h, w)
    return (max(patch, round(h * scale / patch) * patch), max(patch, round(w * scale / patch) * patch))


def segment_image(
    clip: LoadedClip,
    image: Image.Image,
    names: list[str],
    *,
    size: int,
    eps: float | None = None,
    min_samples: int | None = None,
) -> np.ndarray:
    """CLIPtrase label map of ``image`` over the classes ``names``: (H, W) int64, at the image's size.

    Args:
        clip: the loaded model.
        image: RGB image.
        names: one prompt per class; label ``i`` is ``names[i]``.
        size: short side fed to CLIP (224 or 336: the authors' DBSCAN settings apply).
        eps: DBSCAN eps (default: the paper's for ``size``).
        min_samples: DBSCAN min_samples (default: the paper's for ``size``).
    """
    eps_default, min_default = dbscan_settings(size)
    opts = CLIPtraseOptions(
        eps=eps if eps is not None else eps_default,
        min_samples=min_samples if min_samples is not None else min_default,
    )
    predictor = Predictor(clip)
    hw = input_size((image.height, image.width), size, predictor.encoder.patch_size[0])
    x = TF.normalize(TF.to_tensor(TF.resize(image, list(hw), InterpolationMode.BICUBIC)), clip.mean, clip.std)
    out = predictor(x[None], predictor.text_classifier(names), opts)
    labels = out.pred[0, None, None].float()
    labels = torch.nn.functional.interpolate(labels, size=(image.height, image.width), mode="nearest")
    return labels[0, 0].to(torch.int64).cpu().numpy()


def class_shares(labels: np.ndarray, names: list[str]) -> str:
    """``"sky 40.0%, grass 35.5%, ..."``: the classes present, largest first."""
    counts = np.bincount(labels.ravel(), minlength=len(names)) / labels.size
    return ", ".join(f"{names[c]} {100 * counts[c]:.1f}%" for c in np.argsort(-counts) if counts[c] > 0)
