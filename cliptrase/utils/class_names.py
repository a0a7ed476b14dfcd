"""The class-name files shipped under ``cliptrase/data/class_names/`` (see its README): the one parser of them
and the one list of vocabulary sets.

``paper/`` holds the authors' lists, one verbatim name per line; each mmseg-family set (:data:`VOCAB_SETS`)
holds the peers' ``configs/cls_*.txt`` files, one class per line with its synonyms. A leaf module (the
standard library only), so the protocols, the datasets and the config schemas all read through it.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

VOCAB_SETS: dict[str, str] = {"standard": ",", "clearclip": ",", "proxyclip": ";"}
"""mmseg-family class-name set -> the separator of synonyms on a line, as each peer's ``get_cls_idx``
splits it (SCLIP ``clip_segmentor.py:208``, NACLIP ``naclip.py:185``: ``", "``; ClearCLIP
``clearclip_segmentor.py:288``: ``","``; ProxyCLIP ``proxyclip_segmentor.py:336``: ``"; "``). Words are
stripped (the CLIP tokenizer strips them too)."""
VOCABS: tuple[str, ...] = ("paper", *VOCAB_SETS)
"""Every vocabulary set a protocol may name (``protocol.vocab``): the authors' lists and the peers' sets."""

_PACKAGE = "cliptrase"
_CLASS_NAMES_DIR = ("data", "class_names")


class _Readable(Protocol):
    def read_text(self, encoding: str) -> str: ...


def split_lines(text: str) -> list[str]:
    """One entry per line, verbatim: split on newlines only (``\\r\\n`` too), no strip (ADE150's ``"bed "``
    keeps its space), no comma splitting; a trailing newline ends the last line, and a file without one keeps
    its last line."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_lines(source: _Readable) -> list[str]:
    """:func:`split_lines` of a file (a ``Path`` or a package resource), read as UTF-8."""
    return split_lines(source.read_text(encoding="utf-8"))


def class_names_file(*parts: str) -> Traversable:
    """The package resource ``data/class_names/<parts>`` (it may not exist)."""
    return resources.files(_PACKAGE).joinpath(*_CLASS_NAMES_DIR, *parts)


def read_class_names(*parts: str) -> list[str]:
    """The lines of ``data/class_names/<parts>``; a missing file raises ``FileNotFoundError`` naming it."""
    resource = class_names_file(*parts)
    if not resource.is_file():
        raise FileNotFoundError(
            f"vocabulary file {'/'.join((*_CLASS_NAMES_DIR, *parts))} not in package {_PACKAGE}"
        )
    return read_lines(resource)
