"""Each CLIPtrase step against a direct reference (scipy, loops, the formulas of docs/method.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.references import apply_cls_product, mean_logits_vote
from scipy import ndimage

from cliptrase.method import vote
from cliptrase.method.correlation import qkv_cosine_correlation
from cliptrase.method.denoise import subtract_cls_row
from cliptrase.method.labels import collapse_background, patch_logits
from cliptrase.method.runner import Predictor
from cliptrase.method.trase import CLIPtraseOptions, cliptrase_segment
from cliptrase.method.vote import (
    cluster_soft_masks,
    first_argmax,
    majority_vote,
    median_filter2d,
    region_map,
)
from cliptrase.models.attention import cliptrase_attention, vanilla_attention


def _scipy_median(x: np.ndarray, size: int) -> np.ndarray:
    return np.stack([ndimage.median_filter(m, size=size) for m in x.reshape(-1, *x.shape[-2:])]).reshape(
        x.shape
    )


ENGINES = pytest.mark.parametrize("compiled", [False, True], ids=["torch", "compiled"])


@ENGINES
@pytest.mark.parametrize("shape", [(56, 56), (84, 84), (3, 3), (1, 5), (13, 40), (2, 7, 9), (17, 56)])
@pytest.mark.parametrize("size", [1, 3, 7, 9])
def test_median_filter_equals_scipy(shape, size, compiled, rng):
    """Heights below, at and past whole tiles of the compiled engine (vote.MEDIAN_TILE_ROWS = 8)."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[..., 0, :2] = x[..., -1, -1]  # ties
    ours = median_filter2d(torch.from_numpy(x), size, compiled=compiled).numpy()
    np.testing.assert_array_equal(ours, _scipy_median(x, size))


@ENGINES
@pytest.mark.parametrize("size", [3, 5, 7, 9, 11, 15, 17])
@pytest.mark.parametrize("levels", [2, 4])
def test_median_filter_equals_scipy_with_many_ties(size, levels, compiled, rng):
    """Maps of 2 or 4 distinct values: every window is full of ties (with 0/1 maps this is the 0-1
    principle's test of a min/max network). 17 is past MEDIAN_NETWORK_MAX_SIZE (the gather path)."""
    x = rng.integers(0, levels, (4, 23, 31)).astype(np.float32)
    x[1] = x[1] > 0.5 * levels - 1  # mostly ones
    ours = median_filter2d(torch.from_numpy(x), size, compiled=compiled).numpy()
    np.testing.assert_array_equal(ours, _scipy_median(x, size))


@ENGINES
def test_median_filter_windows_with_nan_give_nan(compiled, rng):
    """A window holding a NaN gives NaN (as ``Tensor.median`` does); the others are scipy's medians."""
    x = rng.standard_normal((3, 40, 37)).astype(np.float32)
    x[0, 5, 9] = x[0, 30, 0] = x[2, 39, 36] = np.nan
    x[1, :, 20:] = np.nan  # a half-empty map
    has_nan = np.stack([ndimage.maximum_filter(np.isnan(m), size=7, mode="reflect") for m in x])
    ref = np.where(has_nan, np.nan, _scipy_median(np.nan_to_num(x), 7))
    ours = median_filter2d(torch.from_numpy(x), 7, compiled=compiled).numpy()
    np.testing.assert_array_equal(ours, ref)
    assert np.isnan(ours[1, :, 17:]).all() and not np.isnan(ours[1, :, :17]).any()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("pixels", [1, 62 * 62 * 2, 62 * 62 * 3 + 5])
