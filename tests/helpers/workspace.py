"""A workspace for the console scripts in a subprocess on tiny data.

Every test using it runs ``cliptrase-eval`` / ``cliptrase`` / ``cliptrase-table`` as
installed (or as ``python -m`` when the scripts are not on disk) with the data root, results and caches in
``tmp_path``, the golden tiny CLIP as weights, and a VOC21 copy of a few 24x32 images. The helpers assert
what a user sees: the exit status, no traceback, and the file or key named in the message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cliptrase.datasets.demo import write_voc_layout
from helpers.golden import GOLDEN_WEIGHTS as WEIGHTS
from helpers.miniatures import random_image

VOC_SUBDIR = Path("VOCdevkit") / "VOC2012"
HW = (24, 32)
MODULES = {
    "cliptrase-eval": "cliptrase.eval",
    "cliptrase": "cliptrase.cli.main",
    "cliptrase-table": "cliptrase.cli.table",
}
TIMEOUT_S = 300


def label_map(values: list[int]) -> np.ndarray:
    """A (24, 32) map of horizontal bands of ``values`` with VOC's 255 void border."""
    labels = np.zeros(HW, dtype=np.uint8)
    for band, value in zip(np.array_split(np.arange(HW[0]), len(values)), values):
        labels[band] = value
    labels[0, :] = labels[-1, :] = 255
    return labels


def write_voc(data_root: Path, labels: dict[str, np.ndarray]) -> Path:
    """A VOC2012 copy (JPEG images, palette-free 8-bit PNG labels, val split) holding ``labels``."""
    samples = {stem: (random_image(*HW, seed=i), lab) for i, (stem, lab) in enumerate(labels.items())}
    return write_voc_layout(data_root / VOC_SUBDIR, samples)


def default_labels() -> dict[str, np.ndarray]:
    return {
        "2007_000032": label_map([0, 1, 15]),
        "2007_000033": label_map([20, 0]),
        "2007_000042": label_map([0, 7]),
    }


@dataclass
class Result:
    """A finished command: exit status and everything it printed."""

    returncode: int
    output: str

    def assert_user_error(self, *named: str) -> None:
        """Non-zero exit, no traceback, and every string of ``named`` in the output."""
        assert self.returncode != 0, self.output[-3000:]
        assert "Traceback" not in self.output, self.output[-3000:]
        for text in named:
            assert text in self.output, f"{text!r} not in:\n{self.output[-3000:]}"

    def assert_ok(self) -> None:
        assert self.returncode == 0, self.output[-3000:]
        assert "Traceback" not in self.output, self.output[-3000:]


def command(script: str, *args: str) -> list[str]:
    """The installed console script, or ``python -m`` of its module when it is not installed."""
    installed = Path(sys.executable).with_name(script)
    return [str(installed), *args] if installed.is_file() else [sys.executable, "-m", MODULES[script], *args]


@dataclass
class Workspace:
    """Where one test's data, results and caches live, and how to run the scripts there."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "CLIPTRASE_DEBUG")}
        env.update(
            CLIPTRASE_DATA=str(self.data),
            CLIPTRASE_RESULTS=str(self.results),
            CLIPTRASE_CACHE=str(self.root / "cache"),
            OMP_NUM_THREADS="1",
        )
        return env

    def popen(self, script: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            command(script, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=self.root,
        )

    def run(self, script: str, *args: str, env: dict[str, str] | None = None) -> Result:
        """Run ``script`` to its end; ``env`` adds variables to the workspace's environment."""
        proc = subprocess.run(
            command(script, *args),
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.root,
            timeout=TIMEOUT_S,
        )
        return Result(proc.returncode, proc.stdout + proc.stderr)

    def eval(self, *overrides: str) -> Result:
        """``cliptrase-eval`` on the VOC21 copy with the tiny CLIP, plus ``overrides``."""
        return self.run("cliptrase-eval", *eval_args(*overrides))

    def records(self, experiment: str = "default") -> list[Path]:
        return sorted((self.results / experiment).glob("*/metrics.json"))


def eval_args(*overrides: str) -> list[str]:
    base = [
        "dataset=voc21",
        "model=weights_file",
        f"model.weights={WEIGHTS}",
        "num_workers=0",
    ]
    return [*base, *overrides]
