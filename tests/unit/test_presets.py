"""Every peer preset x benchmark composes to the peer's documented settings; presets never inherit another
preset's per-dataset exceptions; docs/presets.md is the table the configs generate; experiment=peers pairs
each published row with its preset."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from helpers.config import compose_eval

from cliptrase.config import validate
from cliptrase.paths import config_dir
from cliptrase.reporting.published import PUBLISHED, ROWS, PublishedRow, published_for_rows
from cliptrase.reporting.tables import STANDARD_BENCHMARKS

CONFIG_DIR = config_dir()
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "settings_table.py"
PRESETS = ("standard", "sclip", "naclip", "clearclip", "proxyclip", "scclip", "resclip")

_BASE = {"crop": 224, "stride": 112, "logit_scale": 40.0, "prob_thd": 0.0, "area_thd": None, "pamr_steps": 0}
_BG_THD = {"voc21": 0.1, "context60": 0.1, "coco_object": 0.1}
EXPECTED: dict[str, tuple[dict, dict[str, dict]]] = {
    # preset: (settings of every benchmark, {benchmark: exceptions}), restated from the peers' files
    "standard": (
        {**_BASE, "short_side": 336, "pad_to": 0, "pos_offset": None, "vocab": "standard"},
        {"cityscapes": {"short_side": 560}, **{d: {"prob_thd": t} for d, t in _BG_THD.items()}},
    ),
    "sclip": (  # wangf3014/SCLIP configs/cfg_*.py, clip_segmentor.py:19-21
        {**_BASE, "short_side": 336, "pad_to": 0, "pos_offset": 0.1, "vocab": "standard"},
        {
            "voc21": {"logit_scale": 65.0, "prob_thd": 0.1, "area_thd": 0.1},
            "context60": {"logit_scale": 50.0, "prob_thd": 0.1},
            "coco_object": {"logit_scale": 50.0, "prob_thd": 0.1},
            "coco_stuff171": {"short_side": 448},
            "cityscapes": {"short_side": 560},
        },
    ),
    "naclip": (  # sinahmr/NACLIP configs/cfg_*.py, naclip.py:20-22, eval.py:56-57 (--pamr on)
        {**_BASE, "short_side": 336, "pamr_steps": 10, "pad_to": 0, "pos_offset": 0.1, "vocab": "standard"},
        {
            "voc21": {"crop": 0, "prob_thd": 0.1},
            "voc20": {"crop": 0},
            "context60": {"prob_thd": 0.1},
            "coco_object": {"prob_thd": 0.1},
            "cityscapes": {"short_side": 560},
        },
    ),
    "clearclip": (  # mc-lan/ClearCLIP configs/cfg_*.py, clearclip_segmentor.py:22-23, 168-180
        {
            **_BASE,
            "short_side": 448,
            "crop": 448,
            "stride": 224,
            "logit_scale": 50.0,
            "pad_to": 16,
            "pos_offset": 0.1,
            "vocab": "clearclip",
        },
        {
            "voc21": {"prob_thd": 0.5},
            "context60": {"prob_thd": 0.15},
            "coco_object": {"prob_thd": 0.4},
            "cityscapes": {"crop": 224},
        },
    ),
    "proxyclip": (  # mc-lan/ProxyCLIP configs/cfg_*.py, proxyclip_segmentor.py:30-31, 218-231
        {**_BASE, "short_side": 336, "crop": 336, "pad_to": 56, "pos_offset": 0.1, "vocab": "proxyclip"},
        {
            "voc21": {"prob_thd": 0.2},
            "context60": {"prob_thd": 0.15},
            "coco_object": {"prob_thd": 0.25},
            "ade150": {"short_side": 448},
            "cityscapes": {"short_side": 448, "crop": 224},
        },
    ),
    "scclip": (  # SuleBai/SC-CLIP configs/cfg_*.py, scclip_segmentor.py:19-21 (COCO-Stuff 336, unlike SCLIP)
        {**_BASE, "short_side": 336, "pad_to": 0, "pos_offset": 0.1, "vocab": "standard"},
        {
            "voc21": {"logit_scale": 50.0, "prob_thd": 0.15, "area_thd": 0.1},
            "context60": {"prob_thd": 0.15},
            "coco_object": {"logit_scale": 55.0, "prob_thd": 0.35},
            "cityscapes": {"short_side": 560},
        },
    ),
    "resclip": (  # yvhangyang/ResCLIP@0e085f7 configs/cfg_*.py, resclip_segmentor.py:23-26, 83-87
        {**_BASE, "short_side": 336, "pad_to": 0, "pos_offset": 0.1, "vocab": "standard"},
        {
            "voc21": {"crop": 0, "prob_thd": 0.1},
            "voc20": {"crop": 0},
            "context60": {"prob_thd": 0.1},
            "coco_object": {"prob_thd": 0.1},
            "cityscapes": {"short_side": 560},
        },
    ),
}


def _compose(overrides: list[str]):
    return compose_eval([*overrides, "paths.results_dir=/unused"])


def _preset(name: str):
    return validate(_compose([f"protocol={name}"]))["protocol"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("dataset", STANDARD_BENCHMARKS)
def test_preset_resolves_to_the_peers_settings(preset, dataset):
    base, exceptions = EXPECTED[preset]
    want = {**base, **exceptions.get(dataset, {})}
    protocol = validate(_compose([f"protocol={preset}", f"dataset={dataset}"]))["protocol"]
    resolved = protocol.for_dataset(dataset)
    assert {key: getattr(resolved, key) for key in want} == want


@pytest.mark.parametrize("preset", PRESETS)
def test_per_dataset_settings_are_exactly_the_files(preset):
    """No parent preset: a `*_by_dataset` dict holds what the file says (no Cityscapes 560 leaking in)."""
    text = yaml.safe_load((CONFIG_DIR / "protocol" / f"{preset}.yaml").read_text())
    assert text["defaults"] == ["base_protocol", "_self_"]
    composed = _preset(preset)
    for key in ("short_side", "crop", "stride", "logit_scale", "prob_thd", "area_thd"):
        assert getattr(composed, f"{key}_by_dataset") == text.get(f"{key}_by_dataset", {}), key


def test_every_preset_is_tested():
    family = {p.stem for p in (CONFIG_DIR / "protocol").glob("*.yaml")} - {"paper224", "paper336"}
    assert family == set(PRESETS)


def test_every_dataset_setting_has_a_source():
    for name in PRESETS[1:]:
        preset = _preset(name)
        for key in ("short_side", "crop", "stride", "logit_scale", "prob_thd", "pad_to", "pos_offset"):
            assert key in preset.sources, (name, key)
        assert "vocab" in preset.sources and "metric" in preset.sources
        for key in ("short_side", "crop", "stride", "logit_scale", "prob_thd", "area_thd"):
            for dataset in getattr(preset, f"{key}_by_dataset"):
                assert f"{key}.{dataset}" in preset.sources, (name, key, dataset)


def test_docs_settings_table_is_generated_from_the_configs():
    spec = importlib.util.spec_from_file_location("settings_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "docs/presets.md is stale: run python scripts/settings_table.py"


@pytest.mark.parametrize("row", sorted(p.stem for p in (CONFIG_DIR / "peer_row").glob("*.yaml")))
def test_peer_rows_pair_a_published_row_with_its_preset(row):
    cfg = _compose(["experiment=peers", f"+peer_row={row}"])
    assert (cfg.method.name, cfg.protocol.name) in ROWS
    assert cfg.model.slug == "vit_b16_openai"


def test_published_rows_sit_on_their_presets():
    assert set(ROWS) == {
        ("cliptrase", "paper224"), ("cliptrase", "paper336"), ("sclip", "sclip"), ("naclip", "naclip"),
        ("clip", "clearclip"), ("maskclip", "clearclip"), ("sclip", "clearclip"), ("clearclip", "clearclip"),
        ("resclip", "resclip"),
    }  # fmt: skip
    # sinahmr/NACLIP README.md:58-89: columns VOC21, PC60, Object, VOC20, Cityscapes, PC59, ADE20K, Stuff
    assert PUBLISHED["naclip | vit_b16_openai | naclip"] == {
        "voc21": 64.07, "context60": 34.99, "coco_object": 36.19, "voc20": 83.03,
        "cityscapes": 38.27, "context59": 38.35, "ade150": 19.05, "coco_stuff171": 25.69,
    }  # fmt: skip
    assert not any(protocol == "standard" for _, protocol in ROWS)
    assert published_for_rows(["sclip | vit_b16_openai | standard"]) == {}


def test_tables_compare_only_the_same_metric():
    from cliptrase.reporting.tables import _comparable

    row = PublishedRow({"voc21": 50.0}, "src", "paper_scores")
    assert _comparable(row, "paper_scores")
    assert not _comparable(row, "mmseg_iou")
    assert _comparable({"voc21": 50.0}, "mmseg_iou")  # a bare mapping states no metric


def test_resclip_rows_as_its_readme_figures_print_them():
    """yvhangyang/ResCLIP README figs/main_results_w.png (VOC21, PC60, Object) and main_results_wo.png
    (VOC20, PC59, Stuff, Cityscapes, ADE): the "NACLIP + ResCLIP" rows, ViT-B/16 and ViT-L/14."""
    assert PUBLISHED["resclip | vit_b16_openai | resclip"] == {
        "voc21": 61.1, "context60": 33.5, "coco_object": 35.0, "voc20": 86.0,
        "context59": 36.8, "coco_stuff171": 24.7, "cityscapes": 35.9, "ade150": 18.0,
    }  # fmt: skip
    large = "resclip | vit_l14_openai | resclip"
    assert PUBLISHED[large] == {
        "voc21": 54.1, "context60": 30.9, "coco_object": 32.5, "voc20": 85.5,
        "context59": 34.5, "coco_stuff171": 23.4, "cityscapes": 33.7, "ade150": 18.2,
    }  # fmt: skip
    assert published_for_rows([large, "resclip | vit_l14_openai | standard"]) == {large: PUBLISHED[large]}
    assert (CONFIG_DIR / "model" / "vit_l14_openai.yaml").is_file()