def test_median_filter_chunk_boundaries(pixels, threads, rng, monkeypatch):
    """Chunks of 1, 2 and 3 maps over 8 maps, two of them empty (all-NaN) slots, in 1 or 2 threads."""
    monkeypatch.setattr(vote, "MEDIAN_CHUNK_PIXELS", pixels)
    x = rng.standard_normal((2, 4, 56, 56)).astype(np.float32)
    x[0, 2] = x[1, 3] = np.nan
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = median_filter2d(torch.from_numpy(x), 7, compiled=False).numpy()
    finally:
        torch.set_num_threads(before)
    ref = _scipy_median(x, 7)
    ref[0, 2] = ref[1, 3] = np.nan
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("size", [3, 5, 7, 9, 15])
def test_compiled_median_program_never_writes_what_a_step_reads(size):
    """The program's steps run as vectorised loops that assume their destination run does not overlap an
    operand's (cliptrase/utils/median_jit.py); every run lies inside the scratch buffer."""
    program = vote._median_program(size, 56)
    n = program.tile_rows * program.padded_width
    for _, a, b, dest in program.steps.tolist():
        assert abs(dest - a) >= n and abs(dest - b) >= n
        assert min(a, b, dest) >= 0 and max(a, b, dest) + n <= program.scratch_size
    assert len(program.steps) == sum(len(net.steps) for net in _plan_networks(vote._median_plan(size)))


def _plan_networks(plan: vote._MedianPlan) -> list[vote._Network]:
    return [plan.column, *(net for _, net in plan.stages), plan.final]


def test_median_filter_engines_decline_and_refuse(rng):
    """float64 maps take the PyTorch engine by default (same values); forcing the compiled one on them is
    an error that says where it runs."""
    x = torch.from_numpy(rng.standard_normal((2, 20, 30)))
    np.testing.assert_array_equal(median_filter2d(x, 7).numpy(), _scipy_median(x.numpy(), 7))
    with pytest.raises(ValueError, match="float32 CPU"):
        median_filter2d(x, 7, compiled=True)


def _merge_network(m: int, n: int) -> vote._Network:
    return vote._compile(m + n, lambda ce: vote._odd_even_merge(ce, list(range(m)), list(range(m, m + n))))


@pytest.mark.parametrize("m", range(1, 10))
def test_merge_network_merges_every_01_input(m):
    """Batcher's merge of lists of any two lengths, compiled to slots (0-1 principle: a comparator network
    merges every pair of sorted lists iff it merges every pair of sorted 0-1 lists)."""
    for n in range(1, 10):
        net = _merge_network(m, n)
        for ones_a, ones_b in np.ndindex(m + 1, n + 1):
            values = [0] * (m - ones_a) + [1] * ones_a + [0] * (n - ones_b) + [1] * ones_b
            values += [None] * net.n_slots
            for is_max, x, y, slot in net.steps:
                values[m + n + slot] = (max if is_max else min)(values[x], values[y])
            assert [values[o] for o in net.outputs] == sorted(values[: m + n])


def _reference_correlation(q, k, v):
    """The formula as written: per-head cosine Gram matrices of q, k, v, averaged, mean over heads."""

    def cos(x):
        x = torch.nn.functional.normalize(x, dim=-1)
        return x @ x.transpose(-2, -1)

    per_head = (cos(q) + cos(k) + cos(v)) / 3
    return per_head.sum(dim=1) / per_head.shape[1]


def _concatenated_gram(q, k, v):
    """The same sum as one Gram matrix: every head's unit rows of q, k and v laid end to end."""
    rows = torch.cat(
        [torch.nn.functional.normalize(t, dim=-1).transpose(1, 2).flatten(2) for t in (q, k, v)], -1
    )
    return (rows @ rows.transpose(1, 2)) / (3 * q.shape[1])


