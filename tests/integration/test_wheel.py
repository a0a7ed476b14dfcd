"""The package as a user installs it: a (non-editable) wheel in a fresh venv runs ``cliptrase-eval`` from
another directory, with the configs it ships as package data.

The venv reuses this environment's third-party packages through a path file (never its editable
``cliptrase``), so nothing is downloaded; the wheel is built from a copy of the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
_TOP_LEVEL_SKIPPED = {".git", ".venv", "tests", "results", "data", "outputs", "build", "datasets"}
_TIMEOUT_S = 600


def _not_shipped(folder: str, names: list[str]) -> set[str]:
    """What the source copy leaves out: checkout-only folders at the top, caches and build leftovers."""
    skipped = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    return skipped | (_TOP_LEVEL_SKIPPED & set(names) if Path(folder) == REPO else set())


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _fresh_venv(path: Path) -> Path:
    """A venv without cliptrase whose third-party packages come from this environment's site-packages."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    python = path / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    # A plain path line: the folder joins sys.path, but its .pth files (the editable cliptrase) are not read.
    Path(site, "_host_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def test_wheel_in_a_fresh_venv_runs_the_demo_from_another_directory(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=_not_shipped)
    wheels = tmp_path / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(src),
        ]
    )
    (wheel,) = wheels.glob("cliptrase-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for config in ("eval.yaml", "experiment/demo.yaml", "dataset/voc21.yaml", "paths/default.yaml"):
        assert f"cliptrase/configs/{config}" in shipped, config

    python = _fresh_venv(tmp_path / "venv")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPTRASE_CONFIG", "PYTHON"))}
    where = _run([str(python), "-c", "import cliptrase; print(cliptrase.__file__)"], cwd=elsewhere, env=env)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout

    results = tmp_path / "results"
    eval_cmd = [
        str(tmp_path / "venv" / "bin" / "cliptrase-eval"),
        "experiment=demo",
        "max_images=2",
        "num_workers=0",
        f"paths.results_dir={results}",
        f"paths.data_root={tmp_path / 'data'}",
    ]
    _run(eval_cmd, cwd=elsewhere, env=env)
    (record,) = (results / "demo").glob("*/metrics.json")
    assert json.loads(record.read_text())["complete"] is True
