"""The interactive atlas view of report.html, driven in headless Chromium like a reader would.

A tiny pipeline run writes the real report; the tests move the slider, pick a plane, point at a
voxel, type a gene and a region, and check what the page draws (canvas pixels, text). Without
Chromium the browser tests skip through the ``chromium`` fixture (conftest.py).
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from browser_check import check_report
from page_driver import open_page

from osnmf.config import RunConfig
from osnmf.expression import to_volumes
from osnmf.pipeline import Pipeline
from osnmf.report.atlas_view import GENE_LEVELS, MAX_MEASURED_GENES, _safe_json, measured_genes, view_data
from osnmf.report.files import pattern_names

TINY = dict(k_min=3, k_max=5, n_replicates=4, phantom_genes=60, phantom_patterns=4, phantom_noise=0.1,
            pca_replicates=3, moran_replicates=3, n_random_models=20, link_sizes=[1, 2], quiet=True,
            recipe="fast")  # the fast recipe lets a test choose tiny settings
READY = "document.getElementById('osnmf-atlas').dataset.ready === '1'"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run: its state and report.html."""
    out = tmp_path_factory.mktemp("atlas_view")
    pipeline = Pipeline(RunConfig(out=str(out), **TINY))
    pipeline.run()
    return pipeline.state, out / "report.html"


@pytest.fixture(scope="module")
def page(chromium, run):
    with open_page(run[1], width=1280, height=1100) as page:
        page.wait_for(READY)
        yield page


def pixels(page, selector: str) -> np.ndarray:
    """The canvas's RGB pixels, uint8 (height, width, 3)."""
    rgb = mpimg.imread(io.BytesIO(page.canvas_png(selector)), format="png")[..., :3]
    return np.round(rgb * 255).astype(np.uint8)


def n_colours(image: np.ndarray) -> int:
    flat = image.reshape(-1, 3).astype(np.int32)
    return int(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]).size)


def point_at(page, selector: str, column: int, row: int, zoom_key: str = "zoom") -> tuple[float, float]:
    """Fractions of the canvas's box at the centre of a voxel's pixel block (column, row of the section)."""
    data = page.evaluate("Object.assign({}, document.getElementById('osnmf-atlas').dataset)")
    zoom, margin = int(data[zoom_key]), int(data["margin"])
    box = page.box(selector)
    border = 1  # the canvas's CSS border
    x = border + margin + (column + 0.5) * zoom
    y = border + margin + (row + 0.5) * zoom
    return x / box["width"], y / box["height"]


# ---- the page's data, without a browser ------------------------------------------------------
def test_view_data_is_compact_and_complete(run):
    state, report = run
    k = state.sweep.k
    data = view_data(state, pattern_names(k))
    assert data["shape"] == list(state.expr.atlas.shape)
    assert len(data["patterns"]["names"]) == k and len(data["markers"]) == k and len(data["networks"]) == k
    n = state.impute.X.shape[0]
    genes = data["genes"]
    assert len(genes["symbol"]) == n == len(genes["recon_r"]) == len(genes["scale"])
    assert 0 < len(genes["measured"]) <= MAX_MEASURED_GENES and genes["levels"] == GENE_LEVELS
    assert len(data["correlations"]) == len(data["regions"]["acronym"])
    page = report.read_text()
    assert 'id="osnmf-atlas"' in page and "Interactive atlas view" in page
    assert f"the measured images of {len(genes['measured'])} of the {n} experiments" in page
    assert len(_safe_json(data)) < 2_000_000  # this run's view stays well under 2 MB


def test_measured_genes_are_markers_first_then_network_genes(run):
    state, _ = run
    markers = state.markers.markers
    assigned = markers[markers["assigned"].astype(str) == "True"]
    rank1 = assigned[assigned["marker_rank"].astype(int) == 1].sort_values("pattern")["experiment"].astype(int).tolist()
    n = state.impute.X.shape[0]
    assert measured_genes(state.markers, n, cap=2) == rank1[:2]
    chosen = measured_genes(state.markers, n)
    assert chosen[:len(rank1)] == rank1 and len(set(chosen)) == len(chosen)
    network_genes = {nd["gene"] for text in state.markers.networks_json for nd in json.loads(str(text))["nodes"]}
    symbols = {str(state.expr.genes[state.impute.kept][i]) for i in chosen}
    assert len(chosen) == MAX_MEASURED_GENES or network_genes <= symbols


def test_json_cannot_close_its_script():
    text = _safe_json({"gene": "</script><script>alert(1)</script>", "r": 1.5})
    assert "<" not in text and ">" not in text
    assert json.loads(text)["gene"] == "</script><script>alert(1)</script>"


