"""``cliptrase-report``: structure of the self-contained HTML, the qualitative grid, and (headless Chromium,
where installed) that every image of the page loads."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import CHROMIUM, chromium_dom
from helpers.saved_predictions import IGNORE, prediction, save_run, scene
from helpers.stats_records import CLASSES, random_matrices, write_run
from PIL import Image

from cliptrase.cli import report as report_cli
from cliptrase.reporting.qualitative import PREDICTIONS_DIR, dataset_colours

CLIP, OURS, NAIVE = "clip | tiny | paper224", "cliptrase | tiny | paper224", "naclip | tiny | paper224"
STEMS = ("img0000", "img0001", "img0002")


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


MATRICES = {row: random_matrices(np.random.default_rng(i), 10) for i, row in enumerate((CLIP, OURS, NAIVE))}
"""Per-image confusion matrices of each row (images img0000..img0009)."""


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """Three methods on one dataset; two saved predictions of the same images, the third none."""
    exp = tmp_path / "demo"
    for i, row in enumerate((CLIP, OURS, NAIVE)):
        record = write_run(exp, row, "demo", MATRICES[row], definition="paper_scores")
        if row != NAIVE:
            save_run(exp, record, STEMS, method=i)
    return exp


def _spread_order() -> list[str]:
    """The saved stems by decreasing spread of per-image mIoU (classes in GT or prediction) of the two
    rows with predictions, computed here from the matrices."""

    def miou(hist: np.ndarray) -> float:
        inter, union = np.diag(hist), hist.sum(0) + hist.sum(1) - np.diag(hist)
        return float(np.mean(inter[union > 0] / union[union > 0]))

    spread = {s: abs(miou(MATRICES[CLIP][i]) - miou(MATRICES[OURS][i])) for i, s in enumerate(STEMS)}
    return sorted(STEMS, key=lambda s: (-spread[s], s))


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
    assert grid[0] == ["", "Image", "GT", CLIP, OURS, "Classes"]
    assert [r[0].split("spread")[0] for r in grid[1:]] == _spread_order()[:2]  # most different first
    assert all(cell == "<img>" for row in grid[1:] for cell in row[1:5])
    assert any("No predictions saved by" in n and "naclip" in n for n in page.notes)
    # every image is inline and decodes, the grid once: 2 class charts + 2 rows x (image, GT, 2 methods)
    assert len(page.images) == 2 + 2 * 4 and [t["class"] for t in page.tables].count("grid") == 1
    for img in page.images:
        assert img["src"].startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) and img.get("alt")
        Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))).verify()
    assert "http" not in (experiment / "report.html").read_text(encoding="utf-8").replace("http-equiv", "")
    assert (experiment / "qualitative.png").read_bytes()[:4] == b"\x89PNG"
    assert (experiment / "qualitative.pdf").read_bytes()[:5] == b"%PDF-"


def test_report_named_images_and_errors(experiment, caplog):
    assert report_cli.main([str(experiment), "--images", "img0002", "--resamples", "20"]) == 0
    grid = {t["class"]: t for t in _parse(experiment).tables}["grid"]["rows"]
    assert [r[0].split("spread")[0] for r in grid[1:]] == ["img0002"]
    assert report_cli.main([str(experiment), "--images", "nope", "--resamples", "20"]) == 2
    assert "--images nope: no saved prediction" in caplog.text
    assert report_cli.main([str(experiment), "--baseline", "sclip", "--resamples", "20"]) == 2


def test_report_names_runs_saved_in_the_old_format(experiment):
    """A run that saved only overlays (before the grid's image and GT were saved) is named with the fix."""
    old = next((experiment / PREDICTIONS_DIR).iterdir())
    for path in old.iterdir():
        path.unlink()
    Image.new("RGB", (40, 30), "red").save(old / "img0000_overlay.png")
    assert report_cli.main([str(experiment), "--resamples", "20"]) == 0
    page = _parse(experiment)
    assert any("older version" in n and old.name in n and "save_predictions=K" in n for n in page.notes)
    grid = {t["class"]: t for t in page.tables}["grid"]["rows"]
    assert len(grid[0]) == 2 + 1 + 2  # stem, Image, GT, the one method left, Classes


def test_report_without_any_predictions(tmp_path):
    exp = tmp_path / "bare"
    write_run(exp, CLIP, "demo", random_matrices(np.random.default_rng(1), 5))
    assert report_cli.main([str(exp), "--resamples", "20"]) == 0
    page = _parse(exp)
    assert any("No run of this experiment saved predictions" in n for n in page.notes)
    assert not (exp / "qualitative.png").exists()


_PROBE = """<script>window.addEventListener('load',()=>{
const imgs=[...document.images];
document.body.setAttribute('data-loaded',imgs.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+imgs.length);
const rows=[...document.querySelectorAll('table.grid tr')].slice(1).map(tr=>({
  legend:[...tr.querySelectorAll('ul.legend li')].map(li=>[li.textContent,
    getComputedStyle(li.querySelector('.swatch')).backgroundColor]),
  cells:[...tr.querySelectorAll('img')].map(img=>{
    const c=document.createElement('canvas');c.width=img.naturalWidth;c.height=img.naturalHeight;
    const g=c.getContext('2d');g.drawImage(img,0,0);
    const d=g.getImageData(0,0,c.width,c.height).data;const h={};
    for(let k=0;k<d.length;k+=4){const key=d[k]+','+d[k+1]+','+d[k+2];h[key]=(h[key]||0)+1;}
    return {alt:img.alt,colours:h};})}));
document.body.setAttribute('data-grid',JSON.stringify(rows));});</script>"""
"""Appended to a copy of the page: counts the images that decoded, and per grid row reads back the legend's
rendered swatch colours and every cell's decoded pixels (a colour histogram) from a canvas."""


def _attribute(dom: str, name: str) -> str:
    return html.unescape(re.search(rf'{name}="([^"]*)"', dom).group(1))


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"headless Chromium not installed at {CHROMIUM}")
def test_report_renders_in_headless_chromium(experiment, tmp_path):
    """Chromium loads the page offline; in the browser, the grid has the Image and GT columns, appears once,
    and every class has one colour in every column: the colours decoded from each GT / prediction cell,
    read through the legend's rendered swatches, give back exactly the label maps that were saved."""
    assert report_cli.main([str(experiment), "--baseline", "clip", "--resamples", "20"]) == 0
    text = (experiment / "report.html").read_text(encoding="utf-8")
    page = tmp_path / "probe.html"
    page.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = chromium_dom(page, tmp_path / "profile")
    n = len(_parse(experiment).images)
    assert f'data-loaded="{n}/{n}"' in dom
    assert dom.count('class="grid"') == 1 and "qualitative grid" not in dom  # the grid once, no PNG copy
    head = _parse(experiment).tables[[t["class"] for t in _parse(experiment).tables].index("grid")]["rows"][0]
    assert head[1:3] == ["Image", "GT"]
    rows = json.loads(_attribute(dom, "data-grid"))
    stems = _spread_order()[: len(rows)]
    assert len(rows) == len(STEMS)  # default --num-images 4, three images saved
    for stem, row in zip(stems, rows):
        colour_of = {name: tuple(int(v) for v in re.findall(r"\d+", rgb)) for name, rgb in row["legend"]}
        to_class = {colour: CLASSES.index(name) for name, colour in colour_of.items()}
        assert len(to_class) == len(colour_of)  # one colour per class, distinct
        to_class[(255, 255, 255)] = IGNORE
        _, gt = scene(STEMS.index(stem), (30, 40), len(CLASSES))
        expected = [gt, prediction(gt, 0, len(CLASSES)), prediction(gt, 1, len(CLASSES))]
        assert [c["alt"] for c in row["cells"]] == [f"{stem} {x}" for x in ("image", "GT", CLIP, OURS)]
        for cell, labels in zip(row["cells"][1:], expected):
            colours = cell["colours"].items()
            decoded = {to_class[tuple(int(v) for v in key.split(","))]: k for key, k in colours}
            values, counts = np.unique(labels, return_counts=True)
            assert decoded == dict(zip(values.tolist(), counts.tolist()))
        assert set(colour_of) == {CLASSES[c] for lab in expected for c in np.unique(lab) if c != IGNORE}
    palette = dataset_colours("demo", CLASSES)  # the demo benchmark's own colours
    assert all(colour_of[name] == tuple(palette[i]) for i, name in enumerate(CLASSES) if name in colour_of)
