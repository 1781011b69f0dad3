"""report.html as a reader sees it: opened in headless Chromium (Debian's, see .ci/install-browser).

Checks that the screenshot is not blank, that there are no console errors, that every image
decodes, that the page fetches nothing (self-contained) and that gene names are escaped. The checker
itself is tested on pages that must fail, so a pass means something.
Without Chromium these tests skip ("no Chromium: run .ci/install-browser") unless
OSNMF_REQUIRE_BROWSER=1 (CI), which makes a missing browser a failure (see conftest.py).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser_check import INSTALL_HINT, BrowserError, check_report

from osnmf.plotting.common import save_figure
from osnmf.plotting.patterns import plot_pattern_projections
from osnmf.plotting.stability import plot_instability
from osnmf.report.html import Section, write_report

EVIL_GENE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    ks = np.arange(3, 9)
    table = pd.DataFrame({"k": ks, "hungarian": 0.05 + 0.02 * np.abs(ks - 5), "hungarian_sd": 0.01,
                          "amari": 0.1 + 0.03 * np.abs(ks - 5), "amari_sd": 0.02})
    pca = table.assign(hungarian=table.hungarian + 0.2, amari=table.amari + 0.25)
    curve = save_figure(plot_instability(table, 5, pca), out / "instability", formats=("png",))[0]

    brain = np.zeros((12, 9, 10), dtype=bool)
    brain[1:11, 1:8, 1:9] = True
    volumes = rng.random((2, *brain.shape)).astype(np.float32) * brain
    proj = save_figure(plot_pattern_projections(volumes, brain, ["PP1", "PP2"]), out / "projections",
                       formats=("png",))[0]

    markers = pd.DataFrame({"pattern": ["PP1", "PP1", "PP2"], "gene_symbol": ["Calb1", EVIL_GENE, "A&B"],
                            "importance": [0.9, 0.5, 0.25]})
    sections = [
        Section("Stability", [f"K = 5 selected; gene {EVIL_GENE} is a marker."], figures=[(curve, "instability")],
                tables=[(table, "instability per K")]),
        Section("Patterns", ["Three orthogonal mean projections."], figures=[(proj, f"patterns of {EVIL_GENE}")],
                tables=[(markers, "markers")]),
    ]
    path = write_report(out / "report.html", "osnmf report <test>", sections, {"k_min": 3, "gene": EVIL_GENE})
    return path, out


def test_report_text_is_escaped(report):
    page = report[0].read_text()
    assert EVIL_GENE not in page
    assert "<script" not in page.lower()
    assert html.escape(EVIL_GENE) in page
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 2


def test_report_renders_in_chromium(chromium, report):
    path, out = report
    result = check_report(path, screenshot_to=out / "shot.png", texts=(EVIL_GENE, "Stability", "A&B"))
    assert result["ok"], result["problems"]
    assert len(result["images"]) == 2
    assert all(im["scheme"] == "data" and im["width"] > 100 and im["height"] > 100 for im in result["images"])
    assert result["console"] == [] and result["requests"] == []
    assert result["scripts"] == 0, "an escaped <script> gene name must not become an element"
    assert all(result["texts_found"].values()), result["texts_found"]  # escaped text shows as typed
    assert result["title"] == "osnmf report <test>"
    shot = result["screenshot"]
    assert shot["shape"] == [1600, 1280]
    assert shot["variance"] > 1e-3 and shot["distinct_colours"] > 50 and shot["non_white_fraction"] > 0.02


def test_checker_flags_broken_image_console_error_and_fetches(chromium, report, tmp_path):
    page = report[0].read_text()
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = page[:start] + "AAAA" + page[start + 400:]  # corrupt the first image's PNG bytes
    broken = broken.replace("</body>", '<img alt="remote" src="http://127.0.0.1:9/x.png">'
                                       "<script>console.error('boom')</script></body>")
    path = tmp_path / "broken.html"
    path.write_text(broken)
    result = check_report(path)
    assert not result["ok"]
    assert [im["alt"] for im in result["images"] if im["width"] == 0] == ["instability", "remote"]
    assert any("boom" in c for c in result["console"])
    assert result["requests"] == ["http://127.0.0.1:9/x.png"]


def test_checker_flags_blank_page(chromium, tmp_path):
    path = tmp_path / "blank.html"
    path.write_text("<!DOCTYPE html><html><head><title>blank</title></head><body></body></html>")
    result = check_report(path)
    assert not result["ok"]
    assert any("blank" in p for p in result["problems"])
    assert result["screenshot"]["distinct_colours"] == 1


def test_missing_browser_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("OSNMF_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(BrowserError, match=re.escape(INSTALL_HINT)):
        check_report(report_stub(tmp_path))


def report_stub(folder):
    path = folder / "stub.html"
    path.write_text("<html><body>x</body></html>")
    return path


@pytest.mark.parametrize("required", [False, True])
def test_missing_browser_skips_unless_required(tmp_path, required):
    """A fresh machine skips the browser checks with one reason; OSNMF_REQUIRE_BROWSER=1 fails them."""
    env = {**os.environ, "OSNMF_CHROMIUM": str(tmp_path / "no-chromium"),
           "OSNMF_REQUIRE_BROWSER": "1" if required else ""}
    here = Path(__file__).resolve()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           f"{here}::test_checker_flags_blank_page"], cwd=here.parents[1], env=env,
                          capture_output=True, text=True, timeout=300)
    if required:
        assert proc.returncode == 1, proc.stdout
        assert "OSNMF_REQUIRE_BROWSER=1 but headless Chromium not found" in proc.stdout
        assert "1 error" in proc.stdout
    else:
        assert proc.returncode == 0, proc.stdout
        assert "no Chromium: run .ci/install-browser" in proc.stdout and "1 skipped" in proc.stdout
