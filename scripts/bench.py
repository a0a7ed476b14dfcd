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
python scripts/bench.py table [--protocols paper224,paper336,standard] [--backbones ViT-B-16,ViT-L-14]
                              [--precisions fp32,bf16] [--images N] [--device auto] [--workers 2]
    one table: the harness (mmengine test loop, VOC21 vocabulary, synthetic 512x683 images in the VOC
    layout) per protocol x backbone (random weights) x precision, each cell in its own process: images/s,
    s/image, the bare open_clip image encoder on the same input in the same process and the ratio, peak
    RSS (and CUDA max allocated), the per-image breakdown (data wait, encoder, logits, clustering,
    post-processing, metric, other), the text classifier build time, and text prompts/s (77-token vs
    truncated) per backbone. Figures exclude the first (warm-up) iteration.
python scripts/bench.py leak [--images 1000] [--backbone ViT-S-16] [--protocol standard]
    resident memory every 100 images over a long run (standard protocol, synthetic 512x683 images):
    growth after warm-up should be ~0.
python scripts/bench.py stats [--images 5000] [--classes 171] [--resamples 1000]
    the bootstrap of cliptrase-table --ci on synthetic per-image records (COCO-Stuff-sized by default):
    seconds for one row's intervals (every cell + per class) under each metric definition, and for a
    paired comparison of two rows (same resamples).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import open_clip
import torch
from mmengine.hooks import Hook
from PIL import Image

from cliptrase.evaluation.paper_metric import confusion_matrix, paper_scores
from cliptrase.method.cluster import dbscan
from cliptrase.method.runner import Predictor
from cliptrase.method.trase import CLIPtraseOptions
from cliptrase.models.clip import RANDOM, load_clip
from cliptrase.models.text import encode_text_truncated
from cliptrase.protocols.paper import (
    dbscan_settings,
    gt_to_image,
    paper_dataset,
    paper_options,
    preprocess_gt,
    preprocess_image,
)
from cliptrase.utils.profiling import peak_rss_mb, sync_device


