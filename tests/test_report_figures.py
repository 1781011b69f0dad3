"""Report figures, tables and pattern names as a neuroscientist reads them: colour bars, A/P D/V L/R,
millimetres, sections through the pattern, data-range axes, titled panels, readable labels, tables
without Python reprs, names of grey-matter regions only, Moran's I with honest precision and bounds.
Properties are checked, not pixels; references are the ontology, esda and brute force."""

from __future__ import annotations

import re
import types

import esda
import libpysal
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from osnmf.plotting.anatomy import plot_bubble
from osnmf.plotting.genes import plot_marker_images
from osnmf.plotting.metrics import plot_reconstruction_scatter
from osnmf.plotting.patterns import plot_coronal_montage, plot_pattern_projections
from osnmf.plotting.stability import plot_selection_panel
from osnmf.report.build import _fmt, _parameters
from osnmf.report.html import Section, write_report
from osnmf.spatial.linking import best_combinations, readable_regions
from osnmf.spatial.moran import morans_i, morans_i_max, spatial_weights
from osnmf.spatial.region_correlation import region_correlations


def _blob(shape, centre, width=4.0):
    grid = np.indices(shape).astype(float)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return np.exp(-d2 / (2 * width**2))


def _orientation(ax) -> set[str]:
    return {t.get_text() for t in ax.texts if t.get_gid() == "orientation"}


def _colorbars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_projections_colour_bar_orientation_and_mm(atlas):
    brain = atlas.brain_mask
    volumes = np.stack([_blob(brain.shape, (20, 20, 20)), _blob(brain.shape, (45, 15, 30))]) * brain
    fig = plot_pattern_projections(volumes, brain, ["PP1", "PP2"], atlas.spacing_um)
    assert len(_colorbars(fig)) == 2  # one per pattern
    images = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(images) == 6
    mm = np.array(atlas.shape) * np.array(atlas.spacing_um) / 1000
    coronal, horizontal, sagittal = images[:3]
    assert _orientation(coronal) == {"L", "R", "D", "V"} and _orientation(horizontal) == {"L", "R", "A", "P"}
    assert _orientation(sagittal) == {"A", "P", "D", "V"}
    # axes in millimetres: coronal spans ML × DV, sagittal AP × DV (y runs top → bottom)
    assert coronal.get_xlim() == pytest.approx((0, mm[2])) and coronal.get_ylim() == pytest.approx((mm[1], 0))
    assert sagittal.get_xlim() == pytest.approx((0, mm[0]))
    assert [ax.get_xlabel() for ax in images[-3:]] == ["ML (mm from grid left edge)", "ML (mm from grid left edge)",
                                                      "AP (mm from grid front edge)"]


def test_montage_sections_through_the_pattern_in_mm(atlas):
    brain = atlas.brain_mask
    volume = _blob(brain.shape, (50, 20, 29), width=3.0) * brain  # a posterior pattern
    fig = plot_coronal_montage(volume, brain, "PP1", n_sections=12, spacing_um=atlas.spacing_um)
    tiles = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(_colorbars(fig)) == 1 and _orientation(tiles[0]) == {"L", "R", "D", "V"}
    sections = []
    for ax in tiles:
        match = re.fullmatch(r"AP (\d+\.\d) mm from grid front edge", ax.get_title())
        assert match, ax.get_title()
        sections.append(round(float(match.group(1)) * 1000 / atlas.spacing_um[0]))
    assert len(tiles) == 12 and sections == sorted(set(sections))
    mass = np.where(brain, volume, 0).sum(axis=(1, 2))
    assert all(mass[s] > 1e-3 * mass.max() for s in sections)  # no empty (black) tile
    assert "not bregma" in fig._suptitle.get_text()


