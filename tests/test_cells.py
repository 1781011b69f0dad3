"""CCF-registered cells (.h5ad, cells × genes) → the ISH grid and onto a run's patterns (issue 37).

References: the planted truth of the synthetic cell atlas (its patterns, the cells' true voxels
and types), brute-force means read with anndata, scikit-learn NMF, scipy's NNLS, and the CCFv3
midline (11.4 mm wide box: 5.7 mm) for the mm → voxel mapping.
"""

import json
import sys
import warnings

import anndata
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.optimize import nnls
from sklearn.decomposition import NMF

from osnmf import cli
from osnmf.atlas import Atlas
from osnmf.datasets.cells import make_cells
from osnmf.errors import InputError, OsnmfWarning
from osnmf.evaluate.planted import planted_truth_check
from osnmf.expression import to_matrix
from osnmf.io.anndata_io import write_h5ad
from osnmf.io.cells import bin_cells, ccf_to_voxel, open_cells, read_cells
from osnmf.io.load import load_expression
from osnmf.preprocess import impute_knn
from osnmf.project import project_run

K = 4


@pytest.fixture(scope="module")
def coarse():
    """The packaged annotation at 400 µm (every second voxel): 7,811 brain voxels, fast tests."""
    a = Atlas.default()
    return Atlas(a.annotation[::2, ::2, ::2], a.ontology, (400.0, 400.0, 400.0))


@pytest.fixture(scope="module")
def cells(tmp_path_factory, coarse):
    path = tmp_path_factory.mktemp("cells") / "cells.h5ad"
    return make_cells(path, n_cells=60_000, n_genes=40, n_patterns=K, atlas=coarse, seed=3)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cells):
    """A finished run's folder whose patterns and gene coefficients are the planted ones."""
    ph = cells.phantom
    folder = tmp_path_factory.mktemp("run")
    brain = ph.atlas.brain_mask
    vol = np.zeros((K, *brain.shape), np.float32)
    vol[:, brain] = ph.patterns
    np.savez_compressed(folder / "patterns.npz", patterns=vol, pattern_names=np.array([f"PP{i + 1}" for i in range(K)]),
                        spacing_um=np.array(ph.atlas.spacing_um), support=brain, coefficients=ph.coefficients,
                        genes=ph.data.genes, experiment_ids=ph.data.experiment_ids)
    params = {"hemispheres": "auto", "impute": "knn", "n_neighbors": 6, "random_state": 0}
    (folder / "summary.json").write_text(json.dumps({"parameters": params}))
    return folder


def test_mm_to_voxel_rounds_to_the_voxel_centre():
    rng = np.random.default_rng(0)
    shape, spacing = (67, 41, 58), (200.0, 200.0, 200.0)
    idx = np.column_stack([rng.integers(0, s, 500) for s in shape])
    mm = (idx + rng.uniform(-0.499, 0.499, idx.shape)) * 0.2
    got, inside = ccf_to_voxel(mm, shape, spacing)
    assert inside.all() and np.array_equal(got, idx)
    edge = np.array([[0.1, 0.0, 0.0], [0.0999, 0.0, 0.0], [-0.1001, 0, 0], [13.3, 0, 0], [13.2999, 0, 0],
                     [np.nan, 1, 1]])
    got, inside = ccf_to_voxel(edge, shape, spacing)
    assert inside.tolist() == [True, True, False, False, True, False]
    assert got[:, 0].tolist() == [1, 0, -1, -1, 66, -1]


def test_grid_annotation_is_mirrored_about_the_ccf_midline():
    """CCFv3 is 11.4 mm wide, its midline at z = 5.7 mm. Under the mapping, the left-right flip that
    best matches the grid annotation to itself must be about 5.7 mm, and points mirrored about
    5.7 mm must land in mirrored voxels (a corner-origin mapping would put the plane at 5.8 mm)."""
    A = Atlas.default().annotation
    agreement = {}
    for s in range(54, 61):  # the flip m -> s - m, plane at s / 2 voxels
        src = s - np.arange(A.shape[2])
        ok = (src >= 0) & (src < A.shape[2])
        flipped = np.zeros_like(A)
        flipped[:, :, ok] = A[:, :, src[ok]]
        both = (A > 0) & (flipped > 0)
        agreement[s] = (A[both] == flipped[both]).mean()
    best = max(agreement, key=agreement.get)
    assert agreement[best] > 0.85
    d = np.linspace(0.05, 5.0, 40)
    left, _ = ccf_to_voxel(np.column_stack([np.full_like(d, 7.0), np.full_like(d, 4.0), 5.7 - d]), A.shape,
                           (200.0,) * 3)
    right, _ = ccf_to_voxel(np.column_stack([np.full_like(d, 7.0), np.full_like(d, 4.0), 5.7 + d]), A.shape,
                            (200.0,) * 3)
    assert np.mean(left[:, 2] + right[:, 2] == best) > 0.9  # ties at voxel edges aside


