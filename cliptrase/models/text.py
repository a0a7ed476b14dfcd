"""Text classifier: class names x prompt templates -> one L2-normalised embedding per class.

docs/method.md §3.1: per class, encode every template, L2-normalise each embedding, average over templates,
L2-normalise. Foreground names come first, background names after (§3.1, ``:114-120``).

Speed without changing the numbers: prompts of many classes are encoded in one batch, and each batch is
cut to its longest real prompt instead of the 77-token context. With CLIP's causal mask a token only
attends to earlier positions, so the end-of-text feature does not depend on the padding after it
(tested against the full-length ``encode_text``). The classifier is cached on disk keyed by model,
vocabulary and templates, so a sweep computes it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cliptrase.paths import cache_dir
from cliptrase.utils.fs import atomic_path

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bumped whenever the way classifiers are computed changes, so stale cache entries are never read."""


def load_templates(name: str = "imagenet80") -> list[str]:
    """Prompt templates shipped with the package (``cliptrase/data/templates/<name>.txt``), ``{}`` = name."""
    path = resources.files("cliptrase") / "data" / "templates" / f"{name}.txt"
    if not path.is_file():
        raise KeyError(f"unknown template set {name!r}; shipped: imagenet80")
    templates = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    if any("{}" not in t for t in templates):
        raise ValueError(f"template set {name!r} has a line without '{{}}'")
    return templates


def _has_builtin_text_tower(model: nn.Module) -> bool:
    return all(
        hasattr(model, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final")
    )


def encode_text_truncated(model: nn.Module, tokens: Tensor) -> Tensor:
    """``model.encode_text(tokens)`` computed on the tokens cut to the longest prompt of the batch.

    Mirrors open_clip ``CLIP.encode_text`` (token embedding, positional table, causal transformer,
    ``ln_final``, end-of-text pooling, projection) on a shorter sequence; models without the built-in text
    tower fall back to ``encode_text``.

    Args:
        model: open_clip CLIP.
        tokens: (P, context) int token ids, padded with 0 after the end-of-text token.

    Returns:
        (P, E) unnormalised text embeddings.
    """
    if not _has_builtin_text_tower(model) or getattr(model, "text_pool_type", "argmax") != "argmax":
        return model.encode_text(tokens)
    eot = tokens.argmax(dim=-1)  # end-of-text has the largest id in CLIP's vocabulary
    length = int(eot.max()) + 1
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot]
    return (
        x @ model.text_projection
        if not isinstance(model.text_projection, nn.Linear)
        else model.text_projection(x)
    )


@torch.no_grad()
def build_text_classifier(
    model: nn.Module,
    tokenizer,
    names: Sequence[str],
    templates: Sequence[str],
    *,
    batch_prompts: int = 2560,
    truncate: bool = True,
) -> Tensor:
    """Classifier rows for ``names`` (docs/method.md §3.1).

    Args:
        model: open_clip CLIP.
        tokenizer: its tokenizer.
        names: class names in label order (used verbatim inside each template).
        templates: prompt templates with ``{}``.
        batch_prompts: prompts per forward pass (whole classes per batch).
        truncate: cut each batch to its longest prompt (exact; see module docstring).

    Returns:
        (len(names), E) float32 rows, each L2-normalised.
    """
    if not names:
        raise ValueError("empty class list: give at least one class name")
    if not templates:
        raise ValueError("empty template list")
    device = next(model.parameters()).device
    per_batch = max(1, batch_prompts // len(templates))
    rows = []
    for start in range(0, len(names), per_batch):
        chunk = names[start : start + per_batch]
        prompts = [t.format(n) for n in chunk for t in templates]
        tokens = tokenizer(prompts).to(device)
        feats = encode_text_truncated(model, tokens) if truncate else model.encode_text(tokens)
        feats = F.normalize(feats.float(), dim=-1).reshape(len(chunk), len(templates), -1)
        rows.append(F.normalize(feats.mean(dim=1), dim=-1))
    return F.normalize(torch.cat(rows), dim=-1)


def classifier_cache_key(model_id: str, names: Sequence[str], templates: Sequence[str]) -> str:
    """Stable hash of everything the classifier depends on."""
    payload = json.dumps(
        {"v": CACHE_VERSION, "model": model_id, "names": list(names), "templates": list(templates)},
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def text_weights_fingerprint(model: nn.Module) -> str:
    """Short hash of the text tower's weights (a slice of every block plus the embedding tables).

    Random-weight models share a ``model_id`` but not their weights; keying their cached classifiers by
    this fingerprint keeps two initialisations apart while letting a seeded re-run (a sweep, a benchmark)
    reuse its classifier.
    """
    parts = [model.text_projection, model.positional_embedding, model.token_embedding.weight[:64]]
    parts += [block.attn.in_proj_weight[:4] for block in model.transformer.resblocks]
    digest = hashlib.sha256()
    for t in parts:
        digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_text_classifier(
    model: nn.Module,
    tokenizer,
    model_id: str,
    names: Sequence[str],
    templates: Sequence[str],
    *,
    use_cache: bool = True,
) -> Tensor:
    """:func:`build_text_classifier`, read from / written to ``<cache>/text/<key>.pt`` when allowed.

    ``model_id`` must identify the weights (for random weights add :func:`text_weights_fingerprint`).
    Writes are atomic.
    """
    if not use_cache:
        return build_text_classifier(model, tokenizer, names, templates)
    key = classifier_cache_key(model_id, names, templates)
    path = cache_dir() / "text" / f"{key}.pt"
    device = next(model.parameters()).device
    if path.is_file():
        logger.debug("text classifier cache hit %s", path)
        return torch.load(path, map_location=device, weights_only=True)
    out = build_text_classifier(model, tokenizer, names, templates)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(out.cpu(), tmp)
    logger.info("text classifier cached: %s (%d classes x %d templates)", path, len(names), len(templates))
    return out
