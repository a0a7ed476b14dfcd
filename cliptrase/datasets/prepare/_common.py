"""Plumbing shared by the converters: finding raw folders, atomic writes, parallel jobs with a progress bar.

Every converter follows the same contract: outputs are written to a hidden temporary file and renamed into
place (:func:`cliptrase.utils.fs.atomic_path`), so an interrupted run leaves no truncated file; a job whose
output exists is skipped, so re-running resumes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from cliptrase.errors import DataError
from cliptrase.utils.fs import atomic_path, atomic_write_text
from cliptrase.utils.fs import link_or_copy as link_or_copy

logger = logging.getLogger(__name__)

_CHUNK = 16  # jobs per inter-process message; small files convert in milliseconds
LABEL_NDIM = 2  # a label map has one channel


def default_workers() -> int:
    """Worker processes used when ``--workers`` is not given: all cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def find_dir(
    raw: Path, candidates: Sequence[str], what: str, hint: str, *, required: Sequence[str] = ()
) -> Path:
    """Return the first ``raw/<candidate>`` that is a directory containing every path in ``required``.

    Raises:
        FileNotFoundError: None matches; the message lists where it looked and ``hint``.
    """
    for candidate in candidates:
        path = raw / candidate
        if path.is_dir() and all((path / item).exists() for item in required):
            return path
    looked = ", ".join(str(raw / c) for c in candidates)
    needs = f" containing {', '.join(required)}" if required else ""
    raise FileNotFoundError(f"{what} not found (looked for {looked}{needs}); {hint}")


def find_file(candidates: Iterable[Path], what: str, hint: str) -> Path:
    """Return the first existing file among ``candidates``, else raise ``FileNotFoundError``."""
    candidates = list(candidates)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{what} not found (looked for {', '.join(map(str, candidates))}); {hint}")


def save_image_atomic(array: np.ndarray, dst: Path, image_format: str, **save_kwargs: Any) -> None:
    """Write ``array`` as an image at ``dst`` through a temporary file; uint16 arrays stay 16-bit."""
    save_pil_atomic(Image.fromarray(array), dst, image_format, **save_kwargs)


def save_pil_atomic(image: Image.Image, dst: Path, image_format: str, **save_kwargs: Any) -> None:
    """Write a PIL image at ``dst`` through a temporary file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        image.save(tmp, format=image_format, **save_kwargs)


def write_text_atomic(text: str, dst: Path) -> None:
    """Write a text file through a temporary file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dst, text)


def write_split(stems: Iterable[str], dst: Path) -> None:
    """Write a sorted split file, one stem per line (mmseg's ``ann_file`` format)."""
    write_text_atomic("".join(f"{stem}\n" for stem in sorted(stems)), dst)


def read_split(path: Path) -> list[str]:
    """Non-empty stripped lines of a split file."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _run_job(worker: Callable[[Any, Path], None], job: tuple[Any, Path]) -> None:
    src, dst = job
    try:
        worker(src, dst)
    except Exception as err:
        source = src if isinstance(src, (str, os.PathLike)) else "its input"
        raise DataError(f"writing {dst} from {source} failed: {err}") from err


def run_jobs(
    worker: Callable[[Any, Path], None], jobs: Sequence[tuple[Any, Path]], *, workers: int, desc: str
) -> int:
    """Run ``worker(src, dst)`` for every job whose ``dst`` does not exist yet; return how many ran.

    ``src`` is usually the input path, or any picklable payload the worker needs.

    ``worker`` must be picklable (a module-level function or a ``functools.partial`` of one) when
    ``workers > 1``. Progress is a tqdm bar (hidden when stderr is not a terminal).
    """
    todo = [job for job in jobs if not job[1].exists()]
    if len(todo) < len(jobs):
        logger.info("%s: %d of %d outputs exist, skipped", desc, len(jobs) - len(todo), len(jobs))
    if not todo:
        return 0
    with tqdm(total=len(todo), desc=desc, unit="file", disable=None) as bar:
        if workers <= 1 or len(todo) == 1:
            for job in todo:
                _run_job(worker, job)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(_run_job, [worker] * len(todo), todo, chunksize=_CHUNK):
                    bar.update()
    return len(todo)
