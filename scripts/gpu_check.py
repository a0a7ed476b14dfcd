#!/usr/bin/env python
"""GPU check for a lent GPU machine (< 5 minutes): CUDA outputs equal CPU outputs on every golden case
(fp32), CUDA DBSCAN equals scikit-learn, the chunked full-resolution scoring of the standard protocol
equals the untiled path on CUDA (ADE-150 and PC-459 shapes), then the core benchmark on the GPU. Exits
non-zero on a mismatch.

Uses only the core (open_clip + torch + scikit-learn + scipy), not mmseg, so it runs on a machine where
only those are installed. ``scripts/gpu_check.sh`` is the entry point.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cliptrase.inference.scoring import scores_to_labels, upsampled_labels
from cliptrase.method.cluster import dbscan
from cliptrase.method.runner import Predictor
from cliptrase.models.clip import load_clip
from cliptrase.protocols.paper import paper_dataset, paper_options, preprocess_image

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("CLIPTRASE_GOLDEN_DIR", REPO / "tests" / "golden" / "data"))


def check_golden() -> bool:
    index = json.loads((GOLDEN / "cases.json").read_text())
    cpu = Predictor(load_clip(weights=GOLDEN / index["weights"]))
    gpu = Predictor(load_clip(weights=GOLDEN / index["weights"], device="cuda"))
    ok = True
    for name, case in sorted(index["cases"].items()):
        ds = paper_dataset(case["dataset_key"])
        opts = paper_options(ds, case["image_size"])
        with np.load(GOLDEN / f"{name}.npz") as z:
            x = torch.stack(
                [
                    preprocess_image(
                        Image.fromarray(z[f"{i}/image"]), case["image_size"], cpu.clip.mean, cpu.clip.std
                    )
                    for i in range(case["n_images"])
                ]
            )
            ref_pred = np.stack([z[f"{i}/pred"] for i in range(case["n_images"])])
        a = cpu(x, cpu.text_classifier(ds.prompts), opts)
        b = gpu(x, gpu.text_classifier(ds.prompts), opts)
        err = max(
            float((a.corr - b.corr.cpu()).abs().max()), float((a.dbscan_in - b.dbscan_in.cpu()).abs().max())
        )
        same_labels = torch.equal(a.labels, b.labels.cpu())
        differ = int((b.pred.cpu().numpy() != ref_pred).sum())
        good = err <= 1e-4 and same_labels and differ <= 1e-3 * ref_pred.size
        ok &= good
        print(
            f"{name}: max |cpu-gpu| {err:.2e}, labels equal {same_labels}, pred differs from golden on "
            f"{differ}/{ref_pred.size} px -> {'OK' if good else 'MISMATCH'}"
        )
    return ok


def check_dbscan() -> bool:
    rng = np.random.default_rng(0)
    ok = True
    for n, (eps, ms) in ((196, (0.7, 3)), (441, (1.1, 7)), (1024, (1.1, 7))):
        centres = rng.uniform(0, 0.6, (8, n))
        x = np.clip(centres[rng.integers(0, 8, (4, n))] + rng.normal(0, 0.05, (4, n, n)), 0, None)
        xt = torch.from_numpy(x.astype(np.float32))
        same = torch.equal(dbscan(xt.cuda(), eps, ms).cpu(), dbscan(xt, eps, ms, backend="sklearn"))
        ok &= same
        print(f"DBSCAN N={n} x4 images: CUDA == sklearn: {same}")
    return ok


def check_scoring() -> bool:
    """upsampled_labels == scores_to_labels of the whole upsampling, on CUDA, at the harness's shapes."""
    gen = torch.Generator().manual_seed(0)
    ok = True
    for n_prompts, n_classes, hw, prob_thd in ((53, 21, (336, 448), 0.1), (150, 150, (336, 448), 0.0),
                                               (459, 459, (448, 597), 0.0)):  # fmt: skip
        grid = 0.2 + 0.05 * torch.randn(1, n_prompts, hw[0] // 16, hw[1] // 16, generator=gen)
        scores = torch.nn.functional.interpolate(grid, size=hw, mode="bilinear", align_corners=False)[
            0
        ].cuda()
        p2c = torch.cat(
            [torch.arange(n_classes), torch.randint(0, n_classes, (n_prompts - n_classes,), generator=gen)]
        ).cuda()
        full = torch.nn.functional.interpolate(
            scores[None], size=(512, 683), mode="bilinear", align_corners=False
        )
        ref = scores_to_labels(full[0], p2c, n_classes, 40.0, prob_thd)
        del full
        out = upsampled_labels(scores, (512, 683), p2c, n_classes, 40.0, prob_thd)
        differ = int((out != ref).sum())
        ok &= differ == 0
        print(f"scoring {n_prompts} prompts, prob_thd {prob_thd}: chunked vs untiled differ on {differ} px")
    return ok


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("CUDA is not available on this machine")
    torch.set_grad_enabled(False)
    print(torch.cuda.get_device_name(), torch.__version__)
    ok = check_golden() & check_dbscan() & check_scoring()
    sys.exit(0 if ok else 1)
