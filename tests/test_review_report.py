"""The clinician report: HTML renders with its charts, the PDF fits on two A4 pages, the
output file is never overwritten without --force, and the JSON is the summary."""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from tens_control.review.charts import build_charts
from tens_control.review.model import PatientData
from tens_control.review.report import (
    ReportError,
    build_report,
    render,
    render_html,
    render_pdf,
    write_output,
)
from tests.fixtures.review_data import Builder, responder, sample_patient, year_patient

GENERATED = datetime(2026, 4, 13, 9, 0, tzinfo=UTC)


def _pdf_pages(data: PatientData) -> PdfReader:
    pdf = render_pdf(build_report(data, tz=UTC, generated=GENERATED))
    assert pdf.startswith(b"%PDF-")
    return PdfReader(io.BytesIO(pdf))


def test_html_leads_with_the_answer_and_has_four_charts() -> None:
    page = render_html(build_report(sample_patient(), tz=UTC, generated=GENERATED))
    assert page.startswith("<!DOCTYPE html>")
    answer = page.index("The answer")
    assert answer < page.index("Warnings") < page.index('id="chart-pain"')
    for name in ("pain", "weekly", "amplitude", "timeline"):
        m = re.search(rf'<figure id="chart-{name}" class="chart"><svg[^>]*>(.*?)</svg>', page, re.S)
        assert m is not None, name
        assert "<path" in m.group(1)
        # a screen reader announces the chart by its title and its description
        assert f'aria-labelledby="chart-{name}-title chart-{name}-desc"' in m.group(0)
        assert f'<title id="chart-{name}-title">' in m.group(1)
        assert f'<desc id="chart-{name}-desc">' in m.group(1)
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert "91 % of prescribed sessions" in page
    assert "week 4: 30 % responder" in page
    assert "IMMPACT moderate" in page
    assert "Tolerance" in page
    assert "skin redness" in page
    assert "electrode off" in page


def test_html_is_self_contained() -> None:
    page = render_html(build_report(sample_patient(), tz=UTC, generated=GENERATED))
    assert "<script" not in page
    assert "<link" not in page
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)


def test_html_says_not_enough_data_with_the_rule() -> None:
    b = Builder().prescribe()
    b.session(0, before=6, after=4)
    page = render_html(build_report(b.build(), tz=UTC, generated=GENERATED))
    assert (
        "not enough data: needs ≥ 3 rated days in the run-in (the days before the first "
        "session) or in the first week of use"
    ) in page
    assert "not enough data: needs ≥ 3 sessions rated both before and after" in page


def test_one_session_is_one_session_and_minutes_are_minutes() -> None:
    """Issue 14: "1 sessions, 0 h of stimulation" for a 30-minute session."""
    b = Builder().prescribe()
    b.session(0, before=6, after=4)
    line = build_report(b.build(), tz=UTC, generated=GENERATED).context_line()
    assert "1 session, 30 min of stimulation" in line
    b.session(1, minutes=95, rated=False)
    line = build_report(b.build(), tz=UTC, generated=GENERATED).context_line()
    assert "2 sessions, 2 h 5 min of stimulation" in line
    text = _pdf_pages(b.build()).pages[0].extract_text()
    assert "2 sessions, 2 h 5 min of stimulation" in " ".join(text.split())


@pytest.mark.parametrize(
    "data",
    [sample_patient(), year_patient(), responder(8, 4), Builder().build()],
    ids=["sample", "year", "two-weeks", "empty"],
)
def test_pdf_has_at_most_two_a4_pages(data: PatientData) -> None:
    reader = _pdf_pages(data)
    assert 1 <= len(reader.pages) <= 2
    for page in reader.pages:
        w, h = float(page.mediabox.width), float(page.mediabox.height)
        assert (round(w), round(h)) == (595, 842)  # A4 in points


