"""The report document: one structure, Markdown and HTML agree, images embedded, text escaped."""

from __future__ import annotations

import base64
import json

from gradguard.report.document import Code, Document, Flags, Heading, Image, Paragraph, Table
from gradguard.report.files import write_json_atomic
from gradguard.report.plots import line_plot
from gradguard.runlog import read_metrics


def _doc(tmp_path):
    png = line_plot(tmp_path / "curve.png", {"pgd": ([0.1, 0.2, 0.3], [0.9, 0.5, 0.1])},
                    title="t", xlabel="eps", ylabel="acc")
    doc = Document("Run <x>")
    doc.add(Heading("Results"), Paragraph("uses `m=4` draws & <b>"),
            Table(["attack", "acc"], [["pgd|l2", "0.500"]], caption="robust accuracy"),
            Image(png, "robust accuracy"), Flags([("zero_grad", True, "30% zero"), ("eot", False, "fine")]),
            Code("gradguard run x.toml"))
    return doc, png


def test_markdown_has_table_link_and_flags(tmp_path):
    doc, png = _doc(tmp_path)
    md = doc.to_markdown(tmp_path)
    assert md.startswith("# Run <x>\n")
    assert "| attack | acc |" in md and "| pgd\\|l2 | 0.500 |" in md
    assert "![robust accuracy](curve.png)" in md
    assert "- **WARNING** `zero_grad`: 30% zero" in md and "- ok `eot`: fine" in md


def test_html_is_self_contained_and_escaped(tmp_path):
    doc, png = _doc(tmp_path)
    page = doc.to_html()
    assert "Run &lt;x&gt;" in page and "&lt;b&gt;" in page and "<code>m=4</code>" in page
    embedded = base64.b64encode(png.read_bytes()).decode()
    assert f"data:image/png;base64,{embedded}" in page
    assert 'src="curve.png"' not in page
    assert '<li class="warn">' in page


def test_write_produces_both_files(tmp_path):
    doc, _ = _doc(tmp_path)
    md, page = doc.write(tmp_path)
    assert md.read_text().startswith("# Run")
    assert page.read_text().startswith("<!doctype html>")
    assert not list(tmp_path.glob(".*.tmp"))


def test_line_plot_skips_empty_series(tmp_path):
    assert line_plot(tmp_path / "x.png", {"a": ([], [])}, title="", xlabel="", ylabel="") is None
    assert not (tmp_path / "x.png").exists()
    out = line_plot(tmp_path / "y.png", {"a": ([1, 2], [3, 4])}, title="", xlabel="", ylabel="")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_metrics_skips_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n" + json.dumps({"a": 2}) + "\n" + '{"a": 3')
    assert read_metrics(path) == [{"a": 1}, {"a": 2}]
    assert read_metrics(tmp_path / "missing.jsonl", missing_ok=True) == []


def test_write_json_atomic_roundtrip(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "r.json", {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]}
