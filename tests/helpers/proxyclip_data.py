"""The inputs of the ProxyCLIP reference (tests/golden/peers/README.md): seeded synthetic VOC2012 and ADE20K
miniatures in the official layouts, and a tiny random DINO ViT/8 in DINO's checkpoint format.

Both are regenerated bit for bit from their seeds (the reference was computed on exactly these files), so the
repository holds no binary copies; :data:`JPEG_SHA256` pins the encoded images, so that a JPEG encoder that
writes other bytes fails with that reason instead of a label mismatch.

Scenes: a two-colour gradient, 3-6 filled shapes (rectangle, ellipse or triangle, each with a class, a colour
and Gaussian texture), Gaussian noise; VOC label maps get the 255 void ring around each shape (5x5 dilation).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

VOC_SIZES = ((375, 500), (500, 375), (333, 500), (375, 500))
"""(H, W) of the four VOC images, ``2007_000000`` ... ``2007_000003``."""
ADE_SIZES = ((512, 683), (683, 512), (512, 683), (480, 640))
"""(H, W) of the four ADE images, ``ADE_val_00000001`` ... ``ADE_val_00000004``."""
JPEG_QUALITY = 90

VOC_COLOURS = [
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
    (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
    (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
]  # fmt: skip

JPEG_SHA256 = {
    "2007_000000": "d73541263993aedd9482bebc14bc61d4ee2e997928fa4fbcbca5cb66e047a2a7",
    "2007_000001": "aca65f9e59a2841dfb56ca2b6f21acf894714b049470c8f258fbf78c0828fbe5",
    "2007_000002": "176e56f1d7dc81087cb0ba50532218d6cb7f7d5ca8b099fc482c5da7733c3803",
    "2007_000003": "717706fad87384610619cbbe9f89974b1f215411fec412e1d750d0a10f5bd168",
    "ADE_val_00000001": "419eaaed8a8872205e4b59987c299515dc8c9494b5d101a827e3b612a040906a",
    "ADE_val_00000002": "dd714a75c9763b0b9c874e5eaba5e06fe10111e5de4c75f4c061d22ca4f4ef70",
    "ADE_val_00000003": "2ae6831d92453910cd1012db91a826349b533c47f8f0d55e2f27bcff50712f6a",
    "ADE_val_00000004": "d41c2fbd119c21d216d741786e8a1c5a5d1720104292e7ed5bf1781e4a863fdb",
}
"""SHA-256 of every written JPEG: the bytes of the reference's inputs (Pillow's libjpeg, quality 90)."""


def _scene(
    rng: np.random.Generator, height: int, width: int, n_classes: int, background: int, void_ring: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) uint8 image and its (H, W) label map; the draws' order fixes the pixels."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    colour_a, colour_b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    slope_x = rng.uniform(0.3, 1)
    ramp = (cols / width * slope_x + rows / height * rng.uniform(0.3, 1))[..., None]
    image = colour_a * (1 - ramp / 2) + colour_b * (ramp / 2)
    labels = np.full((height, width), background, np.int32)
    for _ in range(rng.integers(3, 7)):
        label = int(rng.integers(1, n_classes + 1))
        colour = np.array([int(c) for c in rng.uniform(0, 255, 3)], np.float32)
        left, top = rng.integers(0, width - 40), rng.integers(0, height - 40)
        right = min(width - 1, left + rng.integers(40, width // 2))
        bottom = min(height - 1, top + rng.integers(40, height // 2))
        shape = rng.integers(0, 3)
        canvas = Image.new("L", (width, height), 0)
        pen = ImageDraw.Draw(canvas)
        if shape == 0:
            pen.rectangle([left, top, right, bottom], fill=255)
        elif shape == 1:
            pen.ellipse([left, top, right, bottom], fill=255)
        else:
            pen.polygon([(left, bottom), (right, bottom), ((left + right) // 2, top)], fill=255)
        inside = np.array(canvas) > 0
        texture = rng.normal(0, 12, (height, width, 1))
        image[inside] = colour + texture[inside]
        labels[inside] = label
        if void_ring:
            grown = np.array(canvas.filter(ImageFilter.MaxFilter(5))) > 0
            labels[grown & ~inside] = 255
    image = image + rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def write_data(root: Path) -> dict[str, Path]:
    """Write both miniatures under ``root`` (one generator, seed 0: VOC first, then ADE).

    Returns:
        stem -> JPEG path, for every image.
    """
    rng = np.random.default_rng(0)
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for i, (h, w) in enumerate(VOC_SIZES):
        stem = f"2007_{i:06d}"
        image, labels = _scene(rng, h, w, 20, 0, void_ring=True)
        written[stem] = voc / "JPEGImages" / f"{stem}.jpg"
        Image.fromarray(image).save(written[stem], quality=JPEG_QUALITY)
        label_png = Image.fromarray(labels.astype(np.uint8), mode="P")
        label_png.putpalette([c for colour in VOC_COLOURS for c in colour])
        label_png.save(voc / "SegmentationClass" / f"{stem}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(written) + "\n")
    ade = root / "ade" / "ADEChallengeData2016"  # the layout of configs/dataset/ade150.yaml
    for sub in ("images/validation", "annotations/validation"):
        (ade / sub).mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(ADE_SIZES):
        stem = f"ADE_val_{i + 1:08d}"
        image, labels = _scene(rng, h, w, 150, 0, void_ring=False)
        written[stem] = ade / "images" / "validation" / f"{stem}.jpg"
        Image.fromarray(image).save(written[stem], quality=JPEG_QUALITY)
        Image.fromarray(labels.astype(np.uint8), mode="L").save(
            ade / "annotations" / "validation" / f"{stem}.png"
        )
    return written


def jpeg_mismatches(written: dict[str, Path]) -> list[str]:
    """Stems whose JPEG bytes differ from the reference's (another JPEG encoder)."""
    return [
        stem for stem, path in written.items()
        if hashlib.sha256(path.read_bytes()).hexdigest() != JPEG_SHA256[stem]
    ]  # fmt: skip


