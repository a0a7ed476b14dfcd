"""Prompt vocabularies: the authors' lists (``paper``) and the mmseg-family class-name sets.

All ship as package data under ``cliptrase/data/class_names/`` (see its README). The mmseg-family sets
(:data:`VOCAB_SETS`) are the peers' ``configs/cls_*.txt`` files, byte for byte: ``standard`` (SCLIP's and
NACLIP's, identical), ``clearclip`` and ``proxyclip``; a protocol names its set in ``protocol.vocab``. Which
file a benchmark uses is a dataset fact stated in ``configs/dataset/<name>.yaml`` (``paper_key``,
``standard_vocab``, the file stem in every set); a benchmark without a list falls back to its ``METAINFO``
class names.

Label convention of the returned :class:`Vocabulary`: ``class_names[i]`` is the foreground class with
dataset label ``i + 1`` when the dataset has a background class (label 0, mmseg convention) and label ``i``
otherwise; ``background_names`` are the prompts of that background class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

Protocol = Literal["paper", "standard", "clearclip", "proxyclip"]

VOCAB_SETS: dict[str, str] = {"standard": ",", "clearclip": ",", "proxyclip": ";"}
"""mmseg-family class-name set -> the separator of synonyms on a line, as each peer's ``get_cls_idx``
splits it (SCLIP ``clip_segmentor.py:208``, NACLIP ``naclip.py:185``: ``", "``; ClearCLIP
``clearclip_segmentor.py:288``: ``","``; ProxyCLIP ``proxyclip_segmentor.py:336``: ``"; "``). Words are
stripped (the CLIP tokenizer strips them too)."""
PROTOCOLS: tuple[str, ...] = ("paper", *VOCAB_SETS)

_PACKAGE = "cliptrase"
_CLASS_NAMES_DIR = ("data", "class_names")


@dataclass(frozen=True)
class Vocabulary:
    """Class prompts of one benchmark under one protocol.

    Attributes:
        class_names: One name per foreground class, in label order (see the module docstring). Paper
            names are verbatim, quirks included (``"bed "``, ``"building, edifice"`` is one name).
        background_names: Prompts that all vote for the background class, or ``None`` when the dataset has
            none (VOC21 paper: 33 words; standard: SCLIP's 26 stuff words or just ``"background"``).
        synonyms: Standard protocol only: per foreground class, its comma-separated synonyms (the first one
            is ``class_names[i]``); a class logit is the max over them. ``None`` for the paper protocol.
    """

    class_names: list[str]
    background_names: list[str] | None
    synonyms: list[list[str]] | None

    @property
    def has_background(self) -> bool:
        """Whether a background class is prompted."""
        return self.background_names is not None


def _read_text(*parts: str) -> str:
    """Read a package data file; a missing one raises ``FileNotFoundError`` naming it."""
    resource = resources.files(_PACKAGE).joinpath(*_CLASS_NAMES_DIR, *parts)
    if not resource.is_file():
        raise FileNotFoundError(
            f"vocabulary file {'/'.join((*_CLASS_NAMES_DIR, *parts))} not in package {_PACKAGE}"
        )
    return resource.read_text(encoding="utf-8")


def _lines(text: str) -> list[str]:
    """Split on newlines only; keep every other character, trailing spaces included."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_paper_names(key: str, *, background: bool = False) -> list[str]:
    """The authors' list ``paper/<key>.txt`` (or ``<key>.background.txt``), one verbatim name per line."""
    return _lines(_read_text("paper", f"{key}{'.background' if background else ''}.txt"))


def read_standard_lines(name: str, vocab_set: str = "standard") -> list[list[str]]:
    """The list ``<vocab_set>/<name>.txt``: per line, its synonyms (split as its peer splits), stripped."""
    separator = VOCAB_SETS[vocab_set]
    return [
        [word.strip() for word in line.split(separator) if word.strip()]
        for line in _lines(_read_text(vocab_set, f"{name}.txt"))
    ]


def _has_paper_background(key: str) -> bool:
    return resources.files(_PACKAGE).joinpath(*_CLASS_NAMES_DIR, "paper", f"{key}.background.txt").is_file()


def _dataset_facts(dataset_cfg_or_name: Mapping[str, Any] | str) -> tuple[Mapping[str, Any], type]:
    """Resolve a name or a dataset config to (config mapping, dataset class)."""
    from cliptrase.datasets.base import get_dataset_class
    from cliptrase.datasets.config import load_dataset_config

    if isinstance(dataset_cfg_or_name, str):
        cfg: Mapping[str, Any] = load_dataset_config(dataset_cfg_or_name, resolve=False)
    else:
        cfg = dataset_cfg_or_name
    return cfg, get_dataset_class(str(cfg.get("type") or cfg["name"]))


def _metainfo_vocabulary(dataset_cls: type, has_background: bool, *, with_synonyms: bool) -> Vocabulary:
    names = list(dataset_cls.METAINFO["classes"])
    background = [names.pop(0)] if has_background else None
    return Vocabulary(names, background, [[n] for n in names] if with_synonyms else None)


def load_vocabulary(dataset_cfg_or_name: Mapping[str, Any] | str, protocol: Protocol) -> Vocabulary:
    """Return the prompt vocabulary of a benchmark under ``protocol``.

    Args:
        dataset_cfg_or_name: A ``configs/dataset`` node (keys ``name``, ``type``, ``has_background``,
            ``paper_key``, ``standard_vocab``) or a dataset name, whose config is then read.
        protocol: the vocabulary set (``protocol.vocab``). ``"paper"`` reads ``paper/<paper_key>.txt``
            (+ ``.background.txt``) verbatim; a set of :data:`VOCAB_SETS` reads
            ``<set>/<standard_vocab>.txt``, whose first line is the background when the dataset has one.

    Raises:
        ValueError: Unknown protocol, or a list whose length does not match the dataset's classes.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    cfg, dataset_cls = _dataset_facts(dataset_cfg_or_name)
    has_background = bool(cfg.get("has_background", dataset_cls.HAS_BACKGROUND))
    num_foreground = len(dataset_cls.METAINFO["classes"]) - int(has_background)
    if protocol == "paper":
        key = cfg.get("paper_key")
        if not key:
            return _metainfo_vocabulary(dataset_cls, has_background, with_synonyms=False)
        names = read_paper_names(key)
        background = read_paper_names(key, background=True) if _has_paper_background(key) else None
        vocab = Vocabulary(names, background, None)
    else:
        list_name = cfg.get("standard_vocab")
        if not list_name:
            return _metainfo_vocabulary(dataset_cls, has_background, with_synonyms=True)
        lines = read_standard_lines(list_name, protocol)
        background = lines.pop(0) if has_background else None
        vocab = Vocabulary([line[0] for line in lines], background, lines)
    if len(vocab.class_names) != num_foreground or vocab.has_background != has_background:
        raise ValueError(
            f"{protocol} vocabulary of {cfg.get('name')!r} has {len(vocab.class_names)} classes "
            f"(background: {vocab.has_background}); the dataset has {num_foreground} (background: "
            f"{has_background}); fix paper_key/standard_vocab in configs/dataset/{cfg.get('name')}.yaml"
        )
    return vocab
