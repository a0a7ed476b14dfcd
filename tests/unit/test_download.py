"""``cliptrase data download`` against a loopback server: fetch, resume, verify, refuse, skip, fail clearly.

Archives are built by the tests in the official layouts (VOC's ``VOCdevkit/VOC2012`` tar, COCO's zips,
Cityscapes' zips) and served by :class:`helpers.loopback_http.ArchiveServer` on 127.0.0.1; the registered
sources are swapped for copies whose size and md5 describe these small files.
:func:`helpers.loopback_http.guard_loopback` fails any test that would reach another host.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers.loopback_http import ArchiveServer, guard_loopback, tar_bytes, zip_bytes

from cliptrase.cli.main import main
from cliptrase.datasets import download
from cliptrase.datasets.download import (
    DOWNLOAD_BASE_ENV,
    FREE_BYTES_ENV,
    ArchiveRejectedError,
    DiskSpaceError,
    DownloadError,
    download_datasets,
    resolve_url,
)

VOC_TAR = "VOCtrainval_11-May-2012.tar"
VAL_TXT = "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"


def voc_tar(payload: bytes = b"x" * 40_000) -> bytes:
    """VOCtrainval_11-May-2012.tar in its official layout, padded so that halves are meaningful."""
    return tar_bytes(
        {
            "VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg": payload,
            "VOCdevkit/VOC2012/SegmentationClass/2007_000032.png": b"png",
            VAL_TXT: b"2007_000032\n",
        }
    )


@pytest.fixture
def server(monkeypatch):
    """A started loopback server; ``$CLIPTRASE_DOWNLOAD_BASE`` points at it; other hosts are refused."""
    srv = ArchiveServer().start()
    guard_loopback(monkeypatch)
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, srv.base_url)
    monkeypatch.delenv(FREE_BYTES_ENV, raising=False)
    yield srv
    srv.stop()


def register(monkeypatch, key: str, filename: str, data: bytes, *, checksum: bool = True) -> None:
    """Describe ``data`` as archive ``filename`` of source ``key``: size and md5 (unless ``checksum`` off)."""
    source = download.SOURCES[key]
    archives = tuple(
        dataclasses.replace(
            a,
            size=len(data) if checksum else None,
            md5=hashlib.md5(data).hexdigest() if checksum else None,
            sha256=None,
            approx_bytes=len(data),
            extracted_bytes=len(data),
            reference="test",
        )
        if a.filename == filename
        else a
        for a in source.archives
    )
    monkeypatch.setitem(download.SOURCES, key, dataclasses.replace(source, archives=archives))


def serve_voc(server: ArchiveServer, monkeypatch, data: bytes | None = None, **kwargs) -> bytes:
    data = voc_tar() if data is None else data
    server.add(VOC_TAR, data)
    register(monkeypatch, "voc2012", VOC_TAR, data, **kwargs)
    return data


def files_under(path: Path) -> list[str]:
    return (
        sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        if path.exists()
        else []
    )


def one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------------------------------ happy paths


def test_full_download_verifies_extracts_and_records(server, monkeypatch, tmp_path):
    data = serve_voc(server, monkeypatch)
    done, manual = download_datasets(["voc20"], tmp_path)
    assert not manual and [a.action for a in done[0].archives] == ["downloaded"]
    assert (tmp_path / "downloads" / VOC_TAR).read_bytes() == data
    assert not list((tmp_path / "downloads").glob("*.part"))
    assert (tmp_path / "raw" / "pascal" / VAL_TXT).read_text() == "2007_000032\n"
    manifest = json.loads((tmp_path / "downloads" / "manifest.json").read_text())
    entry = manifest["archives"][VOC_TAR]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["checked_against"] == "published md5"
    assert "Flickr" in manifest["sources"]["voc2012"]["licence"]
    assert "Everingham" in manifest["sources"]["voc2012"]["citation"]
    assert [r.range for r in server.requests_for(VOC_TAR)] == [None]


def test_second_run_downloads_nothing(server, monkeypatch, tmp_path):
    serve_voc(server, monkeypatch)
    download_datasets(["voc20"], tmp_path)
    before = files_under(tmp_path / "raw")
    done, _ = download_datasets(["voc20", "voc21"], tmp_path)
    assert len(server.requests_for(VOC_TAR)) == 1
    assert [a.action for a in done[0].archives] == ["verified"] and done[0].fetched_bytes == 0
    assert files_under(tmp_path / "raw") == before


def test_interrupted_download_resumes_with_a_range_request(server, monkeypatch, tmp_path):
    data = serve_voc(server, monkeypatch)
    server.fault(VOC_TAR, "cut")
    with pytest.raises(DownloadError, match=r"interrupted.*re-run the same command to resume") as err:
        download_datasets(["voc20"], tmp_path)
    one_line(err.value)
    part = tmp_path / "downloads" / f"{VOC_TAR}.part"
    half = len(data) // 2
    assert part.stat().st_size == half
    assert not (tmp_path / "downloads" / VOC_TAR).exists() and not (tmp_path / "raw").exists()
    done, _ = download_datasets(["voc20"], tmp_path)
    first, second = server.requests_for(VOC_TAR)
    assert (first.range, first.sent) == (None, half)
    assert (second.range, second.status, second.sent) == (f"bytes={half}-", 206, len(data) - half)
    assert done[0].archives[0].action == "resumed" and done[0].fetched_bytes == len(data) - half
    assert (tmp_path / "downloads" / VOC_TAR).read_bytes() == data
    assert (tmp_path / "raw" / "pascal" / VAL_TXT).is_file()


def test_server_ignoring_ranges_gets_a_full_download(server, monkeypatch, tmp_path):
    data = serve_voc(server, monkeypatch)
    server.fault(VOC_TAR, "cut", "ignore_range")
    with pytest.raises(DownloadError):
        download_datasets(["voc20"], tmp_path)
    download_datasets(["voc20"], tmp_path)
    second = server.requests_for(VOC_TAR)[1]
    assert second.range is not None and (second.status, second.sent) == (200, len(data))
    assert (tmp_path / "downloads" / VOC_TAR).read_bytes() == data


def test_complete_part_file_is_finished_without_refetching(server, monkeypatch, tmp_path):
    data = serve_voc(server, monkeypatch)
    (tmp_path / "downloads").mkdir(parents=True)
    (tmp_path / "downloads" / f"{VOC_TAR}.part").write_bytes(data)
    download_datasets(["voc20"], tmp_path)
    assert [(r.status, r.sent) for r in server.requests_for(VOC_TAR)] == [(416, 0)]
    assert (tmp_path / "raw" / "pascal" / VAL_TXT).is_file()


def test_public_zip_archives_land_where_the_converter_looks(server, monkeypatch, tmp_path):
    images = zip_bytes({"val2017/000000000139.jpg": b"jpg"})
    maps = zip_bytes({"val2017/000000000139.png": b"png", "train2017/000000000009.png": b"png"})
    for name, data in (("val2017.zip", images), ("stuffthingmaps_trainval2017.zip", maps)):
        server.add(name, data)
        register(monkeypatch, "coco_stuff164k", name, data, checksum=name == "val2017.zip")
    download_datasets(["coco_object"], tmp_path)
    coco = tmp_path / "raw" / "coco"
    assert {"images/val2017/000000000139.jpg", "annotations/val2017/000000000139.png"} <= set(
        files_under(coco)
    )
    entry = json.loads((tmp_path / "downloads" / "manifest.json").read_text())["archives"]
    assert entry["stuffthingmaps_trainval2017.zip"]["checked_against"] == "sha256 recorded on first download"


# ------------------------------------------------------------------------------------ refused archives


def test_corrupted_archive_is_rejected_and_nothing_is_left(server, monkeypatch, tmp_path):
    good = serve_voc(server, monkeypatch)
    bad = bytearray(good)
    bad[len(bad) // 3] ^= 0xFF
    server.add(VOC_TAR, bytes(bad))
    with pytest.raises(
        DownloadError, match=r"md5 .* differs from the published .*re-run to fetch it again"
    ) as e:
        download_datasets(["voc20"], tmp_path)
    one_line(e.value)
    assert files_under(tmp_path / "downloads") == ["manifest.json"]
    assert files_under(tmp_path / "raw") == []
    assert VOC_TAR not in json.loads((tmp_path / "downloads" / "manifest.json").read_text())["archives"]


def test_damaged_archive_without_checksum_extracts_nothing(server, monkeypatch, tmp_path):
    serve_voc(server, monkeypatch, b"this is not a tar file" * 100, checksum=False)
    with pytest.raises(ArchiveRejectedError, match=r"is damaged.*nothing was extracted") as err:
        download_datasets(["voc20"], tmp_path)
    one_line(err.value)
    assert files_under(tmp_path / "raw") == []
    assert not (tmp_path / "downloads" / VOC_TAR).exists()  # not trusted by the next run
    assert VOC_TAR not in json.loads((tmp_path / "downloads" / "manifest.json").read_text())["archives"]


@pytest.mark.parametrize(
    ("members", "links", "reason"),
    [
        ({"../evil.txt": b"x"}, {}, "climbs out of the extraction folder"),
        ({"VOCdevkit/../../evil.txt": b"x"}, {}, "climbs out of the extraction folder"),
        ({"/tmp/evil.txt": b"x"}, {}, "has an absolute path"),
        ({}, {"VOCdevkit/VOC2012/escape": "../../../../etc"}, "links to .*outside the extraction folder"),
        ({}, {"VOCdevkit/VOC2012/escape": "/etc/passwd"}, "links to the absolute path"),
        ({}, {"d": ".", "d/l": "../evil.txt"}, "is written through the symlink member 'd'"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "through-symlink"],
)
def test_unsafe_tar_is_refused_whole(server, monkeypatch, tmp_path, members, links, reason):
    official = {VAL_TXT: b"2007_000032\n", "VOCdevkit/VOC2012/JPEGImages/a.jpg": b"jpg"}
    serve_voc(server, monkeypatch, tar_bytes({**official, **members}, links=links))
    with pytest.raises(ArchiveRejectedError, match=f"refusing .*{reason}.*nothing was extracted") as err:
        download_datasets(["voc20"], tmp_path)
    one_line(err.value)
    assert files_under(tmp_path / "raw") == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert not (tmp_path / "downloads" / VOC_TAR).exists()


def test_unsafe_zip_is_refused(server, monkeypatch, tmp_path):
    data = zip_bytes({"val2017/a.jpg": b"jpg", "../../evil.jpg": b"x"})
    server.add("val2017.zip", data)
    register(monkeypatch, "coco_stuff164k", "val2017.zip", data)
    with pytest.raises(ArchiveRejectedError, match=r"refusing .*'../../evil.jpg' climbs out"):
        download_datasets(["coco_stuff171"], tmp_path)
    assert files_under(tmp_path / "raw") == []


def test_archive_without_the_official_content_is_refused(server, monkeypatch, tmp_path):
    serve_voc(server, monkeypatch, tar_bytes({"something/else.txt": b"x"}))
    with pytest.raises(
        ArchiveRejectedError, match=f"does not contain {VAL_TXT}, which the official .*nothing was extracted"
    ):
        download_datasets(["voc20"], tmp_path)
    assert files_under(tmp_path / "raw") == []


def test_a_changed_file_is_not_trusted_against_the_recorded_copy(server, monkeypatch, tmp_path):
    serve_voc(server, monkeypatch, checksum=False)
    download_datasets(["voc20"], tmp_path)
    archive = tmp_path / "downloads" / VOC_TAR
    archive.write_bytes(archive.read_bytes()[:-1] + b"!")  # the file changed after it was recorded
    with pytest.raises(
        ArchiveRejectedError, match=r"differs from the copy recorded .*re-run to download it again"
    ):
        download_datasets(["voc20"], tmp_path)
    assert not archive.exists()


# ------------------------------------------------------------------------------------------ bad input


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(KeyError, match="unknown dataset 'voc2O'; valid: ade150, ade847, cityscapes"):
        download_datasets(["voc2O"], tmp_path)
    with pytest.raises(KeyError, match="demo is generated locally"):
        download_datasets(["demo"], tmp_path)
    assert not tmp_path.joinpath("downloads").exists()


def test_no_space_left_stops_before_fetching(server, monkeypatch, tmp_path):
    serve_voc(server, monkeypatch)
    with pytest.raises(
        DiskSpaceError, match=r"not enough disk space at .*need .*free.*another --root"
    ) as err:
        download_datasets(["voc20"], tmp_path, free_bytes=lambda path: 1000)
    one_line(err.value)
    assert server.requests == [] and files_under(tmp_path / "downloads") == []


def test_no_space_for_the_rest_of_a_resumed_download(server, monkeypatch, tmp_path):
    data = serve_voc(server, monkeypatch)
    server.fault(VOC_TAR, "cut")
    with pytest.raises(DownloadError):
        download_datasets(["voc20"], tmp_path)
    # The plan needs rest + extracted bytes; the server's exact length is checked again before writing.
    budget = iter([10**12, 10])
    with pytest.raises(DiskSpaceError, match="rest of VOCtrainval"):
        download_datasets(["voc20"], tmp_path, free_bytes=lambda path: next(budget))
    assert (tmp_path / "downloads" / f"{VOC_TAR}.part").stat().st_size == len(data) // 2


def test_unwritable_root(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match=r"data root .*a_file/data is not writable .*choose a writable"):
        download_datasets(["voc20"], blocker / "data")
    if os.geteuid() == 0:
        return  # root ignores directory permissions; the case above covers the message
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="not writable"):
        download_datasets(["voc20"], readonly)


@pytest.mark.parametrize(
    ("code", "hint"), [("404", "the file is not at this URL"), ("500", "try again later")]
)
def test_server_errors(server, monkeypatch, tmp_path, code, hint):
    serve_voc(server, monkeypatch)
    server.fault(VOC_TAR, code)
    with pytest.raises(DownloadError, match=f"HTTP {code} .*{hint}") as err:
        download_datasets(["voc20"], tmp_path)
    one_line(err.value)
    assert files_under(tmp_path / "downloads") == ["manifest.json"] and files_under(tmp_path / "raw") == []


def test_unreachable_server(monkeypatch, tmp_path):
    guard_loopback(monkeypatch)
    srv = ArchiveServer().start()
    port_url = srv.base_url
    srv.stop()  # nothing listens on that port any more
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, port_url)
    register(monkeypatch, "voc2012", VOC_TAR, voc_tar())
    with pytest.raises(DownloadError, match=r"cannot reach .*check the network, or use a mirror"):
        download_datasets(["voc20"], tmp_path)


# ----------------------------------------------------------------------------------------------- mirrors


def test_resolve_url_precedence(monkeypatch):
    source = download.SOURCES["voc2012"]
    archive = source.archives[0]
    monkeypatch.delenv(DOWNLOAD_BASE_ENV, raising=False)
    assert resolve_url(source, archive) == archive.url
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, "http://127.0.0.1:1/base/")
    assert resolve_url(source, archive) == f"http://127.0.0.1:1/base/{VOC_TAR}"
    assert (
        resolve_url(source, archive, {"voc2012": "http://127.0.0.1:2/voc"})
        == f"http://127.0.0.1:2/voc/{VOC_TAR}"
    )
    full = f"http://127.0.0.1:3/x/{VOC_TAR}"
    assert resolve_url(source, archive, {VOC_TAR: full, "voc2012": "http://127.0.0.1:2"}) == full


def test_every_benchmark_has_sources_with_licence_and_citation():
    from cliptrase.datasets.config_files import list_dataset_configs

    assert set(download.DATASET_SOURCES) == set(list_dataset_configs()) - {"demo"}
    for name, keys in download.DATASET_SOURCES.items():
        assert len({download.SOURCES[k].raw_dir for k in keys}) == 1, name  # one --raw per converter
    for source in download.SOURCES.values():
        assert source.licence and source.citation and source.archives
        for archive in source.archives:
            assert (archive.url is None) == source.needs_login, archive.filename
            assert archive.page or not source.needs_login
    assert download.SOURCES["voc2012"].archives[0].md5 == "6cd6e144f989b92b3379bac3b3de84fd"


# --------------------------------------------------------------------------------------------------- CLI


def test_cli_download_and_one_line_errors(server, monkeypatch, tmp_path, caplog):
    caplog.set_level("INFO")
    serve_voc(server, monkeypatch)
    assert main(["data", "download", "voc20", "--root", str(tmp_path)]) == 0
    assert any("licence" in r.getMessage() for r in caplog.records)
    assert any("cite" in r.getMessage() for r in caplog.records)
    caplog.clear()
    assert main(["data", "download", "nope", "--root", str(tmp_path)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        f"data download: unknown dataset 'nope'; valid: {', '.join(download.downloadable_datasets())}"
    ]
    caplog.clear()
    monkeypatch.setenv(FREE_BYTES_ENV, "0")
    assert main(["data", "download", "voc21", "--root", str(tmp_path / "other")]) == 2
    assert "not enough disk space" in caplog.records[-1].getMessage()
    assert main(["data", "download", "--mirror", "oops", "voc20", "--root", str(tmp_path)]) == 2
    assert "expected KEY=URL" in caplog.records[-1].getMessage()


def test_login_only_sets_explain_then_use_placed_archives(server, monkeypatch, tmp_path, caplog):
    assert main(["data", "download", "cityscapes", "--root", str(tmp_path)]) == 1
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    downloads = tmp_path / "downloads"
    assert "https://www.cityscapes-dataset.com/login/" in warnings and "never asks for" in warnings
    assert f"{downloads / 'gtFine_trainvaltest.zip'}" in warnings
    assert f"{downloads / 'leftImg8bit_trainvaltest.zip'}" in warnings
    assert "packageID=3" in warnings
    (downloads / "gtFine_trainvaltest.zip").write_bytes(
        zip_bytes({"gtFine/val/city/a_gtFine_labelIds.png": b"p"})
    )
    (downloads / "leftImg8bit_trainvaltest.zip").write_bytes(
        zip_bytes({"leftImg8bit/val/city/a_leftImg8bit.png": b"p"})
    )
    caplog.clear()
    assert main(["data", "download", "cityscapes", "--root", str(tmp_path)]) == 0
    assert server.requests == []  # never fetched
    raw = tmp_path / "raw" / "cityscapes"
    assert (raw / "gtFine/val/city/a_gtFine_labelIds.png").is_file() and (
        raw / "leftImg8bit/val/city"
    ).is_dir()
    manifest = json.loads((downloads / "manifest.json").read_text())["archives"]
    assert manifest["gtFine_trainvaltest.zip"]["checked_against"] == "sha256 recorded on first download"
    assert manifest["gtFine_trainvaltest.zip"]["url"] is None
