"""SC-CLIP (``method=scclip``) against written-out references of the released code (SuleBai/SC-CLIP@0417ba9,
docs/methods.md "SC-CLIP"): the LOF variant (brute force; scikit-learn where the definitions agree), the
neighbour fill at borders, corners and next to other outliers, the aggregation, the attention, the order of
the multi-level sum, batched windows equal to windows alone, the block indices on 12 and 24 blocks, the VOC21
post-processing, and label maps of the released harness on seeded scenes."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers.golden import golden_weights

from cliptrase.inference.scoring import scores_to_labels
from cliptrase.method.interface import MethodContext
from cliptrase.method.scclip import (
    SCCLIP,
    aggregate,
    lof_outliers,
    lof_scores,
    mid_attention,
    multi_level_sum,
    neighbour_fill,
    scclip_attention,
    threshold_similarity,
)
from cliptrase.models.dense import DenseEncoder

PEERS = Path(__file__).resolve().parents[1] / "golden" / "peers"


# -- LOF ---------------------------------------------------------------------------------------------------
def _lof_brute(points: np.ndarray, k: int) -> np.ndarray:
    """Their formula in float64, loop by loop: squared distances, the k nearest others, reach = max(d,
    k_dist(p)) with p's own k-distance, lrd = k / mean reach, LOF = mean of lrd(o) / lrd(p)."""
    n = len(points)
    d = ((points[:, None] - points[None]) ** 2).sum(-1)
    knn = [sorted((j for j in range(n) if j != i), key=lambda j: d[i, j])[:k] for i in range(n)]
    k_dist = np.array([d[i, knn[i][-1]] for i in range(n)])
    lrd = np.array([k / np.mean([max(d[i, j], k_dist[i]) for j in knn[i]]) for i in range(n)])
    return np.array([np.mean([lrd[j] / lrd[i] for j in knn[i]]) for i in range(n)])


def _tokens(b: int, n: int, c: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, c, generator=g)


def test_lof_scores_match_the_brute_force_formula():
    tokens = _tokens(2, 64, 8)
    scores = lof_scores(tokens, 10)
    for window in range(2):
        want = _lof_brute(tokens[window].double().numpy(), 10)
        np.testing.assert_allclose(scores[window].numpy(), want, rtol=2e-5)


def test_lof_outliers_are_the_strict_quantile_top():
    tokens = _tokens(1, 196, 16, seed=3)
    mask, scores = lof_outliers(tokens, 30, 0.05)
    threshold = torch.quantile(scores[0], 0.95)
    assert torch.equal(mask[0], scores[0] > threshold)
    assert int(mask.sum()) == 10  # 196 distinct scores: position 185.25 of 195, so the 10 highest
    assert set(torch.where(mask[0])[0].tolist()) == set(scores[0].topk(10).indices.tolist())


def test_no_outlier_leaves_the_tokens_unchanged():
    """A window without outliers (all LOF scores equal: the released code fails on the empty index tensor
    there) is left as it is."""
    tokens = _tokens(2, 16, 3)
    assert torch.equal(neighbour_fill(tokens, torch.zeros(2, 16, dtype=torch.bool), (4, 4)), tokens)


def test_lof_agrees_with_scikit_learn_on_neighbours_and_k_distance_but_not_on_the_score():
    """scikit-learn's LocalOutlierFactor (metric sqeuclidean) finds the same neighbours and k-distances; its
    reachability uses the neighbour's k-distance, SC-CLIP's the point's own, so the scores differ."""
    neighbors = pytest.importorskip("sklearn.neighbors")
    points = _tokens(1, 80, 6, seed=5)[0].double()
    k = 12
    sk = neighbors.LocalOutlierFactor(n_neighbors=k, metric="sqeuclidean", algorithm="brute").fit(
        points.numpy()
    )
    d = torch.norm(points[:, None] - points[None], dim=2) ** 2
    knn_d = torch.topk(d, k + 1, largest=False).values[:, 1:]
    np.testing.assert_allclose(sk._distances_fit_X_, knn_d.numpy(), rtol=1e-9, atol=1e-9)
    ours = lof_scores(points[None].float(), k)[0].double()
    k_dist = knn_d[:, -1]
    knn_i = torch.topk(d, k + 1, largest=False).indices[:, 1:]
    np.testing.assert_allclose(ours.numpy(), (k_dist[:, None] / k_dist[knn_i]).mean(1).numpy(), rtol=1e-5)
    assert not np.allclose(-sk.negative_outlier_factor_, ours.numpy(), rtol=1e-3)


