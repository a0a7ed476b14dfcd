"""The prompts of one job (dataset x protocol): a dataset's vocabulary under a protocol, flattened for the
segmentor.

:mod:`cliptrase.datasets.vocab` reads the class lists; this module turns them into what the segmentor
scores: one prompt per word, the class each prompt votes for, the scored class count and the background
handling (docs/protocols.md §1d: under the standard protocol all background words form class 0; under the
paper protocol the authors' background prompts all map to the class after the foreground ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from cliptrase.datasets.vocab import load_vocabulary
from cliptrase.protocols.paper import paper_dataset


@dataclass(frozen=True)
class JobPrompts:
    """Prompts and label space of one (dataset, protocol).

    Attributes:
        prompts: every prompt, in scoring order.
        prompt_to_class: per prompt, the class it scores for.
        n_classes: number of scored classes.
        n_foreground: paper protocol with background: the background class index (= foreground count);
            ``None`` otherwise.
        cls_product: multiply pixel logits by the [CLS] logits (the authors' VOC20 rule).
        class_names: one name per scored class (``"background"`` included), for records and legends.
    """

    prompts: list[str]
    prompt_to_class: list[int]
    n_classes: int
    n_foreground: int | None
    cls_product: bool
    class_names: list[str]


def job_prompts(dataset_cfg: Any, protocol_cfg: Any, *, dataset_class: type | None = None) -> JobPrompts:
    """Prompts, prompt -> class map and background handling of a dataset under a protocol.

    Args:
        dataset_cfg: the validated ``dataset`` group (``paper_key``, ``standard_vocab``...).
        protocol_cfg: the validated ``protocol`` group (``vocab``: ``paper`` or ``standard``).
        dataset_class: the dataset's class when the caller resolved it already (else looked up by name).
    """
    if protocol_cfg.vocab == "paper" and dataset_cfg.paper_key:
        return _paper_prompts(dataset_cfg.paper_key)
    container = OmegaConf.to_container(OmegaConf.structured(dataset_cfg))
    voc = load_vocabulary(container, protocol_cfg.vocab, dataset_class=dataset_class)
    lines = voc.synonyms or [[n] for n in voc.class_names]
    names = list(voc.class_names)
    if voc.background_names:  # label 0 is background: all its words are one class (docs/protocols.md §1d)
        lines, names = [list(voc.background_names), *lines], ["background", *names]
    return JobPrompts(
        prompts=[p for line in lines for p in line],
        prompt_to_class=[c for c, line in enumerate(lines) for _ in line],
        n_classes=len(lines),
        n_foreground=None,
        cls_product=False,
        class_names=names,
    )


def _paper_prompts(paper_key: str) -> JobPrompts:
    """The authors' prompts of one benchmark: background words after the foreground, one class."""
    ds = paper_dataset(paper_key)
    n_fg = ds.n_foreground
    return JobPrompts(
        prompts=list(ds.prompts),
        prompt_to_class=[min(i, n_fg) for i in range(len(ds.prompts))],
        n_classes=ds.n_class_scored,
        n_foreground=n_fg if ds.has_background else None,
        cls_product=ds.cls_product,
        class_names=list(ds.class_names) + (["background"] if ds.has_background else []),
    )
