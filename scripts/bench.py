#!/usr/bin/env python
"""Benchmarks that print figures (never timed assertions in tests); the tools live in scripts/benchmarks/.

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
python scripts/bench.py vocab [--datasets voc21,ade150,context459] [--images N] [--device auto]
                              [--skip-harness]
    the standard protocol per vocabulary size (53, 150, 459 prompts): the full-resolution scoring step
    alone, untiled vs chunked (time, measured peak memory of the step, differing label pixels), then the
    harness on each vocabulary's layout with its ratio to the bare encoder and the stage breakdown.
python scripts/bench.py leak [--images 1000] [--backbone ViT-S-16] [--protocol standard]
    resident memory every 100 images over a long run (standard protocol, synthetic 512x683 images):
    growth after warm-up should be ~0.
python scripts/bench.py stats [--images 5000] [--classes 171] [--resamples 1000]
    the bootstrap of cliptrase-table --ci on synthetic per-image records (COCO-Stuff-sized by default):
    seconds for one row's intervals (every cell + per class) under each metric definition, and for a
    paired comparison of two rows (same resamples).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/: the benchmarks package
    from benchmarks.cli import main

    main(__doc__)