def test_lof_needs_more_tokens_than_neighbours():
    with pytest.raises(ValueError, match="more than 30 tokens"):
        lof_scores(_tokens(1, 30, 4), 30)


def test_lof_distances_in_chunks_equal_one_chunk():
    tokens = _tokens(5, 49, 8, seed=7)
    assert torch.equal(lof_scores(tokens, 6, chunk_elements=49 * 49 * 8 * 2), lof_scores(tokens, 6))


# -- neighbour fill ----------------------------------------------------------------------------------------
def _fill_brute(tokens: torch.Tensor, outliers: torch.Tensor, h: int, w: int) -> torch.Tensor:
    out = tokens.clone()
    for i in torch.where(outliers)[0].tolist():
        r, c = divmod(i, w)
        valid = [
            (r + dr) * w + (c + dc)
            for dr in (-1, 0, 1)
            for dc in (-1, 0, 1)
            if (dr or dc) and 0 <= r + dr < h and 0 <= c + dc < w and not outliers[(r + dr) * w + (c + dc)]
        ]
        if valid:
            out[i] = tokens[valid].double().mean(0).float()
    return out


@pytest.mark.parametrize("hw", [(5, 5), (4, 6), (6, 3)])
def test_neighbour_fill_borders_corners_and_adjacent_outliers(hw):
    h, w = hw
    tokens = _tokens(1, h * w, 3, seed=11)
    outliers = torch.zeros(1, h * w, dtype=torch.bool)
    for r, c in [(0, 0), (0, 1), (h - 1, w - 1), (h // 2, 0), (1, w - 1), (h - 1, 1)]:
        outliers[0, r * w + c] = True  # corners, borders, and (0,0)-(0,1) side by side
    filled = neighbour_fill(tokens, outliers, (h, w))
    torch.testing.assert_close(filled[0], _fill_brute(tokens[0], outliers[0], h, w), rtol=1e-6, atol=1e-6)
    assert torch.equal(filled[~outliers], tokens[~outliers])  # the others exactly unchanged
    # corner (0, 0): neighbours (0, 1) [an outlier], (1, 0), (1, 1) -> mean of the two valid ones
    torch.testing.assert_close(filled[0, 0], (tokens[0, w] + tokens[0, w + 1]) / 2)


def test_neighbour_fill_keeps_an_outlier_without_valid_neighbours_and_is_simultaneous():
    tokens = _tokens(1, 9, 2, seed=13)
    outliers = torch.ones(1, 9, dtype=torch.bool)
    outliers[0, 8] = False  # only (2, 2) is valid: (0, 0) has no valid neighbour
    filled = neighbour_fill(tokens, outliers, (3, 3))
    assert torch.equal(filled[0, 0], tokens[0, 0])
    for i in (4, 5, 7):  # neighbours of (2, 2): all read the original value of token 8, not a filled one
        assert torch.equal(filled[0, i], tokens[0, 8])


def test_neighbour_fill_maps_tokens_row_major_on_non_square_grids():
    """Token i sits at (i // w, i % w). (The released code uses i // h, i % h: wrong on non-square grids.)"""
    h, w = 2, 5
    tokens = torch.arange(10.0).reshape(1, 10, 1)
    outliers = torch.zeros(1, 10, dtype=torch.bool)
    outliers[0, 4] = True  # row 0, column 4: neighbours 3, 8, 9
    assert neighbour_fill(tokens, outliers, (h, w))[0, 4, 0] == pytest.approx((3 + 8 + 9) / 3)


# -- similarity, aggregation, attention, fusion ----------------------------------------------------------
def test_aggregate_is_the_row_normalised_product():
    s = threshold_similarity(torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(2)), 0.4)
    x = _tokens(2, 7, 3)
    want = torch.stack([(s[b] / (s[b].sum(-1, keepdim=True) + 1e-6)) @ x[b] for b in range(2)])
    torch.testing.assert_close(aggregate(x, s), want)
    assert (s[s != 0] >= 0.4).all()


def test_mid_attention_centres_on_each_windows_own_mean():
    g = torch.Generator().manual_seed(1)
    f = torch.nn.functional.normalize(torch.randn(3, 6, 4, generator=g), dim=-1)
    s = f @ f.transpose(1, 2)  # a cosine matrix: the diagonal (1) is above the mean, so no row is all -inf
    s[1] = s[1] * 0.5 + 0.4  # a different mean per window
    got = mid_attention(s, 3.0)
    for b in range(3):
        m = (s[b] - s[b].mean()) * 3.0
        m[m < 0] = -math.inf
        assert torch.equal(got[b, 0], torch.softmax(m, -1))


def _attention_brute(block, x, s, scale=3.0):
    """Per head, per window: k, v from in_proj(ln_1(x)); A = (softmax(M) + softmax(k kᵀ / sqrt(d))) / 2."""
    attn = block.attn
    heads = attn.num_heads
    outs = []
    for b in range(x.shape[0]):
        y = block.ln_1(x[b])
        _, k, v = torch.nn.functional.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1)
        m = (s[b] - s[b].mean()) * scale
        m[m < 0] = -math.inf
        d = k.shape[-1] // heads
        cols = []
        for h in range(heads):
            kh, vh = k[:, h * d : (h + 1) * d], v[:, h * d : (h + 1) * d]
            a = (torch.softmax(m, -1) + torch.softmax(kh @ kh.T * d**-0.5, -1)) / 2
            cols.append(a @ vh)
        outs.append(attn.out_proj(torch.cat(cols, -1)))
    return torch.stack(outs)