# ---- the page in Chromium --------------------------------------------------------------------
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def test_first_view_shows_the_first_pattern_and_no_gene_panel(chromium, run, tmp_path):
    """A fresh page opens on the coronal section where PP1 is largest (summed here from the patterns),
    so the first image shows the pattern, not a uniform field; the gene panel (measured and
    reconstructed boxes, colour bar) is not displayed until a gene is chosen."""
    state, report = run
    volume = to_volumes(state.sweep.components, state.impute.support)[0]
    coronal = int(np.argmax(volume.sum(axis=(1, 2))))
    assert volume[coronal].max() > 0
    with open_page(report, width=1280, height=1100) as page:
        page.wait_for(READY)
        assert int(page.evaluate("document.getElementById('av-slice').value")) == coronal
        assert page.text("#av-slice-label").startswith(f"coronal section {coronal + 1} of")
        main = pixels(page, "#av-main")
        assert n_colours(main) > 30
        shown = "(id) => getComputedStyle(document.getElementById(id)).display"
        for box in ("av-gene-panel", "av-measured", "av-recon", "av-gene-max"):
            assert page.evaluate(f"document.getElementById('{box}').offsetParent") is None, box
        assert page.evaluate(f"({shown})('av-gene-panel')") == "none"
        page.screenshot(tmp_path / "first_view.png", selector="#osnmf-atlas")
        gene = str(state.markers.markers["gene"].iloc[0])
        page.click("#av-gene")
        page.type_text(gene)
        assert page.evaluate(f"({shown})('av-gene-panel')") == "flex"
        assert page.evaluate("document.getElementById('av-measured').offsetParent") is not None
        page.evaluate("document.getElementById('av-gene').select()")
        page.type_text("NoSuchGene")
        assert page.evaluate(f"({shown})('av-gene-panel')") == "none"  # hidden again
        assert page.errors() == []
    if os.environ.get("OSNMF_WRITE_ARTIFACTS") == "1":  # refresh the committed screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "atlas_view_first_view.png").write_bytes((tmp_path / "first_view.png").read_bytes())


def test_report_with_view_is_self_contained(chromium, run, tmp_path):
    result = check_report(run[1], screenshot_to=tmp_path / "report.png", texts=("Interactive atlas view",))
    assert result["ok"], result["problems"]
    assert result["requests"] == [] and result["console"] == []
    assert result["scripts"] == 2  # the view's data and code, nothing else


def test_pattern_section_is_drawn_with_outline(page, run):
    main = pixels(page, "#av-main")
    assert n_colours(main) > 30  # a viridis section, not a blank canvas
    page.evaluate("(() => { const s = document.getElementById('av-outline'); s.value = 'off';"
                  " s.dispatchEvent(new Event('change')); })()")
    plain = pixels(page, "#av-main")
    lines = (main != plain).any(axis=2)
    assert lines.mean() > 0.01  # the region boundaries were drawn over the section
    page.evaluate("(() => { const s = document.getElementById('av-outline'); s.value = 'coarse';"
                  " s.dispatchEvent(new Event('change')); })()")
    assert page.errors() == []


def test_slider_moves_through_sections(page, run):
    page.click("[data-plane=coronal]")
    before, label = pixels(page, "#av-main"), page.text("#av-slice-label")
    page.click_at("#av-slice", 0.3, 0.5)
    page.press("ArrowRight", 39, times=3)
    after = page.text("#av-slice-label")
    section = int(re.search(r"section (\d+) of", after).group(1))
    assert after != label and "coronal section" in after
    assert section == int(page.evaluate("document.getElementById('av-slice').value")) + 1
    mm = (section - 1) * run[0].expr.atlas.spacing_um[0] / 1000  # index × spacing, from the grid's front edge
    assert after.endswith(f"· AP {mm:.1f} mm from grid front edge (not bregma)"), after
    assert not np.array_equal(before, pixels(page, "#av-main"))
    page.press("ArrowLeft", 37)
    assert f"section {section - 1} of" in page.text("#av-slice-label")


def test_plane_buttons_switch_the_section(page, run):
    shape = run[0].expr.atlas.shape  # (AP, DV, ML)
    zoom = int(page.evaluate("document.getElementById('osnmf-atlas').dataset.zoom"))
    expected = {"coronal": (shape[1], shape[2]), "sagittal": (shape[1], shape[0]),
                "horizontal": (shape[0], shape[2])}
    for plane, (rows, cols) in expected.items():
        page.click(f"[data-plane={plane}]")
        image = pixels(page, "#av-main")
        assert image.shape[:2] == (rows * zoom + 28, cols * zoom + 28), plane
        assert n_colours(image) > 30, plane
        assert page.text("#av-slice-label").startswith(f"{plane} section")
        assert int(page.evaluate("document.getElementById('av-slice').max")) == {
            "coronal": shape[0], "sagittal": shape[2], "horizontal": shape[1]}[plane] - 1
    page.click("[data-plane=coronal]")


