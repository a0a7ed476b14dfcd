"""Prompt vocabularies: the authors' lists (``paper``) and the mmseg-family class-name sets.

All ship as package data under ``cliptrase/data/class_names/`` (see its README), read by the one parser of
:mod:`cliptrase.utils.class_names`. The mmseg-family sets (``VOCAB_SETS`` there) are the peers'
``configs/cls_*.txt`` files, byte for byte: ``standard`` (SCLIP's and NACLIP's, identical), ``clearclip`` and
``proxyclip``; a protocol names its set in ``protocol.vocab``. Which
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
from typing import Any, Literal

from cliptrase.datasets.config_files import load_dataset_config
from cliptrase.datasets.spec import get_dataset_class
from cliptrase.utils.class_names import VOCAB_SETS, VOCABS, class_names_file, read_class_names

Protocol = Literal["paper", "standard", "clearclip", "proxyclip"]


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


def read_paper_names(key: str, *, background: bool = False) -> list[str]:
    """The authors' list ``paper/<key>.txt`` (or ``<key>.background.txt``), one verbatim name per line."""
    return read_class_names("paper", f"{key}{'.background' if background else ''}.txt")


def read_standard_lines(name: str, vocab_set: str = "standard") -> list[list[str]]:
    """The list ``<vocab_set>/<name>.txt``: per line, its synonyms (split as its peer splits), stripped."""
    separator = VOCAB_SETS[vocab_set]
    return [
        [word.strip() for word in line.split(separator) if word.strip()]
        for line in read_class_names(vocab_set, f"{name}.txt")
    ]


def _has_paper_background(key: str) -> bool:
    return class_names_file("paper", f"{key}.background.txt").is_file()


def _dataset_facts(
    dataset_cfg_or_name: Mapping[str, Any] | str, dataset_class: type | None
) -> tuple[Mapping[str, Any], type]:
    """Resolve a name or a dataset config to (config mapping, dataset class); a class already resolved by the
    caller is used as it is."""
    if isinstance(dataset_cfg_or_name, str):
        cfg: Mapping[str, Any] = load_dataset_config(dataset_cfg_or_name, resolve=False)
    else:
        cfg = dataset_cfg_or_name
    return cfg, dataset_class or get_dataset_class(str(cfg.get("type") or cfg["name"]))


def _metainfo_vocabulary(dataset_cls: type, has_background: bool, *, with_synonyms: bool) -> Vocabulary:
    names = list(dataset_cls.METAINFO["classes"])
    background = [names.pop(0)] if has_background else None
    return Vocabulary(names, background, [[n] for n in names] if with_synonyms else None)


def load_vocabulary(
    dataset_cfg_or_name: Mapping[str, Any] | str, protocol: Protocol, *, dataset_class: type | None = None
) -> Vocabulary:
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
    if protocol not in VOCABS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(VOCABS)}")
    cfg, dataset_cls = _dataset_facts(dataset_cfg_or_name, dataset_class)
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
