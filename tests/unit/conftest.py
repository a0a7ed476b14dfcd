"""Fixtures of the dataset tests: miniature benchmark copies (writers in ``tests/helpers/miniatures.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.miniatures import WRITERS


@pytest.fixture
def miniature(tmp_path: Path) -> Callable[[str], tuple[Path, dict[str, np.ndarray]]]:
    """``miniature(name)`` writes that benchmark under a fresh data root; returns (root, raw labels)."""

    def make(name: str) -> tuple[Path, dict[str, np.ndarray]]:
        data_root = tmp_path / f"data_{name}"
        return data_root, WRITERS[name](data_root)

    return make
