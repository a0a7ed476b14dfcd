"""Opt-in wall-clock time per pipeline stage, for ``scripts/bench.py``.

The pipeline marks its stages with :func:`stage`; nothing is measured (one context-variable lookup per
stage) unless a :class:`StageTimer` is active::

    timer = StageTimer()
    with timer.activate():
        run_the_pipeline()
    timer.totals  # {"encoder": 12.3, "clustering": 0.4, ...} seconds

On CUDA the timer synchronises the device at each stage boundary, so a stage's time is its own kernels'
rather than whatever was still queued when it started.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

STAGES = ("data", "encoder", "logits", "clustering", "post-processing", "metric")
"""The per-image stages the pipeline marks, in pipeline order (``text`` is once per vocabulary)."""

_ACTIVE: ContextVar[StageTimer | None] = ContextVar("cliptrase_stage_timer", default=None)


def sync_device() -> None:
    """Wait for queued CUDA work (a no-op without an initialised CUDA context)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StageTimer:
    """Accumulates seconds per stage name while active (see the module docstring)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def activate(self) -> Iterator[StageTimer]:
        """Make this timer the one :func:`stage` records into, for the ``with`` body."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def add(self, name: str, seconds: float) -> None:
        """Record ``seconds`` under ``name`` (for time measured outside a :func:`stage` block)."""
        self.totals[name] += seconds
        self.calls[name] += 1

    def reset(self, keep: Iterable[str] = ()) -> None:
        """Forget every stage except those in ``keep`` (e.g. drop warm-up iterations, keep ``text``)."""
        keep = set(keep)
        for name in list(self.totals):
            if name not in keep:
                del self.totals[name]
                self.calls.pop(name, None)


def active_timer() -> StageTimer | None:
    """The active timer, or None."""
    return _ACTIVE.get()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the ``with`` body as stage ``name`` if a :class:`StageTimer` is active; else do nothing."""
    timer = _ACTIVE.get()
    if timer is None:
        yield
        return
    sync_device()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        sync_device()
        timer.add(name, time.perf_counter() - t0)


def current_rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux ``/proc``; else the peak from ``resource``)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def trimmed_rss_mb() -> float:
    """Resident memory after a garbage collection and glibc's ``malloc_trim(0)`` (when available).

    glibc keeps freed heap pages mapped and raises its mmap threshold after large frees, so the raw RSS of
    a process that allocates many large, differently sized tensors climbs to a plateau without any leak;
    the trimmed figure is close to the memory actually in use.
    """
    import contextlib
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
            ctypes.CDLL(libc_name).malloc_trim(0)
    return current_rss_mb()


def live_tensor_count() -> int:
    """Number of torch tensors the garbage collector can see (a leak of tensors makes it grow)."""
    import gc

    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
