"""The statistics options of ``cliptrase-table`` and ``cliptrase-report``: ``--resamples`` and ``--seed``
defined once, ``--ci``/``--compare``/``--baseline`` of the table, and the request they make."""

from __future__ import annotations

import argparse
from typing import Any, Protocol

from cliptrase.reporting.analysis import StatsRequest
from cliptrase.reporting.latex import INTERVAL_STYLES
from cliptrase.reporting.table_files import LATEX
from cliptrase.stats.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED


class _TakesArguments(Protocol):
    """A parser or an argument group."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any: ...


def add_bootstrap_arguments(parser: _TakesArguments) -> None:
    """``--resamples N`` and ``--seed S`` of the bootstrap over images."""
    parser.add_argument(
        "--resamples", type=int, default=DEFAULT_RESAMPLES, help=f"bootstrap resamples ({DEFAULT_RESAMPLES})"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"bootstrap seed ({DEFAULT_SEED})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The statistics options of ``cliptrase-table`` (``--ci``, ``--compare``, ``--baseline``, ...)."""
    group = parser.add_argument_group("statistics over images (from per-image records, docs/records.md)")
    group.add_argument(
        "--ci", action="store_true", help="95 %% bootstrap interval for every cell and average (<stem>_ci.md)"
    )
    add_bootstrap_arguments(group)
    group.add_argument(
        "--ci-style",
        choices=INTERVAL_STYLES,
        default="pm",
        help="intervals in the LaTeX table (--format latex): pm = $\\pm$ half the interval's width "
        "(default), range = [lo, hi]",
    )
    rows = group.add_mutually_exclusive_group()
    rows.add_argument(
        "--compare",
        nargs=2,
        metavar=("ROW_A", "ROW_B"),
        help="paired bootstrap of A - B per dataset, per-class charts (a row label or one of its | fields)",
    )
    rows.add_argument("--baseline", metavar="ROW", help="every other row against ROW, as --compare")


def request_from_args(args: argparse.Namespace) -> StatsRequest:
    """The :class:`StatsRequest` of parsed :func:`add_arguments` options (absent options: nothing)."""
    compare = getattr(args, "compare", None)
    return StatsRequest(
        ci=bool(getattr(args, "ci", False)),
        compare=tuple(compare) if compare else None,
        baseline=getattr(args, "baseline", None),
        n_resamples=getattr(args, "resamples", DEFAULT_RESAMPLES),
        seed=getattr(args, "seed", DEFAULT_SEED),
        latex=LATEX in getattr(args, "format", ()),
        interval_style=getattr(args, "ci_style", "pm"),
    )
