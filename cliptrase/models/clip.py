"""Loading open_clip models: the only module that talks to open_clip's factory.

Four sources, one result (:class:`LoadedClip`):

* ``(name, pretrained_tag)``: the tag's weights (found in open_clip's cache, or downloaded by open_clip's own
  downloader, :mod:`cliptrase.models.hub`) loaded through ``open_clip.create_model_and_transforms``, with the
  network built **as the weights were trained**: QuickGELU when the tag's pretrained config says
  ``quick_gelu`` (open_clip itself only warns when the architecture config disagrees, and would otherwise
  run OpenAI's ViT-B/16 with ``nn.GELU``), and the tag's mean/std;
* ``weights=FILE`` without a name: an OpenAI-format CLIP (TorchScript archive as ``clip.load`` downloads it,
  or a plain state dict), rebuilt with ``open_clip.build_model_from_openai_state_dict`` with QuickGELU and
  cast to fp32 as the authors' script runs it (docs/method.md §2.1: ``convert_weights`` is commented out);
* ``weights=FILE`` with ``name``: an open_clip checkpoint (``.pt``, ``.bin``, ``.safetensors``, or an OpenAI
  archive) loaded into that open_clip architecture;
* ``pretrained="random"``: random weights from an open_clip architecture config, for demos and shape tests.

The model is returned in eval mode and is never modified afterwards (no monkeypatching; see ``dense.py``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import build_model_from_openai_state_dict, resize_pos_embed

from cliptrase.errors import ConfigError, UnknownNameError, WeightsNotFoundError
from cliptrase.models import hub
from cliptrase.models.checkpoints import (
    CheckpointError,
    is_torchscript,
    read_state_dict,
    require_openai_format,
)

logger = logging.getLogger(__name__)

RANDOM = "random"
"""Pretrained tag meaning "no weights": random initialisation from the architecture config."""

QUICK_GELU = "QuickGELU"
GELU = "GELU"


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
        activation: MLP activation the image tower was built with (``QuickGELU`` or ``GELU``).
        image_size: the tower's native input size (H, W) (its positional table's grid x patch).
        source: where the weights came from (tag, file path, format), for provenance.
    """

    model: torch.nn.Module
    tokenizer: object
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    model_id: str
    is_random: bool = False
    activation: str = ""
    image_size: tuple[int, int] = (0, 0)
    source: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What the network is, for each result's provenance."""
        return {
            "model_id": self.model_id,
            "activation": self.activation,
            "mean": list(self.mean),
            "std": list(self.std),
            "image_size": list(self.image_size),
            "random_weights": self.is_random,
            **self.source,
        }


def list_vit_models() -> list[str]:
    """open_clip architecture names with a ViT image tower (the ones this package supports)."""
    return [n for n in open_clip.list_models() if "ViT" in n or "vit" in n]


def check_model_name(name: str) -> None:
    """Raise :class:`UnknownNameError` listing ViT names unless ``name`` is an open_clip architecture."""
    if name not in open_clip.list_models():
        raise UnknownNameError(
            f"unknown open_clip model {name!r}; valid ViT names include: {', '.join(list_vit_models()[:40])} "
            "(see open_clip.list_models() for all)"
        )


def check_pretrained_tag(name: str, tag: str) -> None:
    """Raise :class:`UnknownNameError` listing the valid tags unless ``tag`` is one of ``name``'s."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        valid = ", ".join(tags) if tags else "none (use pretrained=random or weights=FILE)"
        raise UnknownNameError(f"unknown pretrained tag {tag!r} for {name!r}; valid tags: {valid}")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, for provenance and cache keys."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def activation_of(model: torch.nn.Module) -> str:
    """``QuickGELU`` or ``GELU``: the activation of the image tower's MLPs (first block)."""
    blocks = model.visual.transformer.resblocks
    act = blocks[0].mlp.gelu
    return QUICK_GELU if type(act).__name__ == "QuickGELU" else type(act).__name__


def tag_uses_quick_gelu(name: str, tag: str) -> bool:
    """Whether the weights of ``name``/``tag`` were trained with QuickGELU (the tag's pretrained config)."""
    return bool(open_clip.get_pretrained_cfg(name, tag).get("quick_gelu", False))


