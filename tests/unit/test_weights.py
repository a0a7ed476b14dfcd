"""Real weights, real files: tag -> architecture fidelity, checkpoint formats users have, offline caches.

open_clip's download is never reached: checkpoints are random weights of the right architecture, written
where open_clip's cache would hold them (or returned by a stubbed ``download_pretrained``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from helpers.weights_cache import link_into_cache
from open_clip.pretrained import list_pretrained

from cliptrase.models import hub
from cliptrase.models.checkpoints import CheckpointError, is_torchscript, read_state_dict
from cliptrase.models.clip import (
    GELU,
    QUICK_GELU,
    activation_kwargs,
    activation_of,
    load_clip,
    resolve_quick_gelu,
)
from cliptrase.models.shipped import resolve_specs, shipped_model_specs, spec_for

REPO = Path(__file__).resolve().parents[2]


def _vit_pairs() -> list[tuple[str, str]]:
    """(architecture, tag) pairs of open_clip's table with an open_clip ViT image tower and text tower."""
    pairs = []
    for name, tag in list_pretrained():
        cfg = open_clip.get_model_config(name) or {}
        if "ViT" not in name or "timm_model_name" in cfg.get("vision_cfg", {}):
            continue  # not an open_clip VisionTransformer (timm towers are outside this package)
        if "hf_model_name" in cfg.get("text_cfg", {}):
            continue  # Hugging Face text towers need `transformers`, which this package does not ship
        pairs.append((name, tag))
    return pairs


VIT_PAIRS = _vit_pairs()


def _build_meta(name: str, tag: str) -> torch.nn.Module:
    """The network load_clip builds for (name, tag), on the meta device (no memory, no weights)."""
    quick = resolve_quick_gelu(name, tag, None)
    with torch.device("meta"):
        return open_clip.create_model(name, device="meta", **activation_kwargs(quick))


def test_vit_pairs_cover_the_quick_gelu_tags():
    quick = [p for p in VIT_PAIRS if open_clip.get_pretrained_cfg(*p).get("quick_gelu")]
    assert len(VIT_PAIRS) >= 50 and len(quick) >= 10, (len(VIT_PAIRS), len(quick))
    assert ("ViT-B-16", "openai") in quick and ("ViT-L-14-336", "openai") in quick


@pytest.mark.parametrize(("name", "tag"), VIT_PAIRS, ids=[f"{n}:{t}" for n, t in VIT_PAIRS])
def test_every_vit_tag_builds_the_activation_it_was_trained_with(name, tag):
    expected = QUICK_GELU if open_clip.get_pretrained_cfg(name, tag).get("quick_gelu") else GELU
    model = _build_meta(name, tag)
    acts = {type(m).__name__ for n, m in model.named_modules() if n.endswith("mlp.gelu")}
    assert sum(n.endswith("mlp.gelu") for n, _ in model.named_modules()) >= 2  # image and text towers
    assert acts == {expected}, f"{name}:{tag} built {acts}, trained with {expected}"


def test_every_shipped_model_config_resolves():
    specs = {s.slug: s for s in shipped_model_specs()}
    assert specs["vit_b16_openai"].activation == QUICK_GELU
    assert specs["vit_l14_openai"].activation == QUICK_GELU
    assert specs["vit_l14_336_openai"].activation == QUICK_GELU
    assert specs["vit_l14_336_openai"].image_size == 336
    assert specs["metaclip_vit_b16"].activation == QUICK_GELU
    assert specs["vit_h14_laion2b"].activation == GELU
    for spec in specs.values():
        if spec.tag:
            model = _build_meta(spec.name, spec.tag)
            assert activation_of(model) == spec.activation, spec.slug


def test_override_contradicting_the_tag_is_refused():
    with pytest.raises(ValueError, match=r"trained with QuickGELU.*drop model.quick_gelu"):
        resolve_quick_gelu("ViT-B-16", "openai", False)
    with pytest.raises(ValueError, match=r"trained with GELU"):
        resolve_quick_gelu("ViT-H-14", "laion2b_s32b_b79k", True)
    assert resolve_quick_gelu("ViT-B-16", "openai", True) is True
    assert resolve_quick_gelu("ViT-B-16", None, True) is True  # random weights: the override decides
    assert resolve_quick_gelu("ViT-B-16", None, None) is False


# --------------------------------------------------------------------------- the real factory path, stubbed