def test_montage_tiles_where_the_pattern_is(atlas):
    """A pattern in two far-apart places (olfactory bulb and cerebellum): every tile shows the pattern
    (its section holds at least 5% of the heaviest section's mass, a loop as reference), tiles in both
    places, none in the empty stretch between; a voxel outside the support (NaN) is no white hole."""
    brain = atlas.brain_mask
    volume = (_blob(brain.shape, (6, 20, 29), width=2.0) + _blob(brain.shape, (55, 15, 29), width=2.0)) * brain
    volume[6, 20, 29] = np.nan
    fig = plot_coronal_montage(volume, brain, "PP1", n_sections=12, spacing_um=atlas.spacing_um)
    tiles = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    sections = [round(float(ax.get_title().split()[1]) * 1000 / atlas.spacing_um[0]) for ax in tiles]
    mass = [float(np.nansum(np.where(brain[s], volume[s], 0))) for s in range(brain.shape[0])]
    assert all(mass[s] >= 0.05 * max(mass) for s in sections), sections
    assert any(s < 15 for s in sections) and any(s > 45 for s in sections)
    assert not any(20 <= s <= 40 for s in sections)
    for ax, s in zip(tiles, sections, strict=True):
        shown = ax.images[0].get_array()
        assert np.isfinite(np.ma.filled(shown, np.nan)[brain[s]]).all()  # every brain voxel drawn


def test_reconstruction_axes_show_the_data():
    rng = np.random.default_rng(0)
    r_pca = 0.97 + 0.02 * rng.random(100)
    r_nmf = r_pca + 0.002 * rng.standard_normal(100)
    fig = plot_reconstruction_scatter(r_nmf, r_pca)
    scatter, hist = fig.axes
    lo, hi = scatter.get_xlim()
    both = np.concatenate([r_nmf, r_pca])
    assert lo <= both.min() and hi >= both.max() and hi - lo < 0.05  # not 0 … 1
    assert hist.patches and "r(staNMF) − r(PCA)" in hist.get_xlabel()


def test_selection_panel_subplots_titled():
    k = np.arange(3, 7)
    panel = pd.DataFrame({"k": k, **{c: np.linspace(0.1, 0.5, 4) for c in (
        "gamma", "gamma_se", "oob_error", "oob_error_se", "recon_error", "recon_error_se", "cophenetic",
        "dispersion")}})
    titles = [ax.get_title() for ax in plot_selection_panel(panel, 4).axes]
    assert len(titles) == 3 and all(titles) and len(set(titles)) == 3


def test_bubble_labels_dark_allen_colours_as_markers(atlas):
    ids = atlas.medium_ids[:6]
    colors = [atlas.ontology.at[s, "color"] for s in ids]
    fig = plot_bubble(np.full((2, 6), 0.5), ["PP1", "PP2"], [atlas.acronym(s) for s in ids], colors)
    ax = fig.axes[0]
    assert {to_hex(t.get_color()) for t in ax.get_xticklabels()} == {"#000000"}
    strip = [c for c in ax.collections if c.get_gid() == "allen-colours"]
    assert len(strip) == 1
    assert [to_hex(c) for c in strip[0].get_facecolors()] == [f"#{c}".lower() for c in colors]


def test_marker_images_blank_not_repeated(atlas):
    brain = atlas.brain_mask
    one = (_blob(brain.shape, (30, 20, 29)) * brain)[None]
    three = np.repeat(one, 3, axis=0)
    fig = plot_marker_images([three, one], brain, [["a", "b", "c"], ["d"]], ["PP1", "PP2"])
    drawn = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(drawn) == 4 and [ax.get_title() for ax in drawn] == ["a", "b", "c", "d"]


def test_tables_without_reprs_aligned_and_scrolling(tmp_path):
    frame = pd.DataFrame({"pattern": ["PP1 · STR", "PP2 · TH"], "region_ids": [(477, 581), (549,)],
                          "n": [{1: 843, 2: 11859}, None], "r": [0.91234, np.nan], "k": [3, 4],
                          "Moran's I": ["0.998 ± 0.008", "0.91 ± 0.02"], "flag": [True, False]})
    page = write_report(tmp_path / "r.html", "t", [Section("S", tables=[(frame, "caption")])],
                        {"device": None, "timings": {"load": 1.5}}).read_text()
    cells = [c for c in re.findall(r"<td[^>]*>([^<]*)</td>", page)]
    assert not any(re.search(r"[()\[\]{}]|\bNone\b|\bnan\b|\bTrue\b", c) for c in cells), cells
    assert "477, 581" in cells and "1: 843; 2: 11859" in cells and "—" in cells
    heads = re.findall(r"<th( class=\"num\")?>([^<]*)</th>", page)
    aligned = {name: bool(cls) for cls, name in heads}
    assert aligned["pattern"] is False and aligned["region_ids"] is False
    assert aligned["r"] and aligned["k"] and aligned["Moran&#x27;s I"]
    assert '<div class="table-wrap"><table>' in page and re.search(r"\.table-wrap\{[^}]*overflow-x:auto", page)