def config_uses_quick_gelu(name: str) -> bool:
    """Whether open_clip's architecture config ``name`` builds QuickGELU by itself (``*-quickgelu``)."""
    return bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))


def resolve_quick_gelu(name: str, tag: str | None, override: bool | None) -> bool:
    """The activation to build ``name`` with: the tag's, else the override, else the architecture's.

    Raises:
        ConfigError: ``override`` contradicts the tag; the message says why.
    """
    cfg_quick = config_uses_quick_gelu(name)
    if tag is None or tag == RANDOM:
        return cfg_quick if override is None else bool(override)
    tag_quick = tag_uses_quick_gelu(name, tag)
    act = QUICK_GELU if tag_quick else GELU
    if override is not None and bool(override) != tag_quick:
        raise ConfigError(
            f"model.quick_gelu={str(bool(override)).lower()} contradicts pretrained tag {tag!r} of {name!r}: "
            f"those weights were trained with {act}, and another activation would change every number; "
            "drop model.quick_gelu (the tag decides)"
        )
    return tag_quick


def activation_kwargs(quick: bool) -> dict[str, bool]:
    """open_clip model kwargs that set the activation either way.

    ``force_quick_gelu`` can only switch QuickGELU on; a model kwarg has open_clip's highest priority
    (``final_model_cfg.update(model_kwargs)``), so a ``*-quickgelu`` config can also be built with GELU.
    """
    return {"quick_gelu": bool(quick)}


def _preprocess_of(model: torch.nn.Module) -> tuple[tuple, tuple]:
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    return tuple(cfg.get("mean", OPENAI_DATASET_MEAN)), tuple(cfg.get("std", OPENAI_DATASET_STD))


def _native_size(model: torch.nn.Module) -> tuple[int, int]:
    size = getattr(model.visual, "image_size", (0, 0))
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def tag_preprocess(name: str, tag: str) -> dict[str, Any]:
    """The tag's preprocessing facts (mean, std, interpolation, resize mode) from open_clip's table."""
    cfg = open_clip.get_pretrained_cfg(name, tag)
    return {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}


def load_clip(
    name: str | None = None,
    pretrained: str | None = None,
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | None = None,
    quick_gelu: bool | None = None,
) -> LoadedClip:
    """Load a CLIP ViT by open_clip name + pretrained tag, from a local checkpoint file, or at random.

    Args:
        name: open_clip architecture name (``ViT-B-16``). With ``weights``, the architecture of an open_clip
            checkpoint; without, the file must be an OpenAI-format CLIP (architecture read from the tensors).
        pretrained: open_clip pretrained tag (``openai``, ``laion2b_s32b_b79k``) or ``"random"``.
        weights: path of a checkpoint file (TorchScript archive, state dict, safetensors).
        device: where to put the model.
        cache_dir: open_clip download cache (default: open_clip's own).
        quick_gelu: activation override (None: as the tag / architecture / OpenAI format says). Refused
            when it contradicts a pretrained tag.

    Returns:
        The model in eval mode, fp32, with tokenizer, normalisation, activation and an identifier.
    """
    if weights is not None:
        return _load_from_file(weights, name, pretrained, device, quick_gelu)
    if name is None:
        raise ConfigError(
            "model: give an open_clip name (model.name=ViT-B-16) or a weights file (model.weights=FILE)"
        )
    check_model_name(name)
    is_random = pretrained in (None, RANDOM)
    if not is_random:
        check_pretrained_tag(name, pretrained)
    quick = resolve_quick_gelu(name, None if is_random else pretrained, quick_gelu)
    source: dict[str, Any] = {"pretrained": pretrained or RANDOM}
    if is_random:
        logger.warning("model %s has RANDOM weights (pretrained=%s): outputs are meaningless", name, RANDOM)
        model, _, _ = open_clip.create_model_and_transforms(name, device=device, **activation_kwargs(quick))
    else:
        path = hub.fetch(name, pretrained, cache_dir)  # the cache first; downloads only on a miss
        source["weights_file"] = str(path)
        model = _build_with_file(name, path, quick, device, tag_preprocess(name, pretrained))
    return _finish(
        model,
        open_clip.get_tokenizer(name),
        model_id=f"{name}/{pretrained or RANDOM}",
        is_random=is_random,
        source=source,
    )


