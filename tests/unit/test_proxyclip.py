"""ProxyCLIP's pieces on hand-made inputs: the proxy attention (OC transformer.py:560-587), the VFM input
(UnNormalize + Normalize), DINO's positional rule against its formula (and against timm's, which differs),
the DINO-format checkpoint loader and the VFM cache. The end-to-end reference:
tests/golden/test_proxyclip_reference.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.proxyclip_data import TINY_DINO, tiny_dino_state

from cliptrase.method.proxyclip import ProxyCLIP, proxy_affinity, proxy_attention, vfm_input
from cliptrase.models import hub, vfm
from cliptrase.models.checkpoints import CheckpointError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _grid(vectors: list[list[float]], h: int, w: int) -> torch.Tensor:
    """(1, C, h, w) features from h*w row-major C-vectors."""
    return torch.tensor(vectors, dtype=torch.float64).t().reshape(1, -1, h, w)


# --------------------------------------------------------------------------- proxy attention


def test_affinity_on_hand_made_features():
    # cosines: [[1, 0, r], [0, 1, r], [r, r, 1]] with r = 1/sqrt(2); mean = (3 + 4r) / 9
    r = 1 / math.sqrt(2)
    feats = _grid([[1, 0], [0, 1], [1, 1]], 1, 3)
    got = proxy_affinity(feats, beta=1.0, gamma=3.0)[0].numpy()
    shift = (3 + 4 * r) / 9
    hi, lo = math.exp(3 * (1 - shift)), math.exp(3 * (r - shift))  # 0 - shift < 0: masked
    want = np.array(
        [[hi / (hi + lo), 0, lo / (hi + lo)], [0, hi / (hi + lo), lo / (hi + lo)],
         [lo / (2 * lo + hi), lo / (2 * lo + hi), hi / (2 * lo + hi)]]
    )  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got[0], [0.706549, 0.0, 0.293451], atol=1e-6)  # pinned numbers


def test_affinity_defaults_are_the_released_ones():
    feats = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    f = F.normalize(feats.flatten(2), dim=1)[0]
    s = f.t() @ f
    s = (s - 1.2 * s.mean()) * 3.0
    want = torch.softmax(s.masked_fill(s < 0, float("-inf")), dim=-1)
    torch.testing.assert_close(proxy_affinity(feats)[0], want, rtol=1e-12, atol=0)


def test_mask_is_strictly_negative_and_needs_no_sqrt_d():
    # beta 0: S itself; orthogonal keys have cosine exactly 0 and are KEPT (weight e^0), opposite ones masked
    kept = proxy_affinity(_grid([[1, 0], [0, 1]], 1, 2), beta=0.0, gamma=1.0)[0]
    e = math.e
    torch.testing.assert_close(kept[0], torch.tensor([e / (e + 1), 1 / (e + 1)], dtype=torch.float64))
    masked = proxy_affinity(_grid([[1, 0], [-1, 0]], 1, 2), beta=0.0, gamma=1.0)[0]
    torch.testing.assert_close(masked, torch.eye(2, dtype=torch.float64))


def test_one_mean_per_window_so_a_batch_equals_its_windows():
    torch.manual_seed(0)
    feats = torch.randn(3, 6, 4, 5)
    feats[1] += 0.6  # a window with a much larger mean cosine (below 1 / beta: not degenerate)
    v = torch.randn(3, 2, 6, 4)  # CLIP grid 2 x 3, 2 heads, head dim 4
    f = F.normalize(feats.flatten(2), dim=1)
    means = torch.einsum("bcm,bcn->bmn", f, f).mean(dim=(1, 2))
    assert means[1] > means[0] + 0.2 and means.max() < 1 / 1.2
    batched = proxy_attention(v, (2, 3), feats)
    assert not batched.isnan().any()
    for i in range(3):
        single = proxy_attention(v[i : i + 1], (2, 3), feats[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], single, rtol=0, atol=1e-6)


def test_a_window_whose_mean_cosine_reaches_one_over_beta_is_all_masked_as_released():
    # OC:573-574: every entry <= 0 -> every row -inf -> NaN (the released code behaves the same)
    feats = torch.ones(1, 4, 2, 2) + 0.01 * torch.randn(1, 4, 2, 2)
    assert proxy_affinity(feats).isnan().all()


def test_every_head_uses_the_same_weights_over_its_resized_values():
    torch.manual_seed(1)
    feats = torch.randn(1, 5, 4, 4, dtype=torch.float64)
    v = torch.randn(1, 3, 4, 2, dtype=torch.float64)  # 3 heads, CLIP grid 2 x 2, head dim 2
    out = proxy_attention(v, (2, 2), feats)
    attn = proxy_affinity(feats)[0]
    for h in range(3):
        grid = v[0, h].t().reshape(1, 2, 2, 2)
        up = F.interpolate(grid, size=(4, 4), mode="bilinear", align_corners=False)[0].reshape(2, 16).t()
        torch.testing.assert_close(out[0, :, 2 * h : 2 * h + 2], attn @ up, rtol=1e-12, atol=1e-12)


def test_constant_values_pass_unchanged_and_output_is_on_the_vfm_grid():
    feats = torch.randn(2, 4, 6, 6)
    v = torch.full((2, 2, 9, 3), 0.25)
    out = proxy_attention(v, (3, 3), feats)
    assert out.shape == (2, 36, 6)
    torch.testing.assert_close(out, torch.full_like(out, 0.25))


def test_vfm_input_undoes_clip_and_applies_the_vfm_normalisation():
    pixels = torch.randint(0, 256, (2, 3, 5, 7)).float() / 255
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    images = (pixels - mean) / std
    got = vfm_input(images, CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD)
    # the released arithmetic: per channel x * s + m (Python floats), then (x - M) / S (float32 tensors)
    for c in range(3):
        raw = images[:, c] * CLIP_STD[c] + CLIP_MEAN[c]
        want = (raw - torch.tensor(IMAGENET_MEAN)[c]) / torch.tensor(IMAGENET_STD)[c]
        assert torch.equal(got[:, c], want)
    inet = (pixels - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(got, inet, rtol=0, atol=2e-6)


def test_config_checks_happen_before_any_model_loads():
    from types import SimpleNamespace

    base = {"name": "proxyclip", "cluster": False, "cls_product": False}
    with pytest.raises(Exception, match="dino_vitb8"):
        ProxyCLIP.check_config(SimpleNamespace(**base, params={"vfm": "dino_vitb9"}))
    with pytest.raises(ValueError, match="vfm_depthh"):
        ProxyCLIP.check_config(SimpleNamespace(**base, params={"vfm_depthh": 4}))
    with pytest.raises(ValueError, match="cls_product"):
        ProxyCLIP.check_config(SimpleNamespace(**{**base, "cls_product": True}, params={}))
    ProxyCLIP.check_config(SimpleNamespace(**base, params={"vfm": "dino_vits16", "beta": 1.0}))


# --------------------------------------------------------------------------- DINO positional rule


def test_dino_positional_rule_is_the_scale_factor_formula_not_timms():
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    table = torch.randn(1 + 28 * 28, 16)
    for grid in [(42, 42), (42, 56), (21, 21)]:
        got = vfm.dino_pos_embed(table, grid)
        patch = table[1:].reshape(1, 28, 28, 16).permute(0, 3, 1, 2)
        scale = ((grid[0] + 0.1) / math.sqrt(784), (grid[1] + 0.1) / math.sqrt(784))  # DINO :184-190
        want = F.interpolate(patch, scale_factor=scale, mode="bicubic").permute(0, 2, 3, 1).reshape(-1, 16)
        assert torch.equal(got[0], table[0]) and torch.equal(got[1:], want)
        timm_table = resample_abs_pos_embed(table[None], new_size=list(grid), num_prefix_tokens=1)[0]
        assert (timm_table - got).abs().max() > 1e-2  # timm resizes by size, antialiased: other numbers
    assert vfm.dino_pos_embed(table, (28, 28)) is table  # the stored grid: the table as is


# --------------------------------------------------------------------------- DINO checkpoints


def _tiny(tmp_path, state=None, name="tiny.pth"):
    path = tmp_path / name
    torch.save(tiny_dino_state() if state is None else state, path)
    return path


def _arch(**extra):
    return {**{k: v for k, v in TINY_DINO.items()}, **extra}


def test_dino_format_checkpoint_loads_with_the_configured_architecture(tmp_path):
    state = tiny_dino_state()
    model = vfm.build_dino("dino_vitb8", weights=_tiny(tmp_path, state), **_arch())
    assert model.patch_size == (8, 8) and model.embed_dim == 96 and len(model.vit.blocks) == 4
    assert model.mean == IMAGENET_MEAN and model.std == IMAGENET_STD
    loaded = model.vit.state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    assert not model.training
    # DDP / DINO-training prefixes are removed as DINO's utils.load_pretrained_weights does
    prefixed = _tiny(tmp_path, {f"module.{k}": v for k, v in state.items()}, "prefixed.pth")
    vfm.build_dino("dino_vitb8", weights=prefixed, **_arch())


def test_a_checkpoint_of_another_architecture_is_one_clear_error(tmp_path):
    path = _tiny(tmp_path)
    with pytest.raises(CheckpointError, match="vfm_embed_dim") as err:
        vfm.build_dino("dino_vitb8", weights=path)  # ViT-B/8 sizes, tiny file
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError):
        vfm.build_dino("dino_vitb8", weights=path, **_arch(depth=3))


def test_checkpoints_are_read_without_running_pickles(tmp_path):
    import collections

    path = tmp_path / "evil.pth"
    torch.save({"pos_embed": torch.zeros(1), "meta": collections.Counter()}, path)
    with pytest.raises(CheckpointError):
        vfm.build_dino("dino_vitb8", weights=path, **_arch())


def test_dino_vit_output_is_timms_last_norm_patch_map_at_the_trained_size(tmp_path):
    model = vfm.build_dino("dino_vitb8", weights=_tiny(tmp_path), **_arch())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = model(x)
        theirs = model.vit.forward_features(x)  # timm's forward: same table at the trained size
    assert ours.shape == (2, 96, 28, 28)
    want = theirs[:, 1:].transpose(1, 2).reshape(2, 96, 28, 28)
    torch.testing.assert_close(ours, want, rtol=0, atol=1e-4)  # attention arithmetic differs in the last bits


def test_windows_of_other_sizes_take_dinos_table(tmp_path):
    model = vfm.build_dino("dino_vitb8", weights=_tiny(tmp_path), **_arch())
    x = torch.randn(1, 3, 336, 448)
    tokens, grid = model.embed(x)
    assert grid == (42, 56)
    patch = model.vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
    table = vfm.dino_pos_embed(model.vit.pos_embed[0], (42, 56))
    torch.testing.assert_close(tokens[0, 1:], patch[0] + table[1:], rtol=0, atol=0)
    assert model(x).shape == (1, 96, 42, 56)


# --------------------------------------------------------------------------- published weights and cache


def test_named_models_are_dinos_published_checkpoints():
    assert set(vfm.VFMS) == {"dino_vits16", "dino_vits8", "dino_vitb16", "dino_vitb8"}
    assert vfm.weights_url("dino_vitb8").endswith("/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth")
    assert vfm.VFMS["dino_vits8"].arch == vfm.VitArch(8, 384, num_heads=6)
    with pytest.raises(KeyError, match="dino_vitb8"):
        vfm.vfm_spec("dinov2_vitb14")


def test_a_cached_checkpoint_is_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "reachable", lambda *a, **k: pytest.fail("no connection for a cached file"))
    target = vfm.cached_file("dino_vitb8", tmp_path)
    assert target == tmp_path / "dino_vitbase8_pretrain.pth"
    torch.save(tiny_dino_state(), target)
    assert vfm.fetch("dino_vitb8", tmp_path) == target
    model = vfm.build_dino("dino_vitb8", cache_dir=tmp_path, **_arch())
    assert model.embed_dim == 96


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable"])
def test_an_offline_miss_is_one_line_naming_the_fetch_command(tmp_path, monkeypatch, how):
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(hub, "reachable", lambda *a, **k: pytest.fail("offline: no connection"))
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(hub, "reachable", lambda *a, **k: False)
    with pytest.raises(hub.WeightsUnavailableError) as err:
        vfm.build_dino("dino_vitb8", cache_dir=tmp_path)
    msg = str(err.value)
    assert f"cliptrase models fetch dino_vitb8 --cache-dir {tmp_path}" in msg and "\n" not in msg
    assert "method.params.vfm_weights" in msg