class _Block(torch.nn.Module):
    def __init__(self, width=16, heads=4):
        super().__init__()
        torch.manual_seed(0)
        self.ln_1 = torch.nn.LayerNorm(width)
        self.attn = torch.nn.MultiheadAttention(width, heads)


def test_attention_is_the_mean_of_the_two_softmaxes_without_residual():
    block = _Block().eval()
    x = _tokens(2, 9, 16, seed=17)
    f = torch.nn.functional.normalize(_tokens(2, 9, 5, seed=19), dim=-1)
    s = f @ f.transpose(1, 2)
    with torch.no_grad():
        got = scclip_attention(block, x, mid_attention(s, 3.0))
        torch.testing.assert_close(got, _attention_brute(block, x, s), rtol=1e-5, atol=1e-6)


def test_multi_level_sum_adds_in_block_order():
    """Float addition is not associative: the released 0 + X3 + X4 + ... order is kept."""
    big, one = torch.full((1, 1, 1), 1e8), torch.ones(1, 1, 1)
    assert multi_level_sum([big, one, -big]).item() == 0.0  # (1e8 + 1) rounds to 1e8 in float32
    assert multi_level_sum([big, -big, one]).item() == 1.0


# -- the method on a tower ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tower():
    from cliptrase.models.clip import load_clip

    clip = load_clip(None, None, weights=golden_weights(), device=torch.device("cpu"))
    return DenseEncoder(clip.model.visual, pos_offset=0.1)


