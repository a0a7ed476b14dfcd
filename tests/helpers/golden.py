"""Where the golden reference set is: the one definition every test uses.

The set ships in ``tests/golden/data`` (see its README); ``$CLIPTRASE_GOLDEN_DIR`` selects another set in the
same format.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN_ENV = "CLIPTRASE_GOLDEN_DIR"
DEFAULT_GOLDEN_DIR = REPO / "tests" / "golden" / "data"
GOLDEN_DIR = Path(os.environ.get(GOLDEN_ENV, DEFAULT_GOLDEN_DIR))
GOLDEN_WEIGHTS = GOLDEN_DIR / "tiny_clip_openai_seed0.pt"
"""The golden tiny CLIP (OpenAI-format state dict; 12 blocks, width 128, 2 heads)."""


def golden_weights() -> Path:
    """:data:`GOLDEN_WEIGHTS`, or skip the calling test with the reason when the file is absent."""
    if not GOLDEN_WEIGHTS.is_file():
        pytest.skip(f"golden weights {GOLDEN_WEIGHTS} not found (set {GOLDEN_ENV})")
    return GOLDEN_WEIGHTS
