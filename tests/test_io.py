"""Readers on the real Allen zips (checked against an independent numpy decode) and round trips."""

import shutil
import zipfile

import numpy as np
import pytest

from osnmf.atlas import Atlas
from osnmf.expression import SpatialExpression
from osnmf.formats.allen_grid import read_allen_grid_zip, write_allen_grid_zip
from osnmf.formats.nrrd_io import read_nrrd, write_nrrd
from osnmf.io.aba_folder import read_aba_folder, write_aba_folder
from osnmf.io.anndata_io import read_h5ad, write_h5ad
from osnmf.io.load import load_expression
from osnmf.io.npz import read_npz, write_npz

REAL = {"74272479": "Nrp1", "71717084": "Pdyn"}


def raw_grid(zip_path, member="energy.raw", dims=(67, 41, 58), dtype="<f4"):
    """Independent decode: the Allen raw is x-fastest (x=AP, y=DV, z=ML), little-endian float32."""
    with zipfile.ZipFile(zip_path) as zf:
        flat = np.frombuffer(zf.read(member), dtype=dtype)
    assert flat.size == np.prod(dims)
    # x fastest: index = x + X*(y + Y*z)  →  C array indexed [z, y, x], transposed to [x, y, z]
    return flat.reshape(dims[::-1]).transpose(2, 1, 0)


@pytest.fixture(scope="module")
def real_raw(shared_dir):
    return {i: raw_grid(shared_dir / "data/aba/energy" / f"{i}.zip") for i in REAL}


@pytest.fixture(scope="module")
def small_atlas():
    full = Atlas.default()
    return Atlas(full.annotation[28:36, 8:20, 18:40].copy(), full.ontology, full.spacing_um)


@pytest.fixture(scope="module")
def small_expr(small_atlas):
    rng = np.random.default_rng(7)
    vols = rng.gamma(2.0, 1.5, size=(4, *small_atlas.shape)).astype(np.float32)
    vols[rng.random(vols.shape) < 0.1] = np.nan
    vols[1, 3] = np.nan  # a whole missing section
    vols[2, 0, 0, 0] = 0.0
    return SpatialExpression(vols, ["Gad1", "Pvalb", "Gad1", "Sst"], ["101", "102", "103", "104"], small_atlas)


@pytest.mark.parametrize("exp_id", sorted(REAL))
def test_real_zip_matches_independent_decode(shared_dir, real_raw, exp_id):
    path = shared_dir / "data/aba/energy" / f"{exp_id}.zip"
    vol = read_allen_grid_zip(path)["energy"]
    raw = real_raw[exp_id]
    assert vol.shape == (67, 41, 58) and vol.dtype == np.float32
    missing = raw == -1
    assert np.isnan(vol).sum() == missing.sum() > 0
    np.testing.assert_array_equal(np.isnan(vol), missing)
    np.testing.assert_array_equal(vol[~missing], raw[~missing])
    assert (raw[~missing] >= 0).all()


def test_real_zip_via_load_expression(shared_dir, real_raw, atlas):
    for exp_id, gene in REAL.items():
        expr = load_expression(shared_dir / "data/aba/energy" / f"{exp_id}.zip")
        assert expr.genes.tolist() == [gene] and expr.experiment_ids.tolist() == [exp_id]
        raw = real_raw[exp_id]
        inside = raw[atlas.brain_mask]
        s = expr.summary()
        assert s["n_experiments"] == 1 and s["n_brain_voxels"] == 62529
        assert s["missing_fraction"] == pytest.approx((inside == -1).mean())
        assert s["value_max"] == pytest.approx(float(raw.max()))


