"""The calibrated phantom preset: single experiments look like real Allen grids, truth is recoverable.

References are independent of the preset's code: the real coronal grids in
``../shared/data/aba_real`` (statistics computed here by brute force), scikit-learn's NMF, and
the planted truth.
"""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import NMF

from osnmf import ConfigError, make_phantom
from osnmf.datasets.phantom_presets import CALIBRATED, CalibratedRecipe, make_calibrated_phantom
from osnmf.formats.allen_grid import read_allen_grid_zip


def _moran_face(volume: np.ndarray, mask: np.ndarray) -> float:
    """Brute-force Moran's I with binary face adjacency on the voxels of ``mask``."""
    z = np.where(mask, volume - volume[mask].mean(), 0.0)
    num, s0 = 0.0, 0
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        both = mask[tuple(lo)] & mask[tuple(hi)]
        num += 2.0 * float((z[tuple(lo)] * z[tuple(hi)])[both].sum())
        s0 += 2 * int(both.sum())
    return mask.sum() / s0 * num / float((z[mask] ** 2).sum())


def _stats(volumes: np.ndarray, brain: np.ndarray) -> pd.DataFrame:
    rows = []
    for vol in volumes:
        obs = brain & ~np.isnan(vol)
        v = vol[obs].astype(np.float64)
        rows.append({"moran": _moran_face(np.nan_to_num(vol).astype(np.float64), obs),
                     "zero": float((v == 0).mean()), "cv": float(v.std() / v.mean())})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def real_stats(shared_dir, atlas):
    folder = shared_dir / "data" / "aba_real"
    table = pd.read_csv(folder / "experiments.csv")
    coronal = table[table["plane"] == "coronal"]["section_data_set_id"]
    vols = np.stack([read_allen_grid_zip(folder / "energy" / f"{i}.zip", expected_shape=atlas.shape)["energy"]
                     for i in coronal])
    assert len(vols) >= 4
    return _stats(vols, atlas.brain_mask)


@pytest.fixture(scope="module")
def calibrated(atlas):
    return make_phantom(preset="calibrated", n_genes=48, seed=4, atlas=atlas)


def test_preset_defaults_and_truth_layout(calibrated, atlas):
    ph = calibrated
    assert ph.preset == "calibrated" and ph.recipe["noise"] == CALIBRATED.noise
    assert ph.n_patterns == 11 and ph.data.n_experiments == 48
    assert ph.patterns.shape == (11, atlas.n_brain_voxels)
    assert abs(ph.missing.mean() - 0.05) < 0.015
    # clean is more than the planted mixture: background + minor + own structure, all positive
    mixture = ph.coefficients.astype(np.float64) @ ph.patterns.astype(np.float64)
    assert (ph.clean >= mixture - 1e-5).all()
    extra = (ph.clean - mixture).min(axis=1)
    assert (extra > 0).all()  # a positive background on every brain voxel of every gene
    share = 1 - mixture.sum(1) / ph.clean.astype(np.float64).sum(1)
    assert 0.1 < np.median(share) < 0.8  # planted patterns explain part, not all, of each gene


def test_single_experiments_fall_in_the_real_range(calibrated, real_stats, atlas):
    ours = _stats(calibrated.data.volumes, atlas.brain_mask)
    lo, hi = real_stats.min(), real_stats.max()
    # the default phantom is far off (sanity: the comparison can fail)
    default = _stats(make_phantom(n_genes=12, noise=0.15, seed=4, atlas=atlas).data.volumes, atlas.brain_mask)
    assert default["zero"].median() > 10 * max(hi["zero"], 1e-3)
    # calibrated: median statistics inside the real grids' range, most experiments inside it
    for col, slack in (("moran", 0.02), ("cv", 0.0)):
        assert lo[col] - slack <= ours[col].median() <= hi[col] + slack, (col, ours[col].median(), lo[col], hi[col])
        inside = ours[col].between(lo[col] - slack, hi[col] + slack).mean()
        assert inside >= 0.75, (col, inside)
    assert ours["zero"].max() <= max(hi["zero"], 1e-3)  # (almost) never exactly zero, as real grids


def test_planted_patterns_are_recoverable(atlas):
    ph = make_calibrated_phantom(n_genes=300, missing=0.0, seed=2, atlas=atlas)
    X = np.ascontiguousarray(ph.data.to_matrix()[0][:, ::6], dtype=np.float64)
    truth = ph.patterns[:, ::6].astype(np.float64)
    model = NMF(n_components=11, init="nndsvda", max_iter=400, tol=1e-4, random_state=0).fit(X)
    P = model.components_
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    Tn = truth / np.linalg.norm(truth, axis=1, keepdims=True)
    C = Pn @ Tn.T
    r, c = linear_sum_assignment(C, maximize=True)
    assert C[r, c].mean() > 0.9, C[r, c]
    assert np.median(C[r, c]) > 0.93
    # a shuffled truth is not recovered: the match is specific
    rng = np.random.default_rng(0)
    Sn = np.stack([rng.permutation(t) for t in Tn])
    C0 = Pn @ Sn.T
    r0, c0 = linear_sum_assignment(C0, maximize=True)
    assert C0[r0, c0].mean() < C[r, c].mean() - 0.1


def test_bad_recipe_and_unknown_preset(atlas):
    with pytest.raises(ConfigError, match="preset"):
        make_phantom(preset="nope", n_genes=5, atlas=atlas)
    with pytest.raises(ConfigError, match="background"):
        make_calibrated_phantom(n_genes=5, atlas=atlas, recipe=CalibratedRecipe(background=(0.0, 0.1)))
    with pytest.raises(ConfigError, match="noise"):
        make_calibrated_phantom(n_genes=5, atlas=atlas, recipe=CalibratedRecipe(noise=-1.0))
    with pytest.raises(ConfigError, match="minor_share"):
        make_calibrated_phantom(n_genes=5, atlas=atlas, recipe=CalibratedRecipe(minor_share=1.5))
