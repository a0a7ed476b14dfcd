#!/usr/bin/env python
"""Benchmarks that print figures (never timed assertions in tests).

python scripts/bench.py core [--repeats 5] [--device cpu]
    seconds per image of the whole paper-protocol pipeline vs the bare open_clip image encoder on the
    same input (ViT-B/16-sized random weights, 224 and 336), and torch-vs-sklearn DBSCAN time at
    N = 196, 441, 1024.
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

from cliptrase.evaluation.paper_metric import confusion_matrix
from cliptrase.method.cliptrase import CLIPtraseOptions
from cliptrase.method.cluster import dbscan
from cliptrase.models.clip import RANDOM, load_clip
from cliptrase.predictor import CLIPtrasePredictor
from cliptrase.protocols.paper import dbscan_settings, gt_to_image, preprocess_gt, preprocess_image


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
    names = [f"class {i}" for i in range(20)] + ["background"]
    text = pred.text_classifier(names)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="suite", required=True)
    core = sub.add_parser("core", help="pipeline vs bare encoder; DBSCAN backends")
    core.add_argument("--repeats", type=int, default=5)
    core.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.suite == "core":
        bench_core(args.repeats, args.device)


if __name__ == "__main__":
    main()
