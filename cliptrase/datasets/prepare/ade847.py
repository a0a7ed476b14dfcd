"""ADE20K-847: MaskFormer's preparation of ``ADE20K_2021_17_01`` (val only), as uint16 ``.tif`` trainIds.

Per val image of ``index_ade20k.pkl`` (``_val_`` in the file name): the class code of each pixel is
``(R // 10) * 256 + G`` of the RGB ``<name>_seg.png``; images whose short side exceeds 512 are resized to 512
(image bilinear, label nearest, OpenCV, sizes rounded as MaskFormer does) and the image is re-saved as JPEG
(Pillow defaults); codes map to trainIds 0..846, anything else to 65535 (docs/datasets.md §8).

Code -> trainId table: MaskFormer ships it as ``ADE20K_SEM_SEG_FULL_CATEGORIES`` (``id`` = code). Without it,
this module derives it by name: code ``c`` is ``objectnames[c - 1]`` of the index (the ADE20K toolkit's
convention, 0 = unlabelled), and the trainId is that name's line in the 847-name list
(``class_names/paper/ADEfull.txt``). Pass ``id_map`` (a JSON list of ``{"id", "trainId"}``) to use
MaskFormer's table verbatim instead.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cliptrase.datasets.ade import ADE847Dataset
from cliptrase.datasets.prepare._common import find_dir, run_jobs, save_image_atomic, save_pil_atomic
from cliptrase.datasets.prepare.context459 import tiff_options
from cliptrase.datasets.vocab import read_paper_names

logger = logging.getLogger(__name__)

INDEX_FILE = "index_ade20k.pkl"
IGNORE = 65535
MAX_SHORT_SIDE = 512
CODE_RED_DIVISOR = 10
CODE_RED_STRIDE = 256
VAL_TAG = "val"
RAW_HINT = (
    "unzip ADE20K_2021_17_01.zip into --raw so that --raw/ADE20K_2021_17_01/index_ade20k.pkl exists "
    "(download after sign-in at the ADE20K site)"
)

Payload = tuple[Path, Path, Path]  # (image, _seg.png, output image)


def class_codes(seg_rgb: np.ndarray) -> np.ndarray:
    """ADE20K class code per pixel from an RGB ``_seg.png``: ``(R // 10) * 256 + G`` (int32)."""
    red = seg_rgb[..., 0].astype(np.int32)
    green = seg_rgb[..., 1].astype(np.int32)
    return (red // CODE_RED_DIVISOR) * CODE_RED_STRIDE + green


def resized_hw(height: int, width: int) -> tuple[int, int] | None:
    """Target (h, w) with short side 512 when the short side is larger, else ``None`` (MaskFormer rule)."""
    if width >= height > MAX_SHORT_SIDE:
        return MAX_SHORT_SIDE, round(width / float(height) * MAX_SHORT_SIDE)
    if height >= width > MAX_SHORT_SIDE:
        return round(height / float(width) * MAX_SHORT_SIDE), MAX_SHORT_SIDE
    return None


def id_map_from_names(objectnames: Sequence[str], names: Sequence[str]) -> dict[int, int]:
    """Code -> trainId from the index's ``objectnames`` (code = position + 1) and the 847 class names.

    Raises:
        ValueError: A class name is absent from, or repeated in, ``objectnames``.
    """
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(objectnames):
        positions.setdefault(str(name), []).append(position)
    missing = [n for n in names if n not in positions]
    repeated = [n for n in names if len(positions.get(n, [])) > 1]
    if missing or repeated:
        raise ValueError(
            f"cannot derive the ADE-847 table by name ({len(missing)} names missing from objectnames, e.g. "
            f"{missing[:3]}; {len(repeated)} repeated, e.g. {repeated[:3]}); pass --id-map with MaskFormer's "
            'ADE20K_SEM_SEG_FULL_CATEGORIES as a JSON list of {"id", "trainId"}'
        )
    return {positions[name][0] + 1: train_id for train_id, name in enumerate(names)}


def load_id_map(path: Path) -> dict[int, int]:
    """Read a code -> trainId table: a JSON list of objects with ``id`` and ``trainId``."""
    entries = json.loads(path.read_text())
    try:
        return {int(entry["id"]): int(entry["trainId"]) for entry in entries}
    except (TypeError, KeyError) as err:
        raise ValueError(
            f'{path} must be a JSON list of {{"id": int, "trainId": int}} objects ({err})'
        ) from err


def code_lut(id_map: Mapping[int, int]) -> np.ndarray:
    """Dense code -> trainId table (uint16, unknown codes -> 65535)."""
    lut = np.full(CODE_RED_STRIDE * CODE_RED_STRIDE, IGNORE, dtype=np.uint16)
    for code, train_id in id_map.items():
        lut[code] = train_id
    return lut


def convert_pair(image: np.ndarray, seg_rgb: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resize (if needed) and map one image and its ``_seg.png``; returns (image, uint16 trainIds)."""
    codes = class_codes(seg_rgb)
    target = resized_hw(*image.shape[:2])
    if target is not None:
        height, width = target
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        codes = cv2.resize(codes, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, lut[codes]


def _convert_one(payload: Payload, dst: Path, *, lut: np.ndarray) -> None:
    image_src, seg_src, image_dst = payload
    with Image.open(image_src) as handle:
        image = np.asarray(handle if handle.mode in ("RGB", "L") else handle.convert("RGB"))
    with Image.open(seg_src) as handle:
        seg = np.asarray(handle.convert("RGB"))
    image, labels = convert_pair(image, seg, lut)
    save_pil_atomic(Image.fromarray(image), image_dst, "JPEG")
    save_image_atomic(labels, dst, "TIFF", **tiff_options())


def _resolve(root: Path, folder: str, filename: str) -> Path:
    """The index stores folders relative to the parent of ``ADE20K_2021_17_01``; accept either base."""
    parts = Path(folder).parts
    candidates = [root.parent / folder / filename, root / folder / filename]
    if parts and parts[0] == root.name:
        candidates.append(root.joinpath(*parts[1:], filename))
    return next((path for path in candidates if path.is_file()), candidates[0])


def prepare_ade847(raw: Path, out: Path, *, workers: int, id_map: Path | None = None) -> Path:
    """Write ``images_detectron2/validation`` and ``annotations_detectron2/validation`` under ``out``."""
    facts = ADE847Dataset
    root = find_dir(
        raw, ["ADE20K_2021_17_01", "."], "ADE20K_2021_17_01 folder", RAW_HINT, required=[INDEX_FILE]
    )
    with (root / INDEX_FILE).open("rb") as handle:
        index = pickle.load(handle)  # the user's own download; the format is a pickle
    table = (
        load_id_map(id_map)
        if id_map is not None
        else id_map_from_names(index["objectnames"], read_paper_names("ADEfull"))
    )
    dst = out / facts.DATA_SUBDIR
    jobs: list[tuple[Payload, Path]] = []
    for folder, filename in zip(index["folder"], index["filename"]):
        if filename.split("_")[1] != VAL_TAG:
            continue
        image_src = _resolve(root, folder, filename)
        stem = Path(filename).stem
        payload = (image_src, image_src.with_name(f"{stem}_seg.png"), dst / facts.IMG_DIR / f"{stem}.jpg")
        jobs.append((payload, dst / facts.ANN_DIR / f"{stem}{facts.SEG_MAP_SUFFIX}"))
    if not jobs:
        raise ValueError(f"no validation entries in {root / INDEX_FILE}; {RAW_HINT}")
    missing = [str(p) for (image, seg, _), _ in jobs for p in (image, seg) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} val files missing (first: {missing[0]}); {RAW_HINT}")
    run_jobs(partial(_convert_one, lut=code_lut(table)), jobs, workers=workers, desc="ade20k-847 val")
    return dst