def test_pdf_leads_with_the_answer() -> None:
    reader = _pdf_pages(sample_patient())
    assert len(reader.pages) == 2
    first = reader.pages[0].extract_text()
    assert "TENS review" in first
    assert first.index("The answer") < first.index("Warnings")
    assert "Adherence" in first
    assert "Responder" in first
    assert "Tolerance" in first
    second = reader.pages[1].extract_text()
    assert "Latest sessions" in second
    assert "earlier sessions are in the CSV" in second
    # the four charts are vector drawings with their text (titles, axes, legends) in the page
    assert first.index("Warnings") < first.index("Pain before and after each session")
    assert first.index("Pain before and after") < first.index("Weekly mean pain")
    assert "7-day mean (before + diary)" in first
    assert "30 % less" in first
    assert second.index("Amplitude — mean set current") < second.index("Pain and other treat")
    assert second.index("Pain and other treatments") < second.index("Latest sessions")
    assert "mirror therapy" in second


def test_pdf_charts_are_figures_with_their_text_alternative() -> None:
    reader = _pdf_pages(sample_patient())
    root = reader.trailer["/Root"].get_object()
    assert isinstance(root, dict)
    figures: list[str] = []

    def walk(node: object) -> None:
        node = node.get_object() if hasattr(node, "get_object") else node
        if isinstance(node, dict):
            if node.get("/S") == "/Figure":
                figures.append(str(node.get("/Alt")))
            walk(node.get("/K"))
        elif isinstance(node, list):
            for kid in node:
                walk(kid)

    walk(root["/StructTreeRoot"])
    assert len(figures) == 4
    assert figures[0].startswith("Pain before and after each session — phantom-limb pain at rest")
    assert "sessions rated before" in figures[0]
    assert figures[1].startswith("Weekly mean pain")
    assert "baseline (run-in before the first session" in figures[1]
    assert figures[2].startswith("Amplitude")
    assert "Tolerance pattern shaded" in figures[2]
    assert figures[3].startswith("Pain and other treatments")
    assert "adverse event" in figures[3]


def test_a_year_of_warnings_still_fits_and_says_what_was_left_out() -> None:
    reader = _pdf_pages(year_patient(adverse=40))
    assert len(reader.pages) == 2
    text = reader.pages[0].extract_text()
    assert "40 recorded" in text
    assert "and 37 earlier" in text


def test_json_report_is_the_summary_and_the_notes() -> None:
    doc = json.loads(render(sample_patient(), "json", tz=UTC, generated=GENERATED))
    tp = doc["summary"]["primary"]["time_points"][0]
    assert (tp["week"], tp["band"], tp["responder_30"], tp["responder_50"]) == (
        4,
        "moderate",
        True,
        False,
    )
    assert doc["summary"]["adherence"]["sessions_done"] == 115
    assert [n["text"] for n in doc["session_notes"]] == ["felt relaxed afterwards"]


def test_output_is_never_overwritten_without_force(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_output(out, b"first")
    with pytest.raises(ReportError, match=r"already exists.*--force"):
        write_output(out, b"second")
    assert out.read_bytes() == b"first"
    write_output(out, b"second", force=True)
    assert out.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_output_into_a_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        write_output(tmp_path / "nope" / "r.pdf", b"x")


def test_the_sample_report_in_docs_is_current() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs"
    html_text = (docs / "sample-report.html").read_text(encoding="utf-8")
    report = build_report(sample_patient(), tz=UTC, generated=GENERATED)
    for line in [*report.answers(), *report.warnings()]:
        assert html.escape(line.text) in html_text, (
            "run python -m tests.fixtures.make_sample_report"
        )
    assert html_text.count("<svg") == 4
    for chart in build_charts(report.data, report.summary, report.tz).values():
        assert chart.svg() in html_text, "run python -m tests.fixtures.make_sample_report"
    assert len(PdfReader(docs / "sample-report.pdf").pages) == 2


def test_an_html_report_loads_no_pdf_or_plotting_library() -> None:
    """The HTML report is written without fpdf2 (and its numpy import) or matplotlib, so
    ``tens-control report --format html`` starts quickly."""
    code = (
        "import sys\n"
        "from datetime import UTC\n"
        "from tens_control.review.report import build_report, render_html\n"
        "from tests.fixtures.review_data import sample_patient\n"
        "page = render_html(build_report(sample_patient(), tz=UTC))\n"
        "assert page.count('<svg') == 4\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'fpdf', 'numpy')]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)