def test_real_aba_folder(shared_dir, real_raw, tmp_path):
    folder = tmp_path / "aba"
    (folder / "energy").mkdir(parents=True)
    for exp_id in REAL:
        shutil.copy(shared_dir / "data/aba/energy" / f"{exp_id}.zip", folder / "energy")
    shutil.copy(shared_dir / "data/aba/P56_Mouse_gridAnnotation.zip", folder)
    rows = "".join(f"{i},{g},coronal\n" for i, g in REAL.items())
    (folder / "experiments.csv").write_text("section_data_set_id,gene_symbol,plane\n" + rows)
    expr = read_aba_folder(folder, progress=False)
    assert expr.volumes.shape == (2, 67, 41, 58)
    assert expr.genes.tolist() == list(REAL.values())
    assert expr.experiment_ids.tolist() == list(REAL)
    for k, exp_id in enumerate(REAL):
        np.testing.assert_array_equal(np.nan_to_num(expr.volumes[k], nan=-1.0), real_raw[exp_id])
    # the folder annotation is used, and equals the packaged one
    np.testing.assert_array_equal(expr.atlas.annotation, Atlas.default().annotation)
    both = read_aba_folder(folder, kinds=("energy",), atlas=Atlas.default(), n_jobs=2)
    assert both.atlas is Atlas.default()
    np.testing.assert_array_equal(both.volumes, expr.volumes)
    # a spreadsheet-style csv (BOM, spaces, extra columns) reads the same
    (folder / "experiments.csv").write_text(
        "\ufeffsection_data_set_id, gene_symbol ,entrez_id\n" + "".join(f"{i}, {g},1\n" for i, g in REAL.items()),
        encoding="utf-8",
    )
    again = read_aba_folder(folder)
    assert again.genes.tolist() == list(REAL.values()) and again.experiment_ids.tolist() == list(REAL)


def test_aba_folder_several_kinds(tmp_path, small_expr):
    folder = tmp_path / "aba"
    (folder / "energy").mkdir(parents=True)
    for i, exp_id in enumerate(small_expr.experiment_ids):
        vol = small_expr.volumes[i]
        write_allen_grid_zip(folder / "energy" / f"{exp_id}.zip", {"energy": vol, "density": 2 * vol})
    (folder / "experiments.csv").write_text(
        "section_data_set_id,gene_symbol\n"
        + "".join(f"{i},{g}\n" for i, g in zip(small_expr.experiment_ids, small_expr.genes, strict=True))
    )
    out = read_aba_folder(folder, atlas=small_expr.atlas, kinds=("energy", "density"))
    np.testing.assert_array_equal(out["energy"].volumes, small_expr.volumes)
    np.testing.assert_array_equal(out["density"].volumes, 2 * small_expr.volumes)


def test_aba_folder_round_trip(tmp_path, small_expr):
    folder = write_aba_folder(tmp_path / "out", small_expr)
    # a non-default atlas travels with the folder as its annotation zip
    assert (folder / "P56_Mouse_gridAnnotation.zip").is_file()
    back = read_aba_folder(folder)
    np.testing.assert_array_equal(back.atlas.annotation, small_expr.atlas.annotation)
    np.testing.assert_array_equal(back.volumes, small_expr.volumes)  # NaN positions equal too
    assert back.genes.tolist() == small_expr.genes.tolist()
    assert back.experiment_ids.tolist() == small_expr.experiment_ids.tolist()
    # the zips hold -1 where the data are missing
    raw = raw_grid(folder / "energy/102.zip", dims=small_expr.atlas.shape)
    np.testing.assert_array_equal(raw == -1, np.isnan(small_expr.volumes[1]))
    assert not list(folder.rglob("*.part"))


def test_npz_round_trip(tmp_path, small_expr):
    path = write_npz(tmp_path / "x.npz", small_expr)
    with np.load(path, allow_pickle=False) as npz:  # plain arrays, unicode strings, -1 for missing
        assert npz["genes"].dtype.kind == "U" and npz["experiment_ids"].dtype.kind == "U"
        np.testing.assert_array_equal(npz["data"] == -1, np.isnan(small_expr.volumes))
    back = read_npz(path, atlas=small_expr.atlas)
    np.testing.assert_array_equal(back.volumes, small_expr.volumes)
    assert back.genes.tolist() == small_expr.genes.tolist()
    assert back.experiment_ids.tolist() == small_expr.experiment_ids.tolist()


def test_npz_reference_layout(tmp_path, small_atlas):
    """The reference code's layout: `data` with -1, `gene_names`, no ids (ids default to the index)."""
    rng = np.random.default_rng(1)
    data = rng.random((3, *small_atlas.shape)).astype(np.float64)
    data[0, 1, 2, 3] = -1
    np.savez(tmp_path / "ref.npz", data=data, gene_names=np.array(["A", "B", "C"]))
    back = read_npz(tmp_path / "ref.npz", atlas=small_atlas)
    assert back.genes.tolist() == ["A", "B", "C"] and back.experiment_ids.tolist() == ["0", "1", "2"]
    assert np.isnan(back.volumes).sum() == 1 and np.isnan(back.volumes[0, 1, 2, 3])
    ok = data != -1
    np.testing.assert_array_equal(back.volumes[ok], data[ok].astype(np.float32))
    # via load_expression too
    assert load_expression(tmp_path / "ref.npz", atlas=small_atlas).n_experiments == 3


