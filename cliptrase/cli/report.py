"""``cliptrase-report results/<experiment>``: one self-contained ``report.html`` of an experiment.

    cliptrase-report EXPERIMENT_DIR [--baseline ROW] [--images STEM,STEM | --num-images K] [--overlay]
                     [--metric mIoU] [--resamples N] [--seed S]

Writes ``EXPERIMENT_DIR/report.html`` (tables with 95 % bootstrap intervals, every row against the
baseline row with paired intervals, per-class IoU charts, the qualitative grid Image | GT | every method
of K images) and the grid alone as ``qualitative.png`` and ``qualitative.pdf``. The grid's images are
``--images``, else the ``--num-images`` saved images where the methods' per-image mIoU differs most.
The baseline is ``--baseline`` (a full row label or one of its ``|`` fields, e.g. ``clip``), else the
first row of each table. The grid needs runs made with ``save_predictions=K``; the report names the runs
that saved none. Exit status 0 on success, 2 on bad input, reported as one log line
(:mod:`cliptrase.errors`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cliptrase.cli.console import run_console
from cliptrase.cli.stats_options import add_bootstrap_arguments
from cliptrase.errors import ConfigError, DataError, ExitCode
from cliptrase.records.results import atomic_write_bytes, atomic_write_text, load_records
from cliptrase.reporting.analysis import StatsRequest, analyse, pairs_for
from cliptrase.reporting.qualitative import DEFAULT_IMAGES, collect_grids, grid_figure
from cliptrase.reporting.report import REPORT_FILE, ReportInputs, render_report
from cliptrase.reporting.tables import build_tables

logger = logging.getLogger(__name__)

QUALITATIVE_STEM = "qualitative"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``cliptrase-report``."""
    parser = argparse.ArgumentParser(prog="cliptrase-report", description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path, metavar="EXPERIMENT_DIR", help="results/<experiment>")
    parser.add_argument("--baseline", help="row every other row is compared with (default: the first)")
    images = parser.add_mutually_exclusive_group()
    images.add_argument("--images", help="comma-separated image stems for the qualitative grid")
    images.add_argument(
        "--num-images",
        type=int,
        default=DEFAULT_IMAGES,
        help=f"K images where the methods differ most (default {DEFAULT_IMAGES})",
    )
    parser.add_argument(
        "--overlay", action="store_true", help="draw predictions blended on the image, not as colour maps"
    )
    parser.add_argument("--metric", default="mIoU", help="metric to tabulate (default mIoU)")
    add_bootstrap_arguments(parser)
    return parser


def _analyses(records: list, exp_dir: Path, args: argparse.Namespace) -> list:
    analyses = []
    for table in build_tables(records, args.metric):
        rows = [r.label for r in table.rows if r.kind == "measured"]
        request = StatsRequest(
            ci=True, baseline=args.baseline or rows[0], n_resamples=args.resamples, seed=args.seed
        )
        analyses.append(analyse(table, records, exp_dir, request, pairs_for(table, request)))
    if args.baseline and not any(a.comparisons for a in analyses):
        raise ValueError(f"no table has a row {args.baseline!r} with other rows to compare with")
    return analyses


def run(args: argparse.Namespace) -> int:
    """Build and write the report; returns the exit status (user errors go to the error boundary)."""
    exp_dir: Path = args.experiment_dir
    if args.num_images < 1:
        raise ConfigError(f"--num-images must be at least 1, got {args.num_images}")
    records = load_records(exp_dir)
    if not records:
        hint = f"`cliptrase-eval -m experiment={exp_dir.name}`"
        raise DataError(f"no complete results under {exp_dir}; produce them with {hint}")
    stems = [s.strip() for s in args.images.split(",") if s.strip()] if args.images else None
    qualitative = collect_grids(records, exp_dir, stems=stems, k=args.num_images)
    grid = grid_figure(qualitative.grids, overlay=args.overlay) if qualitative.grids else None
    if grid is not None:
        for fmt, data in grid.items():
            atomic_write_bytes(exp_dir / f"{QUALITATIVE_STEM}.{fmt}", data)
    inputs = ReportInputs(
        experiment=exp_dir.name,
        analyses=_analyses(records, exp_dir, args),
        qualitative=qualitative,
        overlay=args.overlay,
        n_resamples=args.resamples,
        seed=args.seed,
    )
    atomic_write_text(exp_dir / REPORT_FILE, render_report(inputs))
    extra = f" and {QUALITATIVE_STEM}.{{png,pdf}}" if grid is not None else ""
    logger.info("wrote %s%s", exp_dir / REPORT_FILE, extra)
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cliptrase-report``; returns the exit status."""
    return run_console(build_parser(), argv, run)


if __name__ == "__main__":
    sys.exit(main())
