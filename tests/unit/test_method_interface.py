"""The method interface: the tower computes what a method requests, once; methods built from configs;
errors named."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from helpers.config import compose_eval

from cliptrase.config import validate
from cliptrase.errors import ConfigError
from cliptrase.method.interface import METHODS, DenseMethod, LastBlockRule, MethodContext
from cliptrase.method.runner import Predictor
from cliptrase.method.trase import CLIPTRASE_LAST_BLOCK, CLIPtrase
from cliptrase.method.zoo import build_method, method_class
from cliptrase.models.dense import DenseEncoder, DenseFeatures, LastBlockSpec, TowerRequest


@pytest.fixture
def encoder(tiny_clip) -> DenseEncoder:
    return DenseEncoder(tiny_clip.model.visual)


def _reference_stream(encoder: DenseEncoder, images: torch.Tensor) -> list[torch.Tensor]:
    """Every block's output computed one open_clip block at a time (the oracle of the taps)."""
    x, _ = encoder.embed(images)
    outs = []
    for block in encoder.visual.transformer.resblocks:
        x = encoder._run_trunk_block(block, x)
        outs.append(x)
    return outs


@torch.no_grad()
def test_run_returns_the_requested_hidden_states_and_the_stream(encoder, images):
    outs = _reference_stream(encoder, images)
    state = encoder.run(images, TowerRequest(hidden=(-4, -2), stop=-1))
    assert set(state.hidden) == {-4, -2} and state.stop == -1
    assert torch.equal(state.hidden[-4], outs[0]) and torch.equal(state.hidden[-2], outs[2])
    assert torch.equal(state.x, outs[-2])  # the stream entering the last block
    early = encoder.run(images, TowerRequest(stop=-3))
    assert torch.equal(early.x, outs[0])


