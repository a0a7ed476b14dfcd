"""Vocabularies per protocol: the authors' lists verbatim, the standard lists with synonyms, fallbacks."""

from __future__ import annotations

import pytest

from cliptrase.datasets import DATASET_CLASSES, load_vocabulary
from cliptrase.datasets.config_files import list_dataset_configs, load_dataset_config
from cliptrase.datasets.vocab import read_paper_names
from cliptrase.protocols.paper import PAPER_KEYS, paper_dataset
from cliptrase.utils.class_names import read_lines, split_lines


@pytest.mark.parametrize("protocol", ["paper", "standard"])
@pytest.mark.parametrize("name", list_dataset_configs())
def test_every_config_has_a_vocabulary_matching_its_classes(name, protocol):
    cfg = load_dataset_config(name, "/data")
    vocab = load_vocabulary(cfg, protocol)
    assert len(vocab.class_names) == cfg.num_classes - int(cfg.has_background)
    assert vocab.has_background == cfg.has_background
    assert (vocab.synonyms is None) == (protocol == "paper")
    if vocab.synonyms is not None:
        assert [s[0] for s in vocab.synonyms] == vocab.class_names


def test_paper_lists_are_verbatim():
    ade = load_vocabulary("ade150", "paper")
    assert ade.class_names[7] == "bed "  # trailing space kept
    voc = load_vocabulary("voc21", "paper")
    assert len(voc.background_names) == 33
    assert voc.background_names.count("bed") == 2 and "beachhill" in voc.background_names
    assert voc.class_names[-1] == "tv"
    full = load_vocabulary("ade847", "paper")
    assert len(full.class_names) == 847 and full.class_names[1] == "building, edifice"  # not split
    assert load_vocabulary("context60", "paper").background_names == ["background"]
    assert len(load_vocabulary("coco_object", "paper").background_names) == 107


def test_standard_lists_have_synonyms_and_background_lines():
    voc = load_vocabulary("voc21", "standard")
    assert voc.background_names[:3] == ["sky", "wall", "tree"] and len(voc.background_names) == 26
    person = voc.synonyms[voc.class_names.index("person")]
    assert person[:2] == ["person", "person in shirt"]
    assert load_vocabulary("context60", "standard").background_names == ["background"]
    assert "body" in load_vocabulary("coco_object", "standard").synonyms[0]
    assert load_vocabulary("cityscapes", "standard").class_names[6] == "trafficlight"
    assert load_vocabulary("context59", "standard").background_names is None


def test_fallback_to_metainfo_names():
    city = load_vocabulary("cityscapes", "paper")
    assert city.class_names == list(DATASET_CLASSES["cityscapes"].METAINFO["classes"])
    pc459 = load_vocabulary("context459", "standard")
    assert pc459.class_names == read_paper_names("PC459") and pc459.synonyms[0] == ["accordion"]
    assert load_vocabulary("demo", "standard").class_names == ["sky", "grass", "road", "ball", "box"]


def test_bad_protocol_and_mismatched_list():
    with pytest.raises(ValueError, match="valid: paper, standard"):
        load_vocabulary("voc21", "mmseg")
    cfg = load_dataset_config("voc20", "/data")
    cfg.standard_vocab = "voc21"
    with pytest.raises(ValueError, match=r"fix paper_key/standard_vocab in configs/dataset/voc20\.yaml"):
        load_vocabulary(cfg, "standard")


def test_class_name_files_are_read_line_by_line_verbatim(tmp_path):
    """The one parser of the class-name files: a file without a trailing newline keeps its last name (a
    ``split("\\n")[:-1]`` reader drops it; every shipped file ends with a newline), trailing spaces stay,
    commas do not split, ``\\r\\n`` ends a line like ``\\n``."""
    no_newline = tmp_path / "no_newline.txt"
    no_newline.write_bytes(b"aeroplane\nbed \nbuilding, edifice")
    assert read_lines(no_newline) == ["aeroplane", "bed ", "building, edifice"]
    assert split_lines("a\nb\n") == split_lines("a\r\nb") == ["a", "b"]
    assert split_lines("") == []


def test_paper_protocol_and_datasets_read_the_same_lists():
    for key in PAPER_KEYS:
        assert list(paper_dataset(key).class_names) == read_paper_names(key)
