"""The one palette of the package: a fixed colour per class of a vocabulary, one colour for ignored pixels.

Every drawing of labels (``cliptrase predict`` overlays, the qualitative grid of ``cliptrase-report``, the
``METAINFO`` palettes of the large-vocabulary datasets) takes its colours from here, so a class has the
same colour in every column and every figure of a dataset:

- a dataset's published palette (mmseg's ``METAINFO["palette"]``: VOC, ADE-150, Cityscapes, COCO, PC-59...)
  where the class list is the dataset's, matched by name (:func:`class_colours`);
- otherwise :func:`distinct_colours`, a deterministic generator (golden-ratio hues in four
  saturation/brightness tiers), indexed by the class's position in the vocabulary;
- ignored pixels (void, outside the classes) in :data:`IGNORE_COLOUR`, white: no published palette uses
  it (VOC's and COCO's background are black) and the generator never produces it.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Sequence

import numpy as np

IGNORE_COLOUR: tuple[int, int, int] = (255, 255, 255)
"""Colour of ignored pixels (GT void, labels outside the class list) in every label drawing."""

_GOLDEN = 0.6180339887498949  # successive hues a golden-ratio turn apart never bunch up
_TIERS = ((0.80, 0.90), (0.55, 0.70), (0.95, 0.62), (0.45, 0.95))  # (saturation, value), cycled per index


def distinct_colours(n: int) -> np.ndarray:
    """(n, 3) uint8 colours, deterministic and distinct for neighbouring indices; none near white.

    Hue advances by the golden ratio per index and saturation/brightness cycle through four tiers, so
    consecutive classes differ in both; the lowest saturation (0.45) keeps every colour visibly away from
    :data:`IGNORE_COLOUR`.
    """
    out = np.empty((n, 3), dtype=np.uint8)
    for i in range(n):
        sat, val = _TIERS[i % len(_TIERS)]
        rgb = colorsys.hsv_to_rgb((i * _GOLDEN) % 1.0, sat, val)
        out[i] = [round(255 * c) for c in rgb]
    return out


def _key(name: str) -> str:
    """Names compared without case, spaces or punctuation (``traffic light`` = ``trafficlight``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def class_colours(
    names: Sequence[str],
    reference_names: Sequence[str] = (),
    reference_palette: Sequence[Sequence[int]] = (),
) -> np.ndarray:
    """(len(names), 3) uint8: the colour of each class of ``names``.

    With a reference (a dataset's ``METAINFO`` classes and palette), a name takes the colour of the same
    name there (compared by :func:`_key`); the names left over then take the reference colours left over,
    in order (a vocabulary's synonym such as ``tv`` for ``tvmonitor`` sits at the same place in both lists);
    any name beyond that takes :func:`distinct_colours` at its index. Without a reference every class takes
    :func:`distinct_colours`. The result depends only on the two lists, so every figure of a dataset agrees.
    """
    names = list(names)
    fallback = distinct_colours(len(names))
    if not reference_names or len(reference_palette) != len(reference_names):
        return fallback
    ref = {_key(n): i for i, n in reversed(list(enumerate(reference_names)))}
    taken = {ref[_key(n)] for n in names if _key(n) in ref}
    spare = iter(i for i in range(len(reference_names)) if i not in taken)
    out = fallback.copy()
    for i, name in enumerate(names):
        j = ref.get(_key(name))
        if j is None:
            j = next(spare, None)
        if j is not None:
            out[i] = reference_palette[j]
    return out