@torch.no_grad()
def test_qkv_taps_equal_the_blocks_own_projection(encoder, images):
    from cliptrase.models.dense import project_qkv

    outs = _reference_stream(encoder, images)
    state = encoder.run(images, TowerRequest(qkv=(-3,), hidden=(-3,)))
    block = encoder.block(-3)
    q, k, v = project_qkv(block.attn, block.ln_1(outs[0]))
    for got, want in zip(state.qkv[-3], (q, k, v)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(state.hidden[-3], outs[1], rtol=1e-5, atol=1e-5)  # vanilla rule via SDPA


def test_requests_are_checked():
    with pytest.raises(ValueError, match="relative to depth"):
        TowerRequest(hidden=(3,))
    with pytest.raises(ValueError, match=r"at or after stop=-2"):
        TowerRequest(qkv=(-2,), stop=-2)
    assert TowerRequest(hidden=(-3, -5, -3)).hidden == (-5, -3)


@torch.no_grad()
def test_a_depth_outside_the_tower_is_refused(encoder, images):
    with pytest.raises(ValueError, match="outside a 4-block tower"):
        encoder.run(images, TowerRequest(hidden=(-9,)))


@torch.no_grad()
def test_last_block_methods_equal_the_encoder_call(tiny_clip, images):
    encoder = DenseEncoder(tiny_clip.model.visual)
    for spec in (LastBlockSpec(), LastBlockSpec("clearclip", False, False), CLIPTRASE_LAST_BLOCK):
        method = LastBlockRule.from_fields(spec)
        ctx = MethodContext(images=images, text=None, logit_scale=100.0)
        got = method.encode(encoder, ctx)
        want = encoder(images, spec)
        assert torch.equal(got.tokens, want.tokens)


@torch.no_grad()
def test_cliptrase_requests_its_correlation_block(tiny_clip, images):
    encoder = DenseEncoder(tiny_clip.model.visual)
    method = CLIPtrase.from_fields(correlation_block=-3)
    assert method.request(encoder.depth) == TowerRequest(qkv=(-3,))
    feats = method.encode(encoder, MethodContext(images=images, text=None, logit_scale=100.0))
    want = encoder(images, CLIPTRASE_LAST_BLOCK, collect=(-3,))
    assert torch.equal(feats.tokens, want.tokens) and set(feats.qkv) == {-3}
    assert all(torch.equal(a, b) for a, b in zip(feats.qkv[-3], want.qkv[-3]))
    assert CLIPtrase.from_fields(cluster=False).request(encoder.depth) == TowerRequest()


@dataclass(frozen=True)
class _ScaleOptions:
    factor: float = 1.0


class _Scaled(DenseMethod):
    """Test method: the stream of block -2 run through the last block twice (an extra pass)."""

    Options = _ScaleOptions

    def request(self, depth):
        return TowerRequest(hidden=(-2,))

    def features(self, tower, state, ctx):
        assert ctx.text is not None and ctx.text.shape[0] == 3  # the classifier reaches the method
        x, _ = tower.run_block(-1, state.hidden[-2], self.last_block, state.grid_hw)
        x, _ = tower.run_block(-1, x * self.options.factor, self.last_block, state.grid_hw)
        return DenseFeatures(tokens=tower.head(x), grid_hw=state.grid_hw)


@torch.no_grad()
def test_a_method_with_extra_passes_and_knobs_runs_in_the_predictor(tiny_clip, images):
    method = _Scaled.from_fields(params={"factor": 0.5})
    assert method.options.factor == 0.5
    pred = Predictor(tiny_clip, method=method)
    text = pred.text_classifier(["cat", "dog", "sky"])
    out = pred(images, text, SimpleNamespace(n_foreground=None, cls_product=False))
    assert out.pred.shape == (2, 64, 96) and out.logits.shape == (2, 3, 64, 96)
    x, grid = pred.encoder.embed(images)
    x = pred.encoder._run_trunk(x, 3)  # blocks 0..2: the output of block -2 of 4
    x, _ = pred.encoder.run_block(-1, x, LastBlockSpec(), grid)
    x, _ = pred.encoder.run_block(-1, x * 0.5, LastBlockSpec(), grid)
    assert torch.equal(pred.encode(images, text).tokens, pred.encoder.head(x))


def test_unknown_params_and_types_are_named():
    with pytest.raises(ValueError, match=r"method.params.fctor is not a knob of method type _Scaled"):
        _Scaled.from_fields(params={"fctor": 2})
    with pytest.raises(KeyError, match=r"unknown method type 'Nope'; valid: .*CLIPtrase.*LastBlockRule"):
        method_class("Nope")
    with pytest.raises(ImportError, match="cannot import 'no_such_pkg'"):
        method_class("no_such_pkg.Thing")
    with pytest.raises(TypeError, match="not a DenseMethod subclass"):
        method_class("torch.nn.Linear")
    assert method_class(f"{__name__}._Scaled") is _Scaled
    assert set(METHODS.names()) >= {"CLIPtrase", "LastBlockRule"}


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["method=clip", "method.type=Nope"], r"method.type: unknown method type 'Nope'"),
        (["method=clip", "+method.params.x=1"], r"method.params.x is not a knob of method type LastBlock"),
        (["method=clip", "method.cluster=true"], r"method.cluster=true needs method.type=CLIPtrase"),
    ],
)
def test_config_errors_at_compose_time(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(compose_eval([*overrides, "paths.results_dir=/unused"]))


@pytest.mark.parametrize(
    "name", ["clip", "maskclip", "sclip", "clearclip", "naclip", "naclip_ffn", "cliptrase"]
)
def test_every_shipped_method_config_builds_its_class(name):
    groups = validate(compose_eval([f"method={name}", "paths.results_dir=/unused"]))
    method = build_method(groups["method"])
    assert isinstance(method, CLIPtrase if name == "cliptrase" else LastBlockRule)
    assert method.last_block.attention == groups["method"].attention


def test_per_dataset_knobs_replace_the_general_ones():
    params = {"factor": 2.0, "by_dataset": {"voc21": {"factor": 0.5}}}
    assert _Scaled.from_fields(params=params, dataset="voc21").options.factor == 0.5
    assert _Scaled.from_fields(params=params, dataset="ade150").options.factor == 2.0
    assert _Scaled.from_fields(params=params).options.factor == 2.0
    with pytest.raises(ValueError, match=r"method.params.by_dataset.ade150.fctor is not a knob"):
        _Scaled.from_fields(params={"by_dataset": {"ade150": {"fctor": 1}}}, dataset="voc21")
