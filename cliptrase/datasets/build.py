"""Build the dataset a ``configs/dataset`` node describes, after checking the node agrees with its class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cliptrase.datasets.base import default_test_pipeline
from cliptrase.datasets.spec import get_dataset_class


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


def build_dataset(
    cfg: Mapping[str, Any],
    pipeline: list[dict] | None = None,
    *,
    dataset_class: type | None = None,
    **overrides: Any,
) -> Any:
    """Build the dataset a config node describes, after checking it agrees with its class.

    Args:
        cfg: A ``dataset`` node (from Hydra or :func:`load_dataset_config`), interpolations resolved.
        pipeline: Transforms; ``None`` uses image + ``LoadAnnotationsU16`` + ``PackSegInputs``.
        dataset_class: The class of ``cfg["type"]`` when the caller resolved it already.
        **overrides: Further constructor arguments (``indices``, ``test_mode``...).

    Raises:
        ValueError: ``num_classes`` or ``has_background`` in the config contradict the dataset class.
    """
    cls = dataset_class or get_dataset_class(str(cfg["type"]))
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
