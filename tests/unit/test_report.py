"""``cliptrase-report``: structure of the self-contained HTML, the qualitative grid, and (headless Chromium,
where installed) that every image of the page loads."""

from __future__ import annotations

import base64
import html
import io
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers.stats_records import random_matrices, write_run
from PIL import Image

from cliptrase.cli import report as report_cli
from cliptrase.reporting.qualitative import PREDICTIONS_DIR

CLIP, OURS, NAIVE = "clip | tiny | paper224", "cliptrase | tiny | paper224", "naclip | tiny | paper224"
STEMS = ("img0000", "img0001", "img0002")
CHROMIUM = Path("/usr/bin/chromium")


class PageParser(HTMLParser):
    """Collects images (src, alt), tables (class, rows of cell texts) and notes."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.tables: list[dict] = []
        self.notes: list[str] = []
        self.headings: list[str] = []
        self._stack: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
            if "td" in self._stack:
                self.tables[-1]["rows"][-1][-1] += "<img>"
            return
        self._stack.append(tag)
        if tag == "table":
            self.tables.append({"class": attrs.get("class"), "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th") and self.tables:
            self.tables[-1]["rows"][-1].append("")
        elif tag in ("p", "h1", "h2", "h3"):
            self._text = []
            self._cls = attrs.get("class")

    def handle_endtag(self, tag):
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        if tag == "p" and self._cls == "note":
            self.notes.append("".join(self._text))
        elif tag in ("h1", "h2", "h3"):
            self.headings.append("".join(self._text))

    def handle_data(self, data):
        self._text.append(data)
        if "td" in self._stack or "th" in self._stack:
            self.tables[-1]["rows"][-1][-1] += data


def _overlay(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """Three methods on one dataset; two saved predictions of the same images, the third none."""
    exp = tmp_path / "demo"
    rng = np.random.default_rng(0)
    for i, row in enumerate((CLIP, OURS, NAIVE)):
        record = write_run(exp, row, "demo", random_matrices(rng, 10), definition="paper_scores")
        if row != NAIVE:
            for stem in STEMS:
                _overlay(exp / PREDICTIONS_DIR / record.run / f"{stem}_overlay.png", (40 * i, 100, 200))
    return exp


def _parse(exp: Path) -> PageParser:
    parser = PageParser()
    parser.feed((exp / "report.html").read_text(encoding="utf-8"))
    return parser


def test_report_structure(experiment):
    code = report_cli.main([str(experiment), "--baseline", "clip", "--num-images", "2", "--resamples", "50"])
    assert code == 0
    page = _parse(experiment)
    assert page.headings[:2] == ["cliptrase report: demo", "Tables"]
    assert {"LaTeX", "Comparisons", "Per-class IoU", "Qualitative results"} <= set(page.headings)
    text = (experiment / "report.html").read_text(encoding="utf-8")
    latex = html.unescape(text.split('<pre class="latex">', 1)[1].split("</pre>", 1)[0])
    assert latex.count(r"\textbar{} tiny \textbar{}") == 3 and r"\toprule" in latex and r"$\pm$" in latex
    assert latex.count(r"\textbf{") == 2  # best of the demo column and of the average
    by_class = {t["class"]: t for t in page.tables}
    intervals = by_class["intervals"]["rows"]
    assert intervals[0] == ["Row", "demo", "Avg"] and len(intervals) == 4
    assert all("[" in cell for row in intervals[1:] for cell in row[1:])  # every cell has an interval
    comparisons = by_class["comparisons"]["rows"]
    assert [r[0] for r in comparisons[1:]] == [f"{OURS} − {CLIP}", f"{NAIVE} − {CLIP}"]
    grid = by_class["grid"]["rows"]
    assert grid[0] == ["image", CLIP, OURS] and [r[0] for r in grid[1:]] == list(STEMS[:2])
    assert all(cell == "<img>" for row in grid[1:] for cell in row[1:])
    assert any("No predictions saved by" in n and "naclip" in n for n in page.notes)
    # every image is inline and decodes: 2 class charts + 4 grid cells + the whole grid
    assert len(page.images) == 2 + 4 + 1
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,") and img.get("alt")
        Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))).verify()
    assert "http" not in (experiment / "report.html").read_text(encoding="utf-8").replace("http-equiv", "")
    assert (experiment / "qualitative.png").read_bytes()[:4] == b"\x89PNG"
    assert (experiment / "qualitative.pdf").read_bytes()[:5] == b"%PDF-"


def test_report_named_images_and_errors(experiment, caplog):
    assert report_cli.main([str(experiment), "--images", "img0002", "--resamples", "20"]) == 0
    grid = {t["class"]: t for t in _parse(experiment).tables}["grid"]["rows"]
    assert [r[0] for r in grid[1:]] == ["img0002"]
    assert report_cli.main([str(experiment), "--images", "nope", "--resamples", "20"]) == 2
    assert "--images nope: no saved prediction" in caplog.text
    assert report_cli.main([str(experiment), "--baseline", "sclip", "--resamples", "20"]) == 2


def test_report_without_any_predictions(tmp_path):
    exp = tmp_path / "bare"
    write_run(exp, CLIP, "demo", random_matrices(np.random.default_rng(1), 5))
    assert report_cli.main([str(exp), "--resamples", "20"]) == 0
    page = _parse(exp)
    assert any("No run of this experiment saved predictions" in n for n in page.notes)
    assert not (exp / "qualitative.png").exists()


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"headless Chromium not installed at {CHROMIUM}")
def test_report_renders_in_headless_chromium(experiment, tmp_path):
    """Chromium loads the page offline; a script appended to a copy counts images that decoded."""
    assert report_cli.main([str(experiment), "--baseline", "clip", "--resamples", "20"]) == 0
    html = (experiment / "report.html").read_text(encoding="utf-8")
    probe = (
        "<script>window.addEventListener('load',()=>{const i=[...document.images];"
        "document.body.setAttribute('data-loaded',i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length)"
        "});</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe + "</body>"), encoding="utf-8")
    out = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    n = len(_parse(experiment).images)
    assert f'data-loaded="{n}/{n}"' in out.stdout
