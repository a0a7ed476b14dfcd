"""Baseline attention rules (MaskCLIP, SCLIP, ClearCLIP, NACLIP) against references written here.

The references below share no code with ``cliptrase.models.attention``: q/k/v are split by hand from
``F.linear`` with the block's ``in_proj``, every head's attention matrix is built with explicit matrix
products and an explicit softmax, and NACLIP's Ω with a double loop over grid positions
(docs/protocols.md §2).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor

from cliptrase.config import MethodConfig
from cliptrase.models.attention import ATTENTION, neighbourhood_bias
from cliptrase.models.clip import RANDOM, load_clip
from cliptrase.models.dense import DenseEncoder, LastBlockSpec

METHOD_DIR = Path(__file__).resolve().parents[2] / "configs" / "method"

BASELINES = ("maskclip", "sclip", "clearclip", "naclip")

PINNED = {
    # method yaml: (attention, keep_residual, keep_ffn, attention_params) as docs/protocols.md §2 gives them
    "maskclip": ("maskclip", False, False, {}),
    "sclip": ("sclip", True, True, {}),
    "clearclip": ("clearclip", False, False, {}),
    "naclip": ("naclip", False, False, {"gaussian_std": 5.0}),
    "naclip_ffn": ("naclip", True, True, {"gaussian_std": 5.0}),
}

TWO_HEAD_ARCH = "cliptrase-test-ViT-2head"
TWO_HEAD_CFG = {
    "embed_dim": 24,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def two_head_clip(tmp_path_factory):
    """A random 2-block, 2-head ViT/16 registered through open_clip's ``add_model_config``."""
    path = tmp_path_factory.mktemp("arch2") / f"{TWO_HEAD_ARCH}.json"
    path.write_text(json.dumps(TWO_HEAD_CFG))
    open_clip.add_model_config(path)
    torch.manual_seed(3)
    return load_clip(TWO_HEAD_ARCH, RANDOM)


# ----------------------------------------------------------------------------------------------------------
# reference implementation (matrix form)


def ref_softmax(logits: Tensor) -> Tensor:
    """Row-wise softmax written out."""
    e = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def ref_omega(h: int, w: int, sigma: float) -> Tensor:
    """NACLIP Ω by a double loop over grid positions; [CLS] row and column zero."""
    n = h * w
    omega = torch.zeros(1 + n, 1 + n, dtype=torch.float64)
    for i in range(n):
        ri, ci = divmod(i, w)
        for j in range(n):
            rj, cj = divmod(j, w)
            omega[1 + i, 1 + j] = math.exp(-((ri - rj) ** 2 + (ci - cj) ** 2) / (2 * sigma**2))
    return omega


def ref_attention_matrix(rule: str, q: Tensor, k: Tensor, s: float, omega: Tensor | None) -> Tensor:
    """Per-head (B, L, L) attention matrix of each baseline, as docs/protocols.md §2 writes it."""
    n = q.shape[1]
    if rule == "maskclip":
        return torch.eye(n, dtype=q.dtype).expand(q.shape[0], n, n)
    if rule == "sclip":
        return ref_softmax(s * q @ q.transpose(1, 2)) + ref_softmax(s * k @ k.transpose(1, 2))
    if rule == "clearclip":
        return ref_softmax(s * q @ q.transpose(1, 2))
    if rule == "naclip":
        return ref_softmax(s * k @ k.transpose(1, 2) + omega.to(q.dtype))
    raise AssertionError(rule)


def reference_tokens(
    visual, images: Tensor, rule: str, keep_residual: bool, keep_ffn: bool, sigma: float = 5.0
) -> Tensor:
    """Projected (un-normalised) tokens with the last block recomputed by the reference rule."""
    x, (h, w) = DenseEncoder(visual).embed(images)
    batch_first = getattr(visual.transformer, "batch_first", True)
    for blk in visual.transformer.resblocks[:-1]:
        x = blk(x) if batch_first else blk(x.transpose(0, 1)).transpose(0, 1)
    blk = visual.transformer.resblocks[-1]
    attn = blk.attn
    width = x.shape[-1]
    heads = attn.num_heads
    dh = width // heads
    qkv = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv[..., :width], qkv[..., width : 2 * width], qkv[..., 2 * width :]
    omega = ref_omega(h, w, sigma) if rule == "naclip" else None
    outs = []
    for head in range(heads):
        cols = slice(head * dh, (head + 1) * dh)
        a = ref_attention_matrix(rule, q[..., cols], k[..., cols], dh**-0.5, omega)
        outs.append(a @ v[..., cols])
    out = F.linear(torch.cat(outs, dim=-1), attn.out_proj.weight, attn.out_proj.bias)
    out = blk.ls_1(out)
    x = x + out if keep_residual else out
    if keep_ffn:
        x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    return visual.ln_post(x) @ visual.proj


