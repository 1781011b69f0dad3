"""Preprocessing: kNN imputation vs scikit-learn and brute force, hold-out check, masking."""

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import pearsonr
from sklearn.neighbors import KNeighborsRegressor

from osnmf.errors import ConfigError, InputError
from osnmf.expression import SpatialExpression, to_matrix
from osnmf.preprocess import (
    default_support,
    holdout_check,
    impute_knn,
    knn_fill,
    neighbour_shells,
    prepare_matrix,
)

TIE = 1e-9


def _crop_data(atlas, seed, n=3, missing=0.25, crop=(slice(8, 26), slice(4, 22), slice(8, 36))):
    """Random values on a crop of the brain with random missing voxels and a missing AP slab."""
    support = atlas.brain_mask[crop].copy()
    rng = np.random.default_rng(seed)
    vol = rng.gamma(2.0, 1.0, size=(n, *support.shape)).astype(np.float32)
    vol[rng.random(vol.shape) < missing] = np.nan
    vol[0, 4:10] = np.nan  # a slab of 6 missing sections: deep holes
    vol[:, ~support] = rng.gamma(2.0, 1.0)  # values outside the support must be ignored
    return vol, support


def _sklearn_reference(vol, support, spacing, k=6):
    """Per experiment: sklearn prediction at missing voxels, tie flags, brute-force tie rule."""
    coords = np.argwhere(support) * np.asarray(spacing)
    for e in range(vol.shape[0]):
        v = vol[e][support].astype(np.float64)
        obs = ~np.isnan(v)
        model = KNeighborsRegressor(n_neighbors=k, weights="distance").fit(coords[obs], v[obs])
        pred = model.predict(coords[~obs])
        dist, _ = model.kneighbors(coords[~obs], n_neighbors=k + 1)
        tied = dist[:, k] <= dist[:, k - 1] * (1 + TIE)
        # brute force: every observed voxel with distance <= d_k, weights 1/d
        d = cdist(coords[~obs], coords[obs])
        within = d <= dist[:, [k - 1]] * (1 + TIE)
        w = np.where(within, 1.0 / d, 0.0)
        brute = (w @ v[obs]) / w.sum(axis=1)
        yield e, obs, pred, tied, brute


@pytest.mark.parametrize("spacing", [(200.0, 200.0, 200.0), (100.0, 250.0, 180.0)])
@pytest.mark.parametrize("max_radius_vox", [4.0, 1.5])
def test_matches_sklearn_where_unambiguous(atlas, spacing, max_radius_vox):
    vol, support = _crop_data(atlas, seed=1)
    out = impute_knn(
        vol, support, n_neighbors=6, spacing_um=spacing, chunk=2, max_radius_vox=max_radius_vox
    )
    n_untied = 0
    for e, obs, pred, tied, brute in _sklearn_reference(vol, support, spacing):
        ours = out[e][support]
        np.testing.assert_array_equal(ours[obs], vol[e][support][obs])  # observed untouched
        filled = ours[~obs]
        assert not np.isnan(filled).any()
        np.testing.assert_allclose(filled[~tied], pred[~tied], rtol=1e-6, atol=1e-6)
        # tie rule: all candidates at the k-th distance are included (independent brute force)
        np.testing.assert_allclose(filled, brute, rtol=1e-6, atol=1e-6)
        n_untied += int((~tied).sum())
    assert n_untied > 200  # the comparison with sklearn covered many voxels
    # outside the support nothing changes
    np.testing.assert_array_equal(out[:, ~support], vol[:, ~support])


def test_ties_really_occur_and_differ_from_an_arbitrary_subset(atlas):
    vol, support = _crop_data(atlas, seed=2, n=1)
    out = impute_knn(vol, support)
    _, obs, pred, tied, brute = next(_sklearn_reference(vol, support, (200.0, 200.0, 200.0)))
    assert tied.mean() > 0.3  # ties at the k-th distance are the common case on a grid
    np.testing.assert_allclose(out[0][support][~obs], brute, rtol=1e-6)


