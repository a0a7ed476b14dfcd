"""Where cliptrase finds and keeps things, and the environment variables that move them (a leaf: it imports
nothing of the package, so every layer may import it).

- ``$CLIPTRASE_CONFIG_DIR``: the Hydra config groups (default: the package's ``configs``);
- ``$CLIPTRASE_DATA``: the data root holding every prepared benchmark (default ``./data``);
- ``$CLIPTRASE_CACHE``: on-disk caches, text classifiers and the demo benchmark (default
  ``~/.cache/cliptrase``);
- ``$CLIPTRASE_DOWNLOAD_BASE``, ``$CLIPTRASE_FREE_BYTES``: a mirror of the benchmarks' archives, and a
  free-space figure for tests (read by ``datasets/download``);
- ``$CLIPTRASE_DEBUG``: full tracebacks instead of one-line errors (read by :mod:`cliptrase.errors`).
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR_ENV = "CLIPTRASE_CONFIG_DIR"
"""Overrides the directory holding the Hydra config groups (default: the package's ``configs``)."""
DATA_ROOT_ENV = "CLIPTRASE_DATA"
"""Environment variable naming the directory that holds every prepared benchmark."""
DEFAULT_DATA_ROOT = "./data"
"""Data root used when ``CLIPTRASE_DATA`` is unset (relative to the working directory)."""
CACHE_ENV = "CLIPTRASE_CACHE"
"""Root of the on-disk caches (default ``~/.cache/cliptrase``)."""
DOWNLOAD_BASE_ENV = "CLIPTRASE_DOWNLOAD_BASE"
"""Replaces the URL prefix before the file name of every public archive (a mirror, or a test server)."""
FREE_BYTES_ENV = "CLIPTRASE_FREE_BYTES"
"""Pretend this many bytes are free at the root (tests of the disk-space check without filling a disk)."""
DEBUG_ENV = "CLIPTRASE_DEBUG"
"""Set to 1 to see the traceback of user errors."""

_PACKAGE_CONFIGS = Path(__file__).resolve().parent / "configs"
"""``cliptrase/configs``: in a checkout a symlink to the repository's ``configs/`` (the one source), in an
installed wheel a copy shipped as package data (pyproject ``package-data``)."""


def config_dir() -> Path:
    """Directory of the Hydra config groups: ``$CLIPTRASE_CONFIG_DIR`` or the package's ``configs``."""
    return Path(os.environ.get(CONFIG_DIR_ENV, _PACKAGE_CONFIGS))


def default_data_root() -> Path:
    """Return the data root: ``$CLIPTRASE_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_ROOT_ENV, DEFAULT_DATA_ROOT))


def cache_dir() -> Path:
    """Root of cliptrase's on-disk caches: ``$CLIPTRASE_CACHE`` or ``~/.cache/cliptrase``."""
    cache = os.environ.get(CACHE_ENV)
    return Path(cache) if cache else Path.home() / ".cache" / "cliptrase"