def test_hover_names_the_region_under_the_mouse(page, run):
    atlas = run[0].expr.atlas
    page.click("[data-plane=coronal]")
    section = int(page.evaluate("document.getElementById('av-slice').value"))
    labels = atlas.annotation[section]  # (DV, ML)
    brain = np.argwhere(labels > 0)
    for row, col in brain[:: len(brain) // 5]:  # five voxels across the section
        leaf = int(labels[row, col])
        page.hover("#av-main", *point_at(page, "#av-main", col, row))
        text = page.text("#av-hover")
        assert text.startswith(f"{atlas.acronym(leaf)} — {atlas.name(leaf)}"), text
        parent = atlas.parent(leaf)
        if atlas.acronym(parent) not in ("root", "grey"):
            assert f"(in {atlas.acronym(parent)}" in text
    page.hover("#av-main", *point_at(page, "#av-main", 0, 0))
    assert page.text("#av-hover") == "outside the brain"


def test_gene_search_shows_coefficients_slices_and_network(page, run, tmp_path):
    state, _ = run
    markers = state.markers.markers
    top = markers[(markers["assigned"].astype(str) == "True") & (markers["marker_rank"].astype(int) == 1)]
    gene, row = str(top["gene"].iloc[0]), int(top["experiment"].iloc[0])
    page.click("#av-gene")
    page.type_text(gene)
    info = page.text("#av-gene-info")
    assert info.startswith(gene) and f"reconstruction r = {round(float(state.metrics.recon_nmf[row]), 3)}" in info
    strongest = int(np.argmax(state.sweep.coefficients[row]))
    assert re.search(rf"strongest pattern PP{strongest + 1}\b", info)
    widths = page.evaluate("[...document.querySelectorAll('#av-coefs .av-bar')].map(b => b.offsetWidth)")
    assert len(widths) == state.sweep.k and int(np.argmax(widths)) == strongest and max(widths) == 120
    measured, recon = pixels(page, "#av-measured"), pixels(page, "#av-recon")
    assert measured.shape == recon.shape and n_colours(measured) > 10 and n_colours(recon) > 10
    assert not np.array_equal(measured, recon)
    assert "network" in page.text("#av-networks") and gene in page.text("#av-networks")
    legend = page.text("#av-networks .av-legend")  # what the colours and widths mean
    assert "hub gene" in legend and "other gene" in legend and "top 5%" in legend
    page.screenshot(tmp_path / "gene.png", selector="#osnmf-atlas")
    page.click("#av-gene")
    page.evaluate("document.getElementById('av-gene').select()")
    page.type_text("NoSuchGene")
    assert page.text("#av-gene-info") == "No gene “NoSuchGene” in this run."


def test_region_lookup_lists_best_patterns_and_highlights_it(page, run):
    state, _ = run
    corr = state.linking.correlations
    r = corr[corr["acronym"] == "CA1"].set_index("pattern_index")["r"]
    best = int(r.idxmax())
    page.click("#av-region")
    page.type_text("ca1")
    assert page.text("#av-region-info").startswith("CA1 — Field CA1")
    rows = page.text("#av-region-panel .av-table").strip().splitlines()
    cells = rows[2].split("\t")  # caption, header, then the best pattern
    assert cells[0].split(" ")[0] == f"PP{best + 1}" and float(cells[1]) == round(float(r[best]), 3)
    assert int(page.evaluate("document.getElementById('av-pattern').value")) == best
    main = pixels(page, "#av-main")
    red = (main[..., 0] > 200) & (main[..., 1] < 60) & (main[..., 2] < 80)
    assert red.sum() > 20  # the region's outline is drawn in red
    page.evaluate("document.getElementById('av-region').select()")
    page.type_text("Hippocampal")
    assert "regions match" in page.text("#av-region-info")
    assert page.errors() == []


def test_gene_names_stay_text_in_the_page(chromium, run, tmp_path):
    """A symbol that looks like markup is shown as typed and runs nothing."""
    from osnmf.report.atlas_view import TITLE, render
    from osnmf.report.html import Section, write_report

    state, _ = run
    evil = "<img src=x onerror=alert(1)></script><script>alert(2)</script>"
    data = view_data(state, pattern_names(state.sweep.k))
    row = data["markers"][0][0][1]
    data["genes"]["symbol"][row] = evil
    data["markers"][0][0][0] = evil
    path = write_report(tmp_path / "evil.html", "evil", [Section(TITLE, html=render(data))], {})
    with open_page(path) as page:
        page.wait_for(READY)
        page.click("#av-gene")
        page.type_text(evil)
        assert page.text("#av-gene-info").startswith(evil)
        assert page.evaluate("document.scripts.length") == 2 and page.evaluate("document.images.length") == 0
        assert evil in page.text("#av-pattern-info")
        assert page.errors() == []