def _tower_layout(batch, seed):
    """q, k, v laid out as the tower's: strided views of one (B, L, 3, heads, d) projection."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, 197, 3, 12, 64, generator=g) * 3 + torch.randn(64, generator=g)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


@pytest.mark.parametrize("batch", [1, 2, 6])
def test_qkv_cosine_correlation_is_one_gram_matrix(batch):
    """Bit for bit the Gram matrix of the concatenated unit rows (one matmul), on the tower's strided
    views and on contiguous q / k / v; exactly symmetric; the per-head formula to a few float32 ulps."""
    q, k, v = _tower_layout(batch, batch)
    out = qkv_cosine_correlation(q, k, v)
    assert torch.equal(out, _concatenated_gram(q, k, v))
    assert torch.equal(out, out.transpose(1, 2))
    torch.testing.assert_close(out, _reference_correlation(q, k, v), atol=2e-6, rtol=0)
    assert torch.equal(qkv_cosine_correlation(*(t.contiguous() for t in (q, k, v))), out)


def test_qkv_cosine_correlation_on_tower_qkv(golden_clip):
    feats = Predictor(golden_clip).encode(
        torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    )
    assert feats.qkv
    for q, k, v in feats.qkv.values():
        out = qkv_cosine_correlation(q, k, v)
        assert torch.equal(out, _concatenated_gram(q, k, v))
        torch.testing.assert_close(out, _reference_correlation(q, k, v), atol=2e-6, rtol=0)


def test_qkv_cosine_correlation_zero_rows_as_normalize():
    """A zero vector normalises to zero (``F.normalize``'s eps), so its cosines are 0, not NaN."""
    q, k, v = (t.clone() for t in _tower_layout(1, 3))
    for t in (q, k, v):
        t[:, :, 5] = 0
    out = qkv_cosine_correlation(q, k, v)
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, 5], torch.zeros_like(out[:, 5]))
    torch.testing.assert_close(out, _reference_correlation(q, k, v), atol=2e-6, rtol=0)


def test_qkv_cosine_correlation_matches_loops(rng):
    q, k, v = (torch.from_numpy(rng.standard_normal((2, 3, 5, 4)).astype(np.float32)) for _ in range(3))
    out = qkv_cosine_correlation(q, k, v)
    ref = torch.zeros(2, 5, 5)
    for b in range(2):
        for h in range(3):
            for i in range(5):
                for j in range(5):
                    c = [
                        torch.nn.functional.cosine_similarity(t[b, h, i], t[b, h, j], dim=0)
                        for t in (q, k, v)
                    ]
                    ref[b, i, j] += sum(c) / 3 / 3
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.diagonal(dim1=1, dim2=2), torch.ones(2, 5), atol=1e-6, rtol=0)
    torch.testing.assert_close(out, out.transpose(1, 2))