def test_knn_fill_hides_queries_and_handles_few_observed():
    support = np.ones((5, 6, 7), dtype=bool)
    vol = np.full((2, 5, 6, 7), np.nan, dtype=np.float32)
    vol[0, 0, 0, 0], vol[0, 4, 5, 6], vol[0, 2, 3, 3] = 1.0, 3.0, 5.0  # 3 observed < k
    q = (np.array([0, 0, 1]), np.array([2, 1, 1]), np.array([3, 1, 1]), np.array([3, 1, 1]))
    est = knn_fill(vol, support, q, n_neighbors=6)
    # query 0 hides the voxel (2,3,3): only the two corners remain, equidistant -> their mean
    coords = np.array([[0, 0, 0], [4, 5, 6]]) * 200.0
    d = np.linalg.norm(coords - np.array([2, 3, 3]) * 200.0, axis=1)
    assert est[0] == pytest.approx(((1 / d) @ [1.0, 3.0]) / (1 / d).sum())
    # all queries are hidden together (as in a hold-out): query 1 does not see (2,3,3) either
    d1 = np.linalg.norm(coords - np.array([1, 1, 1]) * 200.0, axis=1)
    assert est[1] == pytest.approx(((1 / d1) @ [1.0, 3.0]) / (1 / d1).sum())
    assert np.isnan(est[2])  # experiment 1 has no observed voxel


