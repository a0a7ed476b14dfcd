"""Progress of the test loop: a tqdm bar (when on a terminal) and a log line with images/s and ETA."""

from __future__ import annotations

import logging
import sys
import time

from mmengine.hooks import Hook
from tqdm import tqdm

logger = logging.getLogger(__name__)


class ProgressHook(Hook):
    """Counts images through ``after_test_iter``; logs every ``every_s`` seconds.

    Args:
        total: images in the dataset.
        desc: bar label.
        every_s: seconds between log lines.
    """

    priority = "VERY_LOW"

    def __init__(self, total: int, desc: str = "eval", every_s: float = 30.0) -> None:
        self.total, self.desc, self.every_s = total, desc, every_s
        self.done = 0
        self._bar: tqdm | None = None
        self._t0 = self._last = 0.0

    def before_test(self, runner) -> None:
        self._bar = tqdm(total=self.total, desc=self.desc, unit="img", disable=not sys.stderr.isatty())
        self._t0 = self._last = time.perf_counter()

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        n = len(outputs) if outputs is not None else 1
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._last = now
            rate = self.done / max(now - self._t0, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            logger.info(
                "%s: %d/%d images, %.2f img/s, ETA %.0f s", self.desc, self.done, self.total, rate, eta
            )

    def after_test(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
        elapsed = time.perf_counter() - self._t0
        logger.info(
            "%s: %d images in %.1f s (%.2f img/s)",
            self.desc,
            self.done,
            elapsed,
            self.done / max(elapsed, 1e-9),
        )
