"""``cliptrase predict IMAGE --classes "cat,dog,grass"``: CLIPtrase on one image, label map + overlay.

The image is resized (bicubic) so its short side is ``--size`` and both sides are multiples of the patch
size, segmented whole (no crop), and the label map is resized (nearest) back to the original size.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import InterpolationMode

from cliptrase.errors import ConfigError, DataError, DataNotFoundError
from cliptrase.evaluation.visualize import render_overlay
from cliptrase.method.cliptrase import CLIPtraseOptions
from cliptrase.models.clip import RANDOM, load_clip
from cliptrase.predictor import CLIPtrasePredictor
from cliptrase.protocols.paper import dbscan_settings
from cliptrase.utils.device import resolve_device

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command."""
    p = subparsers.add_parser("predict", help="segment one image with CLIPtrase and a free class list")
    p.add_argument("image", type=Path, help="image file (any format PIL reads)")
    p.add_argument("--classes", required=True, help='comma-separated class names, e.g. "cat,dog,grass"')
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", type=Path, help="local OpenAI-format CLIP state dict (instead of --model)")
    p.add_argument("--model", default="ViT-B-16", help="open_clip model name (default ViT-B-16)")
    src.add_argument(
        "--pretrained", default="openai", help=f"open_clip pretrained tag, or '{RANDOM}' for random weights"
    )
    p.add_argument("--size", type=int, default=224, choices=(224, 336), help="short side fed to CLIP")
    p.add_argument("--eps", type=float, help="DBSCAN eps (default: the paper's for --size)")
    p.add_argument("--min-samples", type=int, help="DBSCAN min_samples (default: the paper's for --size)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--out", type=Path, default=Path("outputs/predict"), help="output directory")
    p.set_defaults(func=run)


def parse_classes(text: str) -> list[str]:
    """Split a comma-separated class list; empty lists or names are an error."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise ConfigError(f"--classes must be a comma-separated list of non-empty names, got {text!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--classes has duplicate names: {text!r}")
    return names


def load_image(path: Path) -> Image.Image:
    """Open and decode an image as RGB, with a one-line error when it cannot be read."""
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


def run(args: argparse.Namespace) -> int:
    """Execute ``cliptrase predict``."""
    names = parse_classes(args.classes)
    image = load_image(args.image)
    eps_default, min_default = dbscan_settings(args.size)
    opts = CLIPtraseOptions(
        eps=args.eps if args.eps is not None else eps_default,
        min_samples=args.min_samples if args.min_samples is not None else min_default,
    )
    device = resolve_device(args.device)
    if args.weights is not None:
        clip = load_clip(weights=args.weights, device=device)
    else:
        clip = load_clip(args.model, args.pretrained, device=device)
    predictor = CLIPtrasePredictor(clip)
    size = input_size((image.height, image.width), args.size, predictor.encoder.patch_size[0])
    x = TF.normalize(
        TF.to_tensor(TF.resize(image, list(size), InterpolationMode.BICUBIC)), clip.mean, clip.std
    )
    out = predictor(x[None], predictor.text_classifier(names), opts)
    labels = out.pred[0, None, None].float()
    labels = torch.nn.functional.interpolate(labels, size=(image.height, image.width), mode="nearest")
    labels = labels[0, 0].to(torch.int64).cpu().numpy()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.image.stem
    dtype = np.uint8 if len(names) <= 255 else np.uint16
    Image.fromarray(labels.astype(dtype)).save(args.out / f"{stem}_labels.png")
    render_overlay(image, labels, names).save(args.out / f"{stem}_overlay.png")
    counts = np.bincount(labels.ravel(), minlength=len(names)) / labels.size
    summary = ", ".join(f"{names[c]} {100 * counts[c]:.1f}%" for c in np.argsort(-counts) if counts[c] > 0)
    tag = " [RANDOM WEIGHTS: meaningless output]" if clip.is_random else ""
    logger.info("%s -> %s/%s_{labels,overlay}.png: %s%s", args.image, args.out, stem, summary, tag)
    return 0
