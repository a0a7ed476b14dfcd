"""``bench.py table``: the harness (mmengine test loop, VOC21 vocabulary, synthetic 512x683 images in the
VOC layout) per protocol x backbone x precision, each cell in its own process: images/s, s/image, the
bare open_clip encoder on the same input in the same loop and the ratio, peak RSS (and CUDA max
allocated), the per-image stage breakdown, the text classifier build time and text prompts/s."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import open_clip
import torch
from mmengine.hooks import Hook

from cliptrase.method.runner import PRECISIONS, Predictor
from cliptrase.models.clip import RANDOM, load_clip
from cliptrase.models.text import encode_text_truncated
from cliptrase.utils.device import resolve_device
from cliptrase.utils.profiling import STAGES, peak_rss_mb, sync_device

from .cell import bare_input_shape, cell_overrides, harness_cell
from .common import SYNTH_HW, emit, run_cell, timed, write_synthetic


class BareEncoderHook(Hook):
    """Runs the bare encoder after each test iteration past warm-up and records its time, and the time of
    the iteration before it (from the end of the previous bare run: loader wait, the step, the metric and
    the other hooks), so that each iteration has its own baseline taken moments later.

    Args:
        make: ``runner -> fn``, called once at the first iteration (the runner's model exists by then);
            ``fn()`` runs the bare encoder once.
        warmup: iterations left out of the figures.
    """

    priority = "LOW"

    def __init__(self, make: Callable[[Any], Callable[[], None]], warmup: int = 1) -> None:
        self.make, self.warmup = make, warmup
        self.fn: Callable[[], None] | None = None
        self.times: list[float] = []
        self.iterations: list[float] = []
        self._end: float | None = None

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.fn is None:
            self.fn = self.make(runner)
        if batch_idx == self.warmup - 1:
            self.fn()  # its own warm-up, before the timed iterations start
            self._end = time.perf_counter()
            return
        if batch_idx < self.warmup:
            return
        sync_device()
        t0 = time.perf_counter()
        if self._end is not None:
            self.iterations.append(t0 - self._end)
        self.fn()
        sync_device()
        self._end = time.perf_counter()
        self.times.append(self._end - t0)

    def paired_ratio(self) -> float:
        """Median over iterations of (iteration time / the bare encoder right after it): machine drift
        over minutes (up to 1.5x on a shared 2-core machine) hits both figures of a pair alike."""
        pairs = list(zip(self.iterations, self.times[-len(self.iterations) :]))
        return statistics.median(it / bare for it, bare in pairs) if pairs else float("nan")


def bare_encoder(
    cfg, backbone: str, precision: str, device: torch.device
) -> Callable[[Any], Callable[[], None]]:
    """The bare open_clip image encoder (its own ``forward``, nothing of the pipeline) on inputs of the
    cell's shape and precision, as ``runner -> fn`` for :class:`BareEncoderHook`: the image tower of the
    cell's own model where it takes that input size as it is (the same weights in the same memory, so only
    the pipeline's own work differs), else a tower of the same architecture built for that size."""
    passes, (batch, side) = bare_input_shape(cfg)
    x = torch.randn(batch, 3, side, side, device=device)

    def make(runner) -> Callable[[], None]:
        model = getattr(runner.model, "module", runner.model)
        visual = getattr(getattr(model, "clip_model", None), "visual", None)
        if visual is None or tuple(getattr(visual, "image_size", ())) != (side, side):
            visual = open_clip.create_model(backbone, force_image_size=side, device=device).eval().visual

        def bare() -> None:
            autocast = torch.autocast(device.type, PRECISIONS[precision], enabled=precision != "fp32")
            with torch.no_grad(), autocast:
                for _ in range(passes):
                    visual(x)

        return bare

    return make


def measured_cell(overrides: list[str], backbone: str, precision: str, device: torch.device) -> dict:
    """One harness cell with the bare encoder interleaved: per-image figures (warm-up excluded)."""
    from cliptrase.engine.timing import StageTimerHook

    def hooks(cfg, timer):
        # interleaved after every iteration of the same loop, so drift in machine load hits both alike
        return [BareEncoderHook(bare_encoder(cfg, backbone, precision, device)), StageTimerHook(timer)]

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cfg, timer, (bare_hook, hook) = harness_cell(overrides, hooks)
    n = max(hook.images, 1)
    per_image = (hook.seconds - sum(bare_hook.times)) / n
    stages = {k: 1e3 * timer.totals.get(k, 0.0) / n for k in STAGES}
    stages["other"] = max(1e3 * per_image - sum(stages.values()), 0.0)
    out = {
        "images": hook.images,
        "s_per_image": per_image,
        "bare_s_per_image": statistics.median(bare_hook.times) / int(cfg.batch_size),
        "bare_mean_s_per_image": statistics.fmean(bare_hook.times) / int(cfg.batch_size),
        "paired_ratio": bare_hook.paired_ratio(),
        "stages_ms": stages,
        "text_s": timer.totals.get("text", 0.0),
        "peak_rss_mb": peak_rss_mb(),
    }
    if device.type == "cuda":
        out["max_cuda_alloc_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def table_cell(args) -> None:
    """One table cell in this process; prints ``BENCH {json}``."""
    device = resolve_device(args.device)
    overrides = cell_overrides(
        dataset="voc21",
        protocol=args.protocol,
        backbone=args.backbone,
        data_root=args.data_root,
        work=args.work,
        images=args.images,
        device=str(device),
        workers=args.workers,
        precision=args.precision,
        batch_size=args.batch_size,
        window_batch=args.window_batch,
        method=args.method,
    )
    out = {"protocol": args.protocol, "backbone": args.backbone, "precision": args.precision}
    out["method"] = args.method
    out.update(measured_cell(overrides, args.backbone, args.precision, device))
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
    emit(out)


def bench_table(args) -> None:
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    images = args.images or (256 if cuda else 4)
    batch_size = args.batch_size or (8 if cuda else 1)
    window_batch = args.window_batch or (64 if cuda else 16)
    protocols = args.protocols.split(",")
    backbones = args.backbones.split(",")
    precisions = args.precisions.split(",")
    methods = args.methods.split(",")
    print(
        f"\n== table: harness per image (mmengine test loop, VOC21 vocabulary, synthetic "
        f"{SYNTH_HW[0]}x{SYNTH_HW[1]} images), random weights, {device}, {torch.get_num_threads()} threads, "
        f"{images} images, batch {batch_size}, window batch {window_batch} (first batch = warm-up, not "
        f"counted), {args.workers} loader workers =="
    )
    head = f"{'method':<10} {'protocol':<9} {'backbone':<9} {'prec':<5} " + row_header() + f" | {'text s':>6}"
    print(head + "\n" + "-" * len(head))
    text_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_root = f"{tmp}/data"
        write_synthetic("voc21", data_root, images)
        cells = [(b, m, p, q) for b in backbones for m in methods for p in protocols for q in precisions]
        for backbone, method, protocol, precision in cells:
            first = (method, protocol, precision) == (methods[0], protocols[0], precisions[0])
            r = run_cell(
                [
                    "table-cell",
                    method,
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
            print(
                f"{method:<10} {protocol:<9} {backbone:<9} {precision:<5} "
                + row_figures(r)
                + f" | {r['text_s']:>6.2f}",
                flush=True,
            )
            if "text_prompts" in r:
                text_rows.append(r)
    print("stage columns: ms per image; 'data' = loader wait + normalisation; 'text s' = classifier, once")
    print(RATIO_NOTE)
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


RATIO_NOTE = (
    "s/img = mean per image; bare s = median bare encoder per image; ratio = median over iterations of "
    "(iteration / the bare encoder timed right after it); r.mean = mean s/img / mean bare s = enc + beyond, "
    "where enc = the pipeline's encoder stage / mean bare s, beyond = (s/img - encoder stage) / mean bare s"
)


def row_header() -> str:
    """The column labels of :func:`row_figures`, in its widths."""
    return (
        f"{'img/s':>7} {'s/img':>7} {'bare s':>7} {'ratio':>6} {'r.mean':>6} {'enc':>5} {'beyond':>6} "
        f"{'RSS MB':>7} {'CUDA MB':>8} | " + " ".join(f"{k[:7]:>7}" for k in (*STAGES, "other"))
    )


def row_figures(r: dict) -> str:
    """img/s, s/img, bare s, ratio (paired median), ratio of means, its split into the encoder stage and
    the rest (both over the mean bare encoder), RSS, CUDA MB | stage ms of a :func:`measured_cell` result."""
    cuda_mb = f"{r['max_cuda_alloc_mb']:>8.0f}" if "max_cuda_alloc_mb" in r else f"{'-':>8}"
    st = r["stages_ms"]
    bare = r["bare_mean_s_per_image"]
    encoder = st["encoder"] / 1e3
    return (
        f"{1 / r['s_per_image']:>7.2f} {r['s_per_image']:>7.3f} {r['bare_s_per_image']:>7.3f} "
        f"{r['paired_ratio']:>5.2f}x {r['s_per_image'] / bare:>5.2f}x "
        f"{encoder / bare:>5.3f} {(r['s_per_image'] - encoder) / bare:>6.3f} "
        f"{r['peak_rss_mb']:>7.0f} {cuda_mb} | " + " ".join(f"{st[k]:>7.1f}" for k in (*STAGES, "other"))
    )