def test_neighbour_shells_are_complete_balls():
    shells = neighbour_shells((200.0, 200.0, 200.0), 600.0)
    offsets = np.concatenate([s.offsets for s in shells])
    grid = np.stack(np.meshgrid(*[np.arange(-3, 4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    r2 = (grid**2).sum(1)
    assert offsets.shape[0] == int(((r2 > 0) & (r2 <= 9)).sum()) == 122
    assert [s.offsets.shape[0] for s in shells[:4]] == [6, 12, 8, 6]
    dists = [s.distance_um for s in shells]
    assert dists == sorted(dists) and dists[0] == 200.0
    for s in shells:
        np.testing.assert_allclose(np.linalg.norm(s.offsets * 200.0, axis=1), s.distance_um)


def test_default_support_is_the_reference_rule(atlas):
    rng = np.random.default_rng(3)
    n = 40
    vol = rng.random((n, *atlas.shape), dtype=np.float32)
    brain = np.argwhere(atlas.brain_mask)
    a, b, c = brain[100], brain[200], brain[300]
    vol[:38, a[0], a[1], a[2]] = np.nan  # 95% missing -> out
    vol[:37, b[0], b[1], b[2]] = np.nan  # 92.5% -> in
    vol[:, c[0], c[1], c[2]] = np.nan  # 100% -> out
    sup = default_support(vol, atlas.brain_mask, chunk=7)
    reference = atlas.brain_mask & ~(np.mean(np.isnan(vol), axis=0) >= 0.95)
    np.testing.assert_array_equal(sup, reference)
    assert not sup[tuple(a)] and sup[tuple(b)] and not sup[tuple(c)]
    assert sup.sum() == atlas.n_brain_voxels - 2


def test_holdout_against_sklearn_and_truth(atlas):
    support = atlas.brain_mask[10:28, 6:24, 10:38]
    rng = np.random.default_rng(4)
    idx = np.indices(support.shape).astype(float)
    n = 3
    truth = np.stack([np.sin(idx[0] / (3 + e)) + np.cos(idx[2] / 4) + 2 for e in range(n)]).astype(
        np.float32
    )
    vol = (truth + rng.normal(0, 0.3, truth.shape)).astype(np.float32)
    vol[rng.random(vol.shape) < 0.1] = np.nan
    res = holdout_check(vol, support, n_holdout=150, seed=7, truth=truth, chunk=2)
    assert res.n_points == 3 * 150
    pts = res.points
    assert np.all(support[pts[:, 1], pts[:, 2], pts[:, 3]])
    assert not np.isnan(vol[tuple(pts.T)]).any()
    # independent reference: sklearn fitted on the observed voxels minus the held-out ones
    coords = np.argwhere(support) * 200.0
    col = {tuple(c): i for i, c in enumerate(np.argwhere(support))}
    checked = 0
    for e in range(n):
        v = vol[e][support].astype(np.float64)
        hidden = np.array([col[tuple(p)] for p in pts[pts[:, 0] == e, 1:]])
        train = ~np.isnan(v)
        train[hidden] = False
        model = KNeighborsRegressor(n_neighbors=6, weights="distance").fit(coords[train], v[train])
        dist, _ = model.kneighbors(coords[hidden], n_neighbors=7)
        untied = dist[:, 6] > dist[:, 5] * (1 + TIE)
        ours = res.imputed[pts[:, 0] == e]
        np.testing.assert_allclose(ours[untied], model.predict(coords[hidden])[untied], rtol=1e-6)
        checked += int(untied.sum())
        pe = res.per_experiment.iloc[e]
        measured = v[hidden]
        assert pe["mae"] == pytest.approx(np.mean(np.abs(measured - ours)))
        assert pe["pearson_r"] == pytest.approx(pearsonr(measured, ours).statistic)
        assert pe["r_truth"] == pytest.approx(
            pearsonr(truth[e][support][hidden], ours).statistic, rel=1e-6
        )
    assert checked > 50
    assert res.mae == pytest.approx(np.mean(np.abs(res.measured - res.imputed)))
    assert res.mean_error == pytest.approx(np.mean(res.measured - res.imputed))
    assert res.pearson_r == pytest.approx(pearsonr(res.measured, res.imputed).statistic)
    # smoothing by kNN averages noise away: imputed is closer to the truth than to the noisy data
    assert res.r_truth > res.pearson_r and res.mae_truth < res.mae
    assert res.summary()["n_points"] == 450

    # the same truth given as a matrix over the support
    res2 = holdout_check(
        vol, support, n_holdout=150, seed=7, truth=to_matrix(truth, support), truth_mask=support
    )
    np.testing.assert_allclose(res2.truth, res.truth)
    assert res2.r_truth == pytest.approx(res.r_truth)


def test_holdout_reduces_points_with_warning():
    support = np.ones((4, 4, 4), dtype=bool)
    vol = np.random.default_rng(0).random((2, 4, 4, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match="fewer voxels were held out"):
        res = holdout_check(vol, support, n_holdout=100, seed=0)
    assert res.n_points == 2 * (64 - 6)


def test_prepare_matrix_clips_drops_and_round_trips(atlas):
    rng = np.random.default_rng(5)
    vol = rng.normal(0, 1, (4, *atlas.shape)).astype(np.float32)
    vol[2, atlas.brain_mask] = np.nan  # nothing observed in the brain
    first = tuple(np.argwhere(atlas.brain_mask)[5000])
    vol[(0, *first)] = np.nan
    expr = SpatialExpression(vol, ["a", "b", "c", "d"], ["1", "2", "3", "4"], atlas)
    with pytest.warns(UserWarning, match="1 of 4 experiments"):
        prep = prepare_matrix(expr)
    assert prep.n_dropped == 1 and prep.dropped.tolist() == [2] and prep.kept.tolist() == [0, 1, 3]
    assert prep.expression.experiment_ids.tolist() == ["1", "2", "4"]
    brain = atlas.brain_mask
    expected = vol[[0, 1, 3]][:, brain]
    assert prep.X.shape == (3, atlas.n_brain_voxels) and prep.X.dtype == np.float32
    assert prep.n_clipped == int((expected < 0).sum())
    np.testing.assert_array_equal(prep.missing, np.isnan(expected))
    np.testing.assert_array_equal(prep.X[~prep.missing], np.maximum(expected, 0)[~prep.missing])
    assert np.nanmin(prep.X) == 0
    back = prep.to_volumes(prep.X, fill=np.nan)
    np.testing.assert_array_equal(back[:, brain], prep.X)
    assert np.isnan(back[:, ~brain]).all()
    assert prep.summary()["n_dropped"] == 1
    filled = prepare_matrix(vol[[0, 1]], brain, fill_missing=0.0)
    assert filled.X[0][prep.missing[0]].tolist() == [0.0]
    with pytest.raises(InputError, match="no observed voxel"):
        prepare_matrix(expr, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_matrix(vol[[0, 1]], brain)  # nothing to drop: no warning


def test_spatial_expression_in_and_out(atlas):
    rng = np.random.default_rng(6)
    vol = rng.random((2, *atlas.shape), dtype=np.float32)
    vol[rng.random(vol.shape) < 0.1] = np.nan
    expr = SpatialExpression(vol, ["g1", "g2"], ["e1", "e2"], atlas)
    sup = default_support(expr, atlas.brain_mask)
    out = impute_knn(expr, sup, n_jobs=2, chunk=1)
    assert isinstance(out, SpatialExpression) and out.experiment_ids.tolist() == ["e1", "e2"]
    assert not np.isnan(out.volumes[:, sup]).any()
    np.testing.assert_array_equal(out.volumes[:, ~sup], vol[:, ~sup])
    np.testing.assert_array_equal(np.isnan(expr.volumes), np.isnan(vol))  # input untouched
    same = impute_knn(vol, sup, chunk=2)
    np.testing.assert_array_equal(out.volumes, same)  # threads and chunking do not change results


def test_bad_inputs():
    vol = np.zeros((2, 3, 3, 3), dtype=np.float32)
    sup = np.ones((3, 3, 3), dtype=bool)
    with pytest.raises(InputError, match="support of shape"):
        impute_knn(vol, np.ones((3, 3, 4), dtype=bool))
    with pytest.raises(InputError, match="experiments, AP, DV, ML"):
        impute_knn(vol[0], sup)
    with pytest.raises(InputError, match="boolean"):
        impute_knn(vol, sup.astype(int))
    with pytest.raises(InputError, match="floating"):
        impute_knn(vol.astype(int), sup)
    with pytest.raises(ConfigError, match="n_neighbors"):
        impute_knn(vol, sup, n_neighbors=0)
    with pytest.raises(ConfigError, match="spacing_um"):
        impute_knn(vol, sup, spacing_um=(200.0, -1.0, 200.0))
    with pytest.raises(ConfigError, match="max_missing"):
        default_support(vol, sup, max_missing=1.5)
    with pytest.raises(InputError, match="truth_mask"):
        holdout_check(vol + 1, sup, n_holdout=2, truth=np.zeros((2, 27)))


def test_masked_nmf_without_missing_is_sklearn_mu():
    from sklearn.decomposition import NMF

    from osnmf.factorize.nmf.masked import masked_nmf

    rng = np.random.default_rng(8)
    X = rng.gamma(1, 1, (40, 3)) @ rng.gamma(1, 1, (3, 200))
    A0, D0 = rng.random((40, 3)), rng.random((3, 200))
    sk = NMF(3, solver="mu", init="custom", max_iter=40, tol=0)
    A_sk = sk.fit_transform(X, W=A0.copy(), H=D0.copy())
    ours = masked_nmf(X, 3, init=(A0, D0), max_iter=40, tol=0, dtype=np.float64)
    np.testing.assert_allclose(ours.A, A_sk, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.D, sk.components_, rtol=1e-9, atol=1e-12)


def test_masked_nmf_recovers_planted_missing_entries():
    from osnmf.factorize.nmf.masked import masked_nmf

    rng = np.random.default_rng(9)
    truth = rng.gamma(1, 1, (50, 4)) @ rng.gamma(1, 1, (4, 300))
    missing = rng.random(truth.shape) < 0.3
    X = np.where(missing, np.nan, truth)
    res = masked_nmf(X, 4, max_iter=1500, tol=1e-8, dtype=np.float64)
    R = res.A @ res.D
    # the planted truth at the hidden entries, never seen by the fit
    assert np.corrcoef(R[missing], truth[missing])[0, 1] > 0.999
    assert res.loss == pytest.approx(np.linalg.norm(np.where(missing, 0, truth - R)), rel=1e-6)
    with pytest.raises(InputError, match="non-negative"):
        masked_nmf(np.where(missing, np.nan, -truth), 4)


def test_knn_fill_workspace_reuse_is_safe(atlas):
    vol, support = _crop_data(atlas, seed=10, n=3)
    smaller = support.copy()
    smaller[:, :, :10] = False
    workspace: dict = {}
    for sup in (support, smaller, support):
        for rows in (slice(0, 3), slice(1, 2)):
            block = vol[rows]
            q = np.nonzero(np.isnan(block) & sup[None])
            fresh = knn_fill(block, sup, q)
            reused = knn_fill(block, sup, q, workspace=workspace)
            np.testing.assert_array_equal(reused, fresh)
