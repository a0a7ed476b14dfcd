"""Loading open_clip models: the only module that talks to open_clip's factory.

Three sources, one result (:class:`LoadedClip`):

* ``(name, pretrained_tag)`` through ``open_clip.create_model_and_transforms`` — the real download path a user
  with internet gets (weights land in open_clip's own cache);
* ``weights=FILE`` — a local OpenAI-format CLIP state dict (the golden tiny CLIP loads this way), rebuilt with
  ``open_clip.build_model_from_openai_state_dict`` and cast to fp32 as the authors' script runs it
  (method.md §2.1: ``convert_weights`` is commented out there);
* ``pretrained="random"`` — random weights from an open_clip architecture config, for demos and shape tests.

The model is returned in eval mode and is never modified afterwards (no monkeypatching; see ``dense.py``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import build_model_from_openai_state_dict

logger = logging.getLogger(__name__)

RANDOM = "random"
"""Pretrained tag meaning "no weights": random initialisation from the architecture config."""

_OPENAI_REQUIRED_KEYS = (
    "visual.conv1.weight",
    "visual.positional_embedding",
    "visual.proj",
    "text_projection",
    "positional_embedding",
    "token_embedding.weight",
)


@dataclass(frozen=True)
class LoadedClip:
    """A CLIP model with what the pipeline needs to use it.

    Attributes:
        model: the open_clip ``CLIP`` module (eval mode, fp32 unless a precision was asked for).
        tokenizer: open_clip tokenizer matching the model.
        mean: per-channel normalisation mean of the pretrained config (0..1 scale).
        std: per-channel normalisation std.
        model_id: a string identifying architecture + weights, used in cache keys and provenance.
        is_random: True when the weights are a random initialisation.
    """

    model: torch.nn.Module
    tokenizer: object
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    model_id: str
    is_random: bool = False


def list_vit_models() -> list[str]:
    """open_clip architecture names with a ViT image tower (the ones this package supports)."""
    return [n for n in open_clip.list_models() if "ViT" in n or "vit" in n]


def _check_model_name(name: str) -> None:
    if name not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip model {name!r}; valid ViT names include: {', '.join(list_vit_models()[:40])} "
            "(see open_clip.list_models() for all)"
        )


def _check_pretrained_tag(name: str, tag: str) -> None:
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        valid = ", ".join(tags) if tags else "none (use pretrained=random or weights=FILE)"
        raise ValueError(f"unknown pretrained tag {tag!r} for {name!r}; valid tags: {valid}")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, for provenance and cache keys."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_openai_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an OpenAI-format CLIP state dict from ``path`` and check that it is one.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a CLIP state dict (names the missing keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
        raise ValueError(f"weights file {path} is not a readable torch state dict: {exc}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"weights file {path} holds a {type(obj).__name__}, not a CLIP state dict")
    missing = [k for k in _OPENAI_REQUIRED_KEYS if k not in obj]
    if missing:
        raise ValueError(
            f"weights file {path} is not an OpenAI-format CLIP ViT state dict "
            f"(missing keys: {', '.join(missing)})"
        )
    return obj


def load_clip(
    name: str | None = None,
    pretrained: str | None = None,
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | None = None,
) -> LoadedClip:
    """Load a CLIP ViT by open_clip name + pretrained tag, from a local state-dict file, or at random.

    Args:
        name: open_clip architecture name (``ViT-B-16``); ignored when ``weights`` is given.
        pretrained: open_clip pretrained tag (``openai``, ``laion2b_s32b_b79k``) or ``"random"``.
        weights: path of an OpenAI-format state dict; its architecture is read from the tensors.
        device: where to put the model.
        cache_dir: open_clip download cache (default: open_clip's own).

    Returns:
        The model in eval mode, fp32, with tokenizer, normalisation and an identifier.
    """
    if weights is not None:
        return _load_from_file(weights, device)
    if name is None:
        raise ValueError(
            "model: give an open_clip name (model.name=ViT-B-16) or a weights file (model.weights=FILE)"
        )
    _check_model_name(name)
    is_random = pretrained in (None, RANDOM)
    if not is_random:
        _check_pretrained_tag(name, pretrained)
    else:
        logger.warning("model %s has RANDOM weights (pretrained=%s): outputs are meaningless", name, RANDOM)
    model, _, _ = open_clip.create_model_and_transforms(
        name, pretrained=None if is_random else pretrained, device=device, cache_dir=cache_dir
    )
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(cfg.get("mean", OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", OPENAI_DATASET_STD))
    model = model.float().eval()
    return LoadedClip(
        model=model,
        tokenizer=open_clip.get_tokenizer(name),
        mean=mean,
        std=std,
        model_id=f"{name}/{pretrained or RANDOM}",
        is_random=is_random,
    )


def _load_from_file(weights: str | Path, device: str | torch.device) -> LoadedClip:
    state = load_openai_state_dict(weights)
    # build_model_from_openai_state_dict pops keys; give it a shallow copy. It converts parts to fp16 as the
    # OpenAI checkpoints are stored; the authors run fp32, hence .float().
    model = build_model_from_openai_state_dict(dict(state), quick_gelu=True)
    model = model.float().eval().to(device)
    tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
    digest = file_sha256(weights)
    return LoadedClip(
        model=model,
        tokenizer=tokenizer,
        mean=tuple(OPENAI_DATASET_MEAN),
        std=tuple(OPENAI_DATASET_STD),
        model_id=f"file:{Path(weights).name}:{digest[:16]}",
    )
