"""Moran's I against esda/libpysal on the same adjacency, brute force and hand-computed cases."""

import warnings

import esda
import libpysal
import numpy as np
import pytest
from scipy import ndimage

from osnmf.errors import ConfigError, InputError
from osnmf.spatial.moran import (
    morans_i,
    morans_i_distribution,
    spatial_weights,
    strongest_pattern_labels,
    strongest_pattern_morans_i,
)


def _crop_mask():
    from osnmf.atlas import Atlas

    return Atlas.default().brain_mask[20:30, 8:22, 15:33].copy()


def _brute_pairs(mask, connectivity):
    coords = np.argwhere(mask)
    diff = np.abs(coords[:, None, :] - coords[None, :, :])
    if connectivity == "face":
        adj = diff.sum(-1) == 1
    else:
        adj = diff.max(-1) == 1
    return adj


def _libpysal_w(w_csr):
    neighbors = {i: w_csr.indices[w_csr.indptr[i] : w_csr.indptr[i + 1]].tolist()
                 for i in range(w_csr.shape[0])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return libpysal.weights.W(neighbors, silence_warnings=True)


def _esda_i(y, w_lib, transformation):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return esda.Moran(y, w_lib, transformation=transformation, permutations=0).I


@pytest.mark.parametrize("connectivity", ["face", "queen"])
def test_weights_match_brute_force(connectivity):
    rng = np.random.default_rng(0)
    mask = rng.random((6, 5, 7)) < 0.6
    w = spatial_weights(mask, connectivity).toarray()
    assert np.array_equal(w, w.T)
    assert np.array_equal(w.astype(bool), _brute_pairs(mask, connectivity))


def test_weights_2d_queen_degrees():
    w = spatial_weights(np.ones((3, 3), bool), "queen")
    deg = np.asarray(w.sum(1)).ravel()
    assert deg[4] == 8 and deg[0] == 3 and deg[1] == 5


@pytest.mark.parametrize("connectivity", ["face", "queen"])
@pytest.mark.parametrize("weights,transformation", [("binary", "b"), ("row", "r")])
def test_equals_esda_on_atlas_crop(connectivity, weights, transformation):
    mask = _crop_mask()
    rng = np.random.default_rng(1)
    noise = rng.random((3, *mask.shape))
    smooth = ndimage.gaussian_filter(rng.random(mask.shape), 2.0)
    binary = (smooth > np.median(smooth[mask])).astype(float)
    vols = np.stack([noise[0], noise[1], smooth, binary])
    ours = morans_i(vols, mask, connectivity=connectivity, weights=weights)
    w_lib = _libpysal_w(spatial_weights(mask, connectivity))
    ref = np.array([_esda_i(v[mask], w_lib, transformation) for v in vols])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    assert ours[2] > 0.5 and abs(ours[0]) < 0.1  # smooth vs noise, sanity


def test_equals_esda_with_wsp_and_islands():
    # a mask with isolated voxels (islands) and the libpysal WSP route
    mask = np.zeros((5, 6, 4), bool)
    mask[:3, :3, :2] = True
    mask[4, 5, 3] = True  # island
    mask[4, 0, 0] = True  # island
    y = np.random.default_rng(2).random(int(mask.sum()))
    w = spatial_weights(mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_lib = libpysal.weights.WSP(w).to_W(silence_warnings=True)
    for ours_scheme, t in (("binary", "b"), ("row", "r")):
        np.testing.assert_allclose(morans_i(y, mask, weights=ours_scheme),
                                   _esda_i(y, w_lib, t), rtol=0, atol=1e-9)


def test_hand_computed_line():
    # y = 1,2,3,4 on a path: z = (-1.5,-.5,.5,1.5), z'z = 5, z'Wz = 2*(.75-.25+.75) = 2.5,
    # S0 = 6, n = 4  ->  I = 4/6 * 2.5/5 = 1/3
    assert morans_i(np.array([1.0, 2, 3, 4]), np.ones(4, bool)) == pytest.approx(1 / 3, abs=1e-12)


def test_hand_computed_checkerboard():
    # 2x2 checkerboard, face adjacency: every edge joins opposite values -> I = -1
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert morans_i(y, np.ones((2, 2), bool)) == pytest.approx(-1.0, abs=1e-12)
    # queen adds the two diagonals (same values): z'Wz = -2 + 4*.25 = -1, S0 = 12 -> I = -1/3
    assert morans_i(y, np.ones((2, 2), bool), connectivity="queen") == pytest.approx(-1 / 3)


def test_input_forms_agree_and_outside_ignored():
    mask = _crop_mask()
    rng = np.random.default_rng(3)
    vols = rng.random((3, *mask.shape))
    stack = morans_i(vols, mask)
    matrix = morans_i(vols[:, mask], mask)
    single = [morans_i(v, mask) for v in vols]
    np.testing.assert_allclose(stack, matrix, atol=1e-12)
    np.testing.assert_allclose(stack, single, atol=1e-12)
    assert isinstance(single[0], float)
    vols2 = vols.copy()
    vols2[:, ~mask] = 1e6
    np.testing.assert_allclose(morans_i(vols2, mask), stack, atol=1e-12)
    w = spatial_weights(mask)
    np.testing.assert_allclose(morans_i(vols, mask, w=w), stack, atol=1e-12)


def test_constant_map_is_nan():
    mask = np.ones((3, 3, 3), bool)
    assert np.isnan(morans_i(np.ones((3, 3, 3)), mask))


def test_errors():
    mask = np.ones((3, 4, 5), bool)
    with pytest.raises(InputError):
        morans_i(np.ones((3, 4)), mask)
    v = np.random.default_rng(0).random((3, 4, 5))
    v[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        morans_i(v, mask)
    with pytest.raises(ConfigError):
        morans_i(np.ones((3, 4, 5)), mask, connectivity="rook")
    with pytest.raises(ConfigError):
        morans_i(np.ones((3, 4, 5)), mask, weights="standard")
    with pytest.raises(InputError, match="empty"):
        morans_i(np.ones((3, 4, 5)), np.zeros((3, 4, 5), bool))


def test_strongest_pattern_against_brute_force_and_esda():
    mask = _crop_mask()
    rng = np.random.default_rng(4)
    k = 4
    pats = np.stack([ndimage.gaussian_filter(rng.random(mask.shape), 1.5) for _ in range(k)])
    pats -= 0.5  # some voxels have no positive pattern -> label -1
    m = pats[:, mask]
    labels = strongest_pattern_labels(pats, mask)
    brute = np.array([int(np.argmax(m[:, j])) if m[:, j].max() > 0 else -1
                      for j in range(m.shape[1])])
    assert np.array_equal(labels, brute)
    assert (labels == -1).any()
    ours = strongest_pattern_morans_i(pats, mask)
    w_lib = _libpysal_w(spatial_weights(mask))
    ref = [_esda_i((brute == p).astype(float), w_lib, "b") for p in range(k)]
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    # matrix input gives the same
    np.testing.assert_allclose(strongest_pattern_morans_i(m, mask), ours, atol=1e-12)


def test_distribution_shapes_and_values():
    mask = _crop_mask()
    rng = np.random.default_rng(5)
    reps = rng.random((3, 2, int(mask.sum())))
    dist = morans_i_distribution(reps, mask)
    assert dist.shape == (3, 2)
    np.testing.assert_allclose(dist[1], morans_i(reps[1], mask), atol=1e-12)
    ragged = morans_i_distribution([reps[0], reps[1][:1]], mask, variant="strongest")
    assert ragged.shape == (2, 2) and np.isnan(ragged[1, 1])
    np.testing.assert_allclose(ragged[0], strongest_pattern_morans_i(reps[0], mask), atol=1e-12)
