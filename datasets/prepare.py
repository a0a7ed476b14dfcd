"""Convert an official benchmark download without the console script.

    python datasets/prepare.py NAME --raw DIR --out DIR [--workers N] [--id-map FILE]

Same as ``cliptrase data prepare``; see ``datasets/README.md``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cliptrase.cli.data import register


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` as ``cliptrase data prepare`` arguments and run it."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="cliptrase")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "prepare", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