def test_honest_precision():
    assert _fmt(0.99834, 0.00812) == "0.998 ± 0.008"
    assert _fmt(0.62, 0.32) == "0.62 ± 0.32"
    assert _fmt(0.5, 0.0) == "0.50 ± 0.00"


def test_real_data_report_lists_no_phantom_settings():
    settings = {"data": "/data/aba", "k_min": 2, "phantom_genes": 300, "phantom_seed": 0}
    state = types.SimpleNamespace(config=types.SimpleNamespace(to_dict=lambda: dict(settings)),
                                  timings={"load": 0.1, "sweep": 5.0})
    shown = _parameters(state)
    assert not [k for k in shown if k.startswith("phantom_")]
    assert shown["time: sweep (s)"] == 5.0 and shown["k_min"] == 2
    settings["data"] = None  # the synthetic atlas: its settings are the data's description
    assert "phantom_genes" in _parameters(state)


# ---- pattern names ---------------------------------------------------------------------------
def _outside_parenchyma(atlas) -> set[int]:
    """Fibre tracts and ventricular systems (their own top-level branches) and everything in them."""
    tops = {atlas.id_of("fiber tracts"), atlas.id_of("VS")}
    return {int(s) for s in atlas.region_ids if tops & {int(s), *atlas.ancestors(int(s))}}


def test_readable_regions_are_grey_matter_at_coarse_or_medium_level(atlas):
    regions = readable_regions(atlas)
    grey = atlas.id_of("grey")
    assert regions and not set(regions) & _outside_parenchyma(atlas)
    assert all(grey in atlas.ancestors(s) for s in regions)
    assert all(atlas.level(s) in ("coarse", "medium") for s in regions)
    assert {atlas.id_of(a) for a in ("Isocortex", "STR", "TH")} <= set(regions)
    assert not {atlas.id_of(a) for a in ("V3", "NLOT3", "TRS")} & set(regions)


def test_names_from_readable_regions_avoid_ventricles_and_tracts(atlas):
    """Patterns that are a ventricle and a fibre tract: the unrestricted search names them by
    those; the readable search never does, and its best single region is the brute-force best
    among the readable regions."""
    brain = atlas.brain_mask
    patterns = np.stack([atlas.mask("V3")[brain], atlas.mask("fiber tracts")[brain]]).astype(float)
    patterns += 0.01 * np.random.default_rng(0).random(patterns.shape)
    anywhere = best_combinations(patterns, atlas, sizes=(1,)).best
    assert set(anywhere["region_ids"].map(lambda ids: ids[0])) & _outside_parenchyma(atlas)
    readable = best_combinations(patterns, atlas, sizes=(1, 2, 3), regions=readable_regions(atlas)).best
    bad = {atlas.acronym(s) for s in _outside_parenchyma(atlas)}
    for acronyms, ids in zip(readable["acronyms"], readable["region_ids"], strict=True):
        assert not set(acronyms.split("+")) & bad and set(ids) <= set(readable_regions(atlas))
    singles = best_combinations(patterns, atlas, sizes=(1,), regions=readable_regions(atlas)).best
    corr = region_correlations(patterns, atlas)
    corr = corr[corr["region_id"].isin(readable_regions(atlas))]
    for p in range(2):
        rows = corr[corr["pattern_index"] == p]
        assert singles["r"].iloc[p] == pytest.approx(rows["r"].max())


# ---- Moran's I bounds ----------------------------------------------------------------------
def test_morans_i_max_brute_force_and_esda():
    """With binary weights Moran's I can exceed 1 on an irregular graph (a disc: rim voxels have
    fewer neighbours): the bound n/S0·λmax(MWM) equals a dense eigen-decomposition, and the map
    reaching it scores the same, above 1, in esda."""
    yy, xx = np.mgrid[-8:9, -8:9]
    mask = xx**2 + yy**2 <= 64
    w = spatial_weights(mask)
    n = w.shape[0]
    centre = np.eye(n) - 1.0 / n
    values, vectors = np.linalg.eigh(centre @ w.toarray() @ centre)
    dense = n / w.sum() * values[-1]
    assert morans_i_max(w, tol=1e-10) == pytest.approx(dense, rel=1e-8) and dense > 1
    top = vectors[:, -1]
    lib = libpysal.weights.WSP(w).to_W(silence_warnings=True)
    ref = esda.Moran(top, lib, transformation="b", permutations=0).I
    assert morans_i(top, mask) == pytest.approx(ref, rel=1e-9) and ref == pytest.approx(dense, rel=1e-8)