@pytest.mark.parametrize("csv", [False, True])
def test_coordinates_round_trip_to_the_cells_voxel_and_parcellation(tmp_path, csv):
    atlas = Atlas.default()
    truth = make_cells(tmp_path / "c.h5ad", n_cells=4000, n_genes=12, n_patterns=3, seed=1, coords_csv=csv,
                       atlas=atlas)
    opened = open_cells(tmp_path / "c.h5ad", atlas, coords=truth.coords_path)
    assert np.array_equal(opened.voxel, truth.voxel)
    parcel = anndata.read_h5ad(tmp_path / "c.h5ad").obs["structure_id"].to_numpy()
    assert np.mean(atlas.annotation.ravel()[opened.voxel] == parcel) > 0.99
    assert opened.type_key == "subclass" and opened.values == "counts"
    assert np.array_equal(np.asarray(opened.type_names)[opened.type_codes], np.asarray(truth.type_names)[truth.types])


def test_voxel_means_are_the_brute_force_means_and_sparse_voxels_missing(tmp_path, cells, coarse):
    adata = anndata.read_h5ad(cells.path)
    values = np.log1p(np.asarray(adata.X, dtype=np.float64))
    expr = bin_cells(open_cells(cells.path, coarse), coarse, min_cells=5, chunk_cells=997)
    n = np.bincount(cells.voxel, minlength=coarse.annotation.size)
    flat = expr.volumes.reshape(len(expr), -1)
    rng = np.random.default_rng(0)
    for v in rng.choice(np.flatnonzero(n >= 5), 30, replace=False):
        np.testing.assert_allclose(flat[:, v], values[cells.voxel == v].mean(axis=0), rtol=1e-5, atol=1e-6)
    few = np.flatnonzero((n > 0) & (n < 5))
    assert few.size and np.isnan(flat[:, few]).all()
    assert np.isnan(flat[:, np.flatnonzero(n >= 5)]).sum() == 0
    # the same counts stored as CSR, and as log1p values: the same grid
    for X, kind in ((sparse.csr_matrix(adata.X), "counts"), (np.log1p(adata.X), "log")):
        other = anndata.AnnData(X=X, obs=adata.obs, var=adata.var)
        other.write_h5ad(tmp_path / f"{kind}.h5ad")
        opened = open_cells(tmp_path / f"{kind}.h5ad", coarse)
        assert opened.values == kind
        again = bin_cells(opened, coarse, min_cells=5, chunk_cells=20_000)
        np.testing.assert_allclose(again.volumes, expr.volumes, rtol=1e-5, atol=1e-6)


def test_binned_grid_recovers_the_planted_patterns(cells, coarse):
    expr = read_cells(cells.path, coarse, min_cells=3)
    brain = coarse.brain_mask
    X = np.nan_to_num(to_matrix(impute_knn(expr.volumes, brain, 6), brain))
    found = NMF(K, init="nndsvda", max_iter=400, random_state=0).fit(X).components_
    check = planted_truth_check(cells.phantom.patterns, found)
    assert min(check["matched_r"]) >= 0.9, check


def test_load_expression_tells_cells_from_voxels(tmp_path, cells):
    expr = load_expression(cells.path, min_cells=1)  # the packaged 200 µm grid
    assert expr.atlas.shape == (67, 41, 58) and list(expr.genes) == list(cells.phantom.data.genes)
    voxels = write_h5ad(tmp_path / "voxels.h5ad", cells.phantom.data)  # voxels × genes: the other reader
    brain = cells.phantom.atlas.brain_mask
    np.testing.assert_array_equal(load_expression(voxels, cells.phantom.atlas).volumes[:, brain],
                                  cells.phantom.data.volumes[:, brain])


def test_each_planted_type_lands_on_its_pattern_in_both_views(tmp_path, cells, run_dir):
    out = tmp_path / "proj"
    summary = project_run(run_dir, cells.path, out)
    assert summary["n_shared_genes"] == 40 and summary["n_cells_projected"] == 60_000
    for name in ("cell_types_by_pattern.csv", "cell_programs.csv"):
        table = pd.read_csv(out / name).set_index("cell_type")
        patterns = table.drop(columns="n_cells")
        for k in range(K):
            row = patterns.loc[f"Type{k + 1:02d}"]
            assert row.idxmax() == f"PP{k + 1}", (name, row)
            assert row.iloc[k] > 3 * np.delete(row.to_numpy(), k).max()
    agree = pd.read_csv(out / "agreement.csv").set_index("cell_type")
    assert agree.loc[[f"Type{k + 1:02d}" for k in range(K)], "same_top"].all()
    # per-cell coefficients against scipy's NNLS on the documented scaling
    per_cell = anndata.read_h5ad(out / "cells.h5ad")
    assert per_cell.shape == (60_000, K) and list(per_cell.obs_names[:2]) == ["cell00000000", "cell00000001"]
    x = np.log1p(np.asarray(anndata.read_h5ad(cells.path).X, dtype=np.float64))
    W = cells.phantom.coefficients.astype(np.float64)
    ish_mean = W @ cells.phantom.patterns.astype(np.float64).mean(axis=1)
    Wn, xn = W / ish_mean[:, None], x / x.mean(axis=0)
    for i in np.random.default_rng(1).choice(60_000, 20, replace=False):
        np.testing.assert_allclose(per_cell.X[i], nnls(Wn, xn[i])[0], rtol=1e-3, atol=1e-5)
    assert (out / "report.html").read_text().count("<img") == 1


