"""Each shipped peer class-name set equals the peer's own list, byte for byte and as parsed.

Sources (the peers' released files, read at these commits):

* ``standard/``: wangf3014/SCLIP@b56bd30 ``configs/cls_<name>.txt`` = sinahmr/NACLIP@0cac3a6
  ``configs/cls_<name>.txt`` (the two repositories ship identical files).
* ``clearclip/``: mc-lan/ClearCLIP@ad68a40 ``configs/cls_<name>.txt``.
* ``proxyclip/``: mc-lan/ProxyCLIP@e7b767f ``configs/cls_<name>.txt``.

The digests below are ``sha256`` of those source files; the parsed checks restate what each file holds
where the sets differ (VOC21, VOC20, COCO-Object).
"""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest

from cliptrase.datasets.vocab import load_vocabulary, read_standard_lines
from cliptrase.utils.class_names import VOCAB_SETS

PEER_SHA256: dict[str, dict[str, str]] = {
    "standard": {
        "voc21": "80e643a9a143966800cd4a49324fd0be2f94c0d7bac817ea16a5f66ed706bc38",
        "voc20": "c68f65a2b342397cdfe05ff5289517e1e370b1d574a218ff1a17db27f2576db1",
        "context60": "5e620446a8699f292a4c2e37fa8918a33dd4f14713dc1b3f22884d2be68b45a1",
        "context59": "cd808465f06a16169edc25580073f0eda347e64f06cc1c2e24acd0b237f6497d",
        "coco_object": "3475d03d61f85ce03812ce62d019de8f2ea51053885374629d29a17fbd3f02a6",
        "coco_stuff": "fb98709b9ab1baff4fd930bac4a77772a0458c7d534911de545f9a4081e14a3e",
        "city_scapes": "6f6782fc1bf92bfd9f5562192e92045e0e093870e613f387f6c98fc66d4ceba4",
        "ade20k": "e53ded02c488bdb903ef000a2d207e4ac4f2bb4502a72572e4aab7c2504aef3a",
    },
    "clearclip": {
        "voc21": "265d9ede93be451d724981c5ffde13a8eb3082674e98021aa8d5445f81f4498a",
        "voc20": "6b9a85ffb907e34ac920d704a520b45e1424bf96796ca7de5b1823ee202db119",
        "context60": "5e620446a8699f292a4c2e37fa8918a33dd4f14713dc1b3f22884d2be68b45a1",
        "context59": "cd808465f06a16169edc25580073f0eda347e64f06cc1c2e24acd0b237f6497d",
        "coco_object": "1f17b53017e442257cad2025ab981ddeb28d048af00dcac8ae810bc25a6a9a77",
        "coco_stuff": "fb98709b9ab1baff4fd930bac4a77772a0458c7d534911de545f9a4081e14a3e",
        "city_scapes": "6f6782fc1bf92bfd9f5562192e92045e0e093870e613f387f6c98fc66d4ceba4",
        "ade20k": "e53ded02c488bdb903ef000a2d207e4ac4f2bb4502a72572e4aab7c2504aef3a",
    },
    "proxyclip": {
        "voc21": "6a194e9134d44459bf8b86ba89a9cf06242848051e04d130011c017bca3e3c05",
        "voc20": "6b9a85ffb907e34ac920d704a520b45e1424bf96796ca7de5b1823ee202db119",
        "context60": "5e620446a8699f292a4c2e37fa8918a33dd4f14713dc1b3f22884d2be68b45a1",
        "context59": "cd808465f06a16169edc25580073f0eda347e64f06cc1c2e24acd0b237f6497d",
        "coco_object": "87b6d3e1d3adf5202f4fe5a2a939cfc62224065f3a8e44a8f64fe1a81b751dc6",
        "coco_stuff": "fb98709b9ab1baff4fd930bac4a77772a0458c7d534911de545f9a4081e14a3e",
        "city_scapes": "6f6782fc1bf92bfd9f5562192e92045e0e093870e613f387f6c98fc66d4ceba4",
        "ade20k": "e53ded02c488bdb903ef000a2d207e4ac4f2bb4502a72572e4aab7c2504aef3a",
    },
}
"""vocab set -> file stem -> sha256 of the peer's ``configs/cls_<stem>.txt``."""


@pytest.mark.parametrize(("vocab_set", "stem"), [(v, s) for v, files in PEER_SHA256.items() for s in files])
def test_shipped_file_is_the_peers_file(vocab_set, stem):
    data = resources.files("cliptrase").joinpath("data", "class_names", vocab_set, f"{stem}.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == PEER_SHA256[vocab_set][stem]


def test_every_vocab_set_is_checked():
    assert set(VOCAB_SETS) == set(PEER_SHA256)


def test_clearclip_voc21_background_is_one_word_and_no_synonyms():
    # mc-lan/ClearCLIP configs/cls_voc21.txt lines 1, 16, 21; split on ',' (clearclip_segmentor.py:288)
    voc = load_vocabulary("voc21", "clearclip")
    assert voc.background_names == ["background"]
    assert voc.class_names[14] == "person" and voc.class_names[19] == "tvmonitor"
    assert all(len(s) == 1 for s in voc.synonyms)
    assert load_vocabulary("coco_object", "clearclip").background_names == ["background"]


def test_proxyclip_background_words_split_on_semicolons():
    # mc-lan/ProxyCLIP configs/cls_voc21.txt line 1 (26 words), cls_coco_object.txt line 1 (17 words),
    # split on '; ' (proxyclip_segmentor.py:336)
    assert len(load_vocabulary("voc21", "proxyclip").background_names) == 26
    obj = load_vocabulary("coco_object", "proxyclip")
    assert len(obj.background_names) == 17 and obj.background_names[-1] == "rail"
    assert obj.synonyms[0] == ["person"]


def test_standard_keeps_sclip_synonyms():
    # wangf3014/SCLIP configs/cls_voc21.txt line 16: seven person synonyms, split on ', '
    assert len(read_standard_lines("voc21")[15]) == 7
    assert load_vocabulary("voc20", "proxyclip").synonyms == load_vocabulary("voc20", "clearclip").synonyms
