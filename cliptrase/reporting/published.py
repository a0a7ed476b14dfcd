"""Published mIoU numbers, each attached to the protocol preset that produced it, with its source.

Every number below was measured by its authors with OpenAI CLIP ViT-B/16 under one of our protocols
(docs/presets.md), so a run of the same method, backbone and preset sits beside it like for like:

* CLIPtrase, ``paper224`` / ``paper336``: the authors' README table (docs/method.md §9.1; centre crop, their
  ``paper_scores`` metric), the nine datasets of their script.
* SCLIP, ``sclip``: wangf3014/SCLIP README.md:66-78, "with the default setup in this repo".
* NACLIP, ``naclip``: sinahmr/NACLIP README.md:58-89, the `test_all.sh reduced naclip 5 on` row (PAMR on).
* CLIP, MaskCLIP, SCLIP and ClearCLIP, ``clearclip``: mc-lan/ClearCLIP README.md:90-93
  (``assets/results.png``, its Table 2, ViT-B rows: the five datasets without background, "using our
  implementation").
* ResCLIP (NACLIP-based, the release's main result), ``resclip``: yvhangyang/ResCLIP README.md
  ``figs/main_results_wo.png`` / ``figs/main_results_w.png``, the "NACLIP + ResCLIP" rows, ViT-B/16 and
  ViT-L/14 (:data:`OTHER_BACKBONE_ROWS`; the release runs L/14 with the same configs, ``clip_path``
  changed, configs/base_config.py:4). Measured in fp16 on GPU (``clip.load``); a CPU run is fp32.

Rows that no released artefact states were dropped: CLIPtrase under ``standard`` (the README 224 row with a
Cityscapes 21.3 of unknown origin), CLIP (Trident figure), MaskCLIP and ClearCLIP on VOC21 / PC60 / Object
(ResCLIP figures), NACLIP without PAMR (quoted by later papers, not in NACLIP's repo). The ``standard``
protocol is ours: no peer published under it, so it has no published rows.

Tables key rows by ``"<method> | <model slug> | <protocol>"`` (:func:`row_label`); :data:`PUBLISHED` uses that
key with :data:`PUBLISHED_MODEL`, and :func:`published_for_rows` maps measured row labels onto these rows.
A :class:`PublishedRow` carries its metric definition, so a table never sets it beside another metric.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

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
"""Protocol -> dataset -> mIoU (%) of CLIPtrase, leaves162/CLIPtrase README (docs/method.md §9.1)."""


def _row(**numbers: float) -> dict[str, float]:
    """Peer README column names -> our dataset config names (keyword per column, so no order mix-up)."""
    names = {
        "voc21": "voc21", "pc60": "context60", "obj": "coco_object", "voc20": "voc20", "pc59": "context59",
        "stuff": "coco_stuff171", "city": "cityscapes", "ade": "ade150",
    }  # fmt: skip
    return {names[key]: value for key, value in numbers.items()}


@dataclass(frozen=True, eq=False)  # Mapping's __eq__: equal to a dict of the same numbers
class PublishedRow(Mapping[str, float]):
    """Published ``{dataset: mIoU}`` of one method under one preset, readable as that mapping.

    Attributes:
        numbers: dataset config name -> mIoU (%).
        source: where the numbers are stated (repository file and lines).
        metric_definition: the metric that produced them (``mmseg_iou`` or ``paper_scores``).
    """

    numbers: Mapping[str, float] = field(default_factory=dict)
    source: str = ""
    metric_definition: str = "mmseg_iou"

    def __getitem__(self, key: str) -> float:
        return self.numbers[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.numbers)

    def __len__(self) -> int:
        return len(self.numbers)


_RESCLIP_FIGS = "yvhangyang/ResCLIP README.md figs/main_results_wo.png / main_results_w.png"
_CLEARCLIP_TABLE2 = "mc-lan/ClearCLIP README.md:90-93, assets/results.png (Table 2, ViT-B rows)"

ROWS: dict[tuple[str, str], PublishedRow] = {
    **{
        ("cliptrase", protocol): PublishedRow(
            numbers, "leaves162/CLIPtrase README (docs/method.md §9.1)", "paper_scores"
        )
        for protocol, numbers in PAPER_README.items()
    },
    ("sclip", "sclip"): PublishedRow(
        _row(voc21=59.63, pc60=31.74, obj=33.52, voc20=81.54, pc59=34.46, stuff=22.77, city=32.34, ade=16.45),
        "wangf3014/SCLIP README.md:66-78 (default setup)",
    ),
    ("naclip", "naclip"): PublishedRow(
        _row(voc21=64.07, pc60=34.99, obj=36.19, voc20=83.03, city=38.27, pc59=38.35, ade=19.05, stuff=25.69),
        "sinahmr/NACLIP README.md:58-89 (test_all.sh reduced naclip 5 on: PAMR on)",
    ),
    ("clip", "clearclip"): PublishedRow(
        _row(voc20=41.8, pc59=9.2, stuff=4.4, city=5.5, ade=2.1), _CLEARCLIP_TABLE2
    ),
    ("maskclip", "clearclip"): PublishedRow(
        _row(voc20=74.9, pc59=26.4, stuff=16.4, city=12.6, ade=9.8), _CLEARCLIP_TABLE2
    ),
    ("sclip", "clearclip"): PublishedRow(
        _row(voc20=78.2, pc59=33.0, stuff=21.1, city=29.1, ade=14.6), _CLEARCLIP_TABLE2
    ),
    ("clearclip", "clearclip"): PublishedRow(
        _row(voc20=80.9, pc59=35.9, stuff=23.9, city=30.0, ade=16.7), _CLEARCLIP_TABLE2
    ),
    ("resclip", "resclip"): PublishedRow(
        _row(voc21=61.1, pc60=33.5, obj=35.0, voc20=86.0, pc59=36.8, stuff=24.7, city=35.9, ade=18.0),
        _RESCLIP_FIGS + " (NACLIP + ResCLIP, ViT-B/16)",
    ),
}
"""(method config name, protocol preset) -> its published row."""

SOURCES: dict[tuple[str, str], str] = {key: row.source for key, row in ROWS.items()}
"""(method, protocol) -> where the published numbers come from."""


def published_row(method: str, protocol: str) -> PublishedRow | None:
    """The published row of ``method`` under the preset ``protocol``, or None."""
    return ROWS.get((method, protocol))


def published_numbers(method: str, protocol: str) -> dict[str, float] | None:
    """Published ``{dataset: mIoU}`` of ``method`` under ``protocol``, or None when nothing is published."""
    row = published_row(method, protocol)
    return None if row is None else dict(row.numbers)


def row_label(method: str, model: str, protocol: str) -> str:
    """The table row key of a run: ``"<method> | <model slug> | <protocol>"``."""
    return _LABEL_SEP.join((method, model, protocol))


OTHER_BACKBONE_ROWS: dict[tuple[str, str, str], PublishedRow] = {
    ("resclip", "vit_l14_openai", "resclip"): PublishedRow(
        _row(voc21=54.1, pc60=30.9, obj=32.5, voc20=85.5, pc59=34.5, stuff=23.4, city=33.7, ade=18.2),
        _RESCLIP_FIGS + " (NACLIP + ResCLIP, ViT-L/14)",
    ),
}
"""(method, model slug, protocol) -> published row measured with another backbone than
:data:`PUBLISHED_MODEL` (matched only by a run of exactly that model)."""

PUBLISHED: dict[str, PublishedRow] = {
    **{row_label(method, PUBLISHED_MODEL, protocol): row for (method, protocol), row in ROWS.items()},
    **{row_label(*key): row for key, row in OTHER_BACKBONE_ROWS.items()},
}
"""Row label -> dataset -> mIoU: ready for ``build_table(published=...)``."""


def _is_subset(extras: str) -> bool:
    """Whether a label's settings part only limits the images (``max_images=N``) or names the precision the
    run was computed in (``precision=fp16``: the preset's published precision on CUDA; the row says so)."""
    return all(item.startswith(("max_images=", "precision=")) for item in extras.split(","))


def published_for_rows(
    labels: Iterable[str], *, models: Collection[str] = (PUBLISHED_MODEL,)
) -> dict[str, PublishedRow]:
    """Published rows for those measured row labels whose method and protocol preset have one.

    Rows of other backbones than ``models`` and ablation rows (a fourth label part listing changed
    settings) get none: their numbers are not comparable; a fourth part that only says ``max_images=N``
    (a smoke run) keeps the published row. Pass the model slug of a run in ``models`` to
    compare it anyway (``reproduce`` does, for a weights file standing in for ViT-B/16).
    """
    matched = {}
    for label in labels:
        parts = label.split(_LABEL_SEP)
        if len(parts) == _ROW_PARTS + 1 and _is_subset(parts[-1]):
            parts = parts[:_ROW_PARTS]  # a smoke run on the first N images: still that setting
        if len(parts) != _ROW_PARTS:
            continue
        method, model, protocol = parts
        row = published_row(method, protocol)
        if row is not None and model in models:
            matched[label] = row
        elif (method, model, protocol) in OTHER_BACKBONE_ROWS:
            matched[label] = OTHER_BACKBONE_ROWS[(method, model, protocol)]
    return matched
