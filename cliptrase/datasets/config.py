"""Read ``configs/dataset/<name>.yaml`` outside Hydra and build the dataset it describes.

The Hydra CLI composes these files itself; this module serves the callers that only need one dataset node
(``cliptrase data check``, :func:`~cliptrase.datasets.vocab.load_vocabulary` given a name, tests). It resolves
``${paths.data_root}`` from an argument or ``$CLIPTRASE_DATA``, like ``configs/paths``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cliptrase.datasets.base import default_data_root, default_test_pipeline, get_dataset_class

CONFIG_DIR_ENV = "CLIPTRASE_CONFIG_DIR"
"""Overrides the directory holding the Hydra config groups (default: the package's ``configs``)."""
_PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
"""``cliptrase/configs``: in a checkout a symlink to the repository's ``configs/`` (the one source), in an
installed wheel a copy shipped as package data (pyproject ``package-data``)."""

REQUIRED_KEYS: tuple[str, ...] = (
    "name", "type", "data_root", "img_dir", "ann_dir", "split", "num_classes", "has_background",
    "paper_key", "standard_vocab", "expected_val_images",
)  # fmt: skip


def config_dir() -> Path:
    """Directory of the Hydra config groups: ``$CLIPTRASE_CONFIG_DIR`` or the package's ``configs``."""
    return Path(os.environ.get(CONFIG_DIR_ENV, _PACKAGE_CONFIGS))


def dataset_config_dir() -> Path:
    """Directory of the dataset group, ``configs/dataset``."""
    return config_dir() / "dataset"


def list_dataset_configs() -> list[str]:
    """Sorted stems of ``configs/dataset/*.yaml``."""
    return sorted(path.stem for path in dataset_config_dir().glob("*.yaml"))


def load_dataset_config(
    name: str, data_root: str | os.PathLike[str] | None = None, *, resolve: bool = True
) -> DictConfig:
    """Load ``configs/dataset/<name>.yaml`` with ``paths.data_root`` set to ``data_root``.

    Args:
        name: Config stem, e.g. ``voc21``.
        data_root: Directory holding the prepared benchmarks; ``None`` uses ``$CLIPTRASE_DATA`` or ``./data``.
        resolve: Resolve interpolations (``data_root``); unresolved nodes still give the other facts.

    Raises:
        KeyError: No such config; the message lists the valid names.
    """
    path = dataset_config_dir() / f"{name}.yaml"
    if not path.is_file():
        valid = ", ".join(list_dataset_configs()) or f"none (no configs under {dataset_config_dir()})"
        raise KeyError(f"unknown dataset {name!r}; valid: {valid}")
    root = Path(data_root) if data_root is not None else default_data_root()
    composed = OmegaConf.create({"paths": {"data_root": str(root)}, "dataset": OmegaConf.load(path)})
    cfg = composed.dataset
    if resolve:
        OmegaConf.resolve(composed)
        cfg = composed.dataset
    missing = [key for key in REQUIRED_KEYS if key not in cfg]
    if missing:
        raise KeyError(
            f"{path} lacks keys {', '.join(missing)}; see configs/dataset/voc21.yaml for the shape"
        )
    return cfg


def dataset_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments of the dataset class from a dataset config node."""
    kwargs = dict(
        data_root=None if cfg["data_root"] is None else str(cfg["data_root"]),
        data_prefix=dict(img_path=cfg["img_dir"], seg_map_path=cfg["ann_dir"]),
        ann_file=cfg["split"] or "",
        expected_num_images=cfg["expected_val_images"],
    )
    for key in ("img_suffix", "seg_map_suffix"):  # optional: the class constants apply when absent or null
        if cfg.get(key) is not None:
            kwargs[key] = cfg[key]
    return kwargs


def build_dataset(cfg: Mapping[str, Any], pipeline: list[dict] | None = None, **overrides: Any) -> Any:
    """Build the dataset a config node describes, after checking it agrees with its class.

    Args:
        cfg: A ``dataset`` node (from Hydra or :func:`load_dataset_config`), interpolations resolved.
        pipeline: Transforms; ``None`` uses image + ``LoadAnnotationsU16`` + ``PackSegInputs``.
        **overrides: Further constructor arguments (``indices``, ``test_mode``...).

    Raises:
        ValueError: ``num_classes`` or ``has_background`` in the config contradict the dataset class.
    """
    cls = get_dataset_class(str(cfg["type"]))
    num_classes = len(cls.METAINFO["classes"])
    if cfg["num_classes"] != num_classes or bool(cfg["has_background"]) != cls.HAS_BACKGROUND:
        raise ValueError(
            f"config {cfg['name']!r} says num_classes={cfg['num_classes']}, has_background="
            f"{cfg['has_background']}, but {cls.__name__} has {num_classes} classes, has_background="
            f"{cls.HAS_BACKGROUND}; fix configs/dataset/{cfg['name']}.yaml"
        )
    kwargs = dataset_kwargs(cfg)
    kwargs["pipeline"] = default_test_pipeline() if pipeline is None else pipeline
    kwargs.update(overrides)
    return cls(**kwargs)
