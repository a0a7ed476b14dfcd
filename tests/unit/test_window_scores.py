"""Sliding windows kept as region rows (CLIPtrase's voted windows): stitched and scored as the canvas."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cliptrase.inference.scoring import upsampled_labels
from cliptrase.inference.sliding import sliding_window_list, window_boxes
from cliptrase.inference.window_scores import RegionScores, stitch_regions


def _window_fn(n_prompts: int, n_regions: int, dense_every: int = 0, seed: int = 0, prompt_major=False):
    """fn for sliding_window_list: per window K random rows over a blocky region map (RegionScores), every
    ``dense_every``-th window dense instead (channels-last, or contiguous with ``prompt_major``);
    ``_replay(made)`` gives the same windows all as dense maps."""
    gen = torch.Generator().manual_seed(seed)
    made: list[RegionScores | torch.Tensor] = []

    def regions_fn(crops):
        outs = []
        for c in crops:
            h, w = c.shape[-2:]
            cells = torch.randint(0, n_regions, (h // 7 + 1, w // 7 + 1), generator=gen)
            index = cells.repeat_interleave(7, 0).repeat_interleave(7, 1)[:h, :w]
            table = torch.randn(n_regions, n_prompts, generator=gen)
            out = RegionScores(table, index)
            if dense_every and len(made) % dense_every == dense_every - 1:
                out = out.dense().contiguous() if prompt_major else out.dense()
            made.append(out)
            outs.append(out)
        return outs

    return regions_fn, made


def _replay(made):
    it = iter(made)

    def dense_fn(crops):
        return [(o.dense() if isinstance(o, RegionScores) else o) for _, o in zip(crops, it)]

    return dense_fn


@pytest.mark.parametrize(
    ("hw", "crop", "stride"), [((337, 501), 224, 112), ((100, 150), 224, 112), ((61, 90), 16, 5)]
)
@pytest.mark.parametrize("n_regions", [3, 300])
def test_stitched_regions_equal_the_dense_canvas_bit_for_bit(hw, crop, stride, n_regions):
    images = [torch.zeros(3, *hw), torch.zeros(3, 2 * crop, 3 * crop - 1)]
    fn, made = _window_fn(n_prompts=19, n_regions=n_regions)
    stitched = sliding_window_list(fn, images, crop=crop, stride=stride, max_batch=5, keep_regions=True)
    dense = sliding_window_list(_replay(made), images, crop=crop, stride=stride, max_batch=5)
    for s, d, image in zip(stitched, dense, images):
        assert isinstance(s, RegionScores) and isinstance(d, torch.Tensor)
        assert s.shape == tuple(d.shape) and s.index.shape == image.shape[-2:]
        assert torch.equal(s.dense(), d)  # values and their sign bits
        assert torch.equal(s.dense().view(torch.int32), d.view(torch.int32))
        assert torch.equal(s.prompt_maps(3, 11), d[3:11])
    # without keep_regions the canvas is formed: the same bits
    formed = sliding_window_list(_replay(made), images, crop=crop, stride=stride, max_batch=5)
    assert all(torch.equal(f, d) for f, d in zip(formed, dense))


def test_many_windows_renumber_the_keys():
    """300 regions in each of 40 windows: the combined keys would overflow int64 without renumbering."""
    image = torch.zeros(3, 61, 90)
    assert len(window_boxes((61, 90), (16, 16), (5, 5))) > 8
    fn, made = _window_fn(n_prompts=5, n_regions=300, seed=1)
    (stitched,) = sliding_window_list(fn, [image], crop=16, stride=5, max_batch=7, keep_regions=True)
    (dense,) = sliding_window_list(_replay(made), [image], crop=16, stride=5, max_batch=7)
    assert torch.equal(stitched.dense(), dense)


@pytest.mark.parametrize(("dense_every", "prompt_major"), [(1, False), (2, False), (3, True), (5, False)])
def test_images_with_a_dense_window_are_stitched_densely_in_the_same_order(dense_every, prompt_major):
    images = [torch.zeros(3, 337, 501), torch.zeros(3, 230, 240)]
    fn, made = _window_fn(7, 4, dense_every=dense_every, seed=2, prompt_major=prompt_major)
    mixed = sliding_window_list(fn, images, crop=224, stride=112, max_batch=3, keep_regions=True)
    dense = sliding_window_list(_replay(made), images, crop=224, stride=112, max_batch=3)
    assert any(isinstance(o, torch.Tensor) for o in made)
    assert dense_every == 1 or any(isinstance(o, RegionScores) for o in made)
    for m, d in zip(mixed, dense):
        assert isinstance(m, torch.Tensor)
        assert torch.equal(m, d)


def test_prompt_maps_crop_and_dense():
    gen = torch.Generator().manual_seed(3)
    scores = RegionScores(torch.randn(6, 11, generator=gen), torch.randint(0, 6, (9, 13), generator=gen))
    full = torch.stack([scores.table[scores.index][..., p] for p in range(11)])
    assert scores.shape == (11, 9, 13) and torch.equal(scores.dense(), full)
    maps = scores.prompt_maps(2, 7)
    assert maps.is_contiguous() and torch.equal(maps, full[2:7])
    assert torch.equal(scores.crop(1, 5, 3, 10).dense(), full[:, 1:5, 3:10])


@pytest.mark.parametrize(("prob_thd", "area_thd"), [(0.0, None), (0.1, None), (0.0, 0.1)])
def test_upsampled_labels_of_region_scores_equal_the_dense_scores(prob_thd, area_thd):
    images = [torch.zeros(3, 336, 448)]
    fn, made = _window_fn(n_prompts=40, n_regions=12, seed=4)
    (regions,) = sliding_window_list(fn, images, crop=224, stride=112, keep_regions=True)
    (dense,) = sliding_window_list(_replay(made), images, crop=224, stride=112)
    assert isinstance(regions, RegionScores)
    prompt_to_class = torch.arange(40) % 17
    for chunk_pixels in (1 << 22, 1 << 18):
        args = ((512, 683), prompt_to_class, 17, 40.0, prob_thd, area_thd)
        ours = upsampled_labels(regions, *args, chunk_pixels=chunk_pixels)
        assert torch.equal(ours, upsampled_labels(dense, *args, chunk_pixels=chunk_pixels))


def _cliptrase_segmentor(vote: str, prompts: int = 6):
    """CLIPtrase on the golden tiny CLIP, standard protocol, eps 0.5 (noise: no cluster; flat: clusters)."""
    pytest.importorskip("mmseg")
    from helpers.config import compose_eval
    from helpers.golden import golden_weights

    from cliptrase.config import validate
    from cliptrase.engine.segmentor import CLIPtraseSegmentor

    protocol = validate(compose_eval(["protocol=standard", "dataset=voc21", "paths.results_dir=/unused"]))
    names = ["sky", "tree", "car", "road", "person", "grass", "water", "wall"][:prompts]
    return CLIPtraseSegmentor(
        model={"name": None, "pretrained": None, "weights": str(golden_weights())},
        method={
            "name": "cliptrase",
            "type": "CLIPtrase",
            "attention": "cliptrase",
            "cluster": True,
            "vote": vote,
            "eps": 0.5,
            "min_samples": 3,
        },
        protocol=protocol["protocol"],
        prompts=names,
        prompt_to_class=[i // 2 for i in range(len(names))],
        n_classes=(len(names) + 1) // 2,
        dataset_name="ade150",
        device="cpu",
    )


def _scene_images():
    """A left half of noise (windows without a cluster at eps 0.5) beside a flat right half (windows with
    clusters), and a flat image with a gradient (all windows clustered)."""
    gen = torch.Generator().manual_seed(0)
    mixed = torch.randn(3, 224, 448, generator=gen)
    mixed[:, :, 224:] = mixed[:, :1, 224:225] + 0.01 * torch.randn(3, 224, 224, generator=gen)
    flat = torch.linspace(-1, 1, 300).view(1, 1, 300).expand(3, 224, 300).clone()
    return [mixed, flat]


def test_segmentor_windows_and_labels_equal_the_dense_path():
    seg = _cliptrase_segmentor("mean_logits")
    images, oris = _scene_images(), [(260, 520), (250, 300)]
    crops = torch.stack([images[0][:, :, i : i + 224] for i in (0, 112, 224)])  # its sliding windows
    for vote in ("mean_logits", "majority"):
        seg.options = dataclasses.replace(seg.options, vote=vote)
        outs = seg.window_outputs(crops)
        out = seg.predictor.segment(seg.predictor.encode(crops), seg.text, seg.options, (224, 224))
        if vote == "mean_logits":
            assert out.clustered.tolist() == [False, True, True]
            assert [isinstance(o, RegionScores) for o in outs] == [False, True, True]
            dense = out.logits / seg.predictor.logit_scale
        else:
            assert all(isinstance(o, RegionScores) for o in outs)
            dense = torch.nn.functional.one_hot(out.pred, len(seg.prompts)).permute(0, 3, 1, 2).float()
        assert torch.equal(seg.window_scores(crops), dense)

        stitched = sliding_window_list(seg.window_outputs, images, crop=224, stride=112, keep_regions=True)
        assert isinstance(stitched[1], RegionScores)  # every window of the flat image clustered
        assert isinstance(stitched[0], RegionScores if vote == "majority" else torch.Tensor)
        canvases = sliding_window_list(seg.window_scores, images, crop=224, stride=112)
        labels = seg._predict_standard(images, oris)
        for image, canvas, got, ori in zip(images, canvases, labels, oris):
            assert torch.equal(got, seg._score(canvas, image, ori))


@pytest.mark.parametrize(("n_regions", "crop", "stride"), [(3, 224, 112), (300, 16, 5)])
def test_compiled_stitching_equals_the_torch_stitching(n_regions, crop, stride):
    """The compiled passes (atoms by first appearance, through a hash table that grows past 512 atoms)
    give the PyTorch path's atoms under another numbering: the same values at every pixel, bit for bit,
    and as many rows."""
    hw = (337, 501) if crop == 224 else (61, 90)
    fn, _ = _window_fn(n_prompts=9, n_regions=n_regions, seed=5)
    boxes = window_boxes(hw, (crop, crop), (stride, stride))
    crops = torch.zeros(len(boxes), 3, crop, crop)
    parts = list(zip(boxes, fn(crops)))
    parts = [(box, r.crop(0, box[1] - box[0], 0, box[3] - box[2])) for box, r in parts]
    ours, theirs = (stitch_regions(parts, hw, compiled=c) for c in (True, False))
    assert ours.table.shape == theirs.table.shape
    assert n_regions == 3 or ours.table.shape[0] > 512
    assert ours.index.dtype == theirs.index.dtype == torch.int32
    assert torch.equal(ours.dense().view(torch.int32), theirs.dense().view(torch.int32))


@pytest.mark.parametrize("compiled", [False, True])
def test_stitch_rejects_uncovered_pixels_in_both_engines(compiled):
    part = RegionScores(torch.ones(1, 2), torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(AssertionError, match="uncovered"):
        stitch_regions([((0, 4, 0, 4), part)], (4, 6), compiled=compiled)