@pytest.fixture(scope="module")
def vit_b16_checkpoint(tmp_path_factory) -> Path:
    """A random ViT-B-16 state dict in open_clip format (fp16 on disk, as hub files are)."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16")
    path = tmp_path_factory.mktemp("ckpt") / "open_clip_pytorch_model.bin"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path


def test_openai_tag_through_open_clip_download_is_quick_gelu(vit_b16_checkpoint, tmp_path, monkeypatch):
    """The issue's reproduction: download_pretrained stubbed, ViT-B-16 + openai must build QuickGELU."""
    calls = []

    def fake_download(cfg, prefer_hf_hub=True, cache_dir=None):
        calls.append((cfg.get("hf_hub"), cache_dir))
        return str(vit_b16_checkpoint)

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", fake_download)
    monkeypatch.setattr(hub, "reachable", lambda host, port, timeout=3.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    clip = load_clip("ViT-B-16", "openai", cache_dir=str(tmp_path / "empty"))
    assert calls and calls[0][0].startswith("timm/vit_base_patch16_clip_224.openai")
    assert type(clip.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert clip.activation == QUICK_GELU
    assert clip.mean == open_clip.OPENAI_DATASET_MEAN and clip.std == open_clip.OPENAI_DATASET_STD
    assert clip.image_size == (224, 224)
    info = clip.describe()
    assert info["activation"] == "QuickGELU" and info["image_size"] == [224, 224]
    ref = torch.load(vit_b16_checkpoint, weights_only=True)
    got = clip.model.state_dict()
    assert torch.equal(got["visual.proj"], ref["visual.proj"].float())


def test_cached_tag_loads_without_network(vit_b16_checkpoint, tmp_path, monkeypatch):
    source = hub.tag_source("ViT-B-16", "openai")
    target = link_into_cache(tmp_path, source, vit_b16_checkpoint)

    def no_network(*a, **k):
        raise AssertionError("a cached tag must not touch the network")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", no_network)
    monkeypatch.setattr(hub, "reachable", no_network)
    assert hub.cached_weights(source, tmp_path) == target
    clip = load_clip("ViT-B-16", "openai", cache_dir=str(tmp_path))
    assert clip.activation == QUICK_GELU
    assert clip.source["weights_file"] == str(target)


def test_url_cache_is_found(tmp_path):
    source = hub.TagSource("ViT-B-16", "openai", url="https://host/clip/models/abc/ViT-B-16.pt")
    assert hub.cached_weights(source, tmp_path) is None
    (tmp_path / "ViT-B-16.pt").write_bytes(b"x")
    assert hub.cached_weights(source, tmp_path) == tmp_path / "ViT-B-16.pt"


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable"])
def test_missing_weights_offline_fail_fast_with_the_fetch_command(tmp_path, monkeypatch, how):
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(hub, "reachable", lambda *a, **k: pytest.fail("HF_HUB_OFFLINE: no connection"))
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    start = time.monotonic()
    with pytest.raises(hub.WeightsUnavailableError) as err:
        load_clip("ViT-B-16", "openai", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert "ViT-B-16:openai" in msg and str(tmp_path) in msg
    assert f"cliptrase models fetch ViT-B-16:openai --cache-dir {tmp_path}" in msg
    assert "\n" not in msg


# --------------------------------------------------------------------------- checkpoint formats


GOLDEN_ARCH = "cliptrase-test-golden-tiny"
GOLDEN_CFG = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 12, "width": 128, "head_width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
}


def _save_torchscript(state: dict[str, torch.Tensor], path: Path) -> None:
    """An archive shaped like OpenAI's ``ViT-B-16.pt``: a TorchScript module whose state dict holds the
    weights under their names plus ``input_resolution``, ``context_length`` and ``vocab_size``."""
    root = torch.nn.Module()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        mod = root
        for part in parents:
            if part not in mod._modules:
                mod.add_module(part, torch.nn.Module())
            mod = mod._modules[part]
        mod.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
    root.register_buffer("input_resolution", torch.tensor(224))
    root.register_buffer("context_length", torch.tensor(77))
    root.register_buffer("vocab_size", torch.tensor(49408))
    torch.jit.script(root).save(str(path))


@pytest.fixture(scope="module")
def golden_files(golden_clip, golden_dir, tmp_path_factory) -> dict[str, tuple[Path, str | None]]:
    """The golden tiny CLIP in every supported format: name -> (file, model.name or None)."""
    cfg_path = tmp_path_factory.mktemp("arch") / f"{GOLDEN_ARCH}.json"
    cfg_path.write_text(json.dumps(GOLDEN_CFG))
    open_clip.add_model_config(cfg_path)
    openai_file = golden_dir / "tiny_clip_openai_seed0.pt"
    openai_state = torch.load(openai_file, map_location="cpu", weights_only=True)
    out = tmp_path_factory.mktemp("formats")
    _save_torchscript(openai_state, out / "ViT-tiny.pt")
    oc_state = golden_clip.model.state_dict()
    torch.save(oc_state, out / "open_clip.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in oc_state.items()}}, out / "ddp_wrapped.bin")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in oc_state.items()}, str(out / "open_clip.safetensors"))
    return {
        "openai_state_dict": (openai_file, None),
        "openai_torchscript": (out / "ViT-tiny.pt", None),
        "torchscript_with_name": (out / "ViT-tiny.pt", GOLDEN_ARCH),
        "open_clip_pt": (out / "open_clip.pt", GOLDEN_ARCH),
        "open_clip_bin_wrapped": (out / "ddp_wrapped.bin", GOLDEN_ARCH),
        "open_clip_safetensors": (out / "open_clip.safetensors", GOLDEN_ARCH),
    }


def _predict(clip) -> np.ndarray:
    from cliptrase.method.runner import Predictor
    from cliptrase.protocols.paper import paper_dataset, paper_options

    g = torch.Generator().manual_seed(3)
    images = torch.randn(1, 3, 224, 224, generator=g)
    pred = Predictor(clip)
    ds = paper_dataset("VOC20")
    opts = paper_options(ds, 224)
    return pred(images, pred.text_classifier(ds.prompts), opts).pred.numpy()


FORMATS = [
    "openai_torchscript",
    "torchscript_with_name",
    "open_clip_pt",
    "open_clip_bin_wrapped",
    "open_clip_safetensors",
]


def test_torchscript_detection(golden_files):
    assert is_torchscript(golden_files["openai_torchscript"][0])
    assert not is_torchscript(golden_files["open_clip_pt"][0])
    state = read_state_dict(golden_files["openai_torchscript"][0])
    assert "input_resolution" not in state and "visual.proj" in state


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_the_same_predictions(golden_files, golden_clip, fmt):
    path, name = golden_files[fmt]
    clip = load_clip(name, weights=path)
    assert clip.activation == QUICK_GELU
    ref = golden_clip.model.state_dict()
    got = clip.model.state_dict()
    assert set(got) == set(ref)
    for key in ref:
        assert torch.equal(got[key], ref[key]), f"{fmt}: {key} differs"
    np.testing.assert_array_equal(_predict(clip), _predict(golden_clip))
    assert clip.describe()["weights_sha256"]


def test_open_clip_file_built_with_the_wrong_activation_differs(golden_files, golden_clip):
    """The check above can fail: GELU instead of QuickGELU changes the output of the same weights."""
    path, name = golden_files["open_clip_pt"]
    clip = load_clip(name, weights=path, quick_gelu=False)
    assert clip.activation == GELU
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert not torch.allclose(clip.model.encode_image(x), golden_clip.model.encode_image(x))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not a checkpoint at all", "not a readable checkpoint"),
        ("list", "holds a list, not a CLIP state dict"),
        ("partial", "missing keys"),
    ],
)
def test_unreadable_or_wrong_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "weights.pt"
    if content == "list":
        torch.save([1, 2], path)
    elif content == "partial":
        torch.save({"visual.conv1.weight": torch.zeros(1)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises((CheckpointError, ValueError), match=match) as err:
        load_clip(weights=path)
    assert str(path) in str(err.value)


def test_damaged_safetensors_and_wrong_architecture(tmp_path, golden_files):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match=str(bad)):
        read_state_dict(bad)
    path, _ = golden_files["open_clip_pt"]
    with pytest.raises(CheckpointError, match=r"could not be loaded into open_clip model 'ViT-B-16'"):
        load_clip("ViT-B-16", weights=path)


# --------------------------------------------------------------------------- cliptrase models


def test_resolve_specs():
    assert [s.slug for s in resolve_specs(["vit_b16_openai", "ViT-B-32:openai"])] == [
        "vit_b16_openai",
        "ViT-B-32:openai",
    ]
    assert spec_for("ViT-B-32", "openai").activation == QUICK_GELU
    with pytest.raises(ValueError, match="unknown model"):
        resolve_specs(["nope"])
    with pytest.raises(ValueError, match="no pretrained tag"):
        resolve_specs(["random_vit_b16"])
    assert all(s.tag for s in resolve_specs([], all_shipped=True))


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cliptrase", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_models_list_and_fetch_offline_as_subprocess(tmp_path, vit_b16_checkpoint):
    source = hub.tag_source("ViT-B-16", "openai")
    link_into_cache(tmp_path, source, vit_b16_checkpoint)
    res = _cli("models", "list", "--cache-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = {ln.split()[3]: ln for ln in res.stderr.splitlines() if "vit_" in ln or "metaclip" in ln}
    assert "cached:" in lines["vit_b16_openai"] and "QuickGELU" in lines["vit_b16_openai"]
    assert "not cached" in lines["vit_l14_openai"]
    ok = _cli("models", "fetch", "vit_b16_openai", "--cache-dir", str(tmp_path), env={"HF_HUB_OFFLINE": "1"})
    assert ok.returncode == 0, ok.stderr
    start = time.monotonic()
    offline = {"HF_HUB_OFFLINE": "1"}
    miss = _cli("models", "fetch", "vit_l14_openai", "--cache-dir", str(tmp_path), env=offline)
    assert time.monotonic() - start < 60
    assert miss.returncode != 0
    assert "Traceback" not in miss.stderr
    assert "cliptrase models fetch ViT-L-14:openai" in miss.stderr
