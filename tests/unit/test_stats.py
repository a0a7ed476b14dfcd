"""Per-image records, bootstrap intervals and paired comparisons on synthetic records with known answers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers.stats_records import counts_of, random_matrices, summary, write_run

from cliptrase.engine.paper_metric import paper_scores
from cliptrase.records.per_image import PER_IMAGE_FILE, PerImageCounts, load_per_image
from cliptrase.records.results import load_records
from cliptrase.reporting.analysis import StatsRequest, write_statistics
from cliptrase.stats.bootstrap import resample_rng, resampled_sums, scores
from cliptrase.stats.comparisons import bootstrap_records, compare_rows, resolve_row

DEFINITIONS = ("mmseg_iou", "paper_scores")
CLIP, OURS = "clip | tiny | paper224", "cliptrase | tiny | paper224"


def _bootstrap(exp_dir, n_resamples=200):
    records = load_records(exp_dir)
    return records, bootstrap_records(records, exp_dir, "mIoU", n_resamples=n_resamples, seed=0)


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_point_estimate_and_resamples_are_the_metric_of_summed_matrices(definition):
    """Full-sample scores equal the metric on the summed matrix; a resample equals the metric on the
    multiplicity-weighted sum of the per-image matrices (computed here the slow way)."""
    rng = np.random.default_rng(1)
    matrices = random_matrices(rng, 12)
    counts = counts_of(matrices, definition, [f"i{i}" for i in range(12)])
    expected, _ = summary(np.sum(matrices, axis=0), definition)
    assert scores(counts.marginals().sum(axis=1), definition)["mIoU"] == pytest.approx(
        expected["mIoU"], abs=0.005
    )
    (sums,) = resampled_sums([counts.marginals()], resample_rng(0, "demo", counts.image_ids), 5)
    draws = resample_rng(0, "demo", counts.image_ids).integers(0, 12, size=(5, 12))
    for r in range(5):
        total = np.sum([matrices[i] for i in draws[r]], axis=0)
        if definition == "paper_scores":
            want = paper_scores(total)["mIoU"]
        else:
            want = summary(total, definition)[0]["mIoU"]
        assert scores(sums[:, r], definition)["mIoU"] == pytest.approx(want, abs=0.005)


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_one_image_repeated_has_zero_width(tmp_path, definition):
    matrix = random_matrices(np.random.default_rng(2), 1)[0]
    write_run(tmp_path, CLIP, "demo", [matrix] * 40, definition=definition)
    _, boot = _bootstrap(tmp_path)
    values = boot.samples[(CLIP, "demo")].values
    assert np.ptp(values) == 0.0


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_identical_rows_differ_by_exactly_zero(tmp_path, definition):
    matrices = random_matrices(np.random.default_rng(3), 30)
    write_run(tmp_path, CLIP, "demo", matrices, definition=definition)
    write_run(tmp_path, OURS, "demo", matrices, definition=definition)
    records, boot = _bootstrap(tmp_path)
    comp = compare_rows(boot, records, OURS, CLIP)
    diff = comp.cells["demo"]
    assert diff.value == 0.0 and diff.interval.lo == 0.0 and diff.interval.hi == 0.0
    assert diff.share_a_better == 0.0 and not diff.significant


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_better_on_every_image_is_marked(tmp_path, definition):
    """Moving half of every image's misclassified pixels of each GT row to the diagonal raises every
    class's intersection and lowers its union, on every image."""
    matrices = random_matrices(np.random.default_rng(4), 30)
    better = []
    for hist in matrices:
        moved = (hist - np.diag(np.diag(hist))) // 2
        better.append(hist - moved + np.diag(moved.sum(axis=1)))
    write_run(tmp_path, CLIP, "demo", matrices, definition=definition)
    write_run(tmp_path, OURS, "demo", better, definition=definition)
    records, boot = _bootstrap(tmp_path)
    diff = compare_rows(boot, records, OURS, CLIP).cells["demo"]
    assert diff.value > 0 and diff.interval.lo > 0 and diff.significant
    assert diff.share_a_better == 1.0


