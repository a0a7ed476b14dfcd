"""``python -m cliptrase`` = the ``cliptrase`` console script."""

import sys

from cliptrase.cli.main import main

sys.exit(main())