def test_cliptrase_attention_is_sum_of_three_softmaxes(rng):
    q, k, v = (torch.from_numpy(rng.standard_normal((1, 2, 6, 4)).astype(np.float32)) for _ in range(3))
    s = 0.5
    out = cliptrase_attention(q, k, v, scale=s, grid_hw=(2, 3))
    for h in range(2):
        a = sum(torch.softmax(s * t[0, h] @ t[0, h].T, dim=-1) for t in (q, k, v))
        torch.testing.assert_close(a.sum(-1), torch.full((6,), 3.0))
        torch.testing.assert_close(out[0, h], a @ v[0, h], atol=1e-6, rtol=0)
    ref = torch.softmax(s * q @ k.transpose(-2, -1), dim=-1) @ v
    torch.testing.assert_close(vanilla_attention(q, k, v, scale=s, grid_hw=(2, 3)), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("batch", "tokens", "heads", "head_dim"),
    [(6, 197, 3, 32), (1, 50, 3, 32), (2, 1 + 7 * 9, 3, 32), (16, 197, 12, 64)],
)
def test_cliptrase_attention_keeps_the_bits_of_the_plain_formula(batch, tokens, heads, head_dim, dtype):
    """q, k, v as the block hands them over (strided views of the fused projection): the rule's contiguous
    copies, in-place scale/sum and one image at a time (on CPU) give the same bits as the formula written
    out of place over the whole batch (16 ViT-B/16 windows included)."""
    torch.manual_seed(0)
    qkv = torch.randn(batch, tokens, 3 * heads * head_dim, dtype=dtype)
    q, k, v = qkv.reshape(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    assert not q.is_contiguous()
    s = head_dim**-0.5
    plain = [torch.softmax(s * (t @ t.transpose(-2, -1)), dim=-1) for t in (q, k, v)]
    want = (plain[0] + plain[1] + plain[2]) @ v
    assert torch.equal(cliptrase_attention(q, k, v, scale=s, grid_hw=(1, 1)), want)


def test_subtract_cls_row(rng):
    w = torch.from_numpy(rng.uniform(-1, 1, (1, 5, 5)).astype(np.float32))
    ref = np.maximum(w[0, 1:, 1:].numpy() - w[0, 0, 1:].numpy()[None, :], 0)
    np.testing.assert_array_equal(subtract_cls_row(w)[0].numpy(), ref)


def test_cluster_soft_masks_are_member_means(rng):
    corr = torch.from_numpy(rng.uniform(0, 1, (2, 6, 6)).astype(np.float32))
    labels = torch.tensor([[0, -1, 1, 0, 1, 1], [-1, 0, 0, -1, -1, -1]])
    masks = cluster_soft_masks(corr, labels, 2)
    torch.testing.assert_close(masks[0, 0], corr[0, [0, 3]].mean(0))
    torch.testing.assert_close(masks[0, 1], corr[0, [2, 4, 5]].mean(0))
    torch.testing.assert_close(masks[1, 0], corr[1, [1, 2]].mean(0))
    assert torch.isnan(masks[1, 1]).all()  # empty slot never wins the argmax
    regions = region_map(masks, (2, 3), (8, 12), ratio=4, median_size=7)
    assert regions.shape == (2, 8, 12) and int(regions[1].max()) == 0


def _one_image_region_map(masks, grid, out_hw, ratio, size):
    """The authors' arithmetic for one image: its own K clusters as one (1, K, h, w) stack, no empty slot."""
    masks = masks[~torch.isnan(masks).all(dim=-1)]
    if not len(masks):
        return torch.zeros(out_hw, dtype=torch.long)
    x = torch.nn.functional.interpolate(
        masks.reshape(1, len(masks), *grid), scale_factor=ratio, mode="bilinear", align_corners=False
    )
    x = torch.nn.functional.interpolate(
        median_filter2d(x, size), size=out_hw, mode="bilinear", align_corners=False
    )
    return x[0].argmax(dim=0)


@pytest.mark.parametrize(("grid", "out_hw"), [((6, 6), (40, 40)), ((14, 14), (224, 224)), ((5, 7), (61, 37))])
@pytest.mark.parametrize("seed", [0, 1])
def test_region_map_is_each_images_own(grid, out_hw, seed):
    """Masks 2**-22 apart (near ties), 12 slots, one image with 5 clusters: each image's region ids are those
    of its own clusters upsampled alone, whatever the batch pads it to (PyTorch's bilinear kernel vectorises
    across channels for small outputs, and the last bits of a channel depend on its place in the stack:
    upsampling the padded batch as one stack moved 180 of 3,200 ids at 6 x 6 -> 40 x 40)."""
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1]
    masks = torch.rand(2, 1, n, generator=g) + torch.randint(0, 2, (2, 12, n), generator=g) * 2.0**-22
    masks[1, 5:] = torch.nan
    regions = region_map(masks, grid, out_hw, ratio=4, median_size=3)
    for i in range(2):
        assert torch.equal(regions[i], _one_image_region_map(masks[i], grid, out_hw, 4, 3))
        assert torch.equal(
            region_map(masks[i : i + 1, : 12 if i == 0 else 5], grid, out_hw, ratio=4, median_size=3)[0],
            regions[i],
        )


def test_region_map_with_empty_slots_between_clusters():
    """Empty slots that are not the last ones (not cluster_soft_masks' layout) never win either."""
    g = torch.Generator().manual_seed(3)
    masks = torch.rand(2, 5, 16, generator=g)
    masks[0, 1] = torch.nan
    masks[1, 0] = torch.nan
    masks[1, 3] = torch.nan
    regions = region_map(masks, (4, 4), (20, 24), ratio=4, median_size=3)
    ref = torch.nn.functional.interpolate(
        masks.reshape(2, 5, 4, 4), scale_factor=4, mode="bilinear", align_corners=False
    )
    ref = torch.nn.functional.interpolate(
        median_filter2d(ref, 3), size=(20, 24), mode="bilinear", align_corners=False
    )
    assert torch.equal(regions, torch.where(ref.isnan(), -torch.inf, ref).argmax(dim=1))
    assert not bool((regions[0] == 1).any()) and not bool(torch.isin(regions[1], torch.tensor([0, 3])).any())


