"""``bench.py precision``: mIoU of the golden cases (paper protocol, golden tiny model) at fp32 / bf16 /
fp16 and the share of pixels equal to fp32."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cliptrase.engine.paper_metric import confusion_matrix, paper_scores
from cliptrase.method.runner import Predictor
from cliptrase.models.clip import load_clip
from cliptrase.protocols.paper import (
    gt_to_image,
    paper_dataset,
    paper_options,
    preprocess_gt,
    preprocess_image,
)


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
