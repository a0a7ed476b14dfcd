"""Headless Chromium for the report tests: load a page offline and return the DOM after its scripts ran."""

from __future__ import annotations

import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's chromium (``.ci/run`` installs it); the browser tests skip, saying so, where it is absent."""


def chromium_dom(page: Path, profile: Path, *, budget_ms: int | None = 5000, timeout_s: int = 120) -> str:
    """``chromium --headless --dump-dom`` of ``page`` with a fresh profile in ``profile``, sRGB colours and,
    when ``budget_ms`` is set, that much virtual time for the page's scripts."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--force-color-profile=srgb",
        f"--user-data-dir={profile}",
    ]
    if budget_ms is not None:
        command.append(f"--virtual-time-budget={budget_ms}")
    command += ["--dump-dom", page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=True).stdout
