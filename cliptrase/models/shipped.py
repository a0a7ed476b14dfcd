"""The shipped model configs (``configs/model/*.yaml``) and what each one builds, without building it.

For every config with an open_clip name and pretrained tag, :func:`shipped_model_specs` resolves, from
open_clip's tables alone, the activation the weights were trained with, the tag's mean/std and the
architecture's native input size: the same facts :func:`cliptrase.models.clip.load_clip` builds with.
"""

from __future__ import annotations

from dataclasses import dataclass

import open_clip
from omegaconf import OmegaConf

from cliptrase.errors import ConfigError, UnknownNameError
from cliptrase.models.clip import (
    GELU,
    QUICK_GELU,
    RANDOM,
    check_model_name,
    check_pretrained_tag,
    resolve_quick_gelu,
    tag_preprocess,
)


@dataclass(frozen=True)
class ModelSpec:
    """One model config: an open_clip (architecture, tag) and what it builds.

    Attributes:
        slug: config name (``vit_b16_openai``) or ``ARCH:TAG`` for ad-hoc pairs.
        name: open_clip architecture, or None (a weights-file config).
        tag: pretrained tag, or None (random weights or a weights file).
        activation: ``QuickGELU`` or ``GELU`` as built.
        mean / std: normalisation of the tag.
        image_size: native input size of the architecture.
        note: why a config has no tag (random weights, file).
    """

    slug: str
    name: str | None
    tag: str | None
    activation: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    image_size: int = 0
    note: str = ""


def spec_for(name: str, tag: str | None, slug: str | None = None) -> ModelSpec:
    """Resolve (architecture, tag) from open_clip's tables; raises ValueError for unknown names/tags."""
    check_model_name(name)
    if tag not in (None, RANDOM):
        check_pretrained_tag(name, tag)
    real_tag = None if tag in (None, RANDOM) else tag
    quick = resolve_quick_gelu(name, real_tag, None)
    cfg = tag_preprocess(name, real_tag) if real_tag else {}
    size = (open_clip.get_model_config(name) or {}).get("vision_cfg", {}).get("image_size", 0)
    return ModelSpec(
        slug=slug or f"{name}:{tag}",
        name=name,
        tag=real_tag,
        activation=QUICK_GELU if quick else GELU,
        mean=tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        image_size=int(size if isinstance(size, int) else size[0]),
        note="" if real_tag else "random weights",
    )


def shipped_model_specs() -> list[ModelSpec]:
    """Every ``configs/model/*.yaml`` resolved (configs without a tag carry a note instead)."""
    from cliptrase.paths import config_dir

    specs = []
    for path in sorted((config_dir() / "model").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        name, tag = cfg.get("name"), cfg.get("pretrained")
        if name is None:
            specs.append(ModelSpec(slug=path.stem, name=None, tag=None, note="a local weights file"))
        else:
            specs.append(spec_for(name, tag, slug=path.stem))
    return specs


def resolve_specs(names: list[str], *, all_shipped: bool = False) -> list[ModelSpec]:
    """Model configs or ``ARCH:TAG`` pairs to fetch; raises ValueError naming what is unknown."""
    shipped = {s.slug: s for s in shipped_model_specs()}
    if all_shipped:
        return [s for s in shipped.values() if s.tag]
    if not names:
        raise ConfigError("models fetch: give model configs or ARCH:TAG pairs, or --all")
    out = []
    for item in names:
        if item in shipped:
            spec = shipped[item]
            if not spec.tag:
                raise ConfigError(f"model config {item!r} has no pretrained tag to fetch ({spec.note})")
            out.append(spec)
        elif ":" in item:
            name, tag = item.split(":", 1)
            out.append(spec_for(name, tag))
        else:
            raise UnknownNameError(
                f"unknown model {item!r}: give a model config ({', '.join(sorted(shipped))}) or ARCH:TAG "
                "(e.g. ViT-B-16:openai)"
            )
    return out
