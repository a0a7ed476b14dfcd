"""Shared fixtures: the golden tiny CLIP, a tiny registered open_clip architecture, synthetic images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from helpers.golden import GOLDEN_DIR, GOLDEN_ENV, golden_weights

from cliptrase.models.clip import RANDOM, LoadedClip, load_clip

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
    """The golden reference directory ($CLIPTRASE_GOLDEN_DIR, default tests/golden/data)."""
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def golden_clip() -> LoadedClip:
    """The golden tiny CLIP (12 blocks, width 128, 2 heads), loaded from its OpenAI-format state dict."""
    return load_clip(weights=golden_weights())


@pytest.fixture
def images() -> torch.Tensor:
    """Two normalised-looking random images (2, 3, 64, 96)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 64, 96, generator=g)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


REQUIRE_GOLDEN_ENV = "CLIPTRASE_REQUIRE_GOLDEN"
"""Set to 1 (``.ci/run`` does) to fail the run when any test that needs the golden set was skipped."""

_skipped_golden: list[str] = []


def _needs_golden(report: pytest.TestReport) -> bool:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return report.nodeid.startswith("tests/golden/") or "golden" in report.keywords or GOLDEN_ENV in reason


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember every skipped test that needs the golden set (xfails are not skips)."""
    if report.skipped and not hasattr(report, "wasxfail") and _needs_golden(report):
        _skipped_golden.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``$CLIPTRASE_REQUIRE_GOLDEN=1``, a skipped golden test fails an otherwise green run."""
    if _skipped_golden and os.environ.get(REQUIRE_GOLDEN_ENV) == "1" and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Name the skipped golden tests (printed after :func:`pytest_sessionfinish` has set the status)."""
    if _skipped_golden and os.environ.get(REQUIRE_GOLDEN_ENV) == "1":
        terminalreporter.section("golden tests skipped", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"{len(_skipped_golden)} test(s) needing the golden set were skipped; ${REQUIRE_GOLDEN_ENV}=1 "
            f"makes that a failure (golden set: {GOLDEN_DIR}):"
        )
        for nodeid in _skipped_golden:
            terminalreporter.line(f"  {nodeid}")
