"""A test-loop hook feeding :class:`~cliptrase.utils.profiling.StageTimer` (for ``scripts/bench.py``)."""

from __future__ import annotations

import time

from mmengine.hooks import Hook

from cliptrase.utils.profiling import StageTimer, current_rss_mb, live_tensor_count, trimmed_rss_mb


class StageTimerHook(Hook):
    """Steady-state timing of mmengine's test loop.

    Records, after ``warmup`` iterations (first-call allocations, worker start-up): the time the loop
    waited for the data loader between iterations (as stage ``data``), the wall time and image count, and
    the resident memory every ``rss_every`` images. The pipeline's own stages land in the same timer when
    it is active around ``runner.test()``.

    Args:
        timer: where stage times go.
        warmup: iterations left out of every figure (``text`` is kept: it happens once, before them).
        rss_every: images between memory samples (0: none); each records (images seen, RSS MiB, RSS MiB
            after ``gc`` + ``malloc_trim``, live tensors).
    """

    priority = "LOWEST"  # after other hooks' after_test_iter work, which is then not counted as data wait

    def __init__(self, timer: StageTimer, warmup: int = 1, rss_every: int = 0) -> None:
        self.timer, self.warmup, self.rss_every = timer, warmup, rss_every
        self.images = 0  # counted after warm-up
        self.seen = 0  # all images
        self.rss: list[tuple[int, float, float, int]] = []  # see rss_every
        self.t_start: float | None = None
        self.t_end: float | None = None
        self._last: float | None = None

    def before_test(self, runner) -> None:
        if self.warmup == 0:
            self.t_start = time.perf_counter()

    def before_test_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._last is not None and batch_idx >= self.warmup:
            self.timer.add("data", time.perf_counter() - self._last)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        n = len(outputs) if outputs is not None else 1
        self.seen += n
        if batch_idx == self.warmup - 1:
            self.timer.reset(keep=("text",))
            self.t_start = time.perf_counter()
        elif batch_idx >= self.warmup:
            self.images += n
        if self.rss_every and self.seen // self.rss_every > (self.seen - n) // self.rss_every:
            raw = current_rss_mb()
            self.rss.append((self.seen, raw, trimmed_rss_mb(), live_tensor_count()))
        self._last = time.perf_counter()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self.t_end = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Wall time of the iterations after warm-up (plus the metric's final compute)."""
        if self.t_start is None or self.t_end is None:
            return 0.0
        return self.t_end - self.t_start