def test_request_follows_the_released_absolute_indices():
    method = SCCLIP.from_fields()
    assert method.request(12).hidden == tuple(sorted({8 - 12, *(i - 12 for i in range(3, 10))}))
    assert method.request(24).hidden == tuple(sorted({8 - 24, *(i - 24 for i in range(3, 10))}))  # not scaled
    vit_l = SCCLIP.from_fields(
        params=dict(pre_adjust_idx=16, post_adjust_idx=6, multi_start_idx=8, multi_end_idx=19, res_cls=0.1)
    )
    assert vit_l.request(24).hidden == tuple(i - 24 for i in range(6, 19) if i in {6, 16, *range(8, 19)})
    with pytest.raises(ValueError, match="not before the last block"):
        vit_l.request(12)


def test_params_are_checked():
    with pytest.raises(ValueError, match="not a knob"):
        SCCLIP.from_fields(params={"pre_adjust": 8})
    with pytest.raises(ValueError, match="cls_product"):
        SCCLIP.check_config(SimpleNamespace(params={}, cls_product=True, cluster=False))


def test_batched_windows_equal_windows_alone(tower):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 224, 224, generator=g)
    method = SCCLIP.from_fields()
    with torch.no_grad():
        together = method.encode(tower, MethodContext(images=images, text=None, logit_scale=100.0)).tokens
        for i in range(3):
            alone = method.encode(
                tower, MethodContext(images=images[i : i + 1], text=None, logit_scale=100.0)
            )
            assert torch.equal(together[i, 1:], alone.tokens[0, 1:]), i


# -- post-processing: SC-CLIP's postprocess_result (scclip_segmentor.py:154-176) ---------------------------
def _scclip_postprocess(scores, query_idx, logit_scale, prob_thd, area_thd):
    probs = (scores * logit_scale).softmax(0)
    n_cls = int(query_idx.max()) + 1
    onehot = torch.nn.functional.one_hot(query_idx, n_cls).T.view(n_cls, -1, 1, 1)
    class_probs = (probs[None] * onehot).max(1)[0]
    if area_thd is not None:
        area = torch.nn.functional.one_hot(class_probs.argmax(0), n_cls).to(class_probs.dtype)[:, :, 1:]
        area = area.sum((0, 1), keepdim=True)
        class_probs[1:] *= (area > area_thd * area.sum()).to(class_probs.dtype).transpose(0, -1)
    pred = class_probs.argmax(0)
    pred[class_probs.max(0)[0] < prob_thd] = 0
    return pred


@pytest.mark.parametrize("seed", range(4))
def test_voc21_post_processing_equals_scclips_rule(seed):
    """logit scale 50, area_thd 0.1 (against the foreground-predicted area, strict >), then prob_thd 0.15."""
    g = torch.Generator().manual_seed(seed)
    query_idx = torch.tensor([0, 0, 0, 1, 2, 2, 3, 4])
    base = torch.rand(8, 1, 1, generator=g) * 0.1 + 0.2
    scores = base + 0.05 * torch.randn(8, 24, 24, generator=g).cumsum(1).cumsum(2) / 24
    want = _scclip_postprocess(scores, query_idx, 50.0, 0.15, 0.1)
    got = scores_to_labels(scores, query_idx, 5, 50.0, prob_thd=0.15, area_thd=0.1)
    assert torch.equal(got, want)


