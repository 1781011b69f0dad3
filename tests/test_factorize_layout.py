"""The factorize layer's single sources of truth: one bootstrap draw, one rule per parameter, one
progress helper (the layer order and the ban on re-exports: tests/test_layers.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

import osnmf
from osnmf.config import RunConfig
from osnmf.errors import ConfigError
from osnmf.factorize.sweep.bootstrap import bootstrap_counts
from osnmf.factorize.sweep.params import SweepParams
from osnmf.factorize.sweep.run import replicate_counts


def test_one_bootstrap_draw_everywhere():
    from osnmf.baselines.pca import pca_bootstrap_patterns

    sweep = replicate_counts(40, range(6), SweepParams(random_state=3))
    for other in (osnmf.bootstrap_counts(40, 6, 3), bootstrap_counts(40, range(6), 3)):
        np.testing.assert_array_equal(other, sweep)
    X = np.random.default_rng(1).random((40, 9))  # the PCA baselines draw the same rows
    np.testing.assert_array_equal(pca_bootstrap_patterns(X, 2, n_replicates=6, seed=3),
                                  pca_bootstrap_patterns(X, 2, counts=sweep))
    # replicate r does not depend on the block layout: a later block draws the same rows
    np.testing.assert_array_equal(bootstrap_counts(40, range(2, 5), 3), sweep[2:5])
    # independent reference: replicate r is n draws with replacement from default_rng([seed, r])
    for r in range(6):
        idx = np.random.default_rng([3, r]).integers(0, 40, size=40)
        np.testing.assert_array_equal(sweep[r], np.bincount(idx, minlength=40))


def test_tol_zero_is_one_rule_everywhere():
    """tol = 0 (run every iteration) is accepted by the solver, the sweep and the config."""
    rng = np.random.default_rng(0)
    X = rng.random((12, 15))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = NMF(3, init="nndsvda", solver="cd", tol=0, max_iter=15).fit(X)
    ours = osnmf.fit_nmf(X, 3, tol=0, max_iter=15, dtype=np.float64)
    assert ours.n_iter == sk.n_iter_ == 15
    np.testing.assert_allclose(ours.D, sk.components_, rtol=1e-6, atol=1e-9)
    assert SweepParams(tol=0).tol == 0
    assert RunConfig(tol=0).tol == 0
    for bad in (-1e-4, float("nan"), float("inf"), "x"):
        with pytest.raises(ConfigError, match="tol"):
            SweepParams(tol=bad)
        with pytest.raises(ConfigError, match="tol"):
            osnmf.fit_nmf(X, 2, tol=bad)
        with pytest.raises(ConfigError, match="tol"):
            RunConfig(tol=bad)
        with pytest.raises(ConfigError, match="tol"):
            osnmf.StaNMF(k_range=[2], n_replicates=2, tol=bad).fit(X)


def test_progress_goes_through_the_shared_helper(capsys):
    """Sweep and solver progress use osnmf.progress: off a terminal, no control characters."""
    X = np.random.default_rng(4).random((20, 12))
    ref = osnmf.StaNMF(k_range=[2, 3], n_replicates=3, random_state=0).fit(X)
    shown = osnmf.StaNMF(k_range=[2, 3], n_replicates=3, random_state=0, progress=True).fit(X)
    fits = osnmf.fit_nmf_replicates(X, 2, bootstrap_counts(20, 2, 0), progress=True)
    np.testing.assert_array_equal(shown.components_, ref.components_)
    assert fits.D.shape == (2, 2, 12)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err


def test_every_phase_after_the_sweep_shows_progress(tmp_path, capsys, monkeypatch):
    """γ, the selection panel, certification, the final model and, on resume, the check of the
    stored blocks each have a labelled bar (minutes of silence at paper size otherwise)."""
    from osnmf import progress

    monkeypatch.setattr(progress.console(), "_force_terminal", True)
    X = np.random.default_rng(5).random((30, 40))
    kw = {"k_range": [2, 3, 4], "n_replicates": 8, "recipe": "fast", "solver": "compressed", "certify": 2,
          "random_state": 0, "store": tmp_path / "sweep", "progress": True}
    first = osnmf.StaNMF(**kw).fit(X)
    err = capsys.readouterr().err
    for label in ("staNMF sweep", "instability per K", "K-selection panel per K",
                  "certification: exact refits of 2 replicates", f"final model at K = {first.k_}"):
        assert label in err, label
    assert "checking" not in err
    again = osnmf.StaNMF(**kw).fit(X)
    err = capsys.readouterr().err
    n_blocks = len(list((tmp_path / "sweep").rglob("r*.npz")))
    assert f"staNMF sweep: checking {n_blocks} stored blocks" in err
    assert "certification" not in err  # stored with the sweep: a resumed fit does not refit it
    pd.testing.assert_frame_equal(again.certificate_, first.certificate_)
    pd.testing.assert_frame_equal(again.instability_, first.instability_)
    np.testing.assert_array_equal(again.components_, first.components_)