def test_compare_refuses_other_images(tmp_path):
    matrices = random_matrices(np.random.default_rng(5), 20)
    write_run(tmp_path, CLIP, "demo", matrices)
    write_run(tmp_path, OURS, "demo", matrices[:10])
    records, boot = _bootstrap(tmp_path)
    with pytest.raises(ValueError, match=r"different images on demo .10 and 20 images, 10 in common"):
        compare_rows(boot, records, OURS, CLIP)


def test_compare_refuses_other_metric_definition(tmp_path):
    matrices = random_matrices(np.random.default_rng(6), 20)
    write_run(tmp_path, CLIP, "demo", matrices, definition="mmseg_iou")
    write_run(tmp_path, "cliptrase | tiny | standard", "demo", matrices, definition="paper_scores")
    request = StatsRequest(compare=("cliptrase | tiny | standard", CLIP), n_resamples=50)
    with pytest.raises(ValueError, match="different metric definitions are not comparable"):
        write_statistics(tmp_path, metric="mIoU", out_dir=tmp_path, request=request)


def test_image_order_does_not_matter(tmp_path):
    """Runs listing the same images in another order (another world size) still pair image by image."""
    matrices = random_matrices(np.random.default_rng(7), 15)
    ids = [f"img{i:02d}" for i in range(15)]
    write_run(tmp_path, CLIP, "demo", matrices, ids=ids)
    write_run(tmp_path, OURS, "demo", matrices[::-1], ids=ids[::-1])
    records, boot = _bootstrap(tmp_path)
    assert compare_rows(boot, records, OURS, CLIP).cells["demo"].interval.hi == 0.0


def test_intervals_files_and_older_records(tmp_path, caplog):
    """--ci writes intervals for every cell with a per-image file; older records load without."""
    rng = np.random.default_rng(8)
    write_run(tmp_path, CLIP, "demo", random_matrices(rng, 25))
    write_run(tmp_path, OURS, "demo", random_matrices(rng, 25), per_image=False)
    request = StatsRequest(ci=True, baseline="clip", n_resamples=100)
    with caplog.at_level(logging.INFO):
        (analysis,) = write_statistics(tmp_path, metric="mIoU", out_dir=tmp_path, request=request)
    assert (CLIP, "demo") in analysis.intervals.cells and (OURS, "demo") not in analysis.intervals.cells
    text = (tmp_path / "table_ci.md").read_text()
    assert "No interval (no per-image record" in text and "[" in text
    interval = analysis.intervals.cells[(CLIP, "demo")]
    assert interval.lo < analysis.intervals.table.rows[0].cells["demo"] < interval.hi


def test_same_seed_same_interval_and_resample_count(tmp_path):
    write_run(tmp_path, CLIP, "demo", random_matrices(np.random.default_rng(9), 25))
    _, a = _bootstrap(tmp_path, n_resamples=123)
    _, b = _bootstrap(tmp_path, n_resamples=123)
    assert a.samples[(CLIP, "demo")].values.shape == (123,)
    np.testing.assert_array_equal(a.samples[(CLIP, "demo")].values, b.samples[(CLIP, "demo")].values)