TINY_DINO = {"patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 2}
"""The tiny DINO ViT/8's architecture (qkv bias, MLP ratio 4, trained size 224: 1 + 28² table rows)."""


def tiny_dino_state(
    patch: int = 8, dim: int = 96, depth: int = 4, img_size: int = 224
) -> dict[str, torch.Tensor]:
    """The tiny random DINO ViT in DINO's key layout and parameter order, from a generator seeded 1.

    Each tensor is drawn in that order: LayerNorm weights ``1 + 0.2·N(0, 1)``, biases ``0.05·N(0, 1)``, the
    positional table and [CLS] ``0.5·N(0, 1)``, weights ``N(0, 1) / sqrt(fan_in)``.
    """
    hidden = 4 * dim
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("cls_token", (1, 1, dim)),
        ("pos_embed", (1, 1 + (img_size // patch) ** 2, dim)),
        ("patch_embed.proj.weight", (dim, 3, patch, patch)),
        ("patch_embed.proj.bias", (dim,)),
    ]
    for i in range(depth):
        b = f"blocks.{i}."
        shapes += [
            (b + "norm1.weight", (dim,)), (b + "norm1.bias", (dim,)),
            (b + "attn.qkv.weight", (3 * dim, dim)), (b + "attn.qkv.bias", (3 * dim,)),
            (b + "attn.proj.weight", (dim, dim)), (b + "attn.proj.bias", (dim,)),
            (b + "norm2.weight", (dim,)), (b + "norm2.bias", (dim,)),
            (b + "mlp.fc1.weight", (hidden, dim)), (b + "mlp.fc1.bias", (hidden,)),
            (b + "mlp.fc2.weight", (dim, hidden)), (b + "mlp.fc2.bias", (dim,)),
        ]  # fmt: skip
    shapes += [("norm.weight", (dim,)), ("norm.bias", (dim,))]
    gen = torch.Generator().manual_seed(1)
    state = {}
    for key, shape in shapes:
        if key.endswith(("norm1.weight", "norm2.weight")) or key == "norm.weight":
            state[key] = 1.0 + 0.2 * torch.randn(shape, generator=gen)
        elif key.endswith(".bias"):
            state[key] = 0.05 * torch.randn(shape, generator=gen)
        elif key in ("pos_embed", "cls_token"):
            state[key] = 0.5 * torch.randn(shape, generator=gen)
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=gen) / fan_in**0.5
    return state


def write_tiny_dino(path: Path) -> Path:
    """Save :func:`tiny_dino_state` as DINO publishes its checkpoints (a plain ``torch.save`` state dict)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_dino_state(), path)
    return path
