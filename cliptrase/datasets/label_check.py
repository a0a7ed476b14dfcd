"""Label values checked while loading: a value outside the dataset's classes is never scored silently.

Both metrics drop a GT value outside ``0..num_classes-1`` without a word (mmseg's ``histc``, the paper
metric's range mask), so a corrupt or mis-converted label map would quietly shrink the scored pixels.
:class:`CheckLabels` runs right after the label loader, counts the map's values with one ``bincount`` and
fails the run naming the file, the values and ``cliptrase data check``. With ``allow=True``
(``allow_invalid_labels=true``) it only counts the pixels; :class:`InvalidLabelCounter` sums the counts
of a run for its record, and the table marks the cell.

The valid set is the one ``cliptrase data check`` uses (``datasets/prepare/check.py``): the raw values
``0..raw_num_classes-1`` plus the dataset's ignore value, stated in raw (on-disk) values in every message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.hooks import Hook

from cliptrase.errors import DataError
from cliptrase.registry import TRANSFORMS

logger = logging.getLogger(__name__)

INVALID_KEY = "invalid_label_pixels"
"""Sample key (and ``PackSegInputs`` meta key) holding the number of invalid pixels of one label map."""
REDUCED_IGNORE = 255
"""mmseg's ``reduce_zero_label`` maps raw 0 (and keeps raw 255) to this value."""
_LISTED = 8  # invalid values quoted per message


class InvalidLabelError(DataError):
    """A label map holds values outside the dataset's classes and ignore value."""


def invalid_label_counts(labels: np.ndarray, num_valid: int, ignore: Iterable[int]) -> dict[int, int]:
    """Values of ``labels`` outside ``0..num_valid-1`` and ``ignore``, each with its pixel count.

    One ``bincount`` over the map (a pass in C, no Python loop over pixels); negative values, which a
    bincount cannot hold, are counted separately.

    Args:
        labels: integer label map, any shape.
        num_valid: number of class values (``0..num_valid-1`` are valid).
        ignore: further valid values (the ignore index).
    """
    flat = np.asarray(labels).ravel()
    out: dict[int, int] = {}
    if flat.size and flat.min() < 0:
        negative, counts = np.unique(flat[flat < 0], return_counts=True)
        out.update(zip(negative.tolist(), counts.tolist()))
        flat = flat[flat >= 0]
    counts = np.bincount(flat)
    counts[: min(num_valid, counts.size)] = 0
    for value in ignore:
        if 0 <= value < counts.size:
            counts[value] = 0
    bad = np.flatnonzero(counts)
    out.update(zip(bad.tolist(), counts[bad].tolist()))
    return out