def test_per_class_view_files(tmp_path):
    rng = np.random.default_rng(10)
    write_run(tmp_path, CLIP, "demo", random_matrices(rng, 20))
    write_run(tmp_path, OURS, "demo", random_matrices(rng, 20))
    request = StatsRequest(compare=("cliptrase", "clip"), n_resamples=50)
    write_statistics(tmp_path, metric="mIoU", out_dir=tmp_path, request=request)
    stem = "demo__cliptrase_tiny_paper224__vs__clip_tiny_paper224"
    folder = tmp_path / "compare"
    assert (folder / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (folder / f"{stem}.svg").read_bytes()
    lines = (folder / f"{stem}.csv").read_text().splitlines()
    assert lines[0] == "class,iou_a,iou_b,diff,lo,hi" and len(lines) == 4
    diffs = [float(line.split(",")[3]) for line in lines[1:]]
    assert diffs == sorted(diffs, reverse=True)
    assert (folder / "cliptrase_tiny_paper224__vs__clip_tiny_paper224.md").is_file()


def test_resolve_row():
    rows = [CLIP, OURS]
    assert resolve_row("clip", rows) == CLIP
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_row("tiny", rows)
    with pytest.raises(ValueError, match="no row 'sclip'"):
        resolve_row("sclip", rows)


def test_per_image_round_trip_and_stale_file(tmp_path):
    matrices = random_matrices(np.random.default_rng(11), 6)
    record = write_run(tmp_path, CLIP, "demo", matrices, definition="paper_scores")
    counts = load_per_image(tmp_path, record)
    assert isinstance(counts, PerImageCounts) and counts.n_images == 6
    np.testing.assert_array_equal(counts.total(), np.sum(matrices, axis=0))
    other = write_run(tmp_path / "b", OURS, "demo", matrices[:3], definition="paper_scores")
    stale = (tmp_path / "b" / other.run / PER_IMAGE_FILE).read_bytes()
    (tmp_path / record.run / PER_IMAGE_FILE).write_bytes(stale)
    assert load_per_image(tmp_path, record) is None  # made by another config: not used
    (tmp_path / record.run / PER_IMAGE_FILE).write_bytes(b"not a zip")
    assert load_per_image(tmp_path, record) is None


def test_table_cli_statistics_and_refusal(tmp_path, caplog):
    """cliptrase-table --ci --baseline writes the files; --compare on other images exits 2 in one line."""
    from cliptrase.cli import table as table_cli

    matrices = random_matrices(np.random.default_rng(12), 12)
    write_run(tmp_path, CLIP, "demo", matrices)
    write_run(tmp_path, OURS, "demo", matrices[:6])
    assert table_cli.main([str(tmp_path), "--ci", "--resamples", "50"]) == 0
    assert (tmp_path / "table_ci.md").is_file()
    assert table_cli.main([str(tmp_path), "--compare", "cliptrase", "clip", "--resamples", "50"]) == 2
    assert "were evaluated on different images on demo" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "empty", "corrupt"])
def test_unreadable_per_image_file_is_named_not_called_missing(tmp_path, caplog, damage):
    """A per-image file that exists but cannot be read is reported as such, with the file and how to
    recompute it, never as a record made before per-image files existed; the table is still written."""
    from cliptrase.cli import table as table_cli

    rng = np.random.default_rng(13)
    write_run(tmp_path, CLIP, "demo", random_matrices(rng, 40))
    record = write_run(tmp_path, OURS, "demo", random_matrices(rng, 40))
    path = tmp_path / record.run / PER_IMAGE_FILE
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "corrupt": data[:300] + bytes(b ^ 0xFF for b in data[300:600]) + data[600:],
    }[damage]
    path.write_bytes(damaged)
    assert table_cli.main([str(tmp_path), "--ci", "--resamples", "20"]) == 0
    text = (tmp_path / "table_ci.md").read_text()
    assert f"No interval for {OURS} / demo: {path} exists but is unreadable" in text
    assert "results.overwrite=true" in text and "made before they existed" not in text
    assert f"ignoring per-image file: {path} exists but is unreadable" in caplog.text
    assert (tmp_path / "table.md").is_file()


def test_compare_with_an_unknown_row_names_it_and_lists_the_rows(tmp_path, caplog):
    from cliptrase.cli import table as table_cli

    rng = np.random.default_rng(14)
    write_run(tmp_path, CLIP, "demo", random_matrices(rng, 8))
    write_run(tmp_path, OURS, "demo", random_matrices(rng, 8))
    assert table_cli.main([str(tmp_path), "--compare", "nosuch", "clip", "--resamples", "20"]) == 2
    assert (
        f"--compare: no row 'nosuch' (a full row label or one of its | fields); rows are: {CLIP}; {OURS}"
        in (caplog.text)
    )
    assert "not comparable" not in caplog.text
    assert table_cli.main([str(tmp_path), "--baseline", "sclip", "--resamples", "20"]) == 2
    assert "--baseline: no row 'sclip'" in caplog.text
