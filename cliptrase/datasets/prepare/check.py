"""``cliptrase data check``: is a prepared benchmark complete and encoded as its dataset class expects?

Unlike the dataset constructor, which stops at the first problem, the check collects every problem: root
and split present, image count vs the official val count, images without labels and labels without images,
unreadable files, label maps that are not single-channel of the expected dtype (uint8; uint16 for PC-459 and
ADE-847), and label values outside ``0..raw_classes-1`` plus the ignore index (e.g. 21..254 in VOC). Each
problem carries the command that fixes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from cliptrase.datasets.base import OVSSDataset
from cliptrase.datasets.config_files import load_dataset_config
from cliptrase.datasets.demo import default_demo_root
from cliptrase.datasets.prepare._common import LABEL_NDIM, default_workers, read_split
from cliptrase.datasets.spec import get_dataset_class

logger = logging.getLogger(__name__)

_EXAMPLES = 3  # offending files quoted per problem
_CHUNK = 32


@dataclass(frozen=True)
class Problem:
    """One kind of defect, with how many files it hits (quoted by example) and the fix."""

    kind: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}; fix: {self.fix}"


@dataclass
class CheckReport:
    """Outcome of checking one benchmark."""

    name: str
    root: Path
    num_images: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


@dataclass(frozen=True)
class _FileReport:
    image_error: str | None
    label_error: str | None
    dtype: str | None = None
    ndim: int | None = None
    values: tuple[int, ...] = ()


def _inspect(pair: tuple[Path, Path]) -> _FileReport:
    """Open the image header and decode the label map of one sample (run in worker processes)."""
    image_path, label_path = pair
    image_error = label_error = None
    try:
        with Image.open(image_path) as image:
            image.verify()
    except Exception as err:
        image_error = f"{type(err).__name__}: {err}"
    try:
        with Image.open(label_path) as image:
            labels = np.asarray(image)
    except Exception as err:
        return _FileReport(image_error, f"{type(err).__name__}: {err}")
    values = tuple(int(v) for v in np.unique(labels)) if labels.ndim == LABEL_NDIM else ()
    return _FileReport(image_error, label_error, str(labels.dtype), labels.ndim, values)


def _examples(items: Sequence[str]) -> str:
    listed = ", ".join(items[:_EXAMPLES])
    return listed + (", ..." if len(items) > _EXAMPLES else "")


def _list_samples(
    cls: type[OVSSDataset], root: Path, cfg: Mapping[str, Any], report: CheckReport, hint: str
) -> list[str] | None:
    """Sample stems of the split (or of the image scan); ``None`` after recording a fatal problem."""
    if not root.is_dir():
        report.problems.append(Problem("root", f"dataset root {root} not found", hint))
        return None
    for key in ("img_dir", "ann_dir"):
        if not (root / cfg[key]).is_dir():
            report.problems.append(Problem("layout", f"directory {root / cfg[key]} not found", hint))
            return None
    if cfg["split"]:
        split = root / cfg["split"]
        if not split.is_file():
            report.problems.append(Problem("split", f"split file {split} not found", hint))
            return None
        stems = read_split(split)
        if not stems:
            report.problems.append(Problem("split", f"split file {split} is empty", hint))
            return None
        return stems
    image_dir = root / cfg["img_dir"]
    suffix = cls.IMG_SUFFIX
    return sorted(p.relative_to(image_dir).as_posix()[: -len(suffix)] for p in image_dir.rglob(f"*{suffix}"))


def _inspect_all(pairs: list[tuple[Path, Path]], workers: int, name: str) -> list[_FileReport]:
    if workers <= 1 or len(pairs) <= _CHUNK:
        return [_inspect(pair) for pair in tqdm(pairs, desc=f"check {name}", unit="file", disable=None)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_inspect, pairs, chunksize=_CHUNK)
        return list(tqdm(results, total=len(pairs), desc=f"check {name}", unit="file", disable=None))


def _check_files(
    cls: type[OVSSDataset], pairs: list[tuple[Path, Path]], root: Path, workers: int, hint: str
) -> list[Problem]:
    """Readability, dtype and value-range problems of the existing (image, label) pairs."""
    valid = set(range(cls.raw_num_classes())) | {cls.IGNORE_INDEX}
    valid_text = f"0..{cls.raw_num_classes() - 1} and {cls.IGNORE_INDEX}"
    unreadable, wrong_dtype, stray = [], [], []
    for (image_path, label_path), found in zip(pairs, _inspect_all(pairs, workers, cls.CONFIG_NAME)):
        if found.image_error:
            unreadable.append(f"{image_path.relative_to(root)} ({found.image_error})")
        if found.label_error:
            unreadable.append(f"{label_path.relative_to(root)} ({found.label_error})")
            continue
        if found.ndim != LABEL_NDIM or found.dtype != cls.LABEL_DTYPE:
            channels = "1 channel" if found.ndim == LABEL_NDIM else f"shape with {found.ndim} dims"
            wrong_dtype.append(f"{label_path.relative_to(root)} ({found.dtype}, {channels})")
            continue
        bad = sorted(set(found.values) - valid)
        if bad:
            stray.append(f"{label_path.relative_to(root)} (values {bad[:5]}{' ...' if len(bad) > 5 else ''})")
    fix = f"delete them, then {hint}"
    problems = []
    if unreadable:
        problems.append(
            Problem("unreadable", f"{len(unreadable)} files cannot be read: {_examples(unreadable)}", fix)
        )
    if wrong_dtype:
        problems.append(
            Problem(
                "dtype",
                f"{len(wrong_dtype)} labels are not single-channel {cls.LABEL_DTYPE}: "
                f"{_examples(wrong_dtype)}",
                fix,
            )
        )
    if stray:
        problems.append(
            Problem(
                "values", f"{len(stray)} labels hold values outside {valid_text}: {_examples(stray)}", fix
            )
        )
    return problems


def check_dataset(
    dataset: str | Mapping[str, Any],
    data_root: str | os.PathLike[str] | None = None,
    *,
    expected: int | None = None,
    workers: int | None = None,
) -> CheckReport:
    """Check one prepared benchmark and return every problem found.

    Args:
        dataset: Config name (``voc21``) or a resolved ``configs/dataset`` node.
        data_root: Data root for ``${paths.data_root}`` when ``dataset`` is a name (default: the environment).
        expected: Expected number of images, overriding ``expected_val_images`` (a deliberate subset);
            ``0`` disables the count check (``--subset``: a count other than the official one is then a
            note, not a problem).
        workers: Processes decoding label maps; default: all cores, at most 8.
    """
    cfg = load_dataset_config(dataset, data_root) if isinstance(dataset, str) else dataset
    cls = get_dataset_class(str(cfg["type"]))
    root = Path(cfg["data_root"]) if cfg["data_root"] else default_demo_root()
    hint = cls.prepare_hint(root)
    report = CheckReport(str(cfg["name"]), root)
    stems = _list_samples(cls, root, cfg, report, hint)
    if stems is None:
        return report
    report.num_images = len(stems)
    want = cfg["expected_val_images"] if expected is None else expected
    official = cfg["expected_val_images"]
    if want and len(stems) != want:
        fix = f"{hint} (or pass --subset if this subset is deliberate)"
        report.problems.append(Problem("count", f"{len(stems)} images listed, expected {want}", fix))
    elif official and len(stems) != official:
        report.notes.append(
            f"{len(stems)} images listed, expected {official}: a deliberate subset, whose numbers are not "
            "comparable with the published ones"
        )
    pairs, problems = _pairing_problems(cls, root, cfg, stems, hint)
    report.problems.extend(problems)
    report.problems.extend(_check_files(cls, pairs, root, workers or default_workers(), hint))
    return report


def _pairing_problems(
    cls: type[OVSSDataset], root: Path, cfg: Mapping[str, Any], stems: list[str], hint: str
) -> tuple[list[tuple[Path, Path]], list[Problem]]:
    """Complete (image, label) pairs, and problems for listed images or labels missing and stray labels."""
    image_dir, label_dir = root / cfg["img_dir"], root / cfg["ann_dir"]
    images = {s: image_dir / f"{s}{cls.IMG_SUFFIX}" for s in stems}
    labels = {s: label_dir / f"{s}{cls.SEG_MAP_SUFFIX}" for s in stems}
    no_image = [str(p.relative_to(root)) for p in images.values() if not p.is_file()]
    no_label = [
        str(labels[s].relative_to(root)) for s, p in images.items() if p.is_file() and not labels[s].is_file()
    ]
    orphans = []
    for label in sorted(label_dir.rglob(f"*{cls.SEG_MAP_SUFFIX}")):
        stem = label.relative_to(label_dir).as_posix()[: -len(cls.SEG_MAP_SUFFIX)]
        if not (image_dir / f"{stem}{cls.IMG_SUFFIX}").is_file():
            orphans.append(str(label.relative_to(root)))
    problems = []
    if no_image:
        problems.append(
            Problem("missing-image", f"{len(no_image)} listed images missing: {_examples(no_image)}", hint)
        )
    if no_label:
        message = f"{len(no_label)} images have no label: {_examples(no_label)}"
        problems.append(Problem("missing-label", message, f"{hint} (finished files are skipped)"))
    if orphans:
        message = f"{len(orphans)} labels have no image: {_examples(orphans)}"
        problems.append(Problem("orphan-label", message, f"restore their images or delete them; {hint}"))
    pairs = [(images[s], labels[s]) for s in stems if images[s].is_file() and labels[s].is_file()]
    return pairs, problems
