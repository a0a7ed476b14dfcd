"""Precision as published: ``precision: null`` resolves to the preset's published precision on CUDA and
fp32 on the CPU; an explicit value wins; the resolved value is hashed and shown in the row; the row keeps its
published row."""

from __future__ import annotations

import pytest
from helpers.config import compose_eval

from cliptrase.config import validate
from cliptrase.errors import ConfigError
from cliptrase.harness.identity import config_hash_of, row_label
from cliptrase.harness.runtime import resolve_precision
from cliptrase.reporting.published import published_for_rows

PEERS = ("sclip", "naclip", "clearclip", "proxyclip", "resclip", "scclip")


def _job(*overrides: str):
    cfg = compose_eval([*overrides, "paths.results_dir=/unused"])
    validate(cfg)
    return cfg


@pytest.mark.parametrize("preset", PEERS)
def test_every_peer_preset_records_fp16(preset):
    assert _job(f"protocol={preset}").protocol.published_precision == "fp16"


@pytest.mark.parametrize("preset", ["paper224", "paper336", "standard"])
def test_the_authors_and_the_uniform_protocol_are_fp32(preset):
    assert _job(f"protocol={preset}").protocol.published_precision == "fp32"


@pytest.mark.parametrize(
    ("device", "given", "expected"),
    [("cpu", None, "fp32"), ("cuda", None, "fp16"), ("cuda", "fp32", "fp32"), ("cpu", "bf16", "bf16")],
)
def test_resolution(monkeypatch, device, given, expected):
    import torch

    import cliptrase.utils.device as device_mod

    monkeypatch.setattr(device_mod, "resolve_device", lambda _: torch.device(device))
    overrides = ["protocol=sclip", "method=sclip", "dataset=voc21"]
    cfg = _job(*overrides, *([f"precision={given}"] if given else []))
    assert resolve_precision(cfg) == expected and cfg.precision == expected
    assert resolve_precision(cfg) == expected  # idempotent


def test_cpu_default_hashes_and_labels_as_explicit_fp32():
    default, explicit = (
        _job("protocol=sclip", "method=sclip"),
        _job("protocol=sclip", "method=sclip", "precision=fp32"),
    )
    resolve_precision(default)
    assert config_hash_of(default) == config_hash_of(explicit)
    assert row_label(default) == row_label(explicit) == "sclip | vit_b16_openai | sclip"


def test_an_fp16_row_says_so_and_keeps_its_published_row():
    cfg = _job("protocol=sclip", "method=sclip", "precision=fp16")
    label = row_label(cfg)
    assert label == "sclip | vit_b16_openai | sclip | precision=fp16"
    assert label in published_for_rows([label])


def test_an_unknown_precision_is_one_line():
    with pytest.raises(ConfigError, match=r"precision"):
        _job("precision=fp8")
