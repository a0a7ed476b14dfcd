"""ResCLIP (method/resclip.py) piece by piece on hand-made tensors, its configs and preset, batching.

What the released code computes is in docs/methods.md "ResCLIP"; the end-to-end check against the release's
own harness is tests/golden/test_peer_resclip.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.config import compose_eval

from cliptrase.config import validate
from cliptrase.method.interface import MethodContext
from cliptrase.method.resclip import (
    ResCLIP,
    ResCLIPOptions,
    blur_rows,
    connected_pairs,
    explicit_block,
    gaussian_window,
    neighbourhood_term,
    patch_labels,
    rcs_map,
    resclip_attention,
    sfr_matrix,
)
from cliptrase.method.zoo import build_method
from cliptrase.models.attention import neighbourhood_bias
from cliptrase.models.dense import DenseEncoder

# -- patch labels --------------------------------------------------------------------------------------------


def _one_hot_probs(pred: torch.Tensor, n: int, top: float = 0.9) -> torch.Tensor:
    """(1, n, H, W) probabilities with ``top`` on ``pred`` and the rest spread evenly."""
    probs = torch.full((1, n, *pred.shape), (1 - top) / (n - 1))
    probs.scatter_(1, pred[None, None], top)
    return probs


def test_patch_labels_mode_per_block_smallest_on_ties():
    pred = torch.tensor(
        [
            [3, 1, 2, 2],
            [1, 3, 2, 0],
            [4, 4, 1, 1],
            [4, 0, 0, 1],
        ]
    )
    labels = patch_labels(_one_hot_probs(pred, 5), patch=2, grid_hw=(2, 2), temp_thd=0.5)
    # top-left block {3, 1, 1, 3}: a tie, torch.mode takes the smallest; top-right {2, 2, 2, 0}: 2
    assert labels.tolist() == [[[1, 2], [4, 1]]]


def test_patch_labels_low_confidence_is_prompt_zero_and_rest_dropped():
    pred = torch.full((5, 5), 3)
    probs = _one_hot_probs(pred, 4, top=0.4)
    probs[0, :, 2:4, 2:4] = _one_hot_probs(torch.full((2, 2), 2), 4, top=0.9)[0]
    # 0.4 < temp_thd: every pixel but the 2x2 square becomes prompt 0; the 5th row/col are beyond the grid
    labels = patch_labels(probs, patch=2, grid_hw=(2, 2), temp_thd=0.5)
    assert labels.tolist() == [[[0, 0], [0, 2]]]


# -- check_path and the SFR matrix ---------------------------------------------------------------------------


def test_check_path_samples_only_steps_over_global_max_of_the_segment():
    """1 x 9 grid, a different label at column 4 between equal ones. Pair (0, 5): steps 5, but M = 8, so the
    samples are round(5k/8), k = 0..5 = 0, 1, 1, 2, 2, 3: column 4 is never visited and the pair counts as
    connected (the release's quirk); pair (0, 8), at distance M, is checked along the whole segment."""
    labels = torch.tensor([[0, 0, 0, 0, 1, 0, 0, 0, 0]])
    connected, steps, m = connected_pairs(labels)
    assert m == 8 and steps[0, 5] == 5 and steps[0, 8] == 8
    assert bool(connected[0, 5]) and not bool(connected[0, 8])
    assert not bool(connected[3, 5])  # steps 2: samples round(3 + 2k/8) = 3, 3, 4 -> hits the 1
    assert bool(connected[4, 4]) and bool(connected[0, 3])


def test_check_path_on_a_grid_uses_chebyshev_steps_and_half_to_even_rounding():
    labels = torch.zeros(3, 4, dtype=torch.long)
    labels[1, 1] = 7
    connected, steps, m = connected_pairs(labels)
    assert m == 3  # max(h, w) - 1
    i, j = 0, 2 * 4 + 2  # (0, 0) -> (2, 2): steps 2, t = k/3: (0.67, 0.67) -> (1, 1), the 7
    assert steps[i, j] == 2 and not bool(connected[i, j])
    i, j = 0, 1 * 4 + 3  # (0, 0) -> (1, 3): steps 3 = M: samples (0,0), (0.33,1), (0.67,2), (1,3)
    assert bool(connected[i, j])


def _brute_sfr(labels: torch.Tensor, std: float, delete_same_entity: bool) -> torch.Tensor:
    h, w = labels.shape
    n = h * w
    flat = labels.reshape(-1)
    mask = torch.zeros(n, n)
    for i in range(n):
        for j in range(n):
            mask[i, j] = float(flat[i] == flat[j])
    if delete_same_entity:
        connected, steps, m = connected_pairs(labels)
        for i in range(n):
            for j in range(n):
                if not connected[i, j]:
                    mask[i, j] = mask[i, j] * math.exp(-int(steps[i, j]) / m)
    size = min(n, int(6 * std + 1))
    size += 1 - size % 2
    g = torch.tensor([math.exp(-((t - size // 2) ** 2) / (2 * std**2)) for t in range(size)])
    g = g / g.sum()
    blurred = torch.zeros(n, n)
    for i in range(n):
        for j in range(n):
            for t in range(size):
                src = j + t - size // 2
                if 0 <= src < n:
                    blurred[i, j] += g[t] * mask[i, src]
    out = torch.zeros(n + 1, n + 1)
    out[1:, 1:] = blurred / (blurred.sum(1, keepdim=True) + 1e-8)
    return out


@pytest.mark.parametrize("delete_same_entity", [True, False])
def test_sfr_matrix_against_a_brute_force_of_its_definition(delete_same_entity):
    labels = torch.tensor([[0, 0, 2, 2, 0], [1, 0, 2, 0, 0], [1, 1, 0, 0, 2]])
    out = sfr_matrix(labels, 1.5, delete_same_entity)
    assert out.shape == (16, 16)
    assert torch.equal(out[0], torch.zeros(16)) and torch.equal(out[:, 0], torch.zeros(16))
    torch.testing.assert_close(out, _brute_sfr(labels, 1.5, delete_same_entity), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out[1:, 1:].sum(1), torch.ones(15))


def test_blur_is_1d_over_the_flattened_index_with_an_odd_kernel():
    """N = 20 patches, σ = 5: int(6σ + 1) = 31 > N -> 20 taps -> 21 (odd); zero padding, so a one at the
    end of one grid row spreads into the start of the next row (flattened index)."""
    row = torch.zeros(1, 20)
    row[0, 4] = 1.0
    out = blur_rows(row, 5.0)
    x = torch.arange(21) - 10
    g = torch.exp(-(x**2) / 50.0)
    g = g / g.sum()
    expected = torch.zeros(20)
    for j in range(20):
        if 0 <= j - 4 + 10 < 21:
            expected[j] = g[j - 4 + 10]
    torch.testing.assert_close(out[0], expected)
    assert out[0, 14] > 0 and out[0, 15] == 0  # 21 taps reach 10 to each side


# -- attention -----------------------------------------------------------------------------------------------


def test_neighbourhood_term_equals_the_one_hot_convolution_bit_for_bit():
    """Ω as the release builds it (a 'same' convolution of one-hot grid maps with the float32 window) —
    equal bit for bit; the float64 closed form of the NACLIP rule agrees to float32 rounding only."""
    h, w = 3, 5
    window = gaussian_window((2 * h - 1, 2 * w - 1), 5.0)
    onehot = torch.eye(h * w).view(h * w, 1, h, w)
    conv = F.conv2d(onehot, window[None, None], padding="same").view(h * w, h * w)
    omega = neighbourhood_term((h, w), 5.0, torch.device("cpu"))
    assert torch.equal(omega[1:, 1:], conv)
    assert omega[0].abs().sum() == 0 and omega[:, 0].abs().sum() == 0
    torch.testing.assert_close(omega, neighbourhood_bias((h, w), 5.0, torch.device("cpu"), torch.float32))


def _qkv(b: int = 2, heads: int = 2, hw: tuple[int, int] = (3, 4), d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = 1 + hw[0] * hw[1]
    return [torch.randn(b, heads, n, d, generator=g) for _ in range(3)]


@pytest.mark.parametrize("attention", ["naclip", "sclip", "clearclip", "vanilla"])
def test_attention_formula_of_each_base_rule(attention):
    q, k, v = _qkv()
    grid = (3, 4)
    s = 8**-0.5
    g = torch.Generator().manual_seed(1)
    rcs = torch.softmax(torch.randn(2, 2, 13, 13, generator=g), -1)
    sfr = torch.rand(2, 1, 13, 13, generator=g)
    tau_s, lam_s, tau_r, lam_r = 2.2, 0.7, 2.0, 0.3
    s16 = (sfr / sfr.amax(dim=(-2, -1), keepdim=True)).half()

    def mix_s(a):
        return tau_s * ((1 - lam_s) * a + lam_s * s16)

    omega = neighbourhood_term(grid, 5.0, torch.device("cpu"))
    if attention == "naclip":
        a = torch.softmax(mix_s(torch.matmul(k, k.transpose(-1, -2)) * s) + omega, -1)
    elif attention == "sclip":
        a = torch.softmax(mix_s(torch.matmul(q, q.transpose(-1, -2)) * s), -1) + torch.softmax(
            mix_s(torch.matmul(k, k.transpose(-1, -2)) * s), -1
        )
    elif attention == "clearclip":
        a = torch.softmax(mix_s(torch.matmul(q, q.transpose(-1, -2)) * s), -1)
    else:
        a = torch.softmax(mix_s(torch.matmul(q * s, k.transpose(-1, -2))), -1)
    expected = (tau_r * ((1 - lam_r) * a + lam_r * rcs)) @ v
    out = resclip_attention(
        q,
        k,
        v,
        attention=attention,
        grid_hw=grid,
        gaussian_std=5.0,
        rcs=rcs,
        rcs_weights=(tau_r, lam_r),
        sfr=sfr,
        sfr_weights=(tau_s, lam_s),
    )
    assert torch.equal(out, expected)


def test_sfr_is_cast_to_float16_inside_the_attention():
    """S / max(S) goes through float16 (and λ·S16 is computed in float16) even in an fp32 run: values that
    float16 cannot hold change the result."""
    q, k, v = _qkv(b=1)
    sfr = torch.full((1, 1, 13, 13), 1 / 3)
    sfr[..., 0, 0] = 1.0
    kwargs = dict(attention="vanilla", grid_hw=(3, 4), gaussian_std=5.0, rcs=None, rcs_weights=(2.0, 0.3))
    out = resclip_attention(q, k, v, sfr=sfr, sfr_weights=(2.2, 0.7), **kwargs)
    logits = torch.matmul(q * 8**-0.5, k.transpose(-1, -2))
    s16 = sfr.half()
    assert (0.7 * s16).dtype == torch.float16
    assert torch.equal(out, torch.softmax(2.2 * (0.3 * logits + 0.7 * s16), -1) @ v)
    fp32 = torch.softmax(2.2 * (0.3 * logits + 0.7 * sfr), -1) @ v
    assert not torch.equal(out, fp32)


def test_rcs_is_the_plain_mean_of_the_maps():
    maps = [torch.full((1, 2, 3, 3), float(i)) for i in (1, 2, 3, 6)]
    assert torch.equal(rcs_map(maps), torch.full((1, 2, 3, 3), 3.0))


def test_explicit_block_matches_open_clips_block(tiny_clip):
    block = tiny_clip.model.visual.transformer.resblocks[0]
    x = torch.randn(2, 17, block.attn.embed_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, attn = explicit_block(block, x)
        torch.testing.assert_close(out, block(x))
    assert attn.shape == (2, block.attn.num_heads, 17, 17)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, block.attn.num_heads, 17))


# -- options, configs, preset --------------------------------------------------------------------------------


def test_options_reject_what_the_release_rejects():
    with pytest.raises(ValueError, match="w_resi"):
        ResCLIPOptions(attention="sclip", arch="wo_resi")
    with pytest.raises(ValueError, match="attention"):
        ResCLIPOptions(attention="resclip")
    with pytest.raises(ValueError, match="gaussian_std"):
        ResCLIPOptions(gaussian_std=0)


def test_rcs_blocks_count_from_the_input_as_released():
    method = ResCLIP.from_fields()
    assert method.rcs_indices(12) == [5, 6, 7, 8]
    assert method.rcs_indices(24) == [5, 6, 7, 8]  # the release's hard-coded range(5, 9) on ViT-L/14
    relative = ResCLIP.from_fields(params={"rcs_blocks": [-7, -6, -5, -4]})
    assert relative.rcs_indices(12) == [5, 6, 7, 8] and relative.rcs_indices(24) == [17, 18, 19, 20]
    with pytest.raises(ValueError, match=r"rcs block 5 is not one of blocks 0\.\.2"):
        method.rcs_indices(4)


# yvhangyang/ResCLIP@0e085f7 configs/cfg_<dataset>.py: temp_thd, attn_rcs_weights, attn_sfr_weights
CFG_VALUES = {
    "voc21": (0.50, (2.0, 0.3), (2.2, 0.7)),  # cfg_voc21.py:8-11
    "context60": (0.30, (2.0, 0.3), (1.8, 0.7)),  # cfg_context60.py:7-10
    "coco_object": (0.11, (2.0, 0.4), (1.8, 0.7)),  # cfg_coco_object.py:7-10
    "voc20": (0.10, (2.0, 0.6), (2.1, 0.6)),  # cfg_voc20.py:7-10
    "context59": (0.25, (2.0, 0.4), (1.8, 0.7)),  # cfg_context59.py:6-9
    "coco_stuff171": (0.11, (2.0, 0.4), (1.8, 0.7)),  # cfg_coco_stuff164k.py:6-9
    "cityscapes": (0.10, (2.0, 0.2), (2.1, 0.6)),  # cfg_city_scapes.py:6-9
    "ade150": (0.25, (2.0, 0.3), (2.1, 0.7)),  # cfg_ade20k.py:6-9
}


@pytest.mark.parametrize("dataset", sorted(CFG_VALUES))
def test_config_knobs_per_dataset_are_the_released_ones(dataset):
    groups = validate(compose_eval(["method=resclip", "protocol=resclip", f"dataset={dataset}"]))
    method = build_method(groups["method"], dataset)
    o = method.options
    assert (o.temp_thd, o.attn_rcs_weights, o.attn_sfr_weights) == CFG_VALUES[dataset]
    assert (o.attention, o.arch, o.gaussian_std, o.rcs_blocks) == ("naclip", "wo_resi", 5.0, (5, 6, 7, 8))
    assert (o.delete_same_entity, o.sfr_logit_scale, o.sfr_pamr_steps, o.sfr_pamr_dilations) == (
        True,
        40.0,
        10,
        (8, 16),
    )


@pytest.mark.parametrize(
    ("name", "attention", "arch"),
    [("resclip_sclip", "sclip", "w_resi"), ("resclip_clearclip", "clearclip", "wo_resi")],
)
def test_variant_configs(name, attention, arch):
    groups = validate(compose_eval([f"method={name}", "protocol=resclip", "dataset=voc21"]))
    o = build_method(groups["method"], "voc21").options
    assert (o.attention, o.arch, o.temp_thd) == (attention, arch, 0.50)


def test_generic_last_block_fields_are_refused():
    with pytest.raises(ValueError, match=r"method\.attention"):
        validate(compose_eval(["method=resclip", "method.attention=naclip", "dataset=voc21"]))


# -- the method end to end: batching -------------------------------------------------------------------------


def test_batched_windows_equal_one_window_at_a_time(golden_clip):
    """Windows are batched; the release is batch-1. Each window's tokens must be those of a batch of one,
    bit for bit (per-window SFR matrix and its maximum)."""
    tower = DenseEncoder(golden_clip.model.visual)
    method = ResCLIP.from_fields(params={"temp_thd": 0.0, "sfr_pamr_steps": 2})
    g = torch.Generator().manual_seed(0)
    window = torch.randn(3, 3, 70, 90, generator=g)  # grid 4 x 5, the last rows / columns dropped
    text = F.normalize(torch.randn(6, golden_clip.model.visual.output_dim, generator=g), dim=-1)

    def encode(win):
        ctx = MethodContext(images=win[..., :64, :80], text=text, logit_scale=100.0, window=win)
        with torch.no_grad():
            return method.encode(tower, ctx).tokens

    batched = encode(window)
    assert batched.shape[:2] == (3, 21)
    for i in range(3):
        assert torch.equal(batched[i], encode(window[i : i + 1])[0])
