"""Result records: JSON round trip, validation, config hash, atomic writes, overwrite refusal and resume."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path

import pytest

from cliptrase.records import provenance, results
from cliptrase.records.provenance import collect_provenance
from cliptrase.records.results import (
    ResultExistsError,
    ResultRecord,
    config_hash,
    find_complete,
    load_records,
    read_record,
    write_record,
)

CFG = {"model": {"name": "ViT-B-16", "pretrained": "openai"}, "method": {"eps": 0.5}, "dataset": "voc21"}


def make_record(run: str = "run0", cfg: dict | None = None, **overrides) -> ResultRecord:
    cfg = CFG if cfg is None else cfg
    fields = {
        "experiment": "exp",
        "run": run,
        "row": "cliptrase | ViT-B-16/openai",
        "column": "voc21",
        "metric_definition": "mmseg_iou",
        "metrics": {"aAcc": 80.5, "mAcc": 60.25, "mIoU": 50.125, "fwIoU": math.nan},
        "class_names": ["background", "cat, kitty", "dog"],
        "per_class": {"IoU": [70.0, math.nan, 30.25], "Acc": [90.0, math.nan, 30.5]},
        "config": cfg,
        "config_hash": config_hash(cfg),
        "provenance": {"date": "2025-01-01T00:00:00+00:00", "n_images": 3},
    }
    fields.update(overrides)
    return ResultRecord(**fields)


def assert_same(a: ResultRecord, b: ResultRecord) -> None:
    # NaN != NaN, so compare the JSON forms (NaN -> null in both).
    assert a.to_dict() == b.to_dict()


def test_json_round_trip_keeps_nan_as_null():
    rec = make_record()
    text = rec.to_json()
    data = json.loads(text)
    assert data["schema_version"] == results.SCHEMA_VERSION
    assert data["metrics"]["fwIoU"] is None
    assert data["per_class"]["IoU"] == [70.0, None, 30.25]
    back = ResultRecord.from_json(text)
    assert math.isnan(back.metrics["fwIoU"]) and math.isnan(back.per_class["Acc"][1])
    assert_same(rec, back)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("config_hash"), "missing field(s) config_hash"),
        (lambda d: d.update(extra=1), "unknown field(s) extra"),
        (lambda d: d.update(schema_version=99), "schema_version 99"),
        (lambda d: d["per_class"].update(IoU=[1.0]), "has 1 values for 3 classes"),
        (lambda d: d.update(metrics={"mIoU": "high"}), "metrics must map names to numbers"),
        (lambda d: d.update(row=""), "row must be a non-empty string"),
        (lambda d: d.update(complete="yes"), "complete must be true or false"),
    ],
)
def test_from_json_names_file_and_problem(edit, message):
    data = make_record().to_dict()
    edit(data)
    with pytest.raises(ValueError, match=r"metrics\.json") as info:
        ResultRecord.from_json(json.dumps(data), source="results/x/metrics.json")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_from_json_rejects_broken_json():
    with pytest.raises(ValueError, match=r"^f\.json: not valid JSON"):
        ResultRecord.from_json('{"run": ', source="f.json")
    with pytest.raises(ValueError, match="expected a JSON object"):
        ResultRecord.from_json("[1]", source="f.json")


def test_config_hash_ignores_key_order_and_excluded_keys():
    a = {"model": {"name": "m", "pretrained": "p"}, "seed": 0, "paths": {"data_root": "/a"}}
    b = {"seed": 0, "paths": {"data_root": "/elsewhere"}, "model": {"pretrained": "p", "name": "m"}}
    assert config_hash(a) == config_hash(b)
    # what the docstring promises: 16 hex digits of the sha256 of the canonical JSON without the excludes
    canonical = '{"model":{"name":"m","pretrained":"p"},"seed":0}'
    assert config_hash(a) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert config_hash(a) != config_hash({**a, "seed": 1})
    assert config_hash({**a, "save_predictions": True, "hydra": {"x": 1}}) == config_hash(a)
    # Dotted excludes reach into groups; the default leaves other groups alone.
    c = {**a, "model": {"name": "m", "pretrained": "p", "cache_dir": "/tmp/x"}}
    assert config_hash(c) != config_hash(a)
    assert config_hash(c, exclude=["paths", "model.cache_dir"]) == config_hash(a, exclude=["paths"])


def test_config_hash_accepts_omegaconf_and_paths_rejects_objects():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = {"a": [1, 2.5], "b": {"c": "x"}, "p": "/d"}
    assert config_hash(omegaconf.OmegaConf.create(cfg)) == config_hash(cfg)
    assert config_hash({**cfg, "p": Path("/d"), "a": (1, 2.5)}) == config_hash(cfg)
    with pytest.raises(ValueError, match=r"config value b\.o has type object"):
        config_hash({"b": {"o": object()}})


def test_collect_provenance_has_the_facts():
    prov = collect_provenance(
        device="cpu", n_images=5, wall_time_s=1.5, started_at="2025-01-01T00:00:00+00:00", extra={"seed": 0}
    )
    for key in ("git_commit", "git_dirty", "versions", "hostname", "platform", "device_name", "date"):
        assert key in prov
    assert prov["n_images"] == 5 and prov["wall_time_s"] == 1.5 and prov["seed"] == 0
    versions = prov["versions"]
    assert versions["python"] and versions["numpy"] and versions["cliptrase"]
    assert set(provenance.PACKAGES) <= versions.keys()
    json.dumps(prov, allow_nan=False)  # JSON-ready
    with pytest.raises(ValueError, match="device"):
        collect_provenance(device="cpu", n_images=1, wall_time_s=0, started_at="", extra={"device": "x"})


def test_collect_provenance_outside_git_is_null(monkeypatch):
    monkeypatch.setattr(provenance, "_git", lambda repo, *args: None)
    prov = collect_provenance(device="cpu", n_images=1, wall_time_s=0.0, started_at="t")
    assert prov["git_commit"] is None and prov["git_dirty"] is None


def test_write_record_writes_json_and_per_class_csv(tmp_path):
    out = tmp_path / "exp" / "run0"
    path = write_record(make_record(), out)
    assert path == out / "metrics.json"
    assert_same(read_record(path), make_record())
    lines = (out / "per_class.csv").read_text().splitlines()
    assert lines == ["class,IoU,Acc", "background,70.0000,90.0000", '"cat, kitty",,', "dog,30.2500,30.5000"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_class.csv"]  # no temp files


def test_write_record_refuses_to_overwrite_complete_result(tmp_path):
    write_record(make_record(), tmp_path)
    other = make_record(cfg={**CFG, "seed": 1})
    with pytest.raises(ResultExistsError, match="different config") as info:
        write_record(other, tmp_path)
    msg = str(info.value)
    assert "metrics.json" in msg and "overwrite" in msg and "another run name" in msg and "\n" not in msg
    with pytest.raises(ResultExistsError, match="same config hash"):
        write_record(make_record(), tmp_path)
    write_record(other, tmp_path, overwrite=True)
    assert read_record(tmp_path / "metrics.json").config_hash == other.config_hash


def test_write_record_replaces_incomplete_or_corrupt(tmp_path, caplog):
    write_record(make_record(complete=False), tmp_path)
    write_record(make_record(), tmp_path)  # a placeholder is not a result
    (tmp_path / "metrics.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        write_record(make_record(), tmp_path)
    assert "unreadable" in caplog.text
    assert read_record(tmp_path / "metrics.json").complete


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch, failing):
    write_record(make_record(complete=False), tmp_path)
    before = (tmp_path / "metrics.json").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, failing, boom)
    with pytest.raises(OSError, match="disk full"):
        write_record(make_record(), tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions, non-root")
def test_unwritable_directory_is_one_line_permission_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="locked") as info:
            write_record(make_record(), locked / "run0")
        assert "\n" not in str(info.value) and "writable" in str(info.value)
        with pytest.raises(PermissionError, match="not writable"):
            write_record(make_record(), locked)
    finally:
        locked.chmod(0o700)


def test_permission_denied_names_the_path(tmp_path, monkeypatch):
    # Root ignores permission bits, so simulate what mkdir and open raise for other users.
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(PermissionError, match=r"cannot create results directory .*run0: permission denied"):
        write_record(make_record(), tmp_path / "run0")
    monkeypatch.undo()
    monkeypatch.setattr(results.os, "open", denied)
    with pytest.raises(PermissionError, match=re.escape(f"cannot write in {tmp_path}")) as info:
        write_record(make_record(), tmp_path)
    assert "\n" not in str(info.value)


def test_file_in_the_way_is_clear(tmp_path):
    (tmp_path / "run0").write_text("x")
    with pytest.raises(NotADirectoryError, match="a file is in the way"):
        write_record(make_record(), tmp_path / "run0")


def test_find_complete_resume_semantics(tmp_path, caplog):
    exp = tmp_path / "exp"
    assert find_complete(exp, "0" * 16) is None  # nothing run yet
    done = make_record("a")
    write_record(done, exp / "a")
    other_cfg = {**CFG, "seed": 7}
    write_record(make_record("b", cfg=other_cfg, complete=False), exp / "sweep" / "b")  # nested, unfinished
    (exp / "c").mkdir()
    (exp / "c" / "metrics.json").write_text('{"truncated": ')
    with caplog.at_level(logging.WARNING):
        found = find_complete(exp, done.config_hash)
        assert find_complete(exp, config_hash(other_cfg)) is None  # partial is never complete
    assert found is not None and found.run == "a"
    assert "c/metrics.json" in caplog.text and "ignoring" in caplog.text
    write_record(make_record("b", cfg=other_cfg), exp / "sweep" / "b", overwrite=True)
    assert find_complete(exp, config_hash(other_cfg)).run == "b"


def test_load_records_sorted_and_complete_only(tmp_path):
    exp = tmp_path / "exp"
    for run in ("c", "a", "b"):
        write_record(make_record(run, complete=run != "b"), exp / run)
    assert [r.run for r in load_records(exp)] == ["a", "c"]
    with pytest.raises(FileNotFoundError, match="cliptrase-eval"):
        load_records(tmp_path / "nope")
    with pytest.raises(NotADirectoryError):
        load_records(exp / "a" / "metrics.json")


def test_record_stores_config_as_plain_json_and_rejects_infinite_scores():
    rec = make_record(config={"paths": {"root": Path("/data")}, "crop": (224, 224)})
    assert rec.config == {"paths": {"root": "/data"}, "crop": [224, 224]}
    with pytest.raises(ValueError, match="metrics must map names to numbers"):
        make_record(metrics={"mIoU": math.inf})
    with pytest.raises(ValueError, match="config value a has type object"):
        make_record(config={"a": object()})