def test_projection_has_no_white_dot_inside_the_brain(atlas):
    """The horizontal (DV) projection of the real grid has one ray inside the brain's silhouette
    that misses the brain (AP 8, ML 28, between the olfactory bulbs: found by a loop over rays);
    it reads 0, not NaN (a white dot under "A"), while rays outside the silhouette stay NaN."""
    from osnmf.plotting.patterns import mean_projection

    brain = atlas.brain_mask
    misses = [(a, m) for a in range(brain.shape[0]) for m in range(brain.shape[2]) if not brain[a, :, m].any()]
    enclosed = [(a, m) for a, m in misses
                if any(brain[:a, :, m].any(axis=1)) and any(brain[a + 1:, :, m].any(axis=1))
                and brain[a, :, :m].any() and brain[a, :, m + 1:].any()]
    assert enclosed == [(8, 28)]
    volume = np.where(brain, 1.0, 0.0)
    volume[brain & (np.arange(brain.shape[0])[:, None, None] == 30)] = np.nan  # outside the support
    image = mean_projection(volume, brain, 1)
    assert image[8, 28] == 0.0 and np.isnan(image[0, 0])
    assert np.isfinite(image[brain.any(axis=1)]).all()
    assert np.isnan(image).sum() == len(misses) - 1


def test_patterns_per_gene_and_bubble_charts_are_titled(atlas):
    from osnmf.plotting.metrics import plot_patterns_per_gene

    fig = plot_patterns_per_gene(np.array([1, 2, 2, 3]), 4)
    assert "Patterns per gene" in fig.axes[0].get_title()
    ids = [int(s) for s in atlas.medium_ids][:6]
    bubble = plot_bubble(np.full((2, 6), 0.5), ["PP1", "PP2"], [atlas.acronym(s) for s in ids])
    assert "Pearson r of each pattern" in bubble.axes[0].get_title()


def test_stability_table_split_in_two_narrow_tables():
    from osnmf.report.build import _stability_tables

    cols = ["k", "hungarian", "hungarian_sd", "amari", "amari_sd", "hungarian_se", "n_pairs", "pca_hungarian",
            "pca_hungarian_sd", "pca_amari", "pca_amari_sd", "oob_error", "oob_error_se", "cophenetic", "dispersion",
            "recon_error", "recon_error_se"]
    stab = pd.DataFrame(np.arange(2 * len(cols), dtype=float).reshape(2, -1), columns=cols)
    (inst, _), (crit, _) = _stability_tables(stab)
    assert list(crit.columns) == ["k", "oob_error", "cophenetic", "dispersion", "recon_error"]
    assert list(inst.columns) == ["k", "hungarian", "hungarian_sd", "amari", "amari_sd", "pca_hungarian",
                                  "pca_hungarian_sd", "pca_amari", "pca_amari_sd"]


def test_figures_saved_once_drawn_match_savefig(tmp_path):
    """save_figure writes the PNG from its one layout draw (cropped to the tight box) instead of drawing
    again: the same size as matplotlib's savefig(bbox_inches="tight") and the same picture."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from osnmf.plotting.common import new_figure, save_figure

    def figure():
        fig = new_figure(4, 3)
        ax = fig.subplots()
        ax.imshow(np.arange(100.0).reshape(10, 10))
        ax.set_title("a title")
        fig.colorbar(ax.images[0], ax=ax)
        return fig

    png, svg = save_figure(figure(), tmp_path / "ours")
    ref = figure()
    ref.savefig(tmp_path / "ref.png", dpi=110, bbox_inches="tight")
    plt.close(ref)
    ours = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    theirs = np.asarray(Image.open(tmp_path / "ref.png").convert("RGB"), dtype=float)
    assert abs(ours.shape[0] - theirs.shape[0]) <= 2 and abs(ours.shape[1] - theirs.shape[1]) <= 2
    h, w = min(ours.shape[0], theirs.shape[0]), min(ours.shape[1], theirs.shape[1])
    assert np.mean(np.abs(ours[:h, :w] - theirs[:h, :w]) > 40) < 0.05  # the same picture, at most shifted a pixel
    assert "<svg" in svg.read_text()
