"""Shared fixtures: the golden tiny CLIP, a tiny registered open_clip architecture, synthetic images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from cliptrase.models.clip import RANDOM, LoadedClip, load_clip

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("CLIPTRASE_GOLDEN_DIR", REPO.parent / "shared" / "golden"))

TINY_ARCH = "cliptrase-test-ViT-tiny"
"""A 4-block, 3-head ViT/16 with a 2-layer text tower: small enough for every unit test."""

TINY_CFG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 96, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory) -> None:
    """Keep the text-classifier cache of the tests out of the user's ~/.cache."""
    os.environ["CLIPTRASE_CACHE"] = str(tmp_path_factory.mktemp("cliptrase_cache"))


@pytest.fixture(scope="session")
def tiny_arch(tmp_path_factory) -> str:
    """Register the tiny architecture with open_clip's public ``add_model_config``."""
    path = tmp_path_factory.mktemp("arch") / f"{TINY_ARCH}.json"
    path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(path)
    return TINY_ARCH


@pytest.fixture(scope="session")
def tiny_clip(tiny_arch) -> LoadedClip:
    """Random-weight tiny CLIP (seeded)."""
    torch.manual_seed(0)
    return load_clip(tiny_arch, RANDOM)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The golden reference directory ($CLIPTRASE_GOLDEN_DIR, default ../shared/golden)."""
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def golden_clip() -> LoadedClip:
    """The golden tiny CLIP (12 blocks, width 128, 2 heads), loaded from its OpenAI-format state dict."""
    weights = GOLDEN_DIR / "tiny_clip_openai_seed0.pt"
    if not weights.is_file():
        pytest.skip(f"golden weights {weights} not found (set CLIPTRASE_GOLDEN_DIR)")
    return load_clip(weights=weights)


@pytest.fixture
def images() -> torch.Tensor:
    """Two normalised-looking random images (2, 3, 64, 96)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 64, 96, generator=g)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