def test_h5ad_round_trip(tmp_path, small_expr):
    import anndata as ad

    path = write_h5ad(tmp_path / "x.h5ad", small_expr, compression="gzip")
    adata = ad.read_h5ad(path)
    atlas = small_expr.atlas
    assert adata.shape == (atlas.n_brain_voxels, 4)
    assert adata.var_names.tolist() == small_expr.experiment_ids.tolist()
    assert adata.var["gene_symbol"].tolist() == small_expr.genes.tolist()
    spatial = adata.obsm["spatial"]
    assert spatial.dtype.kind == "i"
    np.testing.assert_array_equal(spatial, atlas.brain_coords)
    # X[v, e] is the volume value at the voxel's grid coordinates (independent indexing)
    a, d, m = spatial.T
    for e in range(4):
        np.testing.assert_array_equal(adata.X[:, e], small_expr.volumes[e, a, d, m])
    back = read_h5ad(path, atlas=atlas)
    inside = atlas.brain_mask
    np.testing.assert_array_equal(back.volumes[:, inside], small_expr.volumes[:, inside])
    assert np.isnan(back.volumes[:, ~inside]).all()
    assert back.genes.tolist() == small_expr.genes.tolist()


def test_h5ad_any_voxel_order_and_subset(tmp_path, small_expr):
    import anndata as ad

    atlas = small_expr.atlas
    coords = atlas.brain_coords
    rng = np.random.default_rng(3)
    keep = rng.permutation(len(coords))[: len(coords) // 2]
    a, d, m = coords[keep].T
    X = small_expr.volumes[:, a, d, m].T
    adata = ad.AnnData(X=X, obsm={"spatial": coords[keep].astype(float)})
    adata.var_names = ["e1", "e2", "e3", "e4"]
    adata.obs_names = [f"v{i}" for i in range(len(keep))]
    adata.write_h5ad(tmp_path / "sub.h5ad")
    back = read_h5ad(tmp_path / "sub.h5ad", atlas=atlas)
    assert back.genes.tolist() == ["e1", "e2", "e3", "e4"]  # no gene_symbol column: var names
    np.testing.assert_array_equal(back.volumes[:, a, d, m], small_expr.volumes[:, a, d, m])
    placed = np.zeros(atlas.shape, bool)
    placed[a, d, m] = True
    assert np.isnan(back.volumes[:, ~placed]).all()


def test_nrrd_round_trip_and_orientation(tmp_path, small_expr):
    import nrrd

    vol = small_expr.volumes[0]
    path = write_nrrd(tmp_path / "v.nrrd", vol, spacing_um=(200, 200, 200))
    back, meta = read_nrrd(path)
    np.testing.assert_array_equal(back, vol)
    assert meta["spacing_um"] == (200.0, 200.0, 200.0) and meta["space"] == "right-anterior-superior"
    header = nrrd.read_header(str(path))
    assert header["sizes"].tolist() == list(vol.shape)  # first NRRD axis (fastest) = AP, as in the .mhd
    dirs = np.asarray(header["space directions"])
    # AP index grows posterior (−A), DV grows ventral (−S), ML grows to the right (+R), 0.2 mm
    np.testing.assert_allclose(dirs, [[0, -0.2, 0], [0, 0, -0.2], [0.2, 0, 0]])
    # raw bytes are x(AP)-fastest like the Allen grid
    data, _ = nrrd.read(str(path), index_order="C")
    np.testing.assert_array_equal(data, vol.transpose(2, 1, 0))
    stack, meta4 = read_nrrd(write_nrrd(tmp_path / "s.nrrd", small_expr.volumes[:2], spacing_um=(25, 25, 25)))
    np.testing.assert_array_equal(stack, small_expr.volumes[:2])
    assert meta4["spacing_um"] == pytest.approx((25.0, 25.0, 25.0))
    assert meta4["header"]["kinds"] == ["list", "domain", "domain", "domain"]


def test_single_zip_names(tmp_path, small_expr, shared_dir):
    atlas = small_expr.atlas
    write_allen_grid_zip(tmp_path / "Gad1_555123.zip", {"energy": small_expr.volumes[0]})
    expr = load_expression(tmp_path / "Gad1_555123.zip", atlas=atlas)
    assert expr.genes.tolist() == ["Gad1"] and expr.experiment_ids.tolist() == ["555123"]
    np.testing.assert_array_equal(expr.volumes[0], small_expr.volumes[0])
    shutil.copy(shared_dir / "data/aba/energy/71717084.zip", tmp_path / "71717084_energy.zip")
    expr = load_expression(tmp_path / "71717084_energy.zip")
    assert expr.genes.tolist() == ["Pdyn"] and expr.experiment_ids.tolist() == ["71717084"]


def test_load_expression_dispatch(tmp_path, small_expr):
    atlas = small_expr.atlas
    write_aba_folder(tmp_path / "f", small_expr)
    write_npz(tmp_path / "x.npz", small_expr)
    write_h5ad(tmp_path / "x.h5ad", small_expr)
    for p in ("f", "x.npz", "x.h5ad"):
        got = load_expression(tmp_path / p, atlas=atlas)
        np.testing.assert_array_equal(got.volumes[:, atlas.brain_mask], small_expr.volumes[:, atlas.brain_mask])


def test_spatial_expression_matrix_and_summary(small_expr):
    """to_matrix columns follow atlas.brain_coords; inverse, subset and summary by brute force."""
    from osnmf.errors import InputError

    atlas = small_expr.atlas
    X, missing = small_expr.to_matrix()
    coords = atlas.brain_coords
    assert X.shape == (4, len(coords)) and len(coords) == int((atlas.annotation > 0).sum())
    for j in (0, len(coords) // 2, len(coords) - 1):
        a, d, m = coords[j]
        np.testing.assert_array_equal(X[:, j], small_expr.volumes[:, a, d, m])
    np.testing.assert_array_equal(missing, np.isnan(X))
    back = small_expr.patterns_to_volumes(np.nan_to_num(X, nan=5.0))
    for a, d, m in coords[:50]:
        np.testing.assert_array_equal(back[:, a, d, m], np.nan_to_num(small_expr.volumes[:, a, d, m], nan=5.0))
    assert (back[:, ~atlas.brain_mask] == 0).all()
    sub = small_expr.subset([2, 0])
    assert sub.experiment_ids.tolist() == ["103", "101"] and sub.n_genes == 1
    s = small_expr.summary()
    n_missing = sum(int(np.isnan(small_expr.volumes[e][atlas.annotation > 0]).sum()) for e in range(4))
    assert s["missing_fraction"] == pytest.approx(n_missing / (4 * len(coords)))
    assert (s["n_experiments"], s["n_genes"]) == (4, 3) and s["value_min"] == 0.0
    with pytest.raises(InputError, match="unique"):
        SpatialExpression(small_expr.volumes[:2], ["a", "b"], ["1", "1"], atlas)
    with pytest.raises(InputError, match="atlas grid"):
        SpatialExpression(small_expr.volumes[:, :-1], small_expr.genes, small_expr.experiment_ids, atlas)


def test_nrrd_world_coordinates_follow_anatomy(tmp_path):
    """In the file's RAS world, the olfactory bulb is anterior of the cerebellum and the isocortex
    superior of the hypothalamus (world = origin + index @ space directions, as viewers compute it)."""
    import nrrd

    atlas = Atlas.default()
    path = write_nrrd(tmp_path / "ann.nrrd", atlas.annotation)
    header = nrrd.read_header(str(path))
    dirs, origin = np.asarray(header["space directions"]), np.asarray(header["space origin"])
    assert header["space"] == "right-anterior-superior"

    def world_centroid(acronym):
        return origin + np.argwhere(atlas.mask(acronym)).mean(axis=0) @ dirs

    ob, cb = world_centroid("OLF"), world_centroid("CB")
    ctx, hy = world_centroid("Isocortex"), world_centroid("HY")
    assert ob[1] - cb[1] > 5.0  # mm: anterior (+A) by several millimetres
    assert ctx[2] > hy[2] + 1.5  # superior (+S)
    assert abs(world_centroid("grey")[0] - (origin[0] + 0.2 * (atlas.shape[2] - 1) / 2)) < 0.3  # R-L centred
