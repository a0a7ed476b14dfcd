"""``bench.py eval``: the whole harness (``cliptrase-eval``: dataset, segmentor, runner, metric, record)
on the demo benchmark with ViT-B/16-sized random weights, paper224 and standard: images/s and peak
memory, each protocol in its own process (``eval-one``) so its peak RSS is its own."""

from __future__ import annotations

import time

import torch

from cliptrase.utils.profiling import peak_rss_mb

from .common import emit, run_cell


def eval_one(protocol: str, images: int, device: str, results: str) -> None:
    """One harness run in this process; prints a JSON line with the figures."""
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
    emit(out)


def bench_eval(images: int, device: str) -> None:
    import tempfile

    print(
        f"\n== eval: cliptrase-eval on the demo benchmark, ViT-B/16-sized random weights, {device}, "
        f"{images} images (model load and text encoding included) =="
    )
    print(f"{'protocol':>10} {'images/s':>9} {'s/image':>8} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for protocol in ("paper224", "standard"):
            r = run_cell(["eval-one", protocol, str(images), device, tmp])
            print(
                f"{protocol:>10} {r['images'] / r['wall_s']:>9.2f} {r['wall_s'] / r['images']:>8.2f} "
                f"{r['peak_rss_mb']:>12.0f}"
            )