# ----------------------------------------------------------------------------------------------------------
# whole last block vs. reference


@pytest.mark.parametrize("model", ["tiny_clip", "two_head_clip"])
@pytest.mark.parametrize(
    "keep", [(False, False), (True, True), (True, False)], ids=["drop", "keep", "residual_only"]
)
@pytest.mark.parametrize("rule", BASELINES)
def test_last_block_matches_reference(rule, keep, model, request, images):
    visual = request.getfixturevalue(model).model.visual
    keep_residual, keep_ffn = keep
    params = (("gaussian_std", 5.0),) if rule == "naclip" else ()
    spec = LastBlockSpec(attention=rule, keep_residual=keep_residual, keep_ffn=keep_ffn, params=params)
    with torch.no_grad():
        ours = DenseEncoder(visual)(images, spec, normalize=False).tokens  # grid 4x6: non-square
        ref = reference_tokens(visual, images, rule, keep_residual, keep_ffn)
    assert ours.shape == ref.shape == (2, 1 + 4 * 6, visual.proj.shape[1])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sigma", [0.7, 2.0])
def test_naclip_sigma_reaches_the_rule(sigma, two_head_clip, images):
    visual = two_head_clip.model.visual
    spec = LastBlockSpec(
        attention="naclip", keep_residual=False, keep_ffn=False, params=(("gaussian_std", sigma),)
    )
    with torch.no_grad():
        ours = DenseEncoder(visual)(images, spec, normalize=False).tokens
        ref = reference_tokens(visual, images, "naclip", False, False, sigma=sigma)
        default = DenseEncoder(visual)(
            images, LastBlockSpec(attention="naclip", keep_residual=False, keep_ffn=False), normalize=False
        ).tokens
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, default, atol=1e-4)


