"""Published mIoU numbers, keyed so :func:`~cliptrase.evaluation.tables.build_table` can set them beside ours.

Two sets, both for the OpenAI CLIP ViT-B/16 backbone:

* :data:`PAPER_README`: the authors' README table (method.md §9.1; single-GPU script, centre crop, their
  ``paper_scores`` metric) at 224 and 336 px, for the nine datasets of their script. These are what
  ``cliptrase reproduce paper`` should reproduce.
* :data:`STANDARD_VIT_B16`: peer numbers under the mmseg sliding-window protocol (protocols.md §4a), for the
  baselines we implement and for CLIPtrase *as peers quote it*. That CLIPtrase row is the README 224 row
  plus a Cityscapes 21.3 of unknown provenance: it was measured with the crop protocol, not this one, so its
  Δ shows the protocol gap rather than a reproduction error (protocols.md §4c).

Tables key rows by ``"<method> | <model slug> | <protocol>"`` (:func:`cliptrase.cli.evaluate.row_label`);
:data:`PUBLISHED` uses that key with :data:`PUBLISHED_MODEL`, and :func:`published_for_rows` maps any
measured row labels onto these numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

PUBLISHED_MODEL = "vit_b16_openai"
"""Model config slug of the backbone every published number below was measured with."""

_LABEL_SEP = " | "
_ROW_PARTS = 3  # method | model | protocol; a fourth part lists method overrides (an ablation)

PAPER_README: dict[str, dict[str, float]] = {
    "paper224": {
        "coco_stuff171": 22.84,
        "voc20": 80.95,
        "context59": 33.83,
        "context459": 9.36,
        "ade150": 16.35,
        "ade847": 6.31,
        "coco_object": 43.56,
        "voc21": 50.88,
        "context60": 29.87,
    },
    "paper336": {
        "coco_stuff171": 24.06,
        "voc20": 81.20,
        "context59": 34.92,
        "context459": 9.95,
        "ade150": 17.04,
        "ade847": 5.89,
        "coco_object": 44.84,
        "voc21": 53.04,
        "context60": 30.79,
    },
}
"""Protocol -> dataset -> mIoU (%) of CLIPtrase, leaves162/CLIPtrase README (method.md §9.1)."""


def _row(
    voc21: float, pc60: float, obj: float, voc20: float, pc59: float, stuff: float, city: float, ade: float
) -> dict[str, float]:
    """protocols.md §4a column order -> our dataset config names."""
    return {
        "voc21": voc21,
        "context60": pc60,
        "coco_object": obj,
        "voc20": voc20,
        "context59": pc59,
        "coco_stuff171": stuff,
        "cityscapes": city,
        "ade150": ade,
    }


STANDARD_VIT_B16: dict[str, dict[str, float]] = {
    # CLIPtrase as peer tables quote it: README 224 row + City 21.3 (crop protocol; City provenance unknown).
    "cliptrase": _row(50.9, 29.9, 43.6, 81.0, 33.8, 22.8, 21.3, 16.4),
    "clip": _row(16.4, 8.4, 5.6, 41.9, 9.2, 4.4, 5.0, 2.9),  # Trident figure
    "maskclip": _row(38.8, 23.6, 20.6, 74.9, 26.4, 16.4, 12.6, 9.8),  # ResCLIP figures (ClearCLIP harness)
    "sclip": _row(59.63, 31.74, 33.52, 81.54, 34.46, 22.77, 32.34, 16.45),  # SCLIP README, repo default
    "clearclip": _row(51.8, 32.6, 33.0, 80.9, 35.9, 23.9, 30.0, 16.7),  # ResCLIP/ClearCLIP figures
    "naclip": _row(58.9, 32.2, 33.2, 79.7, 35.2, 23.3, 35.5, 17.4),  # without PAMR, as peers quote it
}
"""Method config name -> dataset -> mIoU (%) under the standard protocol, protocols.md §4a."""

SOURCES: dict[tuple[str, str], str] = {
    **{("cliptrase", p): "leaves162/CLIPtrase README (method.md §9.1)" for p in PAPER_README},
    ("cliptrase", "standard"): "CLIPtrase as quoted in peer tables (protocols.md §4a/§4c; crop protocol)",
    ("clip", "standard"): "Trident assets/data_result.png (protocols.md §4a)",
    ("maskclip", "standard"): "ResCLIP figs/main_results (protocols.md §4a)",
    ("sclip", "standard"): "wangf3014/SCLIP README, repo default (protocols.md §4a)",
    ("clearclip", "standard"): "ResCLIP figs; ClearCLIP assets/results.png (protocols.md §4a)",
    ("naclip", "standard"): "NACLIP without PAMR as peers quote it, Trident/ResCLIP figs (protocols.md §4a)",
}
"""(method, protocol) -> where the published numbers come from."""


def published_numbers(method: str, protocol: str) -> dict[str, float] | None:
    """Published ``{dataset: mIoU}`` of ``method`` under ``protocol``, or None when nothing is published."""
    if protocol in PAPER_README:
        return dict(PAPER_README[protocol]) if method == "cliptrase" else None
    if protocol == "standard" and method in STANDARD_VIT_B16:
        return dict(STANDARD_VIT_B16[method])
    return None


def row_label(method: str, model: str, protocol: str) -> str:
    """The table row key of a run: ``"<method> | <model slug> | <protocol>"``."""
    return _LABEL_SEP.join((method, model, protocol))


PUBLISHED: dict[str, dict[str, float]] = {
    row_label(method, PUBLISHED_MODEL, protocol): numbers
    for (method, protocol) in SOURCES
    if (numbers := published_numbers(method, protocol)) is not None
}
"""Row label (with :data:`PUBLISHED_MODEL`) -> dataset -> mIoU: ready for ``build_table(published=...)``."""


def published_for_rows(
    labels: Iterable[str], *, models: Collection[str] = (PUBLISHED_MODEL,)
) -> dict[str, dict[str, float]]:
    """Published numbers for those measured row labels whose method and protocol have some.

    Rows of other backbones than ``models`` and ablation rows (a fourth label part listing method
    overrides) get none: their numbers are not comparable. Pass the model slug of a run in ``models`` to
    compare it anyway (``reproduce`` does, for a weights file standing in for ViT-B/16).
    """
    matched = {}
    for label in labels:
        parts = label.split(_LABEL_SEP)
        if len(parts) != _ROW_PARTS:
            continue
        method, model, protocol = parts
        numbers = published_numbers(method, protocol)
        if numbers is not None and model in models:
            matched[label] = numbers
    return matched
