"""Converters from the official downloads to the layouts the dataset classes read, and layout checks.

``prepare_dataset(name, raw, out)`` is what ``cliptrase data prepare NAME --raw DIR --out DIR`` runs: ``raw``
is where the official archives were extracted, ``out`` the data root (``$CLIPTRASE_DATA``); each benchmark
lands in ``out/<DATA_SUBDIR>`` of its dataset class, as its ``configs/dataset`` file expects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Set
from pathlib import Path
from typing import Any

from cliptrase.datasets.prepare._common import default_workers
from cliptrase.datasets.spec import SpecView

logger = logging.getLogger(__name__)

Preparer = Callable[..., Path]

PREPARERS: Mapping[str, Preparer] = SpecView(lambda s: s.preparer(), lambda s: s.converter is not None)
"""Config name -> converter ``(raw, out, *, workers, **options) -> dataset root``: a view of the dataset
specs (``register_dataset(converter=...)`` next to each dataset class)."""

NEEDS_NO_RAW: Set[str] = SpecView(lambda s: s.name, lambda s: not s.needs_raw).keys()
"""Benchmarks generated locally: no ``--raw``, and ``--out`` is optional (default: the demo cache)."""
OPTIONS: Mapping[str, frozenset[str]] = SpecView(lambda s: s.converter_options, lambda s: s.converter_options)
"""Extra keyword options a converter accepts (``--id-map`` for ADE-847)."""


def prepare_dataset(
    name: str,
    raw: str | os.PathLike[str] | None,
    out: str | os.PathLike[str] | None,
    *,
    workers: int | None = None,
    **options: Any,
) -> Path:
    """Convert the official download of benchmark ``name`` in ``raw`` into the data root ``out``.

    Re-running skips finished files; an interrupted run leaves no truncated file.

    Raises:
        KeyError: Unknown name (the message lists the valid ones).
        FileNotFoundError: ``raw`` or a file the converter needs is missing (the message says which).
        ValueError: An option the converter does not take.
    """
    if name not in PREPARERS:
        raise KeyError(f"unknown dataset {name!r}; valid: {', '.join(sorted(PREPARERS))}")
    given = {key: value for key, value in options.items() if value is not None}
    unknown = set(given) - OPTIONS.get(name, frozenset())
    if unknown:
        raise ValueError(f"option(s) {', '.join(sorted(unknown))} do not apply to {name}")
    raw_path = None if raw is None else Path(raw)
    if name not in NEEDS_NO_RAW and (raw_path is None or not raw_path.is_dir()):
        raise FileNotFoundError(
            f"--raw directory {raw_path} not found; extract the official download of {name} there"
        )
    if out is None and name not in NEEDS_NO_RAW:
        raise ValueError(f"--out is required for {name}: the data root (e.g. $CLIPTRASE_DATA) to write into")
    out_path = None if out is None else Path(out)
    if out_path is not None and name not in NEEDS_NO_RAW:
        out_path.mkdir(parents=True, exist_ok=True)
    root = PREPARERS[name](raw_path, out_path, workers=workers or default_workers(), **given)
    check = f"cliptrase data check {name}" + ("" if name in NEEDS_NO_RAW else f" --root {out_path}")
    logger.info("%s prepared at %s; check it with `%s`", name, root, check)
    return root
