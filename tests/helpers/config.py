"""The eval config of a test, composed exactly as ``cliptrase-eval`` composes it (one helper)."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from cliptrase.harness.compose import EVAL_CONFIG, compose_job


def compose_eval(overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    """``configs/eval.yaml`` with Hydra ``overrides`` (:func:`cliptrase.harness.compose.compose_job`).

    ``return_hydra_config`` also composes the ``hydra`` node (launcher, sweeper), which jobs never need.
    """
    if not return_hydra_config:
        return compose_job(overrides)
    from hydra import compose, initialize_config_dir

    from cliptrase.config import register_configs
    from cliptrase.paths import config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(EVAL_CONFIG, overrides=list(overrides), return_hydra_config=True)
