"""Shared machinery of the benchmark datasets: a checking base class and a uint16-safe label loader.

Every benchmark is one :class:`OVSSDataset` subclass holding only facts (``METAINFO``, directories, suffixes,
``REDUCE_ZERO_LABEL``, ``IGNORE_INDEX``, expected val count) and registered with
:func:`~cliptrase.datasets.spec.register_dataset`. The base class adds what mmseg's ``BaseSegDataset`` lacks
for a benchmark harness: it fails at construction, with one line naming the path and the command that fixes
it, when the root, the split file or a label file is missing, instead of failing deep inside the data loader.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmengine.registry import DefaultScope
from mmseg.datasets import BaseSegDataset
from mmseg.datasets.transforms import LoadAnnotations

from cliptrase.errors import DataError
from cliptrase.paths import DATA_ROOT_ENV, default_data_root
from cliptrase.registry import TRANSFORMS
from cliptrase.utils.colours import distinct_colours

logger = logging.getLogger(__name__)

REGISTRY_SCOPE = "cliptrase"
"""mmengine scope of ``cliptrase.registry``; it resolves ``cliptrase``, ``mmseg`` and mmcv names alike."""

# mmseg's reduce_zero_label maps 0 to this value and leaves an existing 255 untouched (LoadAnnotations).
_RZL_IGNORE = 255
_MAX_LISTED = 3  # paths quoted in an error message before "..."
_LABEL_NDIM = 2  # a label map has one channel


def make_palette(num_classes: int) -> list[list[int]]:
    """Colour per class for datasets whose papers define no palette (PC-459, ADE-847): the package's one
    generator (:func:`cliptrase.utils.colours.distinct_colours`)."""
    return distinct_colours(num_classes).tolist()


def reduce_zero_label(labels: np.ndarray) -> np.ndarray:
    """mmseg's ``reduce_zero_label`` on an int64 map: 0 -> 255, v -> v - 1, an existing 255 stays 255.

    mmseg does this on uint8 with an underflow trick (``LoadAnnotations._load_seg_map``); doing it on int64
    gives the same result for 8-bit maps and keeps 16-bit maps intact.
    """
    reduced = labels - 1
    reduced[(labels == 0) | (labels == _RZL_IGNORE)] = _RZL_IGNORE
    return reduced


class OVSSDataset(BaseSegDataset):
    """Base of every benchmark: mmseg's ``BaseSegDataset`` plus layout checks and dataset facts.

    Subclasses set the class constants below and nothing else. Every constructor argument defaults to
    those constants, so ``VOC21Dataset()`` reads ``$CLIPTRASE_DATA/VOCdevkit/VOC2012`` with the val split.

    Args:
        expected_num_images: Number of samples the split should have; a different count is logged as a
            warning (not an error, so subsets and miniature copies still load). ``None`` uses
            ``EXPECTED_VAL_IMAGES``; ``0`` disables the check.
        **kwargs: Passed to ``BaseSegDataset`` (``data_root``, ``data_prefix``, ``ann_file``, ``pipeline``).
    """

    CONFIG_NAME: ClassVar[str] = ""
    HAS_BACKGROUND: ClassVar[bool] = False
    DATA_SUBDIR: ClassVar[str] = ""
    IMG_DIR: ClassVar[str] = ""
    ANN_DIR: ClassVar[str] = ""
    SPLIT: ClassVar[str | None] = None
    IMG_SUFFIX: ClassVar[str] = ".jpg"
    SEG_MAP_SUFFIX: ClassVar[str] = ".png"
    REDUCE_ZERO_LABEL: ClassVar[bool] = False
    IGNORE_INDEX: ClassVar[int] = 255
    LABEL_DTYPE: ClassVar[str] = "uint8"
    EXPECTED_VAL_IMAGES: ClassVar[int | None] = None

    def __init__(self, expected_num_images: int | None = None, **kwargs: Any) -> None:
        self.expected_num_images = (
            self.EXPECTED_VAL_IMAGES if expected_num_images is None else expected_num_images
        )
        kwargs.setdefault("data_root", str(default_data_root() / self.DATA_SUBDIR))
        kwargs.setdefault("data_prefix", dict(img_path=self.IMG_DIR, seg_map_path=self.ANN_DIR))
        kwargs.setdefault("ann_file", self.SPLIT or "")
        kwargs.setdefault("img_suffix", self.IMG_SUFFIX)
        kwargs.setdefault("seg_map_suffix", self.SEG_MAP_SUFFIX)
        kwargs.setdefault("reduce_zero_label", self.REDUCE_ZERO_LABEL)
        kwargs.setdefault("ignore_index", self.IGNORE_INDEX)
        if kwargs["data_root"] is None:
            raise ValueError(f"{type(self).__name__}: data_root is None; set it or ${DATA_ROOT_ENV}")
        # Transform names are looked up from the current default scope downwards only; ``cliptrase`` is a
        # child of ``mmseg``, so under the ``mmseg`` scope (or none) ``LoadAnnotationsU16`` would be missed.
        with DefaultScope.overwrite_default_scope(REGISTRY_SCOPE):
            super().__init__(**kwargs)
        self._metainfo.update(
            dict(
                dataset_name=self.CONFIG_NAME,
                has_background=self.HAS_BACKGROUND,
                ignore_index=self.ignore_index,
            )
        )

    @property
    def has_background(self) -> bool:
        """Whether label 0 is a background class (VOC21, PC60, COCO-Object)."""
        return self.HAS_BACKGROUND

    @classmethod
    def raw_num_classes(cls) -> int:
        """Number of class values stored on disk: one more than the classes when 0 is reduced away."""
        return len(cls.METAINFO["classes"]) + int(cls.REDUCE_ZERO_LABEL)

    @classmethod
    def prepare_hint(cls, data_root: str | os.PathLike[str] | None = None) -> str:
        """The command that (re)creates this benchmark under ``data_root``, quoted in error messages."""
        root = Path(data_root) if data_root is not None else default_data_root() / cls.DATA_SUBDIR
        out = root
        if cls.DATA_SUBDIR and root.as_posix().endswith(cls.DATA_SUBDIR.rstrip("/")):
            out = Path(root.as_posix()[: -len(cls.DATA_SUBDIR.rstrip("/"))] or ".")
        return f"run `cliptrase data prepare {cls.CONFIG_NAME} --raw <official download dir> --out {out}`"

    def load_data_list(self) -> list[dict]:
        """List the samples like ``BaseSegDataset``, after checking the layout, then check every pair."""
        self._check_layout()
        data_list = [
            info for info in super().load_data_list() if Path(info["img_path"]).name != self.img_suffix
        ]
        if not data_list:
            raise FileNotFoundError(
                f"no images ending in {self.img_suffix!r} under {self.data_prefix['img_path']}; "
                f"{self.prepare_hint(self.data_root)}"
            )
        self._check_pairs(data_list)
        if self.expected_num_images and len(data_list) != self.expected_num_images:
            logger.warning(
                "%s: %d images found under %s, expected %d for the val split; "
                "check the download or run `cliptrase data check %s`",
                self.CONFIG_NAME,
                len(data_list),
                self.data_root,
                self.expected_num_images,
                self.CONFIG_NAME,
            )
        return data_list

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline on sample ``idx``; a file that cannot be read fails with its path named."""
        try:
            return super().prepare_data(idx)
        except Exception as err:
            info = self.get_data_info(idx)
            raise ValueError(
                f"cannot load sample {idx} of {self.CONFIG_NAME or type(self).__name__} "
                f"(image {info['img_path']}, label {info.get('seg_map_path')}): {err}"
            ) from err

    def _check_layout(self) -> None:
        hint = self.prepare_hint(self.data_root)
        if not Path(self.data_root).is_dir():
            raise FileNotFoundError(f"dataset root {self.data_root} not found; {hint}")
        for key in ("img_path", "seg_map_path"):
            folder = self.data_prefix.get(key)
            if folder and not Path(folder).is_dir():
                raise FileNotFoundError(f"directory {folder} not found; {hint}")
        if self.ann_file:
            split = Path(self.ann_file)
            if not split.is_file():
                raise FileNotFoundError(f"split file {split} not found; {hint}")
            if not split.read_text().strip():
                raise ValueError(f"split file {split} is empty; {hint}")

    def _check_pairs(self, data_list: list[dict]) -> None:
        hint = self.prepare_hint(self.data_root)
        for key, what in (("img_path", "images"), ("seg_map_path", "label files")):
            missing = [info[key] for info in data_list if key in info and not Path(info[key]).is_file()]
            if missing:
                listed = ", ".join(missing[:_MAX_LISTED]) + (", ..." if len(missing) > _MAX_LISTED else "")
                raise FileNotFoundError(
                    f"{len(missing)} of {len(data_list)} {what} missing ({listed}); {hint}"
                )


