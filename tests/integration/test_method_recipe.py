"""docs/methods.md "Adding a method", run as written: one module + one config, nothing in the package edited.

The module goes on ``PYTHONPATH``, the config into a copy of ``configs`` (``$CLIPTRASE_CONFIG_DIR``); then
``cliptrase-eval`` (as a subprocess, the way a user runs it) evaluates the method under the paper and the
standard protocol, and a knob of ``method.params`` reaches the method.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.golden import golden_weights

from cliptrase.paths import config_dir

REPO = Path(__file__).resolve().parents[2]


def _guide_snippets() -> tuple[str, str]:
    """The python and yaml blocks of docs/methods.md "Adding a method", dedented."""
    guide = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    section = guide[guide.index("## Adding a method") :]
    nxt = section.find("\n## ", 5)
    section = section if nxt < 0 else section[:nxt]
    blocks = {lang: re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S) for lang in ("python", "yaml")}
    assert len(blocks["python"]) == len(blocks["yaml"]) == 1, "the guide has one module and one config"
    return textwrap.dedent(blocks["python"][0]), textwrap.dedent(blocks["yaml"][0])


@pytest.mark.integration
def test_a_method_added_the_documented_way_runs_in_both_protocols(tmp_path):
    module_text, config_text = _guide_snippets()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "my_methods.py").write_text(module_text, encoding="utf-8")
    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)
    (configs / "method" / "mid_fusion.yaml").write_text(config_text, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "pkg"), os.environ.get("PYTHONPATH", "")]),
        "CLIPTRASE_CONFIG_DIR": str(configs),
        "CLIPTRASE_RESULTS": str(tmp_path / "res"),
        "CLIPTRASE_CACHE": str(tmp_path / "cache"),
    }
    args = [
        "-m",
        "model=weights_file",
        f"model.weights={golden_weights()}",
        "dataset=demo",
        "method=mid_fusion",
        "method.params.weight=0.5,0.0",
        "protocol=paper224,standard",
        "experiment_name=recipe",
        "max_images=1",
        "hydra/job_logging=disabled",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "cliptrase.eval", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "res" / "recipe").glob("*/metrics.json")]
    assert len(records) == 4
    seen = {(r["config"]["protocol"]["kind"], r["config"]["method"]["params"]["weight"]) for r in records}
    assert seen == {("paper", 0.5), ("paper", 0.0), ("standard", 0.5), ("standard", 0.0)}
    assert {r["config"]["method"]["type"] for r in records} == {"my_methods.MidFusion"}
