"""``bench.py leak``: resident memory every ``--every`` images over a long run (standard protocol,
synthetic 512x683 images): growth after warm-up should be ~0."""

from __future__ import annotations

import tempfile

from .cell import cell_overrides, harness_cell
from .common import SYNTH_HW, emit, run_cell, write_synthetic


def leak_cell(args) -> None:
    """A long run with RSS sampled every ``args.every`` images; prints ``BENCH {json}``."""
    from cliptrase.engine.timing import StageTimerHook

    overrides = cell_overrides(
        dataset="voc21",
        protocol=args.protocol,
        backbone=args.backbone,
        data_root=args.data_root,
        work=args.work,
        images=args.images,
        device=args.device,
        workers=args.workers,
    )
    _, _, (hook,) = harness_cell(
        overrides, lambda cfg, timer: [StageTimerHook(timer, warmup=1, rss_every=args.every)], name="leak"
    )
    emit({"rss": hook.rss, "s_per_image": hook.seconds / max(hook.images, 1)})


def bench_leak(args) -> None:
    print(
        f"\n== leak: {args.protocol} protocol, {args.backbone} random weights, {args.images} synthetic "
        f"{SYNTH_HW[0]}x{SYNTH_HW[1]} images, {args.device}, RSS every {args.every} images =="
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic("voc21", f"{tmp}/data", args.images)
        r = run_cell(
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