@TRANSFORMS.register_module()
class CheckLabels(BaseTransform):
    """Check ``gt_seg_map`` against the dataset's valid values; place it right after the label loader.

    Args:
        raw_num_classes: class values stored on disk (``OVSSDataset.raw_num_classes()``: one more than the
            classes when the dataset reduces label 0 away).
        ignore_index: the on-disk ignore value (255; 65535 for 16-bit maps).
        dataset: config name, quoted in the ``cliptrase data check`` hint.
        allow: count invalid pixels into ``results["invalid_label_pixels"]`` instead of failing.

    Raises:
        InvalidLabelError: (from :meth:`transform`) the map holds invalid values and ``allow`` is False.
    """

    def __init__(self, raw_num_classes: int, ignore_index: int, dataset: str, allow: bool = False) -> None:
        self.raw_num_classes, self.ignore_index = int(raw_num_classes), int(ignore_index)
        self.dataset, self.allow = dataset, bool(allow)

    def transform(self, results: dict[str, Any]) -> dict[str, Any]:
        """Count the invalid values of the loaded map; fail or record them."""
        reduced = bool(results.get("reduce_zero_label"))
        if reduced:  # loader mapped raw v -> v - 1 and raw 0 -> 255: raw 1..C-1 are 0..C-2 now
            found = invalid_label_counts(results["gt_seg_map"], self.raw_num_classes - 1, [REDUCED_IGNORE])
            found = {value + 1: n for value, n in found.items()}
        else:
            found = invalid_label_counts(results["gt_seg_map"], self.raw_num_classes, [self.ignore_index])
        results[INVALID_KEY] = sum(found.values())
        if found and not self.allow:
            raise InvalidLabelError(self.message(results["seg_map_path"], found))
        if found:
            logger.debug("%s: invalid label pixels %s", results["seg_map_path"], found)
        return results

    def message(self, path: str, found: dict[int, int]) -> str:
        """One line: the file, its invalid values with pixel counts, the valid set and the two fixes."""
        values = sorted(found)
        listed = ", ".join(f"{v} ({found[v]} px)" for v in values[:_LISTED])
        more = f" and {len(values) - _LISTED} more" if len(values) > _LISTED else ""
        return (
            f"label map {path} holds values {listed}{more} outside the valid "
            f"0..{self.raw_num_classes - 1} and {self.ignore_index}; "
            f"run `cliptrase data check {self.dataset}` to list every such file and fix the data, "
            "or set allow_invalid_labels=true to score without those pixels (their count is recorded)"
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(raw_num_classes={self.raw_num_classes}, "
            f"ignore_index={self.ignore_index}, dataset={self.dataset!r}, allow={self.allow})"
        )


class InvalidLabelCounter(Hook):
    """Sums the invalid-label pixels and images of a test run (from each sample's metainfo).

    Under torchrun each rank counts its own shard; :meth:`totals` sums them over the process group.
    """

    priority = "VERY_LOW"

    def __init__(self) -> None:
        self.pixels = 0
        self.images = 0

    def after_test_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Sequence[Any] | None = None
    ) -> None:
        """Add the counts of the batch's samples."""
        for sample in outputs or ():
            n = int(sample.metainfo.get(INVALID_KEY, 0))
            self.pixels += n
            self.images += int(n > 0)

    def totals(self) -> dict[str, int]:
        """``{"invalid_label_pixels": ..., "invalid_label_images": ...}`` over every rank."""
        from mmengine.dist import all_reduce, get_world_size

        counts = np.array([self.pixels, self.images], dtype=np.int64)
        if get_world_size() > 1:
            import torch

            tensor = torch.from_numpy(counts)
            all_reduce(tensor)
            counts = tensor.numpy()
        return {INVALID_KEY: int(counts[0]), "invalid_label_images": int(counts[1])}


def _pack_defaults() -> tuple[str, ...]:
    """mmseg's default ``PackSegInputs`` meta keys (kept when a pipeline names none)."""
    import inspect

    from mmseg.datasets.transforms import PackSegInputs

    return tuple(inspect.signature(PackSegInputs).parameters["meta_keys"].default)


def with_label_check(
    steps: Sequence[dict], dataset_cls: type, *, dataset: str, allow: bool = False
) -> list[dict]:
    """``steps`` with :class:`CheckLabels` right after the label loader and its count packed as metainfo.

    Args:
        steps: a loading pipeline holding one ``LoadAnnotationsU16`` step and one ``PackSegInputs`` step.
        dataset_cls: the ``OVSSDataset`` subclass (its on-disk classes and ignore value).
        dataset: config name, for the ``cliptrase data check`` hint.
        allow: ``allow_invalid_labels``: count instead of failing.
    """
    out: list[dict] = []
    for step in steps:
        step = dict(step)
        if step["type"] == "PackSegInputs":
            step["meta_keys"] = (*step.get("meta_keys", _pack_defaults()), INVALID_KEY)
        out.append(step)
        if step["type"] == "LoadAnnotationsU16":
            out.append(
                dict(
                    type="CheckLabels",
                    raw_num_classes=dataset_cls.raw_num_classes(),
                    ignore_index=dataset_cls.IGNORE_INDEX,
                    dataset=dataset,
                    allow=allow,
                )
            )
    return out
