"""Compose the eval config outside ``cliptrase-eval`` (reproduce, benchmarks, tests), exactly as it would."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from cliptrase.config import register_configs
from cliptrase.paths import config_dir

EVAL_CONFIG = "eval"
"""The primary config of ``cliptrase-eval`` (``configs/eval.yaml``)."""


def compose_job(overrides: Sequence[str]) -> DictConfig:
    """``configs/eval.yaml`` composed with Hydra ``overrides`` (from :func:`config_dir`, which honours
    ``$CLIPTRASE_CONFIG_DIR``)."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(EVAL_CONFIG, overrides=list(overrides))