def timed_pair(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall times of ``a`` and ``b`` run alternately (drift in machine load hits both alike)."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, acc in ((a, ta), (b, tb)):
            sync_device()
            t0 = time.perf_counter()
            fn()
            sync_device()
            acc.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync_device()
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


def bench_precision(device: str) -> None:
    """mIoU of the golden cases (paper protocol, golden tiny model) at fp32 / bf16 / fp16."""
    import json
    import os
    from pathlib import Path

    from cliptrase.protocols.paper import is_scored, map_gt

    golden = Path(
        os.environ.get("CLIPTRASE_GOLDEN_DIR", Path(__file__).resolve().parents[1] / "tests/golden/data")
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
            pred = Predictor(clip, precision=precision)
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

    from cliptrase.harness.compose import compose_job
    from cliptrase.harness.run import run

    cfg = compose_job(
        [
            "model=random_vit_b16",
            "dataset=demo",
            f"protocol={protocol}",
            f"device={device}",
            f"max_images={images}",
            f"paths.results_dir={results}",
            "results.resume=false",
            "results.overwrite=true",
            "experiment_name=bench",
        ]
    )
    t0 = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - t0
    out = {
        "protocol": protocol,
        "images": images,
        "wall_s": wall,
        "peak_rss_mb": peak_rss_mb(),
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


SYNTH_HW = (512, 683)
"""Synthetic image size of the table and leak runs (the issue's GPU target is stated at 512 x 683)."""


def write_synthetic_voc(root: str, images: int, distinct: int = 8, hw: tuple[int, int] = SYNTH_HW) -> None:
    """``images`` entries in the VOC layout under ``root`` (``distinct`` files, listed repeatedly)."""
    from pathlib import Path

    root_p = Path(root)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root_p / sub).mkdir(parents=True, exist_ok=True)
    stems = []
    for i in range(min(distinct, images)):
        image, labels = scene(*hw, seed=i)
        image.save(root_p / "JPEGImages" / f"synth_{i:03d}.jpg", quality=95)
        Image.fromarray(labels).save(root_p / "SegmentationClass" / f"synth_{i:03d}.png")
        stems.append(f"synth_{i:03d}")
    split = [stems[i % len(stems)] for i in range(images)]
    (root_p / "ImageSets/Segmentation/val.txt").write_text("\n".join(split) + "\n")


def _cell_overrides(
    protocol: str,
    backbone: str,
    precision: str,
    images: int,
    device: str,
    data_root: str,
    work: str,
    workers: int,
    batch_size: int = 1,
    window_batch: int = 16,
) -> list[str]:
    slug = "random_" + backbone.lower().replace("-", "_")
    return [
        "model=random_vit_b16",
        f"model.name={backbone}",
        f"model.slug={slug}",
        "dataset=voc21",
        f"dataset.data_root={data_root}",
        f"protocol={protocol}",
        f"precision={precision}",
        f"device={device}",
        f"max_images={images}",
        f"num_workers={workers}",
        f"batch_size={batch_size}",
        f"window_batch={window_batch}",
        f"paths.results_dir={work}",
        "experiment_name=bench",
    ]


class BareEncoderHook(Hook):
    """Runs ``fn`` (the bare encoder) after each test iteration past warm-up and records its time."""

    priority = "LOW"

    def __init__(self, fn: Callable[[], None], warmup: int = 1) -> None:
        self.fn, self.warmup = fn, warmup
        self.times: list[float] = []

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if batch_idx == self.warmup - 1:
            self.fn()  # its own warm-up, before the timed iterations start
            return
        if batch_idx < self.warmup:
            return
        sync_device()
        t0 = time.perf_counter()
        self.fn()
        sync_device()
        self.times.append(time.perf_counter() - t0)


def _bare_input_shape(cfg) -> tuple[int, tuple[int, int]]:
    """(encoder passes per image, (batch, side)) of the bare-encoder baseline for ``cfg``'s protocol."""
    import mmcv

    from cliptrase.inference.sliding import window_boxes

    if cfg.protocol.kind == "paper":
        return 1, (int(cfg.batch_size), int(cfg.protocol.image_size))
    short = cfg.protocol.short_side_by_dataset.get(cfg.dataset.name, cfg.protocol.short_side)
    w, h = mmcv.rescale_size(SYNTH_HW[::-1], (2048, short))
    crop, stride = int(cfg.protocol.crop), int(cfg.protocol.stride)
    n_windows = len(window_boxes((h, w), (crop, crop), (stride, stride))) * int(cfg.batch_size)
    window_batch = int(cfg.window_batch)
    if n_windows <= window_batch:
        return 1, (n_windows, crop)
    return -(-n_windows // window_batch), (window_batch, crop)  # whole batches (an upper bound)


def table_cell(args) -> None:
    """One table cell in this process; prints ``BENCH {json}``."""
    import json

    from cliptrase.config import validate
    from cliptrase.evaluation.timing import StageTimerHook
    from cliptrase.harness.compose import compose_job
    from cliptrase.harness.evaluate import evaluate
    from cliptrase.harness.runtime import seed_everything
    from cliptrase.method.runner import PRECISIONS
    from cliptrase.utils.device import resolve_device
    from cliptrase.utils.profiling import STAGES, StageTimer, peak_rss_mb

    device = resolve_device(args.device)
    cfg = compose_job(
        _cell_overrides(
            args.protocol,
            args.backbone,
            args.precision,
            args.images,
            str(device),
            args.data_root,
            args.work,
            args.workers,
            args.batch_size,
            args.window_batch,
        )
    )
    groups = validate(cfg)
    seed_everything(cfg.seed)  # as cliptrase-eval: same random weights in every cell (text cache hits)
    # the bare open_clip image encoder on inputs of the same shape and precision, run after every
    # iteration of the same loop (interleaved, so drift in machine load hits both alike)
    passes, (batch, side) = _bare_input_shape(cfg)
    visual = open_clip.create_model(args.backbone, force_image_size=side, device=device).eval().visual
    x = torch.randn(batch, 3, side, side, device=device)

    def bare() -> None:
        autocast = torch.autocast(device.type, PRECISIONS[args.precision], enabled=args.precision != "fp32")
        with torch.no_grad(), autocast:
            for _ in range(passes):
                visual(x)

    timer = StageTimer()
    hook = StageTimerHook(timer, warmup=1)
    bare_hook = BareEncoderHook(bare, warmup=1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with timer.activate():
        evaluate(cfg, groups, "bench", hooks=[bare_hook, hook])
    n = max(hook.images, 1)
    per_image = (hook.seconds - sum(bare_hook.times)) / n
    stages = {k: 1e3 * timer.totals.get(k, 0.0) / n for k in STAGES}
    stages["other"] = max(1e3 * per_image - sum(stages.values()), 0.0)
    out = {
        "protocol": args.protocol,
        "backbone": args.backbone,
        "precision": args.precision,
        "device": str(device),
        "images": hook.images,
        "s_per_image": per_image,
        "bare_s_per_image": statistics.median(bare_hook.times) / int(cfg.batch_size),
        "stages_ms": stages,
        "text_s": timer.totals.get("text", 0.0),
        "peak_rss_mb": peak_rss_mb(),
    }
    if device.type == "cuda":
        out["max_cuda_alloc_mb"] = torch.cuda.max_memory_allocated() / 2**20

    if args.text_prompts:
        clip = load_clip(args.backbone, RANDOM, device=device)
        templates = Predictor(clip).templates
        names = ["cat", "dog", "potted plant", "background", "sky", "road", "person", "grass"]
        prompts = [t.format(c) for c in names for t in templates][: args.text_prompts]
        tokens = clip.tokenizer(prompts).to(device)
        full = timed(lambda: clip.model.encode_text(tokens), 1)
        short = timed(lambda: encode_text_truncated(clip.model, tokens), 1)
        out["text_prompts"] = len(prompts)
        out["text_full_pps"] = len(prompts) / full
        out["text_truncated_pps"] = len(prompts) / short
    print("BENCH " + json.dumps(out), flush=True)


def _run_cell(argv: list[str]) -> dict:
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"bench cell {argv} failed (exit {proc.returncode}); its stderr is above")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH "))
    return json.loads(line[6:])


def bench_table(args) -> None:
    import tempfile

    from cliptrase.utils.device import resolve_device
    from cliptrase.utils.profiling import STAGES

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    images = args.images or (256 if cuda else 4)
    batch_size = args.batch_size or (8 if cuda else 1)
    window_batch = args.window_batch or (64 if cuda else 16)
    protocols = args.protocols.split(",")
    backbones = args.backbones.split(",")
    precisions = args.precisions.split(",")
    print(
        f"\n== table: harness per image (mmengine test loop, VOC21 vocabulary, synthetic "
        f"{SYNTH_HW[0]}x{SYNTH_HW[1]} images), random weights, {device}, {torch.get_num_threads()} threads, "
        f"{images} images, batch {batch_size}, window batch {window_batch} (first batch = warm-up, not "
        f"counted), {args.workers} loader workers =="
    )
    head = (
        f"{'protocol':<9} {'backbone':<9} {'prec':<5} {'img/s':>7} {'s/img':>7} {'bare s':>7} {'ratio':>6} "
        f"{'RSS MB':>7} {'CUDA MB':>8} | "
        + " ".join(f"{k[:7]:>7}" for k in (*STAGES, "other"))
        + f" | {'text s':>6}"
    )
    print(head + "\n" + "-" * len(head))
    text_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_root = f"{tmp}/data"
        write_synthetic_voc(data_root, images)
        for backbone in backbones:
            for protocol in protocols:
                for precision in precisions:
                    first = protocol == protocols[0] and precision == precisions[0]
                    r = _run_cell(
                        [
                            "table-cell",
                            protocol,
                            backbone,
                            precision,
                            str(images),
                            str(device),
                            data_root,
                            f"{tmp}/work",
                            str(args.workers),
                            str(args.repeats),
                            str(args.text_prompts if first else 0),
                            str(batch_size),
                            str(window_batch),
                        ]
                    )
                    cuda_mb = f"{r['max_cuda_alloc_mb']:>8.0f}" if "max_cuda_alloc_mb" in r else f"{'-':>8}"
                    st = r["stages_ms"]
                    print(
                        f"{protocol:<9} {backbone:<9} {precision:<5} {1 / r['s_per_image']:>7.2f} "
                        f"{r['s_per_image']:>7.3f} {r['bare_s_per_image']:>7.3f} "
                        f"{r['s_per_image'] / r['bare_s_per_image']:>5.2f}x "
                        f"{r['peak_rss_mb']:>7.0f} {cuda_mb} | "
                        + " ".join(f"{st[k]:>7.1f}" for k in (*STAGES, "other"))
                        + f" | {r['text_s']:>6.2f}",
                        flush=True,
                    )
                    if "text_prompts" in r:
                        text_rows.append(r)
    print("stage columns: ms per image; 'data' = loader wait + normalisation; 'text s' = classifier, once")
    if text_rows:
        print(
            f"\n{'backbone':<10} {'prompts':>8} {'77-token prompts/s':>19} {'truncated prompts/s':>20} "
            f"{'speed-up':>9}"
        )
        for r in text_rows:
            print(
                f"{r['backbone']:<10} {r['text_prompts']:>8} {r['text_full_pps']:>19.0f} "
                f"{r['text_truncated_pps']:>20.0f} {r['text_truncated_pps'] / r['text_full_pps']:>8.1f}x"
            )


def leak_cell(args) -> None:
    """A long run with RSS sampled every ``args.every`` images; prints ``BENCH {json}``."""
    import json

    from cliptrase.config import validate
    from cliptrase.evaluation.timing import StageTimerHook
    from cliptrase.harness.compose import compose_job
    from cliptrase.harness.evaluate import evaluate
    from cliptrase.harness.runtime import seed_everything
    from cliptrase.utils.profiling import StageTimer

    cfg = compose_job(
        _cell_overrides(
            args.protocol,
            args.backbone,
            "fp32",
            args.images,
            args.device,
            args.data_root,
            args.work,
            args.workers,
        )
    )
    timer = StageTimer()
    hook = StageTimerHook(timer, warmup=1, rss_every=args.every)
    groups = validate(cfg)
    seed_everything(cfg.seed)
    evaluate(cfg, groups, "leak", hooks=[hook])
    print(
        "BENCH " + json.dumps({"rss": hook.rss, "s_per_image": hook.seconds / max(hook.images, 1)}),
        flush=True,
    )


def bench_leak(args) -> None:
    import tempfile

    print(
        f"\n== leak: {args.protocol} protocol, {args.backbone} random weights, {args.images} synthetic "
        f"{SYNTH_HW[0]}x{SYNTH_HW[1]} images, {args.device}, RSS every {args.every} images =="
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_voc(f"{tmp}/data", args.images)
        r = _run_cell(
            [
                "leak-cell",
                args.protocol,
                args.backbone,
                str(args.images),
                args.device,
                f"{tmp}/data",
                f"{tmp}/work",
                str(args.workers),
                str(args.every),
            ]
        )
    print(f"{'images':>7} {'RSS MB':>8} {'trimmed RSS MB':>15} {'live tensors':>13}")
    for seen, raw, trimmed, tensors in r["rss"]:
        print(f"{seen:>7} {raw:>8.1f} {trimmed:>15.1f} {tensors:>13}")
    print("trimmed = after gc.collect() + malloc_trim(0): glibc otherwise keeps freed heap pages resident")
    if len(r["rss"]) >= 3:
        (n0, _, t0, c0), (n1, _, t1, c1) = r["rss"][1], r["rss"][-1]  # from the 2nd sample: warm
        print(
            f"growth from image {n0} to {n1}: trimmed RSS {t1 - t0:+.1f} MB "
            f"({(t1 - t0) / (n1 - n0) * 1024:+.2f} KB/image), live tensors {c1 - c0:+d}; "
            f"{r['s_per_image']:.3f} s/image"
        )


def synthetic_counts(images: int, classes: int, definition: str, seed: int):
    """Per-image confusion counts like a real run: ~12 GT classes per image, 80 % of pixels right."""
    from cliptrase.evaluation.per_image import ImageCells, PerImageCounts

    rng = np.random.default_rng(seed)
    side = classes + 1 if definition == "mmseg_iou" else classes
    entries = []
    for i in range(images):
        present = rng.choice(classes, size=12, replace=False)
        gt = rng.choice(present, size=20000)
        pred = np.where(rng.random(20000) < 0.8, gt, rng.choice(present, size=20000))
        hist = np.bincount(gt * side + pred, minlength=side * side)
        cells = np.flatnonzero(hist)
        entries.append(ImageCells(f"img{i:05d}", cells, hist[cells]))
    return PerImageCounts.from_entries(entries, metric_definition=definition, num_classes=classes, side=side)


def bench_stats(args) -> None:
    from cliptrase.evaluation.stats import (
        percentile_interval,
        resample_rng,
        resampled_sums,
        scores,
        share_better,
    )

    print(
        f"bootstrap: {args.images} images x {args.classes} classes x {args.resamples} resamples, "
        f"{torch.get_num_threads()} threads"
    )
    for definition in ("mmseg_iou", "paper_scores"):
        a, b = (synthetic_counts(args.images, args.classes, definition, seed) for seed in (0, 1))
        t0 = time.perf_counter()
        (sums,) = resampled_sums([a.marginals()], resample_rng(0, "bench", a.image_ids), args.resamples)
        resampled = scores(sums, definition)
        interval = percentile_interval(resampled["mIoU"])
        percentile_interval(resampled["per_class_IoU"])
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        rng = resample_rng(0, "bench", a.image_ids)
        both = resampled_sums([a.marginals(), b.marginals()], rng, args.resamples)
        ra, rb = (scores(s, definition) for s in both)
        paired = percentile_interval(ra["mIoU"] - rb["mIoU"])
        percentile_interval(ra["per_class_IoU"] - rb["per_class_IoU"])
        share = share_better(ra["mIoU"], rb["mIoU"])
        pair = time.perf_counter() - t0
        print(
            f"{definition:13s} one row, mIoU + per-class intervals: {one:.2f} s "
            f"(mIoU [{interval.lo:.2f}, {interval.hi:.2f}]); paired A vs B, both rows + differences: "
            f"{pair:.2f} s (A - B [{paired.lo:+.2f}, {paired.hi:+.2f}], A better in {100 * share:.0f} %)"
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
    tab = sub.add_parser("table", help="protocol x backbone x precision table with the stage breakdown")
    tab.add_argument("--protocols", default="paper224,paper336,standard")
    tab.add_argument("--backbones", default="ViT-B-16,ViT-L-14")
    tab.add_argument("--precisions", default="fp32,bf16")
    tab.add_argument("--images", type=int, default=0, help="per cell (default 4 on CPU, 64 on CUDA)")
    tab.add_argument("--device", default="auto")
    tab.add_argument("--workers", type=int, default=2, help="data-loader worker processes")
    tab.add_argument(
        "--batch-size", type=int, default=0, help="images per step (default 1 on CPU, 8 on CUDA)"
    )
    tab.add_argument("--window-batch", type=int, default=0, help="windows per pass (default 16 CPU, 64 CUDA)")
    tab.add_argument("--repeats", type=int, default=3, help="repeats of the bare-encoder timing")
    tab.add_argument("--text-prompts", type=int, default=160, help="prompts of the text timing (0: skip)")
    cell = sub.add_parser("table-cell", help=argparse.SUPPRESS)
    for name in ("protocol", "backbone", "precision"):
        cell.add_argument(name)
    cell.add_argument("images", type=int)
    cell.add_argument("device")
    cell.add_argument("data_root")
    cell.add_argument("work")
    cell.add_argument("workers", type=int)
    cell.add_argument("repeats", type=int)
    cell.add_argument("text_prompts", type=int)
    cell.add_argument("batch_size", type=int)
    cell.add_argument("window_batch", type=int)
    leak = sub.add_parser("leak", help="RSS over a long run (no growth expected)")
    leak.add_argument("--images", type=int, default=1000)
    leak.add_argument("--backbone", default="ViT-S-16")
    leak.add_argument("--protocol", default="standard")
    leak.add_argument("--device", default="cpu")
    leak.add_argument("--workers", type=int, default=2)
    leak.add_argument("--every", type=int, default=100)
    lcell = sub.add_parser("leak-cell", help=argparse.SUPPRESS)
    for name in ("protocol", "backbone"):
        lcell.add_argument(name)
    lcell.add_argument("images", type=int)
    for name in ("device", "data_root", "work"):
        lcell.add_argument(name)
    lcell.add_argument("workers", type=int)
    lcell.add_argument("every", type=int)
    st = sub.add_parser("stats", help="bootstrap intervals and paired comparisons (cliptrase-table --ci)")
    st.add_argument("--images", type=int, default=5000)
    st.add_argument("--classes", type=int, default=171)
    st.add_argument("--resamples", type=int, default=1000)
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
    elif args.suite == "table":
        bench_table(args)
    elif args.suite == "table-cell":
        table_cell(args)
    elif args.suite == "leak":
        bench_leak(args)
    elif args.suite == "leak-cell":
        leak_cell(args)
    elif args.suite == "stats":
        bench_stats(args)
    else:
        eval_one(args.protocol, args.images, args.device, args.results)


if __name__ == "__main__":
    main()
