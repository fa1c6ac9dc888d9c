"""Optional: the HTML report renders in a real browser (headless Chromium) and shows more than an empty page."""

from __future__ import annotations

import pytest

from _browser import find_chromium, ink_fraction, screenshot
from gradguard.report.document import Document, Heading, Image, Table
from gradguard.report.plots import line_plot

pytestmark = [pytest.mark.browser, pytest.mark.skipif(find_chromium() is None, reason="no headless Chromium")]


def test_empty_page_scores_zero(tmp_path):
    page = tmp_path / "empty.html"
    page.write_text("<!doctype html><html><body></body></html>")
    assert ink_fraction(screenshot(page, tmp_path / "empty.png")) < 0.001


def test_report_page_shows_content(tmp_path):
    png = line_plot(tmp_path / "c.png", {"pgd": ([0, 0.1, 0.3], [0.99, 0.8, 0.1])}, title="robust accuracy",
                    xlabel="eps", ylabel="accuracy")
    doc = Document("gradguard report").add(Heading("Results"), Table(["attack", "acc"], [["pgd", "0.10"]]),
                                           Image(png, "robust accuracy"))
    _, page = doc.write(tmp_path)
    shot = screenshot(page, tmp_path / "shot.png")
    assert ink_fraction(shot) > 0.003  # an empty page scores < 0.001