def _tiny(path, obs_cols=True, scale=1.0, genes=("Gene0001", "Gene0002")):
    rng = np.random.default_rng(0)
    n = 50
    obs = pd.DataFrame({"subclass": rng.choice(["A", "B"], n)}, index=[f"c{i}" for i in range(n)])
    if obs_cols:
        obs["x"], obs["y"], obs["z"] = rng.uniform(4, 9, n) * scale, rng.uniform(2, 6, n) * scale, 5.7 * scale
    X = rng.poisson(2.0, (n, len(genes))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Variable names are not unique")  # on purpose in one case
        anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=list(genes))).write_h5ad(path)
    return path


@pytest.mark.parametrize("case, words", [
    ("no_coordinates", ["obs x, y, z"]),
    ("micrometres", ["micrometres", "divide by 1000"]),
    ("no_shared_genes", ["none of its 2 genes", "Gene0001"]),
    ("unknown_key", ["--cell-type-key 'cluster'", "subclass"]),
])
def test_bad_cells_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, run_dir, case, words):
    data = tmp_path / "bad.h5ad"
    extra = []
    if case == "no_coordinates":
        _tiny(data, obs_cols=False)
    elif case == "micrometres":
        _tiny(data, scale=1000.0)
    elif case == "no_shared_genes":
        _tiny(data, genes=("Xyz1", "Xyz2"))
    else:
        _tiny(data)
        extra = ["--cell-type-key", "cluster"]
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["osnmf", "project", str(run_dir), "--data", str(data), "--out", str(out),
                                      "--quiet", *extra])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    assert exc.value.code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(data) in lines[0], captured.err
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists()


def test_cells_without_coordinates_or_outside_are_counted_and_dropped(tmp_path):
    path = _tiny(tmp_path / "c.h5ad")
    adata = anndata.read_h5ad(path)
    adata.obs.loc[adata.obs_names[:3], "x"] = np.nan
    adata.obs.loc[adata.obs_names[3:5], "y"] = 9.0  # beyond the grid's 8.2 mm
    adata.write_h5ad(path)
    said = r"3 cell\(s\) without coordinates and 2 outside the grid were dropped \(45 of 50 kept\)"
    with pytest.warns(OsnmfWarning, match=said):
        opened = open_cells(path)
    assert opened.kept.sum() == 45 and (opened.n_no_coordinates, opened.n_outside) == (3, 2)
    with pytest.raises(InputError, match="none of the 50 cells"):
        adata.obs["y"] = 9.0
        adata.write_h5ad(tmp_path / "all_out.h5ad")
        open_cells(tmp_path / "all_out.h5ad")


def test_run_config_flags_reach_the_cells_reader(cells):
    """`osnmf run --data cells.h5ad --min-cells N`: the pipeline's load stage bins with N."""
    from osnmf.config import RunConfig
    from osnmf.pipeline import Pipeline

    pipe = Pipeline(RunConfig(data=str(cells.path), min_cells=2, cell_values="counts", quiet=True))
    pipe.load()
    expected = load_expression(cells.path, min_cells=2)
    np.testing.assert_array_equal(pipe.state.expr.volumes, expected.volumes)
    assert np.isnan(expected.volumes[:, Atlas.default().brain_mask]).any()  # 60,000 cells: sparse voxels


@pytest.mark.parametrize("case, words", [("micrometres", ["micrometres"]), ("duplicate_genes", ["not unique"])])
def test_osnmf_run_on_bad_cells_is_one_line_and_no_run_folder(tmp_path, monkeypatch, capsys, case, words):
    data = _tiny(tmp_path / "bad.h5ad", scale=1000.0) if case == "micrometres" else \
        _tiny(tmp_path / "bad.h5ad", genes=("Gad1", "Gad1"))
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["osnmf", "run", "--data", str(data), "--out", str(out), "--quiet"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(lines) == 1 and str(data) in lines[0], lines
    assert all(w in lines[0] for w in words) and not out.exists()
