"""Helpers of every bench tool: wall-clock timing, synthetic images and data roots, subprocess cells and
the measured peak memory of one step."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cliptrase.utils.profiling import current_rss_mb, sync_device

ENTRY = Path(__file__).resolve().parents[1] / "bench.py"
"""The entry script; cells run as ``python scripts/bench.py <cell> ...`` in their own process."""

SYNTH_HW = (512, 683)
"""Synthetic image size of the harness runs (the issue's GPU target is stated at 512 x 683)."""


def timed_pair(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall times of ``a`` and ``b`` run alternately (drift in machine load hits both alike)."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, acc in ((a, ta), (b, tb)):
            sync_device()
            t0 = time.perf_counter()
            fn()
            sync_device()
            acc.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync_device()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scene(h: int = 375, w: int = 500, seed: int = 0, n_labels: int = 21) -> tuple[Image.Image, np.ndarray]:
    """A synthetic image with blocky labels ``0 .. n_labels - 1``."""
    rng = np.random.default_rng(seed)
    labels = np.kron(rng.integers(0, n_labels, (h // 25 + 1, w // 25 + 1)), np.ones((25, 25), np.int64))
    labels = labels[:h, :w]
    img = (rng.normal(0, 20, (h, w, 3)) + (labels[..., None] % 21) * 11).clip(0, 255).astype(np.uint8)
    return Image.fromarray(img), labels.astype(np.uint8 if n_labels <= 256 else np.uint16)


@dataclass(frozen=True)
class SynthLayout:
    """Where one benchmark's loader looks under its data root."""

    img_dir: str
    ann_dir: str
    ann_suffix: str
    split: str | None  # None: the loader lists img_dir
    n_labels: int
    dtype: type


LAYOUTS = {
    "voc21": SynthLayout(
        "JPEGImages", "SegmentationClass", ".png", "ImageSets/Segmentation/val.txt", 21, np.uint8
    ),
    # reduce_zero_label: stored 0 is ignored, 1..150 are the classes
    "ade150": SynthLayout("images/validation", "annotations/validation", ".png", None, 151, np.uint8),
    "context459": SynthLayout(
        "JPEGImages",
        "annotations_detectron2/pc459_val",
        ".tif",
        "ImageSets/SegmentationContext/val.txt",
        459,
        np.uint16,
    ),
}
"""The synthetic layouts of the vocabularies the bench measures (21, 150 and 459 classes)."""


def write_synthetic(
    dataset: str, root: str | Path, images: int, distinct: int = 8, hw: tuple[int, int] = SYNTH_HW
) -> None:
    """``images`` entries of ``dataset``'s layout under ``root`` (``distinct`` images, repeated)."""
    layout = LAYOUTS[dataset]
    root = Path(root)
    for sub in (layout.img_dir, layout.ann_dir):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stems = []
    for i in range(min(distinct, images)):
        image, labels = scene(*hw, seed=i, n_labels=layout.n_labels)
        image.save(root / layout.img_dir / f"synth_{i:04d}.jpg", quality=95)
        ann = root / layout.ann_dir / f"synth_{i:04d}{layout.ann_suffix}"
        Image.fromarray(labels.astype(layout.dtype)).save(ann)
        stems.append(f"synth_{i:04d}")
    if layout.split is None:  # listed from the folder: one file per entry (links to the distinct ones)
        for i in range(len(stems), images):
            for folder, suffix in ((layout.img_dir, ".jpg"), (layout.ann_dir, layout.ann_suffix)):
                link = root / folder / f"synth_{i:04d}{suffix}"
                link.unlink(missing_ok=True)
                link.symlink_to(f"{stems[i % len(stems)]}{suffix}")
        return
    (root / layout.split).parent.mkdir(parents=True, exist_ok=True)
    (root / layout.split).write_text("\n".join(stems[i % len(stems)] for i in range(images)) + "\n")


def run_cell(argv: list[str]) -> dict:
    """Run ``scripts/bench.py *argv`` in a fresh process; its ``BENCH {json}`` line as a dict."""
    proc = subprocess.run([sys.executable, str(ENTRY), *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"bench cell {argv} failed (exit {proc.returncode}); its stderr is above")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH "))
    return json.loads(line[6:])


def emit(figures: dict) -> None:
    """Print a cell's figures as the ``BENCH {json}`` line :func:`run_cell` reads."""
    print("BENCH " + json.dumps(figures), flush=True)


def _trim_heap() -> None:
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
            ctypes.CDLL(name).malloc_trim(0)


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


class StepPeak:
    """Peak memory a step adds on top of what is allocated when it starts, in MiB: measured, not estimated.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the allocation at
    the start. CPU (Linux): the heap is trimmed (``gc.collect()`` + glibc ``malloc_trim(0)``) and the
    kernel's high-water mark reset (``5 > /proc/self/clear_refs``) before the step; ``VmHWM`` after it
    minus the resident size at the start is the step's peak (freed pages glibc still holds could hide part
    of a step's use, hence the trim). ``mb`` stays None where neither is available.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.cuda = str(device).startswith("cuda")
        self.mb: float | None = None

    @contextlib.contextmanager
    def measure(self) -> Iterator[StepPeak]:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = torch.cuda.memory_allocated()
            yield self
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - start) / 2**20
            return
        try:
            _trim_heap()
            Path("/proc/self/clear_refs").write_text("5")
            start = current_rss_mb()
        except OSError:
            yield self
            return
        yield self
        self.mb = _vm_hwm_mb() - start
