"""``bench.py core``: the paper pipeline vs the bare open_clip encoder on the same input (ViT-B/16-sized
random weights, 224 and 336), the per-stage breakdown, text-encoding prompts/s (full 77-token context vs
truncated) and torch-vs-sklearn DBSCAN at N = 196, 441, 1024."""

from __future__ import annotations

import numpy as np
import open_clip
import torch

from cliptrase.engine.paper_metric import confusion_matrix
from cliptrase.method.cluster import dbscan
from cliptrase.method.runner import Predictor
from cliptrase.method.trase import CLIPtraseOptions
from cliptrase.models.clip import RANDOM, load_clip
from cliptrase.models.text import encode_text_truncated
from cliptrase.protocols.paper import dbscan_settings, gt_to_image, preprocess_gt, preprocess_image

from .common import scene, timed, timed_pair


def bench_core(repeats: int, device: str) -> None:
    torch.manual_seed(0)
    clip = load_clip("ViT-B-16", RANDOM, device=device)
    pred = Predictor(clip)
    # The classifier is built once per vocabulary and cached on disk, so it is not part of the per-image
    # cost: random unit rows shaped like VOC21's (20 classes + 33 background prompts) stand in for it.
    text = torch.nn.functional.normalize(torch.randn(53, clip.model.text_projection.shape[1]), dim=-1)
    names = ["cat", "dog", "potted plant", "background"]
    image, gt = scene()
    print(
        f"\n== core: ViT-B/16-sized random weights, {device}, {torch.get_num_threads()} threads, "
        f"batch 1, median of {repeats} =="
    )
    print(f"{'S':>5} {'pipeline s/img':>15} {'bare encoder s/img':>19} {'ratio':>7}")
    for size in (224, 336):
        eps, min_samples = dbscan_settings(size)
        opts = CLIPtraseOptions(eps=eps, min_samples=min_samples, n_foreground=20)
        x = preprocess_image(image, size, clip.mean, clip.std)[None].to(device)

        def pipeline(size=size, opts=opts) -> None:
            xi = preprocess_image(image, size, clip.mean, clip.std)[None]
            g = preprocess_gt(gt_to_image(gt), size)
            out = pred(xi, text, opts)
            confusion_matrix(g, out.pred[0].cpu().numpy(), 21)

        # open_clip's own encoder at this size (positional table resized once by open_clip)
        visual = (
            clip.model.visual
            if size == 224
            else open_clip.create_model("ViT-B-16", force_image_size=size, device=device).eval().visual
        )

        def bare(x=x, visual=visual) -> None:
            with torch.no_grad():
                visual(x)

        t_pipe, t_bare = timed_pair(pipeline, bare, repeats)
        print(f"{size:>5} {t_pipe:>15.3f} {t_bare:>19.3f} {t_pipe / t_bare:>7.2f}x")

    bench_breakdown(pred, text, image, gt, repeats)

    prompts = [t.format(n) for n in names for t in pred.templates]
    tokens = clip.tokenizer(prompts).to(device)
    full = timed(lambda: clip.model.encode_text(tokens), 1, warmup=0)
    short = timed(lambda: encode_text_truncated(clip.model, tokens), 1, warmup=0)
    print(
        f"\ntext: {len(prompts)} prompts; full 77 tokens {len(prompts) / full:,.0f} prompts/s, truncated "
        f"{len(prompts) / short:,.0f} prompts/s ({full / short:.1f}x)"
    )

    print(f"\n{'N':>6} {'torch DBSCAN ms':>16} {'sklearn DBSCAN ms':>18} {'speed-up':>9}")
    rng = np.random.default_rng(0)
    for n, (eps, ms) in ((196, (0.7, 3)), (441, (1.1, 7)), (1024, (1.1, 7))):
        # rows of a clamped, block-structured correlation-like matrix, as CLIPtrase clusters
        centres = rng.uniform(0, 0.6, (8, n))
        x = np.clip(centres[rng.integers(0, 8, n)] + rng.normal(0, 0.05, (n, n)), 0, None).astype(np.float32)
        xt = torch.from_numpy(x).to(device)
        t_torch = timed(lambda xt=xt, eps=eps, ms=ms: dbscan(xt, eps, ms, backend="torch"), repeats)
        t_sk = timed(lambda xt=xt, eps=eps, ms=ms: dbscan(xt, eps, ms, backend="sklearn"), repeats)
        print(f"{n:>6} {1e3 * t_torch:>16.2f} {1e3 * t_sk:>18.2f} {t_sk / t_torch:>8.1f}x")


def bench_breakdown(pred, text, image, gt, repeats: int, size: int = 224) -> None:
    """Per-stage time of the paper pipeline at ``size`` (each stage timed alone on the same input)."""
    from cliptrase.method.denoise import subtract_cls_row
    from cliptrase.method.labels import argmax_channels, collapse_background, patch_logits
    from cliptrase.method.trase import correlation_matrix
    from cliptrase.method.vote import cluster_soft_masks, majority_vote, region_map

    clip = pred.clip
    eps, min_samples = dbscan_settings(size)
    x = preprocess_image(image, size, clip.mean, clip.std)[None]
    feats = pred.encode(x)
    logits = patch_logits(feats, text, pred.logit_scale, (size, size))
    raw = collapse_background(argmax_channels(logits), 20)
    din = subtract_cls_row(correlation_matrix(feats, -2))
    labels = dbscan(din, eps, min_samples)
    k = max(int(labels.max()) + 1, 1)
    labels = labels if int(labels.max()) >= 0 else torch.zeros_like(labels)
    masks = cluster_soft_masks(din, labels, k)
    regions = region_map(masks, feats.grid_hw, (size, size))
    g = preprocess_gt(gt_to_image(gt), size)
    stages = {
        "data (image + GT preprocessing)": lambda: (
            preprocess_image(image, size, clip.mean, clip.std),
            preprocess_gt(gt_to_image(gt), size),
        ),
        "encoder (modified tower)": lambda: pred.encode(x),
        "logits (text product, upsample, argmax)": lambda: collapse_background(
            argmax_channels(patch_logits(feats, text, pred.logit_scale, (size, size))), 20
        ),
        "clustering (correlation, denoise, DBSCAN)": lambda: dbscan(
            subtract_cls_row(correlation_matrix(feats, -2)), eps, min_samples
        ),
        "post-processing (masks, median, regions, vote)": lambda: majority_vote(
            raw, region_map(cluster_soft_masks(din, labels, k), feats.grid_hw, (size, size)), k, 21
        ),
        "metric (confusion matrix)": lambda: confusion_matrix(g, regions[0].numpy() % 21, 21),
    }
    print(f"\n{'stage at ' + str(size) + ' px':<48} {'ms/img':>8}")
    for name, fn in stages.items():
        print(f"{name:<48} {1e3 * timed(fn, repeats):>8.1f}")
    print(f"{'text (once per vocabulary, cached on disk)':<48} {'-':>8}")