def test_region_map_without_clusters_is_region_zero():
    masks = torch.full((3, 4, 9), torch.nan)
    masks[1, :2] = torch.rand(2, 9, generator=torch.Generator().manual_seed(0))
    regions = region_map(masks, (3, 3), (12, 12), ratio=4, median_size=3)
    assert torch.equal(regions[0], torch.zeros(12, 12, dtype=torch.long))
    assert torch.equal(regions[2], torch.zeros(12, 12, dtype=torch.long))
    assert torch.equal(regions[1], _one_image_region_map(masks[1], (3, 3), (12, 12), 4, 3))


@pytest.mark.parametrize("batch", [1, 2, 3])
@pytest.mark.parametrize(
    ("grid", "out_hw"), [((14, 14), (224, 224)), ((21, 21), (336, 336)), ((3, 5), (37, 61))]
)
def test_patch_logits_bit_identical_to_the_authors_reshape(batch, grid, out_hw, rng):
    """The channels-last permute gives exactly the values of the authors' ``.T.reshape(1, C', h, w)``."""
    from cliptrase.models.dense import DenseFeatures

    n = grid[0] * grid[1]
    tokens = torch.nn.functional.normalize(
        torch.from_numpy(rng.standard_normal((batch, 1 + n, 16))).float(), dim=-1
    )
    text = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((53, 16))).float(), dim=-1)
    feats = DenseFeatures(tokens=tokens, grid_hw=grid, qkv={})
    out = patch_logits(feats, text, 100.0, out_hw)
    for b in range(batch):  # the authors: one image, (N, C') product, transpose, reshape, interpolate
        ref = (100.0 * tokens[b, 1:] @ text.t()).t().reshape(1, 53, *grid)
        ref = torch.nn.functional.interpolate(ref, size=out_hw, mode="bilinear", align_corners=False)
        assert torch.equal(out[b : b + 1], ref)
        assert torch.equal(out[b : b + 1].argmax(1), ref.argmax(1))


@pytest.mark.parametrize("k", [1, 2, 5, 17, 64, 65])
def test_first_argmax_equals_argmax_with_ties(k, rng):
    x = torch.from_numpy(rng.integers(0, 3, (2, k, 9, 11))).float()  # many exact ties
    x[0, :, 0, 0] = -torch.inf  # all -inf: index 0, as argmax
    x[1, :, 1, 1] = torch.inf
    assert torch.equal(first_argmax(x), x.argmax(dim=1))
    y = (
        torch.from_numpy(rng.standard_normal((1, k, 8, 8)))
        .float()
        .contiguous(memory_format=torch.channels_last)
    )
    assert torch.equal(first_argmax(y), y.argmax(dim=1))
    z = x.clone()  # NaN (empty cluster slots, and stray pixels) counts as -inf, in channel 0 too
    z[:, 0] = torch.nan
    z[0, -1] = torch.nan
    z[1, :, 2, 3] = torch.nan
    z[0, min(1, k - 1), 4, 5] = torch.nan
    assert torch.equal(first_argmax(z), torch.where(z.isnan(), -torch.inf, z).argmax(dim=1))


def test_majority_vote_ties_to_smallest(rng):
    preds = torch.from_numpy(rng.integers(0, 5, (2, 9, 9)))
    regions = torch.from_numpy(rng.integers(0, 3, (2, 9, 9)))
    preds[0, 0, :4] = torch.tensor([3, 3, 1, 1])
    out = majority_vote(preds, regions, 3, 5)
    for b in range(2):
        for k in range(3):
            sel = preds[b][regions[b] == k]
            vals, counts = torch.unique(sel, return_counts=True)  # the authors' rule
            assert (out[b][regions[b] == k] == vals[counts.argmax()]).all()


