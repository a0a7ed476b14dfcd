"""``cliptrase predict IMAGE --classes "cat,dog,grass"``: CLIPtrase on one image, label map + overlay.

Parses the options, runs :func:`cliptrase.inference.single_image.segment_image` (whole image, short side
``--size``) and writes ``<stem>_labels.png`` and ``<stem>_overlay.png`` through the one prediction writer
(:func:`cliptrase.inference.prediction_files.write_prediction`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cliptrase.errors import ConfigError
from cliptrase.inference.prediction_files import write_prediction
from cliptrase.inference.single_image import class_shares, load_image, segment_image
from cliptrase.models.clip import RANDOM, load_clip
from cliptrase.utils.device import resolve_device

logger = logging.getLogger(__name__)


DEFAULT_MODEL = "ViT-B-16"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command."""
    p = subparsers.add_parser("predict", help="segment one image with CLIPtrase and a free class list")
    p.add_argument("image", type=Path, help="image file (any format PIL reads)")
    p.add_argument("--classes", required=True, help='comma-separated class names, e.g. "cat,dog,grass"')
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--weights",
        type=Path,
        help="local checkpoint: an OpenAI CLIP file (TorchScript or state dict), or with --model an "
        "open_clip checkpoint (.pt/.bin/.safetensors)",
    )
    p.add_argument("--model", default=None, help="open_clip model name (default ViT-B-16)")
    p.add_argument("--cache-dir", default=None, help="open_clip weights cache (see `cliptrase models`)")
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


def run(args: argparse.Namespace) -> int:
    """Execute ``cliptrase predict``."""
    names = parse_classes(args.classes)
    image = load_image(args.image)
    device = resolve_device(args.device)
    if args.weights is not None:
        clip = load_clip(args.model, weights=args.weights, device=device)
    else:
        name = args.model or DEFAULT_MODEL
        clip = load_clip(name, args.pretrained, device=device, cache_dir=args.cache_dir)
    labels = segment_image(clip, image, names, size=args.size, eps=args.eps, min_samples=args.min_samples)
    write_prediction(args.out, args.image.stem, labels, names, image=image, overlay=True)
    tag = " [RANDOM WEIGHTS: meaningless output]" if clip.is_random else ""
    stem = args.image.stem
    logger.info(
        "%s -> %s/%s_{labels,overlay}.png: %s%s", args.image, args.out, stem, class_shares(labels, names), tag
    )
    return 0
