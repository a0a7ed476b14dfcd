"""The loading pipeline of each protocol (docs/method.md §5: ``paper``; docs/protocols.md §1: ``standard``).

``paper``: the authors' PIL decoding, the uint16-safe label loader, then the authors' short-side resize +
centre crop of image and GT together (:class:`~cliptrase.protocols.transforms.PaperResizeCrop`) with the
benchmark's GT rule. ``standard``: mmseg's default image loader and ``Resize`` of the image to the
protocol's short side, GT at full resolution.
"""

from __future__ import annotations

from typing import Any

_META_KEYS = ("img_path", "seg_map_path", "ori_shape", "img_shape", "reduce_zero_label")
_LOAD_IMAGE_PAPER = dict(type="LoadImageAsAuthors")
"""The authors' decoding: ``Image.open(path).convert("RGB")``, EXIF orientation ignored (docs/method.md
§2.2)."""
_LOAD_IMAGE_STANDARD = dict(type="LoadImageFromFile")
"""mmseg's default loader, as in the peers' configs (cv2, flag ``color``: applies EXIF orientation)."""
_LOAD_LABELS = dict(type="LoadAnnotationsU16")
_MAX_LONG_SIDE = 2048  # mmseg's (2048, S) keep-ratio scale: the short side decides


def build_pipeline(dataset_cfg: Any, protocol_cfg: Any, n_foreground: int | None) -> tuple[list[dict], dict]:
    """The protocol's loading pipeline and the dataset-constructor overrides it needs.

    Args:
        dataset_cfg: the validated ``dataset`` group (``name``, ``paper_key``).
        protocol_cfg: the validated ``protocol`` group, a :class:`~cliptrase.config.ProtocolConfig`
            (``kind``, ``image_size``; the short side resolved by ``for_dataset``).
        n_foreground: paper protocol: the background class index the GT rule writes, or ``None``.
    """
    if protocol_cfg.kind == "paper":
        return _paper_pipeline(dataset_cfg.paper_key, protocol_cfg.image_size, n_foreground)
    short = protocol_cfg.for_dataset(dataset_cfg.name).short_side
    resize = dict(type="Resize", scale=(_MAX_LONG_SIDE, short), keep_ratio=True)
    steps = [
        dict(_LOAD_IMAGE_STANDARD),
        resize,
        dict(_LOAD_LABELS),
        dict(type="PackSegInputs", meta_keys=(*_META_KEYS, "scale_factor")),
    ]
    return steps, {}


def _paper_pipeline(
    paper_key: str | None, size: int, n_foreground: int | None
) -> tuple[list[dict], dict[str, Any]]:
    from cliptrase.protocols.paper import PAPER_GT

    rule, suffix = PAPER_GT.get(paper_key, ("identity", None))
    overrides: dict[str, Any] = {}
    if paper_key:
        overrides["reduce_zero_label"] = False  # the rule maps raw labels to the authors' encoding
    if suffix:
        overrides["seg_map_suffix"] = suffix
    steps = [
        dict(_LOAD_IMAGE_PAPER),
        dict(_LOAD_LABELS),
        dict(type="PaperResizeCrop", size=size, rule=rule, background=n_foreground),
        dict(type="PackSegInputs", meta_keys=(*_META_KEYS, "paper_scored")),
    ]
    return steps, overrides
