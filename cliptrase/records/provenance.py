"""Provenance of a result: git state, package versions, host, device and times (docs/style.md §3.9).

Recorded in every result record (``ResultRecord.provenance``, :mod:`cliptrase.records.results`) so a
number can be traced to the code and machine that produced it.
"""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cliptrase import __version__
from cliptrase.records.results import to_plain

PACKAGES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "open_clip_torch",
    "mmsegmentation",
    "mmengine",
    "mmcv",
    "numpy",
    "scikit-learn",
    "scipy",
    "hydra-core",
    "cliptrase",
)
"""Distributions whose versions are recorded (keys of ``provenance["versions"]``, plus ``python``)."""

_GIT_TIMEOUT_S = 10


def collect_provenance(
    *,
    device: str,
    n_images: int,
    wall_time_s: float,
    started_at: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Where and with what a result was made: git state, package versions, host, device, times.

    Never fails: anything that cannot be determined (not a git checkout, a package not installed) is
    ``None``, because a missing fact must not cost a finished evaluation.

    Args:
        device: the device the run used, e.g. ``"cuda:0"`` or ``"cpu"``.
        n_images: number of images evaluated.
        wall_time_s: wall time of the evaluation in seconds.
        started_at: ISO-8601 start time.
        extra: further facts to record (seed, dtype, hash of the sorted file list, checkpoint hash);
            they may not shadow the standard keys.
    """
    commit, dirty = _git_state(Path(__file__).resolve().parents[2])
    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions.update({name: _version(name) for name in PACKAGES})
    versions["cliptrase"] = versions["cliptrase"] or __version__  # a source checkout on PYTHONPATH
    prov: dict[str, Any] = {
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": versions,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "device": device,
        "device_name": _device_name(device),
        "n_images": int(n_images),
        "wall_time_s": float(wall_time_s),
        "started_at": started_at,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    clash = sorted(set(extra or {}) & prov.keys())
    if clash:
        raise ValueError(f"provenance extra keys {clash} would replace standard fields; rename them")
    prov.update(to_plain(dict(extra or {})))
    return prov


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _git_state(repo: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of ``repo`` if it is the root of the checkout holding this package, else (None, None).

    The top-level check stops an installed copy (site-packages inside some other repository, e.g. a project
    that vendors a venv) from recording that repository's commit. Untracked files do not count as dirty:
    results, datasets and scratch outputs are untracked and do not change the code.
    """
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != repo:
        return None, None
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return commit or None, None if status is None else bool(status)


def _device_name(device: str) -> str | None:
    """GPU model for CUDA devices, the CPU description otherwise (what a reader needs to compare timings)."""
    if device.startswith("cuda"):
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_available():
                return str(torch.cuda.get_device_name(torch.device(device)))
        except (RuntimeError, AssertionError, ValueError):
            return None
        return None
    return _cpu_model() or platform.processor() or platform.machine() or None


def _cpu_model() -> str | None:
    """The CPU model from ``/proc/cpuinfo`` (Linux); ``platform.processor()`` is empty there."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        return None
    return None
