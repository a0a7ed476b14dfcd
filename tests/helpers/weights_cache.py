"""Where open_clip's downloader leaves a tag's weights, written by hand (the download stubbed by the cache).

Hugging Face Hub tags live in the hub cache layout (``models--org--name/refs/main`` naming a snapshot that
holds the file); URL tags as ``<cache>/<basename of the URL>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cliptrase.models import hub

SNAPSHOT = "1" * 40
"""The fake commit id the hand-written hub cache entries use."""


def cache_target(cache: Path, source: hub.TagSource) -> Path:
    """The path at which ``source``'s weights are found in ``cache`` (refs/main written for hub tags)."""
    if source.hf_repo:
        folder = cache / ("models--" + source.hf_repo.replace("/", "--"))
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text(SNAPSHOT)
        target = folder / "snapshots" / SNAPSHOT / source.hf_filenames[-1]
    else:
        target = cache / os.path.basename(source.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def link_into_cache(cache: Path, source: hub.TagSource, checkpoint: Path) -> Path:
    """Make ``checkpoint`` the cached weights of ``source`` (a symlink, as the hub cache uses); return it."""
    target = cache_target(cache, source)
    if not target.exists():
        os.symlink(checkpoint, target)
    return target
