"""Fixtures of the subprocess tests: a workspace (data, results, caches in ``tmp_path``) and a VOC21 copy."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.workspace import WEIGHTS, Workspace, default_labels, write_voc


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    if not WEIGHTS.is_file():
        pytest.fail(f"tiny CLIP weights {WEIGHTS} missing (set CLIPTRASE_GOLDEN_DIR)")
    return Workspace(tmp_path)


@pytest.fixture
def voc(ws: Workspace) -> Path:
    """The default 3-image VOC21 copy in ``ws``."""
    return write_voc(ws.data, default_labels())