# -- the released harness ----------------------------------------------------------------------------------
def _run_scclip(data_root: Path, dataset: str, stems: list[str], image_dir: Path, overrides=()):
    mmcv = pytest.importorskip("mmcv")
    from helpers.config import compose_eval
    from mmseg.structures import SegDataSample
    from omegaconf import OmegaConf

    import cliptrase.engine.segmentor  # noqa: F401  (registers the segmentor)
    from cliptrase.config import validate
    from cliptrase.protocols.prompts import job_prompts
    from cliptrase.registry import MODELS

    cfg = compose_eval(
        [
            "method=scclip",
            "protocol=scclip",
            f"dataset={dataset}",
            "model=weights_file",
            f"model.weights={golden_weights()}",
            "device=cpu",
            f"paths.data_root={data_root}",
            "paths.results_dir=/unused",
            *overrides,
        ]
    )
    groups = validate(cfg)
    prompts = job_prompts(groups["dataset"], groups["protocol"])
    segmentor = MODELS.build(
        dict(
            type="CLIPtraseSegmentor",
            model=OmegaConf.to_container(cfg.model),
            method=groups["method"],
            protocol=groups["protocol"],
            prompts=prompts.prompts,
            prompt_to_class=prompts.prompt_to_class,
            n_classes=prompts.n_classes,
            dataset_name=groups["dataset"].name,
            device="cpu",
        )
    ).eval()
    short = groups["protocol"].for_dataset(dataset).short_side
    outliers: list[np.ndarray] = []
    real = segmentor.method.features

    def recording(tower, state, ctx):  # the method's own outlier masks, recorded per window
        opts = segmentor.method.options
        mask, _ = lof_outliers(state.x[:, 1:], opts.lof_neighbors, opts.lof_contamination)
        outliers.extend(torch.where(m)[0].numpy() for m in mask)
        return real(tower, state, ctx)

    segmentor.method.features = recording  # an instance attribute of this test's object only
    labels, windows = {}, {}
    for stem in stems:
        image = mmcv.imread(str(image_dir / f"{stem}.jpg"))  # BGR, as mmseg's LoadImageFromFile
        ori = image.shape[:2]
        image = mmcv.imrescale(image, (2048, short), interpolation="bilinear")  # mmcv Resize, keep_ratio
        sample = SegDataSample(metainfo=dict(ori_shape=ori, img_shape=image.shape[:2]))
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        data = segmentor.data_preprocessor({"inputs": [tensor], "data_samples": [sample]})
        outliers.clear()
        (out,) = segmentor.predict(data["inputs"], data["data_samples"])
        labels[stem] = out.pred_sem_seg.data[0].numpy()
        windows[stem] = list(outliers)
    return labels, windows


@pytest.mark.slow  # 50-90 s each on 2 CPU cores
@pytest.mark.parametrize(
    "case, dataset, overrides",
    [
        ("voc21", "voc21", []),
        ("voc21_nothd", "voc21", ["protocol.area_thd_by_dataset={}", "protocol.prob_thd_by_dataset={}"]),
        ("ade150", "ade150", []),
    ],
)
def test_label_maps_equal_the_released_harness(tmp_path, case, dataset, overrides):
    """tests/golden/peers/scclip_tiny.npz: label maps and per-window LOF outliers of SC-CLIP's own harness
    (eval.py / SCCLIPForSegmentation, CPU fp32, the golden tiny CLIP) on the scenes of helpers/scenes.py."""
    from helpers.scenes import ADE_SCENES, VOC_SCENES, write_ade_scenes, write_voc_scenes

    if dataset == "voc21":
        folder, scenes = write_voc_scenes(tmp_path) / "JPEGImages", VOC_SCENES
    else:
        folder, scenes = write_ade_scenes(tmp_path) / "images" / "validation", ADE_SCENES
    stems = [s for s, _, _ in scenes]
    labels, windows = _run_scclip(tmp_path, dataset, stems, folder, overrides)
    ref = np.load(PEERS / "scclip_tiny.npz")
    for stem in stems:
        want = ref[f"{case}/{stem}/labels"]
        equal = float((labels[stem] == want).mean())
        assert equal == 1.0, f"{stem}: {100 * equal:.3f} % of pixels equal"
        n_windows = len([k for k in ref.files if k.startswith(f"{case}/{stem}/outliers/")])
        assert len(windows[stem]) == n_windows
        for i, got in enumerate(windows[stem]):
            assert np.array_equal(got, ref[f"{case}/{stem}/outliers/{i}"]), (stem, i)
