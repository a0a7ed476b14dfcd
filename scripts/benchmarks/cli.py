"""The command line of ``scripts/bench.py``: one sub-command per tool, plus the hidden per-process cells."""

from __future__ import annotations

import argparse

import torch


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    sub = p.add_subparsers(dest="suite", required=True)
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
    tab.add_argument(
        "--methods", default="cliptrase", help="configs/method names, e.g. clip,sclip,naclip,resclip,scclip"
    )
    tab.add_argument("--images", type=int, default=0, help="per cell (default 4 on CPU, 256 on CUDA)")
    tab.add_argument("--device", default="auto")
    tab.add_argument("--workers", type=int, default=2, help="data-loader worker processes")
    tab.add_argument("--batch-size", type=int, default=0, help="images per step (default 1 CPU, 8 CUDA)")
    tab.add_argument("--window-batch", type=int, default=0, help="windows per pass (default 16 CPU, 64 CUDA)")
    tab.add_argument("--repeats", type=int, default=3, help="repeats of the bare-encoder timing")
    tab.add_argument("--text-prompts", type=int, default=160, help="prompts of the text timing (0: skip)")
    voc = sub.add_parser(
        "vocab", help="standard protocol per vocabulary size: scoring step and harness ratio"
    )
    voc.add_argument("--datasets", default="voc21,ade150,context459")
    voc.add_argument("--backbone", default="ViT-B-16")
    voc.add_argument(
        "--images",
        type=int,
        default=0,
        help="per vocabulary (default 16 on CPU, 64 on CUDA; the first is warm-up)",
    )
    voc.add_argument("--device", default="auto")
    voc.add_argument("--workers", type=int, default=2)
    voc.add_argument("--batch-size", type=int, default=0)
    voc.add_argument("--window-batch", type=int, default=0)
    voc.add_argument("--repeats", type=int, default=5, help="repeats of the scoring-step timing")
    voc.add_argument("--skip-harness", action="store_true", help="the scoring step only")
    leak = sub.add_parser("leak", help="RSS over a long run (no growth expected)")
    leak.add_argument("--images", type=int, default=1000)
    leak.add_argument("--backbone", default="ViT-S-16")
    leak.add_argument("--protocol", default="standard")
    leak.add_argument("--device", default="cpu")
    leak.add_argument("--workers", type=int, default=2)
    leak.add_argument("--every", type=int, default=100)
    st = sub.add_parser("stats", help="bootstrap intervals and paired comparisons (cliptrase-table --ci)")
    st.add_argument("--images", type=int, default=5000)
    st.add_argument("--classes", type=int, default=171)
    st.add_argument("--resamples", type=int, default=1000)

    # the per-process cells the tools above start (positional arguments, not for direct use)
    def cell(name: str, *args: str) -> None:
        c = sub.add_parser(name, help=argparse.SUPPRESS)
        for a in args:
            kind, _, arg = a.rpartition(":")
            c.add_argument(arg, type=int if kind == "int" else str)

    cell(
        "table-cell", "method", "protocol", "backbone", "precision", "int:images", "device", "data_root",
        "work", "int:workers", "int:repeats", "int:text_prompts", "int:batch_size", "int:window_batch",
    )  # fmt: skip
    cell(
        "vocab-cell", "dataset", "backbone", "int:images", "device", "data_root", "work", "int:workers",
        "int:batch_size", "int:window_batch",
    )  # fmt: skip
    cell("score-cell", "dataset", "path", "device", "int:repeats")
    cell(
        "leak-cell",
        "protocol",
        "backbone",
        "int:images",
        "device",
        "data_root",
        "work",
        "int:workers",
        "int:every",
    )
    cell("eval-one", "protocol", "int:images", "device", "results")
    return p


def main(doc: str) -> None:
    args = parser(doc).parse_args()
    torch.set_grad_enabled(False)
    suite = args.suite
    if suite == "core":
        from .core import bench_core

        bench_core(args.repeats, args.device)
    elif suite == "precision":
        from .precision import bench_precision

        bench_precision(args.device)
    elif suite in ("eval", "eval-one"):
        from .evalrun import bench_eval, eval_one

        if suite == "eval":
            bench_eval(args.images, args.device)
        else:
            eval_one(args.protocol, args.images, args.device, args.results)
    elif suite in ("table", "table-cell"):
        from .table import bench_table, table_cell

        (bench_table if suite == "table" else table_cell)(args)
    elif suite in ("vocab", "vocab-cell", "score-cell"):
        from .vocab import bench_vocab, score_cell, vocab_cell

        {"vocab": bench_vocab, "vocab-cell": vocab_cell, "score-cell": score_cell}[suite](args)
    elif suite in ("leak", "leak-cell"):
        from .leak import bench_leak, leak_cell

        (bench_leak if suite == "leak" else leak_cell)(args)
    else:
        from .stats import bench_stats

        bench_stats(args)
