"""Every CLIPtrase ablation switch changes the output on the golden tiny model (no dead switch), and the
default method config still reproduces the golden predictions."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.config import compose_eval
from omegaconf import OmegaConf
from PIL import Image

from cliptrase.engine.segmentor import method_options
from cliptrase.method.runner import Predictor
from cliptrase.method.zoo import build_method
from cliptrase.paths import config_dir
from cliptrase.protocols.paper import paper_dataset, preprocess_image

CONFIG_DIR = str(config_dir())

ABLATIONS = sorted(Path(f).stem for f in glob.glob(f"{CONFIG_DIR}/method/cliptrase_*.yaml"))
CASE = "voc21_336"  # background prompts, two-image batch, 336 px: exercises the most switches


def _method(name: str) -> dict:
    cfg = compose_eval([f"method={name}", "paths.results_dir=/unused"])
    return OmegaConf.to_container(cfg.method)


def _run(golden_clip, golden_dir: Path, method: dict):
    meta = json.loads((golden_dir / "cases.json").read_text())["cases"][CASE]
    ds = paper_dataset(meta["dataset_key"])
    with np.load(golden_dir / f"{CASE}.npz") as z:
        images = [z[f"{i}/image"] for i in range(2)]
        preds = [z[f"{i}/pred"] for i in range(2)]
    size = meta["image_size"]
    pred = Predictor(golden_clip, method=build_method(method))
    x = torch.stack(
        [preprocess_image(Image.fromarray(im), size, golden_clip.mean, golden_clip.std) for im in images]
    )
    opts = method_options(method, size=size, is_paper=True, n_foreground=ds.n_foreground, cls_product=False)
    return pred(x, pred.text_classifier(ds.prompts), opts), np.stack(preds)


@pytest.fixture(scope="module")
def baseline(golden_clip, golden_dir):
    if not (golden_dir / f"{CASE}.npz").is_file():
        pytest.skip(f"golden case {CASE} not found in {golden_dir}")
    return _run(golden_clip, golden_dir, _method("cliptrase"))


def test_default_reproduces_golden(baseline):
    out, golden = baseline
    assert np.array_equal(out.pred.numpy(), golden)


@pytest.mark.parametrize("name", ABLATIONS)
def test_switch_changes_output(name, golden_clip, golden_dir, baseline):
    out, _ = _run(golden_clip, golden_dir, _method(name))
    ref = baseline[0]
    fields = ("pred", "logits", "corr", "dbscan_in", "labels", "regions")
    changed = [f for f in fields if not _same(getattr(out, f), getattr(ref, f))]
    assert changed, f"method={name} gives the default output in every field: dead switch"


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and bool(torch.equal(a, b))


SWITCHES = (
    "attention",
    "cluster",
    "denoise",
    "vote",
    "correlation",
    "correlation_block",
    "median_size",
    "upsample_ratio",
    "eps",
    "min_samples",
)
"""The switches of configs/method/cliptrase.yaml that README's ablation list names."""
FACTORS = ({"upsample_ratio", "median_size"},)
"""Switches changed together as one factor: the median window follows the upsampling ratio as
2 * ratio - 1 (x4 -> 7 in docs/method.md §3, x2 -> 3)."""


def _yaml(*parts: str) -> dict:
    return yaml.safe_load(Path(CONFIG_DIR, *parts).read_text())


def _swept(experiment: str) -> dict[str, str]:
    return _yaml("experiment", f"{experiment}.yaml")["hydra"]["sweeper"]["params"]


def _changed_switches(name: str) -> set[str]:
    """The keys a ``method=cliptrase_*`` file sets besides its name (it extends cliptrase.yaml)."""
    own = _yaml("method", f"{name}.yaml")
    assert own["defaults"][0] == "cliptrase", f"{name}.yaml must extend cliptrase.yaml"
    base = _yaml("method", "cliptrase.yaml")
    return {k for k, v in own.items() if k not in ("defaults", "name") and base.get(k) != v}


@pytest.mark.parametrize("name", ABLATIONS)
def test_each_ablation_file_changes_one_factor(name):
    changed = _changed_switches(name)
    one_factor = len(changed) == 1 or changed in FACTORS
    assert one_factor and changed <= set(SWITCHES), f"{name}.yaml changes {sorted(changed)}"


def test_every_switch_has_an_ablation():
    """Each switch is changed by a method file of the ablation sweep, or swept by an experiment file."""
    sweep = _swept("cliptrase_ablation")["method"].split(",")
    assert sorted(sweep) == sorted(["cliptrase", *ABLATIONS]), "cliptrase_ablation must sweep every file"
    by_file = {switch for name in ABLATIONS for switch in _changed_switches(name)}
    by_sweep = {
        key.removeprefix("method.")
        for path in Path(CONFIG_DIR, "experiment").glob("cliptrase_*.yaml")
        for key in _swept(path.stem)
        if key.startswith("method.")
    }
    missing = set(SWITCHES) - by_file - by_sweep
    assert not missing, f"no ablation for method.{sorted(missing)}"
