"""``cliptrase-table results/<experiment>``: the experiment's result records as Markdown, CSV and a bar chart.

    cliptrase-table EXPERIMENT_DIR [--metric mIoU] [--out DIR] [--published FILE] [--format md,csv,latex]
                    [--ci] [--ci-style pm|range] [--compare ROW_A ROW_B | --baseline ROW]
                    [--resamples N] [--seed S]
    cliptrase table EXPERIMENT_DIR ...   (same options)

Writes ``table.md``, ``table.csv`` and ``table.png`` into the experiment folder (or ``--out``) and logs the
Markdown; ``--format latex`` adds ``table.tex``, a booktabs ``tabular`` to ``\\input`` into a paper (best
value per column bold, second underlined; with ``--ci`` also ``table_ci.tex`` with the intervals,
:mod:`cliptrase.reporting.latex`). Records of different metric definitions are never mixed: each gets its own
``table_<definition>.{md,csv,png}``. ``--ci``, ``--compare`` and ``--baseline`` add bootstrap intervals and
paired comparisons from the runs' per-image records (:mod:`cliptrase.reporting.analysis` lists the
files). Exit status 0 on success, 2 on bad input (missing folder, no complete
records, unknown metric, unwritable output), reported as one log line (:mod:`cliptrase.errors`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from cliptrase.cli import stats_options
from cliptrase.cli.console import run_console
from cliptrase.errors import ConfigError, DataNotFoundError, ExitCode
from cliptrase.reporting.analysis import write_statistics
from cliptrase.reporting.table_files import BUILTIN, FORMATS, Published, write_tables

logger = logging.getLogger(__name__)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment_dir", type=Path, metavar="EXPERIMENT_DIR", help="results/<experiment>")
    parser.add_argument("--metric", default="mIoU", help="metric to tabulate (default mIoU; e.g. mAcc, aAcc)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: EXPERIMENT_DIR)")
    parser.add_argument(
        "--published",
        type=Path,
        default=None,
        help='JSON {"<row label>": {"<dataset>": value}}: adds published and Δ rows',
    )
    parser.add_argument(
        "--no-published",
        action="store_true",
        help="leave out the built-in published rows (added by default for matching ViT-B/16 rows)",
    )
    parser.add_argument(
        "--format",
        type=formats_arg,
        default=DEFAULT_FORMATS,
        metavar="FMT[,FMT]",
        help=f"table formats, of {','.join(FORMATS)} (default {','.join(DEFAULT_FORMATS)}; md, csv and png "
        "are always written): latex adds table.tex, a booktabs tabular to \\input (with --ci also "
        "table_ci.tex)",
    )
    stats_options.add_arguments(parser)


DEFAULT_FORMATS = ("md", "csv", "png")


def formats_arg(text: str) -> tuple[str, ...]:
    """``--format md,csv,latex`` -> the formats; an unknown one is an argparse error naming the valid ones."""
    names = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {', '.join(unknown) or repr(text)}; valid: {', '.join(FORMATS)}"
        )
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``table`` command to ``subparsers`` (the ``cliptrase`` entry point)."""
    parser = subparsers.add_parser("table", help="build Markdown/CSV tables and a bar chart from results")
    _add_arguments(parser)
    parser.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the stand-alone ``cliptrase-table`` console script."""
    parser = argparse.ArgumentParser(prog="cliptrase-table", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    return parser


def load_published(path: Path) -> dict[str, dict[str, float]]:
    """Read ``{row label: {dataset: value}}`` from JSON; one-line ``ValueError`` naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataNotFoundError(f"published numbers file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    valid = isinstance(data, Mapping) and all(
        isinstance(cells, Mapping)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cells.values())
        for cells in data.values()
    )
    if not valid:
        raise ConfigError(f'{path}: expected {{"<row label>": {{"<dataset>": number}}}}')
    return {str(row): {str(c): float(v) for c, v in cells.items()} for row, cells in data.items()}


def run(args: argparse.Namespace) -> int:
    """Build and write the tables; returns the exit status."""
    if args.published:
        published: Published = load_published(args.published)
    elif getattr(args, "no_published", False):
        published = None
    else:
        published = BUILTIN
    write_tables(
        args.experiment_dir,
        metric=args.metric,
        out_dir=args.out,
        published=published,
        formats=getattr(args, "format", DEFAULT_FORMATS),
    )
    request = stats_options.request_from_args(args)
    if request.any:
        out_dir = args.out or args.experiment_dir
        write_statistics(args.experiment_dir, metric=args.metric, out_dir=out_dir, request=request)
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cliptrase-table``; returns the exit status."""
    return run_console(build_parser(), argv, run)


if __name__ == "__main__":
    sys.exit(main())
