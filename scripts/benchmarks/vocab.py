"""``bench.py vocab``: the standard protocol per vocabulary size (VOC21's 53 prompts, ADE-150's 150,
PC-459's 459) on synthetic 512x683 images.

1. The full-resolution scoring step alone (window-resolution prompt scores -> labels at the image size),
   the untiled path (every prompt map upsampled, then ``scores_to_labels``) against the chunked
   ``upsampled_labels``: time, measured peak memory of the step, and pixels whose label differs; then
   CLIPtrase's region rows (``RegionScores``) labelled by ``region_labels`` against the untiled path.
2. The harness (``table``'s cell: mmengine loop, loader workers, metric) on each vocabulary's layout with
   the bare open_clip encoder on the same windows: s/image, ratio, stage breakdown.
"""

from __future__ import annotations

import tempfile

import torch
import torch.nn.functional as F

from cliptrase.inference.region_labels import region_labels
from cliptrase.inference.scoring import scores_to_labels, upsampled_labels
from cliptrase.inference.window_scores import RegionScores
from cliptrase.utils.device import resolve_device

from .cell import cell_overrides
from .common import SYNTH_HW, StepPeak, emit, run_cell, timed, write_synthetic

VOCABULARIES = {
    # dataset: (prompts, classes, short side of the standard protocol, prob_thd of the standard protocol)
    "voc21": (53, 21, 336, 0.1),
    "ade150": (150, 150, 336, 0.0),
    "context459": (459, 459, 448, 0.0),
}
"""The standard protocol's settings of the three vocabulary sizes (configs/protocol/standard.yaml)."""


def scoring_inputs(dataset: str, device: torch.device, seed: int = 0):
    """Window-resolution scores shaped as the harness hands them to the scoring step for a
    :data:`SYNTH_HW` image: smooth maps (a 14-patch-like grid, bilinear), synonyms as in the vocabulary."""
    n_prompts, n_classes, short, prob_thd = VOCABULARIES[dataset]
    gen = torch.Generator().manual_seed(seed)
    h, w = short, round(SYNTH_HW[1] * short / SYNTH_HW[0])
    grid = 0.2 + 0.05 * torch.randn(1, n_prompts, h // 16, w // 16, generator=gen)
    scores = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0]
    scores = scores.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # the canvas layout of sliding windows
    prompt_to_class = torch.cat(
        [torch.arange(n_classes), torch.randint(0, n_classes, (n_prompts - n_classes,), generator=gen)]
    )
    return scores.to(device), prompt_to_class.to(device), n_classes, prob_thd