def _build_with_file(
    name: str, path: Path, quick: bool, device: str | torch.device, preprocess: dict[str, Any] | None
) -> torch.nn.Module:
    """open_clip architecture ``name`` with the weights of ``path`` (any format of :mod:`.checkpoints`)."""
    pre = preprocess or {}
    kwargs = dict(
        device=device,
        **activation_kwargs(quick),
        image_mean=pre.get("mean"),
        image_std=pre.get("std"),
        image_interpolation=pre.get("interpolation"),
        image_resize_mode=pre.get("resize_mode"),
    )
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    if is_torchscript(path):
        # open_clip's loader reads torch.save and safetensors files with weights_only=True, which refuses
        # TorchScript archives; those are read here (torch.jit.load) and loaded the way open_clip loads.
        model, _, _ = open_clip.create_model_and_transforms(name, **kwargs)
        state = read_state_dict(path)
        resize_pos_embed(state, model)
        _load_strict(model, state, path, name)
        return model
    try:
        model, _, _ = open_clip.create_model_and_transforms(name, pretrained=str(path), **kwargs)
    except Exception as exc:  # open_clip raises unpickling, safetensors and shape errors alike
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"weights file {path} could not be loaded into open_clip model {name!r} (expected an open_clip "
            f"or OpenAI checkpoint of that architecture: .pt/.bin/.safetensors): {first}"
        ) from exc
    return model


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"weights file {path} does not fit open_clip model {name!r}: {first}") from None


def _finish(model, tokenizer, *, model_id: str, is_random: bool, source: dict[str, Any]) -> LoadedClip:
    model = model.float().eval()
    mean, std = _preprocess_of(model)
    return LoadedClip(
        model=model,
        tokenizer=tokenizer,
        mean=mean,
        std=std,
        model_id=model_id,
        is_random=is_random,
        activation=activation_of(model),
        image_size=_native_size(model),
        source=source,
    )


def _load_from_file(
    weights: str | Path,
    name: str | None,
    pretrained: str | None,
    device: str | torch.device,
    quick_gelu: bool | None,
) -> LoadedClip:
    path = Path(weights).expanduser()
    digest = file_sha256(path) if path.is_file() else ""
    source = {"weights_file": str(path), "weights_sha256": digest}
    if name is not None:
        check_model_name(name)
        tag = pretrained if pretrained not in (None, RANDOM) else None
        if tag is not None:
            check_pretrained_tag(name, tag)
        quick = resolve_quick_gelu(name, tag, quick_gelu)
        model = _build_with_file(name, path, quick, device, tag_preprocess(name, tag) if tag else None)
        source["format"] = "torchscript" if is_torchscript(path) else "open_clip"
        return _finish(
            model,
            open_clip.get_tokenizer(name),
            model_id=f"{name}/file:{path.name}:{digest[:16]}",
            is_random=False,
            source=source,
        )
    state = read_state_dict(path)
    require_openai_format(state, path)
    # build_model_from_openai_state_dict pops keys; give it a shallow copy. It converts parts to fp16 as the
    # OpenAI checkpoints are stored; the authors run fp32, hence .float() in _finish. OpenAI trained with
    # QuickGELU; an explicit model.quick_gelu=false is honoured for other weights stored in this format.
    quick = True if quick_gelu is None else bool(quick_gelu)
    model = build_model_from_openai_state_dict(dict(state), quick_gelu=quick).to(device)
    source["format"] = "openai_torchscript" if is_torchscript(path) else "openai_state_dict"
    return _finish(
        model,
        open_clip.SimpleTokenizer(context_length=model.context_length),
        model_id=f"file:{path.name}:{digest[:16]}",
        is_random=False,
        source=source,
    )


__all__ = [
    "GELU",
    "QUICK_GELU",
    "RANDOM",
    "CheckpointError",
    "LoadedClip",
    "activation_of",
    "file_sha256",
    "list_vit_models",
    "load_clip",
    "resolve_quick_gelu",
]
