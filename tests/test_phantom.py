"""The synthetic atlas: shapes, determinism, planted truth, noise and missing-data structure."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import NMF

from osnmf import Atlas, ConfigError, Phantom, make_phantom
from osnmf.formats.allen_grid import read_allen_grid_zip


@pytest.fixture(scope="module")
def atlas():
    return Atlas.default()


@pytest.fixture(scope="module")
def ph(atlas):
    return make_phantom(n_genes=60, n_patterns=8, noise=0.2, missing=0.1, seed=3, atlas=atlas)


def test_shapes_dtypes_and_names(ph, atlas):
    n, K, V = 60, 8, atlas.n_brain_voxels
    assert isinstance(ph, Phantom) and ph.n_patterns == K and ph.atlas is atlas
    assert ph.data.volumes.shape == (n, *atlas.shape) and ph.data.volumes.dtype == np.float32
    assert ph.patterns.shape == (K, V) and ph.patterns.dtype == np.float32
    assert ph.coefficients.shape == (n, K) and ph.coefficients.dtype == np.float32
    assert ph.clean.shape == (n, V) and ph.clean.dtype == np.float32
    assert ph.missing.shape == (n, V) and ph.missing.dtype == bool
    assert len(ph.pattern_regions) == K and all(len(r) >= 1 for r in ph.pattern_regions)
    assert len(ph.pattern_names) == K
    assert ph.data.genes[0] == "Gene0001" and ph.data.genes[-1] == "Gene0060"
    assert len(set(ph.data.experiment_ids.tolist())) == n
    assert not ph.is_real.any()


def test_deterministic_per_seed(atlas):
    a = make_phantom(n_genes=20, seed=11, atlas=atlas)
    b = make_phantom(n_genes=20, seed=11, atlas=atlas)
    c = make_phantom(n_genes=20, seed=12, atlas=atlas)
    assert np.array_equal(a.data.volumes, b.data.volumes, equal_nan=True)
    assert np.array_equal(a.coefficients, b.coefficients)
    assert np.array_equal(a.missing, b.missing)
    assert not np.array_equal(a.data.volumes, c.data.volumes, equal_nan=True)
    assert not np.array_equal(a.coefficients, c.coefficients)


def test_non_negative_and_clean_is_the_product(ph):
    assert (ph.patterns >= 0).all() and (ph.coefficients >= 0).all()
    assert np.allclose(ph.patterns.max(axis=1), 1.0)
    reference = ph.coefficients.astype(np.float64) @ ph.patterns.astype(np.float64)
    assert np.allclose(ph.clean, reference, rtol=1e-5, atol=1e-6)
    X, missing = ph.data.to_matrix()
    assert np.array_equal(missing, ph.missing)
    assert (X[~missing] >= 0).all() and np.isfinite(X[~missing]).all()


def test_outside_the_brain_is_zero_or_a_missing_section(ph, atlas):
    outside = ph.data.volumes[:, ~atlas.brain_mask]
    assert np.all((outside == 0) | np.isnan(outside))
    # NaN outside the brain happens only on the planes of whole missing sections
    ap = np.indices(atlas.shape)[0][~atlas.brain_mask]
    nan_rows, nan_cols = np.nonzero(np.isnan(outside))
    assert ph.missing_sections[nan_rows, ap[nan_cols]].all()


def test_noise_level_matches_request(atlas):
    for noise in (0.1, 0.3):
        p = make_phantom(n_genes=30, noise=noise, missing=0.0, background=0.0, seed=5, atlas=atlas)
        X, _ = p.data.to_matrix()
        strong = p.clean > 0.3 * p.clean.max(axis=1, keepdims=True)
        ratio = X[strong] / p.clean[strong]
        assert abs(ratio.mean() - 1.0) < 0.01
        assert abs(ratio.std() / noise - 1.0) < 0.05


def test_additive_background_is_small(ph, atlas):
    X, missing = ph.data.to_matrix()
    weak = (ph.clean == 0) & ~missing  # far from every region of the gene's patterns
    rowmax = ph.clean.max(axis=1, keepdims=True)
    assert weak.mean() > 0.05  # the phantom has such voxels: the checks below are never vacuous
    ratio = (X / rowmax)[weak]
    assert ratio.max() < 0.2  # background sd is 2% of the gene's maximum
    assert abs((ratio == 0).mean() - 0.5) < 0.02  # there X = max(0, b), b symmetric around 0
    # without multiplicative noise, X - clean is the background itself where clipping is rare
    p = make_phantom(n_genes=30, noise=0.0, missing=0.0, seed=5, atlas=atlas)
    Xp, _ = p.data.to_matrix()
    peak = p.clean.max(axis=1, keepdims=True)
    strong = p.clean > 0.1 * peak  # 5 sd above zero
    dev = ((Xp - p.clean) / peak)[strong]
    assert abs(dev.mean()) < 1e-3
    assert abs(dev.std() / 0.02 - 1.0) < 0.03


def test_missing_fraction_and_whole_sections(ph, atlas):
    assert abs(ph.missing.mean() - 0.1) < 0.015
    ap = atlas.brain_coords[:, 0]
    n_ap = atlas.shape[0]
    section_size = np.bincount(ap, minlength=n_ap)
    # independent count: sections whose every brain voxel is missing in an experiment
    missing_per_section = np.stack([np.bincount(ap, weights=m, minlength=n_ap) for m in ph.missing])
    whole = (missing_per_section == section_size) & (section_size > 0)
    assert whole.any(axis=1).mean() > 0.8  # most experiments miss at least one whole section
    assert np.array_equal(whole, ph.missing_sections & (section_size > 0))
    in_sections = (whole * section_size).sum() / (len(ph.missing) * section_size.sum())
    assert 0.05 < in_sections < 0.07  # default: 60% of the missing voxels from whole sections
    # the rest are scattered: voxels outside whole sections are missing at a uniform low rate
    scattered = ph.missing[~whole[:, ap]].mean()
    assert 0.03 < scattered < 0.06  # 0.04 / (1 - 0.06)
    # the whole plane of a missing section is NaN, outside the brain too
    i, k = np.argwhere(ph.missing_sections)[0]
    assert np.isnan(ph.data.volumes[i, k]).all()


def test_no_missing_when_asked(atlas):
    p = make_phantom(n_genes=10, missing=0.0, seed=1, atlas=atlas)
    assert not np.isnan(p.data.volumes).any() and not p.missing.any()


def _neighbour_correlation(volume, mask):
    """Pearson r between face-adjacent brain voxel pairs, pooled over the three axes."""
    a, b = [], []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        both = mask[tuple(lo)] & mask[tuple(hi)]
        a.append(volume[tuple(lo)][both])
        b.append(volume[tuple(hi)][both])
    return np.corrcoef(np.concatenate(a), np.concatenate(b))[0, 1]


def test_patterns_are_smooth_and_region_shaped(ph, atlas):
    volumes = ph.pattern_volumes()
    assert volumes.shape == (8, *atlas.shape)
    assert (volumes[:, ~atlas.brain_mask] == 0).all()
    rng = np.random.default_rng(0)
    for k in range(ph.n_patterns):
        assert _neighbour_correlation(volumes[k], atlas.brain_mask) > 0.9
        # a spatially shuffled pattern has no neighbour correlation: the test can fail
        shuffled = np.zeros_like(volumes[k])
        shuffled[atlas.brain_mask] = rng.permutation(ph.patterns[k])
        assert abs(_neighbour_correlation(shuffled, atlas.brain_mask)) < 0.05
        # most of the pattern's mass lies in the regions it was built from
        region = np.zeros(atlas.shape, dtype=bool)
        for acronym in ph.pattern_regions[k]:
            region |= atlas.mask(acronym)
        assert volumes[k][region].sum() / volumes[k].sum() > 0.6


def test_patterns_have_gradients(ph, atlas):
    k = ph.pattern_names.index("isocortex, anterior-high gradient")
    cortex = atlas.mask("Isocortex")[atlas.brain_mask]
    ap = atlas.brain_coords[cortex, 0]
    r = np.corrcoef(ap, ph.patterns[k][cortex])[0, 1]
    assert r < -0.7  # falls from anterior (AP index 0) to posterior


def test_patterns_are_distinguishable(atlas):
    for K in (8, 13, 16):
        p = make_phantom(n_genes=5, n_patterns=K, seed=0, atlas=atlas)
        corr = np.corrcoef(p.patterns)
        np.fill_diagonal(corr, 0)
        assert corr.max() < 0.6, (K, corr.max())
        assert len(p.pattern_names) == K


def test_mixtures_markers_and_sparsity(atlas):
    p = make_phantom(n_genes=200, n_patterns=8, seed=2, atlas=atlas, n_markers=2)
    A = p.coefficients
    share = A / A.sum(axis=1, keepdims=True)
    markers = p.marker_of >= 0
    assert markers.sum() == 16 and (p.marker_of[:16] == np.arange(16) % 8).all()
    assert (share[markers, p.marker_of[markers]] >= 0.9).all()
    assert (share[~markers].max(axis=1) <= 2 / 3 + 1e-6).all()
    assert p.markers()[3] == [3, 11]
    n_used = (A[~markers] > 0).sum(axis=1)
    assert n_used.min() >= 2 and np.median(n_used) >= 3  # most genes use several patterns
    assert (A == 0).mean() > 0.2  # but the mixtures are sparse
    # every pattern is used by some genes
    assert ((A > 0).sum(axis=0) > 10).all()


def test_planted_patterns_are_recoverable_by_sklearn_nmf(atlas):
    p = make_phantom(n_genes=80, n_patterns=6, noise=0.1, missing=0.0, seed=4, atlas=atlas)
    X, _ = p.data.to_matrix()
    cols = np.arange(0, X.shape[1], 3)  # every third voxel keeps the test fast
    model = NMF(n_components=6, init="nndsvd", max_iter=400, random_state=0)
    model.fit(X[:, cols].astype(np.float64))
    found = model.components_
    truth = p.patterns[:, cols]
    corr = np.corrcoef(np.vstack([truth, found]))[:6, 6:]
    rows, matched = linear_sum_assignment(-corr)
    assert corr[rows, matched].min() > 0.9


def test_cropped_atlas_still_gives_k_patterns(atlas):
    anterior = Atlas(atlas.annotation[:30].copy(), atlas.ontology, atlas.spacing_um)
    p = make_phantom(n_genes=10, n_patterns=8, seed=0, atlas=anterior)
    assert p.patterns.shape == (8, anterior.n_brain_voxels)
    assert "cerebellar cortex" not in p.pattern_names  # no cerebellum in the anterior half


def test_real_genes_are_appended_with_unknown_truth(atlas, shared_dir):
    zips = sorted((shared_dir / "data" / "aba" / "energy").glob("*.zip"))
    assert len(zips) == 2
    p = make_phantom(n_genes=5, seed=0, atlas=atlas, real_genes=zips)
    assert p.data.n_experiments == 7
    assert p.is_real.tolist() == [False] * 5 + [True] * 2
    assert sorted(p.data.genes[5:].tolist()) == ["Nrp1", "Pdyn"]
    assert p.data.experiment_ids[5:].tolist() == [z.name[:-4] for z in zips]
    assert np.isnan(p.coefficients[5:]).all() and np.isnan(p.clean[5:]).all()
    assert (p.marker_of[5:] == -1).all()
    for j, z in enumerate(zips):
        energy = read_allen_grid_zip(z)["energy"]
        assert np.array_equal(p.data.volumes[5 + j], energy, equal_nan=True)
        assert np.array_equal(p.missing[5 + j], np.isnan(energy[atlas.brain_mask]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_genes": 0},
        {"n_patterns": 0},
        {"n_genes": 2.5},
        {"noise": -0.1},
        {"missing": 1.0},
        {"missing": float("nan")},
        {"sparsity": 1.0},
        {"real_genes": True},
        {"real_genes": "x.zip"},
    ],
)
def test_bad_arguments_raise_config_error(kwargs, atlas):
    with pytest.raises(ConfigError):
        make_phantom(atlas=atlas, **kwargs)


def test_section_noise_varies_whole_sections(atlas):
    kw = dict(n_genes=20, noise=0.05, missing=0.0, background=0.0, seed=6, atlas=atlas)
    flat = make_phantom(**kw)
    stained = make_phantom(section_noise=0.3, **kw)
    ap = atlas.brain_coords[:, 0]

    def section_gain_cv(p):
        X, _ = p.data.to_matrix()
        cvs = []
        for g in range(len(X)):
            strong = p.clean[g] > 0.3 * p.clean[g].max()
            ratio = X[g, strong] / p.clean[g, strong]
            secs = np.unique(ap[strong])
            means = [ratio[ap[strong] == k].mean() for k in secs if (ap[strong] == k).sum() >= 20]
            cvs.append(np.std(means) / np.mean(means))
        return float(np.median(cvs))

    assert section_gain_cv(flat) < 0.03
    assert 0.2 < section_gain_cv(stained) < 0.4


def test_sparsity_controls_how_many_patterns_a_gene_uses(atlas):
    dense = make_phantom(n_genes=40, n_patterns=6, sparsity=0.0, n_markers=0, missing=0.0, seed=0, atlas=atlas)
    sparse = make_phantom(n_genes=40, n_patterns=6, sparsity=0.9, n_markers=0, missing=0.0, seed=0, atlas=atlas)
    assert ((dense.coefficients > 0).sum(axis=1) == 6).all()
    used = (sparse.coefficients > 0).sum(axis=1)
    assert used.min() == 2 and used.mean() < 2.6  # at least two, rarely more
    assert (dense.marker_of == -1).all()