def test_mean_logits_vote_reference(rng):
    """The full-size mean vote (the oracle of test_grid_means.py) is the per-region mean."""
    logits = torch.from_numpy(rng.standard_normal((1, 4, 5, 5)).astype(np.float32))
    regions = torch.from_numpy(rng.integers(0, 3, (1, 5, 5)))
    out = mean_logits_vote(logits, regions, 3)
    for k in range(3):
        m = regions[0] == k
        torch.testing.assert_close(
            out[0][:, m], logits[0][:, m].mean(1, keepdim=True).expand(-1, int(m.sum()))
        )


def test_collapse_background_and_cls_product():
    preds = torch.tensor([[0, 19, 20, 52]])
    assert collapse_background(preds, 20).tolist() == [[0, 19, 20, 20]]
    assert collapse_background(preds, None) is preds


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"eps": 0.0}, "eps must be"),
        ({"eps": -1.0}, "eps must be"),
        ({"eps": float("nan")}, "eps must be"),
        ({"min_samples": 0}, "min_samples"),
        ({"vote": "mode"}, "vote"),
        ({"median_size": 4}, "median_size"),
        ({"dbscan": "faiss"}, "dbscan"),
        ({"correlation_block": 10}, "relative to depth"),
    ],
)
def test_options_validation(kw, msg):
    base = {"eps": 0.7, "min_samples": 3} | kw
    with pytest.raises(ValueError, match=msg):
        CLIPtraseOptions(**base)


def _opts(**kw):
    return CLIPtraseOptions(**({"eps": 0.7, "min_samples": 3} | kw))


def test_batched_equals_single_and_backends_agree(golden_clip):
    pred = Predictor(golden_clip)
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    text = pred.text_classifier(["sky", "tree", "car", "road"])
    batched = pred(x, text, _opts())
    for i in range(3):
        single = pred(x[i : i + 1], text, _opts(dbscan="sklearn"))
        assert torch.equal(single.labels[0], batched.labels[i])
        assert torch.equal(single.pred[0], batched.pred[i])


def test_no_cluster_falls_back_to_argmax(golden_clip):
    pred = Predictor(golden_clip)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    text = pred.text_classifier(["sky", "tree", "car"])
    out = pred(x, text, _opts(eps=1e-6, min_samples=2))
    assert (out.labels == -1).all() and out.regions is None
    assert torch.equal(out.pred, out.logits.argmax(1))


def test_single_cluster_gives_one_label(golden_clip):
    pred = Predictor(golden_clip)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    text = pred.text_classifier(["sky", "tree", "car"])
    out = pred(x, text, _opts(eps=1e6, min_samples=1))
    assert (out.labels == 0).all()
    assert out.pred.unique().numel() == 1


def test_cls_product_multiplies_channels(golden_clip):
    pred = Predictor(golden_clip)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    text = pred.text_classifier(["sky", "tree"])
    feats = pred.encode(x)
    plain = cliptrase_segment(feats, text, pred.logit_scale, (224, 224), _opts(cluster=False))
    prod = apply_cls_product(plain.logits, feats, text, pred.logit_scale)
    cls_logits = pred.logit_scale * feats.cls @ text.T
    torch.testing.assert_close(prod, plain.logits * cls_logits[:, :, None, None])
    with_flag = cliptrase_segment(
        feats, text, pred.logit_scale, (224, 224), _opts(cluster=False, cls_product=True)
    )
    torch.testing.assert_close(with_flag.logits, prod)


@ENGINES
def test_median_filter_in_chunks_skips_empty_slots(compiled, rng):
    """More maps than one chunk holds, some all-NaN (empty cluster slots): each map as scipy filters it
    alone, the empty ones NaN."""
    x = rng.standard_normal((5, 9, 56, 56)).astype(np.float32)
    x[1, 3] = x[4, 0] = x[4, 8] = np.nan
    ours = median_filter2d(torch.from_numpy(x), 7, compiled=compiled).numpy()
    for i, j in np.ndindex(5, 9):
        ref = np.full((56, 56), np.nan) if np.isnan(x[i, j]).all() else ndimage.median_filter(x[i, j], size=7)
        np.testing.assert_array_equal(ours[i, j], ref)
