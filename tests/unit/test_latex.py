"""``cliptrase-table --format latex``: a booktabs fragment that compiles (pdflatex, where installed) and holds
exactly the numbers of ``table.csv``; marks for best / second best, published and Δ rows, missing cells."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.stats_records import one_class_record, random_matrices, write_run

from cliptrase.cli import table as table_cli
from cliptrase.records.failures import FailedRecord
from cliptrase.reporting.latex import latex_escape, ranks, to_latex
from cliptrase.reporting.tables import build_tables

PDFLATEX = shutil.which("pdflatex")
KPSEWHICH = shutil.which("kpsewhich")


def _has_booktabs() -> bool:
    """booktabs.sty is findable by TeX (texlive-latex-base alone lacks it)."""
    if KPSEWHICH is None:
        return False
    found = subprocess.run([KPSEWHICH, "booktabs.sty"], capture_output=True, text=True, check=False)
    return bool(found.stdout.strip())


ROWS = (
    "clip | tiny_b16 | paper224",
    "cliptrase | tiny & co | 50% | paper224",
    "naclip #2 | ~x^y {z} | paper224",
)
DOCUMENT = (
    "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{%s}\n\\end{document}\n"
)


def _body(tex: str) -> list[list[str]]:
    """The cells of the rows between \\midrule and \\bottomrule."""
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [[c.strip() for c in line.removesuffix("\\\\").split(" & ")] for line in body.strip().splitlines()]


def _number(cell: str) -> str:
    """The printed value of a cell: marks, superscripts and the interval stripped."""
    cell = re.sub(r" \{\\scriptsize [^}]*\}", "", cell)
    cell = re.sub(r"\$\^[^$]*\$", "", cell)
    while (inner := re.sub(r"\\(textbf|underline|textit)\{(.*)\}", r"\2", cell)) != cell:
        cell = inner
    return cell


def test_escape():
    assert latex_escape("a_b|c%d&e#f$g{h}~i^j\\k<l>") == (
        r"a\_b\textbar{}c\%d\&e\#f\$g\{h\}\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
        r"\textless{}l\textgreater{}"
    )
    assert latex_escape("r Δ vs published") == r"r $\Delta$ vs published"


def test_marks_ties_published_delta_missing_and_failed():
    records = [
        one_class_record("a", "voc21", 50.0),
        one_class_record("b", "voc21", 50.004),  # prints as 50.00: a tie with a, both bold
        one_class_record("c", "voc21", 40.0),
        one_class_record("a", "voc20", 70.0),
        one_class_record("b", "voc20", 60.0, invalid_label_pixels=3),
        one_class_record("d", "voc21", 10.0),
    ]
    failure = FailedRecord("e", "voc20__c", "c", "voc20", "paper_scores", "1" * 16, "boom", "DataError")
    (table,) = build_tables(records, published={"a": {"voc21": 49.0}}, failures=[failure])
    marks = ranks(table)
    assert marks[("a", "voc21")] == marks[("b", "voc21")] == 1 and marks[("c", "voc21")] == 2
    assert marks[("a", "voc20")] == 1 and marks[("b", "voc20")] == 2 and ("d", "voc20") not in marks
    assert not any(label.endswith(("(published)", "published")) for label, _ in marks)
    rows = {r[0]: r[1:] for r in _body(to_latex(table))}
    assert rows["a"] == [r"\textbf{50.00}", r"\textbf{70.00}", r"\textbf{60.00}"]
    assert rows["b"][:2] == [r"\textbf{50.00}", r"\underline{60.00}$^\dagger$"]
    assert rows["c"][:2] == [r"\underline{40.00}", "failed"]
    assert rows["d"] == ["10.00", "--", r"10.00$^*$"]
    assert rows[r"\textit{a (published)}"] == [r"\textit{49.00}", "--", r"\textit{49.00$^*$}"]
    assert rows[r"\textit{a $\Delta$ vs published}"][0] == r"\textit{+1.00}"
    tex = to_latex(table)
    assert "average over the available datasets only" in tex and "allow\\_invalid\\_labels" in tex
    assert "failed.json" in tex


def _experiment(tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    rng = np.random.default_rng(3)
    for row in ROWS:
        for column in ("voc21", "coco_stuff171", "context59"):
            write_run(exp, row, column, random_matrices(rng, 12))
    return exp


def test_cli_latex_round_trips_the_csv(tmp_path):
    exp = _experiment(tmp_path)
    published = tmp_path / "published.json"
    published.write_text(json.dumps({ROWS[0]: {"voc21": 70.0, "context59": 60.5}}))
    args = [str(exp), "--format", "md,csv,latex", "--published", str(published), "--ci", "--resamples", "30"]
    assert table_cli.main(args) == 0
    with (exp / "table.csv").open() as f:
        reader = csv.DictReader(f)
        csv_rows = list(reader)
    columns = [c for c in reader.fieldnames if c not in ("row", "kind", "complete")]
    assert sorted(columns) == sorted(["voc21", "coco_stuff171", "context59", "Avg"])
    for name in ("table.tex", "table_ci.tex"):
        tex = (exp / name).read_text()
        header = tex.split("\\toprule\n", 1)[1].split("\\midrule", 1)[0]
        assert header.strip() == " & ".join(["Row", *map(latex_escape, columns)]) + r" \\"
        body = _body(tex)
        # table.tex: 3 measured + published + delta rows; table_ci.tex, like table_ci.md, the measured rows
        expected_rows = csv_rows if name == "table.tex" else [r for r in csv_rows if r["kind"] == "measured"]
        assert len(body) == len(expected_rows) == (5 if name == "table.tex" else 3)
        for cells, expected in zip(body, expected_rows):
            label = re.sub(r"\\textit\{(.*)\}", r"\1", cells[0])
            assert label == latex_escape(expected["row"])
            want = [
                "--"
                if not expected[c]
                else f"{float(expected[c]):{'+' if expected['kind'] == 'delta' else ''}.2f}"
                for c in columns
            ]
            assert [_number(c) for c in cells[1:]] == want, name
    ci = (exp / "table_ci.tex").read_text()
    assert ci.count(r"{\scriptsize $\pm$") == 3 * 4  # measured rows only
    assert (exp / "table.md").is_file() and (exp / "table.png").is_file()


def test_latex_file_follows_the_records(tmp_path):
    """Once written, table.tex is rewritten with the other tables (a stale one never stays)."""
    from cliptrase.reporting.table_files import write_tables

    exp = _experiment(tmp_path)
    assert table_cli.main([str(exp), "--format", "latex"]) == 0
    before = (exp / "table.tex").read_text()
    write_run(exp, "extra | row", "voc21", random_matrices(np.random.default_rng(4), 12))
    write_tables(exp)
    after = (exp / "table.tex").read_text()
    assert after != before and "extra \\textbar{} row" in after


def test_unknown_format_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        table_cli.main([str(tmp_path), "--format", "md,docx"])
    assert (
        stop.value.code == 2 and "unknown format docx; valid: md, csv, png, latex" in capsys.readouterr().err
    )


@pytest.mark.skipif(
    PDFLATEX is None or not _has_booktabs(),
    reason="pdflatex or booktabs.sty not installed (texlive-latex-base + texlive-latex-recommended)",
)
def test_latex_compiles_with_pdflatex(tmp_path):
    exp = _experiment(tmp_path)
    args = [str(exp), "--format", "latex", "--ci", "--ci-style", "range", "--resamples", "30"]
    assert table_cli.main(args) == 0
    for name in ("table.tex", "table_ci.tex"):
        doc = tmp_path / f"doc_{name}"
        doc.write_text(DOCUMENT % (exp / name).as_posix())
        result = subprocess.run(
            [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout[-2000:]
        assert (tmp_path / doc.with_suffix(".pdf").name).read_bytes()[:5] == b"%PDF-"
