#!/usr/bin/env python
"""Benchmarks that print figures (never timed assertions in tests).

python scripts/bench.py core [--repeats 5] [--device cpu]
    seconds per image of the whole paper-protocol pipeline vs the bare open_clip image encoder on the
    same input (ViT-B/16-sized random weights, 224 and 336), text-encoding prompts/s (full 77-token
    context vs truncated), and torch-vs-sklearn DBSCAN time at N = 196, 441, 1024.
python scripts/bench.py precision [--device cpu]
    mIoU of the golden cases at fp32 / bf16 / fp16 and the share of pixels equal to fp32.
python scripts/bench.py eval [--images 6] [--device cpu]
    the whole harness (cliptrase-eval: dataset, segmentor, runner, metric) on the demo benchmark with
    ViT-B/16-sized random weights, paper224 and standard protocols: images/s and peak memory, each
    protocol in its own process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import open_clip
import torch
from PIL import Image

from cliptrase.evaluation.paper_metric import confusion_matrix, paper_scores
from cliptrase.method.cliptrase import CLIPtraseOptions
from cliptrase.method.cluster import dbscan
from cliptrase.models.clip import RANDOM, load_clip
from cliptrase.models.text import encode_text_truncated
from cliptrase.predictor import CLIPtrasePredictor
from cliptrase.protocols.paper import (
    dbscan_settings,
    gt_to_image,
    paper_dataset,
    paper_options,
    preprocess_gt,
    preprocess_image,
)


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scene(h: int = 375, w: int = 500, seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """A VOC-sized synthetic image with blocky labels."""
    rng = np.random.default_rng(seed)
    labels = np.kron(rng.integers(0, 21, (h // 25 + 1, w // 25 + 1)), np.ones((25, 25), np.uint8))[:h, :w]
    img = (rng.normal(0, 20, (h, w, 3)) + labels[..., None] * 11).clip(0, 255).astype(np.uint8)
    return Image.fromarray(img), labels.astype(np.uint8)


def bench_core(repeats: int, device: str) -> None:
    torch.manual_seed(0)
    clip = load_clip("ViT-B-16", RANDOM, device=device)
    pred = CLIPtrasePredictor(clip)
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

        t_pipe = timed(pipeline, repeats)
        t_bare = timed(bare, repeats)
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
    from cliptrase.method.cliptrase import (
        _argmax_channels,
        collapse_background,
        correlation_matrix,
        patch_logits,
    )
    from cliptrase.method.denoise import subtract_cls_row
    from cliptrase.method.vote import cluster_soft_masks, majority_vote, region_map

    clip = pred.clip
    eps, min_samples = dbscan_settings(size)
    opts = CLIPtraseOptions(eps=eps, min_samples=min_samples, n_foreground=20)
    x = preprocess_image(image, size, clip.mean, clip.std)[None]
    feats = pred.encode(x, opts)
    logits = patch_logits(feats, text, pred.logit_scale, (size, size))
    raw = collapse_background(_argmax_channels(logits), 20)
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
        "encoder (modified tower)": lambda: pred.encode(x, opts),
        "logits (text product, upsample, argmax)": lambda: collapse_background(
            _argmax_channels(patch_logits(feats, text, pred.logit_scale, (size, size))), 20
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


def bench_precision(device: str) -> None:
    """mIoU of the golden cases (paper protocol, golden tiny model) at fp32 / bf16 / fp16."""
    import json
    import os
    from pathlib import Path

    from cliptrase.protocols.paper import is_scored, map_gt

    golden = Path(
        os.environ.get("CLIPTRASE_GOLDEN_DIR", Path(__file__).resolve().parents[2] / "shared/golden")
    )
    index = json.loads((golden / "cases.json").read_text())
    clip = load_clip(weights=golden / index["weights"], device=device)
    print(f"\n== precision: golden cases, paper protocol, {device}: mIoU and pixels equal to fp32 ==")
    print(
        f"{'case':>12} {'fp32 mIoU':>10} {'bf16 mIoU':>10} {'bf16 px=':>9} {'fp16 mIoU':>10} {'fp16 px=':>9}"
    )
    for name, case in sorted(index["cases"].items()):
        ds = paper_dataset(case["dataset_key"])
        opts = paper_options(ds, case["image_size"])
        with np.load(golden / f"{name}.npz") as z:
            images = [Image.fromarray(z[f"{i}/image"]) for i in range(case["n_images"])]
            gts = [z[f"{i}/gt"] for i in range(case["n_images"])]
        size = case["image_size"]
        x = torch.stack([preprocess_image(im, size, clip.mean, clip.std) for im in images])
        crops = [preprocess_gt(gt_to_image(g), size) for g in gts]
        row, ref = [], None
        for precision in ("fp32", "bf16", "fp16"):
            pred = CLIPtrasePredictor(clip, precision=precision)
            out = pred(x, pred.text_classifier(ds.prompts), opts).pred.cpu().numpy()
            hist = sum(
                confusion_matrix(map_gt(c, ds), o, ds.n_class_scored)
                for c, o in zip(crops, out)
                if is_scored(c)
            )
            miou = paper_scores(hist)["mIoU"]
            ref = out if ref is None else ref
            row.append((miou, float((out == ref).mean())))
        print(
            f"{name:>12} {row[0][0]:>10.2f} {row[1][0]:>10.2f} {row[1][1]:>9.4f} {row[2][0]:>10.2f} "
            f"{row[2][1]:>9.4f}"
        )


def eval_one(protocol: str, images: int, device: str, results: str) -> None:
    """One harness run in this process; prints a JSON line with the figures."""
    import json
    import resource

    from hydra import compose, initialize_config_dir

    from cliptrase.cli.evaluate import CONFIG_DIR, run
    from cliptrase.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[
                "model=random_vit_b16",
                "dataset=demo",
                f"protocol={protocol}",
                f"device={device}",
                f"max_images={images}",
                f"paths.results_dir={results}",
                "results.resume=false",
                "results.overwrite=true",
                "experiment_name=bench",
            ],
        )
    t0 = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - t0
    out = {
        "protocol": protocol,
        "images": images,
        "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if torch.cuda.is_available():
        out["max_cuda_alloc_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("BENCH " + json.dumps(out))


def bench_eval(images: int, device: str) -> None:
    import json
    import subprocess
    import sys
    import tempfile

    print(
        f"\n== eval: cliptrase-eval on the demo benchmark, ViT-B/16-sized random weights, {device}, "
        f"{images} images (model load and text encoding included) =="
    )
    print(f"{'protocol':>10} {'images/s':>9} {'s/image':>8} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for protocol in ("paper224", "standard"):
            proc = subprocess.run(
                [sys.executable, __file__, "eval-one", protocol, str(images), device, tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH "))
            r = json.loads(line[6:])
            print(
                f"{protocol:>10} {r['images'] / r['wall_s']:>9.2f} {r['wall_s'] / r['images']:>8.2f} "
                f"{r['peak_rss_mb']:>12.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="suite", required=True)
    core = sub.add_parser("core", help="pipeline vs bare encoder; DBSCAN backends")
    core.add_argument("--repeats", type=int, default=5)
    core.add_argument("--device", default="cpu")
    ev = sub.add_parser("eval", help="the whole harness, both protocols: images/s and peak memory")
    ev.add_argument("--images", type=int, default=6)
    ev.add_argument("--device", default="cpu")
    prec = sub.add_parser("precision", help="golden mIoU at fp32 / bf16 / fp16")
    prec.add_argument("--device", default="cpu")
    one = sub.add_parser("eval-one", help=argparse.SUPPRESS)
    one.add_argument("protocol")
    one.add_argument("images", type=int)
    one.add_argument("device")
    one.add_argument("results")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.suite == "core":
        bench_core(args.repeats, args.device)
    elif args.suite == "precision":
        bench_precision(args.device)
    elif args.suite == "eval":
        bench_eval(args.images, args.device)
    else:
        eval_one(args.protocol, args.images, args.device, args.results)


if __name__ == "__main__":
    main()
