"""CLIPtrase's mean vote computed on the patch grid: the interpolation matrices, the region means against the
full-size path, and the full-size logits left unformed where nobody reads them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.references import apply_cls_product, region_means

import cliptrase.method.labels as labels_module
from cliptrase.inference.window_scores import RegionScores
from cliptrase.method.labels import Deferred, grid_logits, patch_logits
from cliptrase.method.runner import Predictor
from cliptrase.method.trase import CLIPtraseOptions, cliptrase_segment
from cliptrase.method.vote import grid_region_means, interpolation_matrix
from cliptrase.models.dense import DenseFeatures


def _features(rng, batch: int, grid: tuple[int, int], dim: int = 16) -> DenseFeatures:
    n = grid[0] * grid[1]
    tokens = F.normalize(torch.from_numpy(rng.standard_normal((batch, 1 + n, dim))).float(), dim=-1)
    return DenseFeatures(tokens=tokens, grid_hw=grid, qkv={})


@pytest.mark.parametrize(
    ("grid", "out_hw"), [((14, 14), (224, 224)), ((3, 5), (37, 61)), ((7, 4), (7, 4)), ((9, 6), (5, 4))]
)
def test_interpolation_matrices_reproduce_interpolate(grid, out_hw, rng):
    g = torch.from_numpy(rng.standard_normal((2, 5, *grid))).float()
    wy = interpolation_matrix(grid[0], out_hw[0], g.dtype, g.device)
    wx = interpolation_matrix(grid[1], out_hw[1], g.dtype, g.device)
    assert wy.shape == (out_hw[0], grid[0]) and wx.shape == (out_hw[1], grid[1])
    ref = F.interpolate(g, size=out_hw, mode="bilinear", align_corners=False)
    torch.testing.assert_close(wy @ g @ wx.t(), ref)
    torch.testing.assert_close(wy.sum(1), torch.ones(out_hw[0]))  # each output row is a convex combination


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("grid", "out_hw"), [((14, 14), (224, 224)), ((4, 6), (50, 75)), ((5, 3), (33, 20))])
@pytest.mark.parametrize("k", [1, 4, 17])
@pytest.mark.parametrize("cls_product", [False, True])
@pytest.mark.parametrize("compiled", [False, True], ids=["torch", "compiled"])
def test_grid_region_means_equal_the_full_size_means(batch, grid, out_hw, k, cls_product, compiled, rng):
    """Both engines (one-hot matrix products; the compiled float64 weight sums) against the means of the
    full-size logits, with empty regions (their means 0)."""
    feats = _features(rng, batch, grid)
    text = F.normalize(torch.from_numpy(rng.standard_normal((11, 16))).float(), dim=-1)
    regions = torch.from_numpy(rng.integers(0, k, (batch, *out_hw)))
    if k > 2:  # empty regions: ids 1 and k-1 nowhere in image 0, id 0 nowhere in the last image
        regions[0][(regions[0] == 1) | (regions[0] == k - 1)] = 2
        regions[-1][regions[-1] == 0] = 2
    full = patch_logits(feats, text, 100.0, out_hw)
    grid_l = grid_logits(feats, text, 100.0)
    if cls_product:
        full = apply_cls_product(full, feats, text, 100.0)
        grid_l = grid_l * (100.0 * feats.cls @ text.t())[:, :, None, None]
    ref = region_means(full, regions, k)
    ours = grid_region_means(grid_l, regions, k, compiled=compiled)
    assert ours.shape == (batch, k, 11)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-3)  # logits ~100 (~1e4 with the product)
    if k > 2:
        assert (ours[0, 1] == 0).all() and (ours[0, k - 1] == 0).all() and (ours[-1, 0] == 0).all()


def _mean_vote_opts(**kw) -> CLIPtraseOptions:
    return CLIPtraseOptions(eps=kw.pop("eps", 0.5), min_samples=3, vote="mean_logits", **kw)


@pytest.mark.parametrize("cls_product", [False, True])
def test_mean_vote_leaves_the_full_size_logits_unformed(cls_product, golden_clip):
    pred = Predictor(golden_clip)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    x[1] = x[1, :, :1, :1]  # a flat image: clustered
    text = pred.text_classifier(["sky", "tree", "car", "road"])
    feats = pred.encode(x)
    out = cliptrase_segment(
        feats, text, pred.logit_scale, (224, 224), _mean_vote_opts(cls_product=cls_product)
    )
    assert out.region_logits is not None and bool(out.clustered.any())
    raw = out.stored("raw_logits")
    assert isinstance(raw, Deferred) and not raw.computed  # the means came from the grid
    ref = region_means(out.raw_logits, out.regions, out.region_logits.shape[1])
    assert raw.computed
    torch.testing.assert_close(out.region_logits, ref, rtol=1e-5, atol=1e-3)
    # the maps and labels read from the means (the raw ones where an image has no cluster)
    spread = torch.gather(ref, 1, out.regions.reshape(2, -1, 1).expand(-1, -1, 4))
    spread = spread.reshape(2, 224, 224, 4).permute(0, 3, 1, 2)
    dense = torch.where(out.clustered[:, None, None, None], spread, out.raw_logits)
    torch.testing.assert_close(out.logits, dense, rtol=1e-5, atol=1e-3)
    assert torch.equal(out.pred, out.logits.argmax(1))


def _segmentor():
    """CLIPtrase on the golden tiny CLIP, standard protocol, eps 0.5 (noise: no cluster; flat: clusters)."""
    pytest.importorskip("mmseg")
    from helpers.config import compose_eval
    from helpers.golden import golden_weights

    from cliptrase.config import validate
    from cliptrase.engine.segmentor import CLIPtraseSegmentor

    protocol = validate(compose_eval(["protocol=standard", "dataset=voc21", "paths.results_dir=/unused"]))
    names = ["sky", "tree", "car", "road", "person", "grass"]
    return CLIPtraseSegmentor(
        model={"name": None, "pretrained": None, "weights": str(golden_weights())},
        method={"name": "cliptrase", "type": "CLIPtrase", "cluster": True, "eps": 0.5, "min_samples": 3},
        protocol=protocol["protocol"],
        prompts=names,
        prompt_to_class=list(range(len(names))),
        n_classes=len(names),
        dataset_name="ade150",
        device="cpu",
    )


def test_window_outputs_upsample_only_batches_with_an_unclustered_window(monkeypatch):
    """Standard protocol (vote=mean_logits): the full-size logits of a batch are formed only when one of its
    windows has no cluster (its raw maps are its scores); clustered windows are their region rows."""
    seg = _segmentor()
    assert seg.options.vote == "mean_logits"
    calls = []

    def counted(grid, out_hw):
        calls.append(grid.shape[0])
        return F.interpolate(grid, size=out_hw, mode="bilinear", align_corners=False)

    monkeypatch.setattr(labels_module, "upsample_logits", counted)
    gen = torch.Generator().manual_seed(0)
    flat = torch.linspace(-1, 1, 224).view(1, 1, 224).expand(3, 224, 224)
    noise = torch.randn(3, 224, 224, generator=gen)
    outs = seg.window_outputs(torch.stack([flat, flat.flip(-1)]))
    assert all(isinstance(o, RegionScores) for o in outs)
    assert calls == []  # every window clustered: no full-size logits
    outs = seg.window_outputs(torch.stack([noise, flat]))
    assert [isinstance(o, RegionScores) for o in outs] == [False, True]
    assert calls == [2]  # once, for the batch with an unclustered window
    ref = seg.predictor.segment(seg.predictor.encode(noise[None]), seg.text, seg.options, (224, 224))
    assert torch.equal(outs[0], ref.logits[0] / seg.predictor.logit_scale)


def test_majority_vote_unchanged_by_the_grid_path(golden_clip):
    """The paper protocol's majority vote still reads the full-size logits, computed as before."""
    pred = Predictor(golden_clip)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    text = pred.text_classifier(["sky", "tree", "car"])
    feats = pred.encode(x)
    opts = dataclasses.replace(_mean_vote_opts(), vote="majority")
    out = cliptrase_segment(feats, text, pred.logit_scale, (224, 224), opts)
    assert not isinstance(out.stored("logits"), Deferred)
    assert torch.equal(out.logits, patch_logits(feats, text, pred.logit_scale, (224, 224)))
    assert np.array_equal(out.raw_pred.numpy(), out.logits.argmax(1).numpy())
