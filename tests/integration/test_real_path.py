"""The real path, rehearsed: each shipped model config through open_clip's factory and ``cliptrase-eval``.

What a GPU machine with internet runs, minus the download: random weights of the right architecture are
placed where open_clip's cache keeps the tag's file (Hugging Face cache layout, or the URL cache), then
``cliptrase-eval model=<config> model.cache_dir=<cache>`` runs one demo image as a subprocess with
``HF_HUB_OFFLINE=1``. The record's provenance must say the activation, mean/std and native size the weights
were trained with. ViT-B configs run by default; the larger ones (GBs of random weights) are ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch
from helpers.weights_cache import cache_target

from cliptrase.models import hub
from cliptrase.models.shipped import shipped_model_specs

REPO = Path(__file__).resolve().parents[2]
FAST = {"vit_b16_openai"}

SPECS = [s for s in shipped_model_specs() if s.tag]


def _params():
    for spec in SPECS:
        marks = () if spec.slug in FAST else (pytest.mark.slow,)
        yield pytest.param(spec, id=spec.slug, marks=marks)


def _populate_cache(cache: Path, spec) -> Path:
    """Random weights of ``spec``'s architecture where open_clip's downloader would leave the tag's file."""
    torch.manual_seed(0)
    model = open_clip.create_model(spec.name)
    state = {k: v.half() for k, v in model.state_dict().items()}
    del model
    source = hub.tag_source(spec.name, spec.tag)
    target = cache_target(cache, source)
    torch.save(state, target)
    assert hub.cached_weights(source, cache) == target
    return target


@pytest.mark.integration
@pytest.mark.parametrize("spec", list(_params()))
def test_shipped_model_config_end_to_end(tmp_path, spec):
    cache = tmp_path / "cache"
    target = _populate_cache(cache, spec)
    results = tmp_path / "results"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",  # any network attempt would fail: the cache must be enough
        "CLIPTRASE_DATA": str(tmp_path / "data"),
        "CLIPTRASE_CACHE": str(tmp_path / "text_cache"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cliptrase.eval",
            f"model={spec.slug}",
            f"model.cache_dir={cache}",
            "dataset=demo",
            "protocol=paper224",
            "max_images=1",
            "num_workers=0",
            "experiment_name=rehearsal",
            f"paths.results_dir={results}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record_path,) = results.glob("rehearsal/*/metrics.json")
    record = json.loads(record_path.read_text())
    model = record["provenance"]["model"]
    assert model["activation"] == spec.activation
    assert model["mean"] == pytest.approx(list(spec.mean))
    assert model["std"] == pytest.approx(list(spec.std))
    assert model["image_size"] == [spec.image_size, spec.image_size]
    assert model["weights_file"] == str(target)
    assert "QuickGELU mismatch" not in proc.stderr


@pytest.mark.integration
@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "hub_unreachable"])
def test_missing_weights_offline_is_one_line_within_seconds(tmp_path, how):
    """Empty cache on a node without internet: one line naming model, cache and fetch command; exit 2."""
    import time

    env = {**os.environ, "CLIPTRASE_DATA": str(tmp_path / "data")}
    env.pop("CLIPTRASE_DEBUG", None)
    env.pop("HYDRA_FULL_ERROR", None)
    if how == "HF_HUB_OFFLINE":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env.pop("HF_HUB_OFFLINE", None)
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: refused at once, like a closed network
    cache = tmp_path / "empty_cache"
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cliptrase.eval",
            "model=vit_b16_openai",
            f"model.cache_dir={cache}",
            "dataset=demo",
            f"paths.results_dir={tmp_path / 'results'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr  # Hydra's job logging may use either stream
    assert proc.returncode == 2, output[-2000:]
    assert "Traceback" not in output
    errors = [ln for ln in output.splitlines() if "ERROR" in ln]
    assert len(errors) == 1, output[-2000:]
    assert "ViT-B-16:openai" in errors[0] and str(cache) in errors[0]
    assert f"cliptrase models fetch ViT-B-16:openai --cache-dir {cache}" in errors[0]
    assert elapsed < 60, f"{elapsed:.0f} s: hub retries?"  # interpreter + mmseg imports included
    assert not list((tmp_path / "results").rglob("metrics.json"))