def region_inputs(dataset: str, seed: int = 0) -> RegionScores:
    """Region rows shaped as CLIPtrase's stitched windows for a :data:`SYNTH_HW` image: ~600 rows (the
    distinct window-region combinations of ViT-B/16 random weights) over a map of 7x9-pixel blocks."""
    n_prompts, _, short, _ = VOCABULARIES[dataset]
    gen = torch.Generator().manual_seed(seed)
    h, w = short, round(SYNTH_HW[1] * short / SYNTH_HW[0])
    blocks = torch.randint(0, 600, (h // 7 + 1, w // 9 + 1), generator=gen, dtype=torch.int32)
    index = blocks.repeat_interleave(7, 0).repeat_interleave(9, 1)[:h, :w].contiguous()
    return RegionScores(0.2 + 0.01 * torch.randn(600, n_prompts, generator=gen), index)


def untiled(scores, size, prompt_to_class, n_classes, prob_thd):
    """The path ``upsampled_labels`` replaces (every prompt map at full size)."""
    if isinstance(scores, RegionScores):
        scores = scores.dense()
    full = F.interpolate(scores.contiguous()[None], size=size, mode="bilinear", align_corners=False)[0]
    return scores_to_labels(full, prompt_to_class, n_classes, 40.0, prob_thd)


def tiled(scores, size, prompt_to_class, n_classes, prob_thd):
    return upsampled_labels(scores, size, prompt_to_class, n_classes, 40.0, prob_thd)


def regions(scores, size, prompt_to_class, n_classes, prob_thd):
    labels = region_labels(scores, size, prompt_to_class, n_classes, 40.0, prob_thd)
    if labels is None:
        raise RuntimeError("region_labels does not apply (not the CPU, or an unreproduced PyTorch kernel)")
    return labels


def score_cell(args) -> None:
    """The scoring step of one vocabulary and path in this process: time, peak memory, labels digest."""
    device = resolve_device(args.device)
    scores, p2c, n_classes, prob_thd = scoring_inputs(args.dataset, device)
    if args.path in ("regions", "regions-untiled"):
        scores = region_inputs(args.dataset)
    fn = {"untiled": untiled, "tiled": tiled, "regions": regions, "regions-untiled": untiled}[args.path]
    peak = StepPeak(str(device))
    fn(scores, SYNTH_HW, p2c, n_classes, prob_thd)  # warm-up
    with peak.measure():
        labels = fn(scores, SYNTH_HW, p2c, n_classes, prob_thd)
    seconds = timed(lambda: fn(scores, SYNTH_HW, p2c, n_classes, prob_thd), args.repeats, warmup=0)
    other = (tiled if args.path == "untiled" else untiled)(scores, SYNTH_HW, p2c, n_classes, prob_thd)
    emit(
        {
            "seconds": seconds,
            "peak_mb": peak.mb,
            "differ": int((labels != other).sum()),
            "pixels": labels.numel(),
            "input_hw": list(scores.shape[1:]),
        }
    )


def vocab_cell(args) -> None:
    """One harness cell of the standard protocol on ``args.dataset``'s layout; prints ``BENCH {json}``."""
    from .table import measured_cell

    device = resolve_device(args.device)
    overrides = cell_overrides(
        dataset=args.dataset,
        protocol="standard",
        backbone=args.backbone,
        data_root=args.data_root,
        work=args.work,
        images=args.images,
        device=str(device),
        workers=args.workers,
        batch_size=args.batch_size,
        window_batch=args.window_batch,
    )
    emit(measured_cell(overrides, args.backbone, "fp32", device))


def _scoring_table(datasets, device, repeats: int, paths: tuple[str, str], label: str) -> None:
    """A row per vocabulary: the two ``score-cell`` paths (reference, candidate), each in its own process."""
    print(
        f"{'vocabulary':<11} {'prompts':>7} {'input':>9} {'untiled s':>10} {'peak MB':>8} "
        f"{label:>10} {'peak MB':>8} {'speed-up':>9} {'labels differ':>14}"
    )
    for dataset in datasets:
        u, t = (run_cell(["score-cell", dataset, path, str(device), str(repeats)]) for path in paths)
        print(
            f"{dataset:<11} {VOCABULARIES[dataset][0]:>7} {'x'.join(map(str, t['input_hw'])):>9} "
            f"{u['seconds']:>10.3f} {u['peak_mb']:>8.1f} {t['seconds']:>10.3f} {t['peak_mb']:>8.1f} "
            f"{u['seconds'] / t['seconds']:>8.1f}x {t['differ']:>7}/{t['pixels']}",
            flush=True,
        )


def bench_vocab(args) -> None:
    from .table import RATIO_NOTE, row_figures, row_header

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    datasets = args.datasets.split(",")
    print(
        f"\n== vocab: standard protocol per vocabulary, {device}, {torch.get_num_threads()} threads; "
        f"synthetic {SYNTH_HW[0]}x{SYNTH_HW[1]} images =="
    )
    print(
        "\nscoring step (window-resolution scores -> labels at 512x683; median of "
        f"{args.repeats}; peak = measured memory the step adds)"
    )
    _scoring_table(datasets, device, args.repeats, ("untiled", "tiled"), "tiled s")
    if device.type == "cpu":
        print(
            "\nregion rows (CLIPtrase's voted windows: 600 rows over 7x9 blocks), untiled vs region_labels "
            "(inference/region_labels.py; CPU only)"
        )
        _scoring_table(datasets, device, args.repeats, ("regions-untiled", "regions"), "regions s")
    if args.skip_harness:
        return
    images = args.images or (64 if cuda else 16)  # 15 timed on CPU: the paired ratio spreads ~3 % run to run
    batch_size = args.batch_size or (8 if cuda else 1)
    window_batch = args.window_batch or (64 if cuda else 16)
    print(
        f"\nharness, standard protocol, {args.backbone} random weights fp32, {images} images per vocabulary "
        f"(first = warm-up), batch {batch_size}, window batch {window_batch}, {args.workers} loader workers"
    )
    head = f"{'vocabulary':<11} {'prompts':>7} " + row_header()
    print(head + "\n" + "-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in datasets:
            write_synthetic(dataset, f"{tmp}/{dataset}", images)
            r = run_cell(
                [
                    "vocab-cell",
                    dataset,
                    args.backbone,
                    str(images),
                    str(device),
                    f"{tmp}/{dataset}",
                    f"{tmp}/work",
                    str(args.workers),
                    str(batch_size),
                    str(window_batch),
                ]
            )
            print(f"{dataset:<11} {VOCABULARIES[dataset][0]:>7} " + row_figures(r), flush=True)
    print("stage columns: ms per image; " + RATIO_NOTE)