def test_neighbourhood_bias_matches_loop_and_is_cached():
    omega = neighbourhood_bias((3, 4), 1.5, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(omega, ref_omega(3, 4, 1.5).float(), atol=1e-7, rtol=0)
    assert neighbourhood_bias((3, 4), 1.5, torch.device("cpu"), torch.float32) is omega
    assert neighbourhood_bias((4, 3), 1.5, torch.device("cpu"), torch.float32).shape == (13, 13)
    with pytest.raises(ValueError, match="gaussian_std"):
        neighbourhood_bias((3, 4), 0.0, torch.device("cpu"), torch.float32)


def test_naclip_rejects_wrong_grid():
    q = torch.zeros(1, 2, 5, 4)
    with pytest.raises(ValueError, match="grid"):
        ATTENTION.get("naclip")(q, q, q, scale=0.5, grid_hw=(2, 3))


# ----------------------------------------------------------------------------------------------------------
# 2-head toy tensors, hand-computed

# (1, heads=2, L=3, head_dim=1): [CLS] + a 1x2 patch grid, so Ω's off-diagonal patch entry is
# exp(-1 / (2σ²)) = e⁻¹ with σ² = 1/2. Scale s = 0.5 (applied to qqᵀ / kkᵀ, never to Ω).
TOY_Q = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
TOY_K = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
TOY_V = torch.tensor([[3.0, 6.0, 9.0], [1.0, 0.0, -1.0]])
E = math.e


def wavg(logits: list[float], values: list[float]) -> float:
    """Σ exp(l_j) v_j / Σ exp(l_j): one row of softmax(logits) @ v."""
    weights = [math.exp(x) for x in logits]
    return sum(wt * v for wt, v in zip(weights, values)) / sum(weights)


V0, V1 = [3.0, 6.0, 9.0], [1.0, 0.0, -1.0]
TOY_EXPECTED = {
    "maskclip": [V0, V1],
    # head 0: 0.5·qqᵀ rows [.5, 0, -.5], [0, 0, 0], [-.5, 0, .5]; head 1: q = 0 -> uniform
    "clearclip": [
        [wavg([0.5, 0, -0.5], V0), 6.0, wavg([-0.5, 0, 0.5], V0)],
        [0.0, 0.0, 0.0],
    ],
    # plus the kk term: head 0 k = 0 -> uniform (mean 6); head 1 0.5·kkᵀ rows [0,0,0], [0,.5,1], [0,1,2]
    "sclip": [
        [wavg([0.5, 0, -0.5], V0) + 6.0, 12.0, wavg([-0.5, 0, 0.5], V0) + 6.0],
        [0.0, wavg([0, 0.5, 1], V1), wavg([0, 1, 2], V1)],
    ],
    # 0.5·kkᵀ + Ω with Ω rows [0,0,0], [0,1,e⁻¹], [0,e⁻¹,1]
    "naclip": [
        [6.0, wavg([0, 1, 1 / E], V0), wavg([0, 1 / E, 1], V0)],
        [0.0, wavg([0, 0.5 + 1, 1 + 1 / E], V1), wavg([0, 1 + 1 / E, 2 + 1], V1)],
    ],
}


@pytest.mark.parametrize("rule", BASELINES)
def test_toy_two_heads_hand_computed(rule):
    q, k, v = (t.reshape(1, 2, 3, 1).double() for t in (TOY_Q, TOY_K, TOY_V))
    params = {"gaussian_std": math.sqrt(0.5)} if rule == "naclip" else {}
    out = ATTENTION.get(rule)(q, k, v, scale=0.5, grid_hw=(1, 2), **params)
    expected = torch.tensor(TOY_EXPECTED[rule], dtype=torch.float64).reshape(1, 2, 3, 1)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# no side effects


def test_variants_leave_model_and_encode_image_unchanged(two_head_clip, images):
    model = two_head_clip.model
    x = images[:, :, :64, :64]
    before = {name: p.detach().clone() for name, p in model.state_dict().items()}
    with torch.no_grad():
        ref = model.encode_image(x)
        enc = DenseEncoder(model.visual)
        for name in ATTENTION.names():
            for keep in (True, False):
                params = (("gaussian_std", 2.0),) if name == "naclip" else ()
                spec = LastBlockSpec(attention=name, keep_residual=keep, keep_ffn=keep, params=params)
                enc(images, spec, collect=(-2,))
        after = model.encode_image(x)
    torch.testing.assert_close(after, ref, atol=0, rtol=0)
    for name, p in model.state_dict().items():
        assert torch.equal(p, before[name]), name
    assert not any("forward" in vars(m) for m in model.modules()), "a module's forward was reassigned"


# ----------------------------------------------------------------------------------------------------------
# configs <-> registry


def _compose_node(path: Path, seen: tuple[str, ...] = ()):
    """Merge a method yaml with its defaults list, in order, as Hydra does (``_self_`` last if absent).

    ``base_method`` is the schema (``MethodConfig``); any other entry is a sibling file of the method group.
    """
    if path.stem in seen:
        raise AssertionError(f"defaults cycle: {' -> '.join((*seen, path.stem))}")
    raw = OmegaConf.load(path)
    defaults = list(raw.pop("defaults", []))
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged, has_schema = None, False
    for entry in defaults:
        if entry == "base_method":
            node, has_schema = OmegaConf.structured(MethodConfig), True
        elif entry == "_self_":
            node = raw
        else:
            node, parent_schema = _compose_node(METHOD_DIR / f"{entry}.yaml", (*seen, path.stem))
            has_schema = has_schema or parent_schema
        merged = node if merged is None else OmegaConf.merge(merged, node)
    return merged, has_schema


def compose_method(path: Path) -> MethodConfig:
    """A method yaml composed through its defaults chain onto the ``base_method`` schema."""
    node, has_schema = _compose_node(path)
    assert has_schema, f"{path.name}: defaults chain never reaches base_method"
    return OmegaConf.to_object(node)


METHOD_FILES = sorted(METHOD_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", METHOD_FILES, ids=[p.stem for p in METHOD_FILES])
def test_method_yaml_attention_is_registered(path):
    method = compose_method(path)
    assert method.name == path.stem
    assert method.attention in ATTENTION.names(), f"{path.name}: unknown rule {method.attention!r}"


def test_every_rule_has_a_method_yaml():
    used = {compose_method(p).attention for p in METHOD_FILES}
    missing = set(ATTENTION.names()) - {"vanilla", "cliptrase"} - used
    assert not missing, f"rules without a configs/method/*.yaml: {sorted(missing)}"


@pytest.mark.parametrize("stem", sorted(PINNED))
def test_baseline_yaml_pins_protocol_values(stem):
    method = compose_method(METHOD_DIR / f"{stem}.yaml")
    attention, keep_residual, keep_ffn, params = PINNED[stem]
    assert (method.attention, method.keep_residual, method.keep_ffn) == (attention, keep_residual, keep_ffn)
    assert dict(method.attention_params) == params
    assert method.cluster is False