@TRANSFORMS.register_module()
class LoadAnnotationsU16(LoadAnnotations):
    """Load a label map keeping its integer values: int64 out, so 16-bit labels (300, 846, 65535) survive.

    mmseg's ``LoadAnnotations`` casts every map to uint8 (``.astype(np.uint8)``), which wraps PC-459 and
    ADE-847 labels modulo 256 without an error (docs/datasets.md §1). This loader decodes with the same
    backend (pillow by default, which returns palette PNGs as indices and 16-bit TIFF/PNG as uint16),
    applies ``reduce_zero_label`` and ``label_map`` from the sample the way mmseg does, and stores int64,
    which ``PackSegInputs`` keeps.
    """

    def _load_seg_map(self, results: dict) -> None:
        path = results["seg_map_path"]
        try:
            raw = mmcv.imfrombytes(
                fileio.get(path, backend_args=self.backend_args),
                flag="unchanged",
                backend=self.imdecode_backend,
            )
        except FileNotFoundError:
            raise FileNotFoundError(f"label map {path} not found") from None
        except Exception as err:
            raise ValueError(f"unreadable label map {path}: {err}") from err
        if raw is None:
            raise ValueError(f"unreadable label map {path}")
        labels = np.asarray(raw).squeeze()
        if labels.ndim != _LABEL_NDIM:
            raise ValueError(
                f"label map {path} has shape {labels.shape}; expected one channel (a colour image?)"
            )
        _check_same_size(results, labels.shape)
        results["gt_seg_map_dtype"] = labels.dtype.name  # the file's own sample type (paper GT resize)
        labels = labels.astype(np.int64)
        if self.reduce_zero_label is not None and self.reduce_zero_label != results["reduce_zero_label"]:
            raise ValueError(
                f"LoadAnnotationsU16(reduce_zero_label={self.reduce_zero_label}) contradicts the dataset's "
                f"{results['reduce_zero_label']}; drop the argument, the dataset decides"
            )
        if results["reduce_zero_label"]:
            labels = reduce_zero_label(labels)
        if results.get("label_map") is not None:
            original = labels.copy()
            for old_id, new_id in results["label_map"].items():
                labels[original == old_id] = new_id
        results["gt_seg_map"] = labels
        results["seg_fields"].append("gt_seg_map")


def _check_same_size(results: dict, label_shape: tuple[int, ...]) -> None:
    """Refuse an image and a label map of different sizes after decoding (nothing is silently resized).

    The image loaders record the decoded size in ``ori_shape``; an EXIF orientation applied to the image
    only (standard protocol, mmseg's cv2 decoder), a wrong file pairing or a damaged conversion shows here.
    """
    image_shape = results.get("ori_shape")
    if image_shape is None or tuple(image_shape[:2]) == tuple(label_shape[:2]):
        return
    h, w = image_shape[:2]
    lh, lw = label_shape[:2]
    raise DataError(
        f"image {results.get('img_path')} decodes to {w}x{h} but its label map {results['seg_map_path']} "
        f"is {lw}x{lh}; they must have the same size (an EXIF orientation tag on the image, or a wrong "
        "pairing); run `cliptrase data check` on the dataset"
    )


def default_test_pipeline() -> list[dict]:
    """Image, uint16-safe label, pack: the loading pipeline every benchmark is read with.

    The names resolve in the ``cliptrase`` scope, under which :class:`OVSSDataset` builds its pipeline.
    """
    return [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotationsU16"),
        dict(type="PackSegInputs"),
    ]
