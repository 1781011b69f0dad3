"""StaNMF as a scikit-learn estimator: scikit-learn's own estimator checks, parameters, clone, repr.

``check_estimator`` runs every check that applies to a transformer whose tags say
``positive_only`` (NMF), ``allow_nan=False`` (impute first) and ``sparse=True`` (densified at fit),
on a small configuration (K in {1, 2}, two replicates). The one check that does not hold, and
why, is listed in EXPECTED_FAILED; the test asserts that every other check passes and that the
listed one really fails (so the list cannot go stale).
"""

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator
from threadpoolctl import threadpool_limits

from osnmf.errors import ConfigError, InputError
from osnmf.factorize.stanmf import StaNMF

EXPECTED_FAILED = {
    # transform(x) with a 1-D x returns the coefficients of that one sample, shape (1, k_): a
    # convenience asserted by tests/test_projection.py; scikit-learn wants a ValueError there.
    "check_fit2d_predict1d": "transform accepts one sample given as a 1-D vector",
}

PARAMS = ["k_range", "n_replicates", "recipe", "perturbation", "n_restarts", "grow", "solver", "k_rule", "backend",
          "device", "centered", "max_iter", "tol", "random_state", "n_jobs", "store", "progress",
          "block_size", "sketch", "keep_coefficients", "client", "certify"]


def _small() -> StaNMF:
    # tol 1e-6: fit_transform (the final model's A) and transform (exact NNLS on its D) agree to
    # scikit-learn's 1e-2 only when the fit has converged
    return StaNMF(k_range=(1, 2), n_replicates=2, max_iter=1000, tol=1e-6, random_state=0)


def test_sklearn_estimator_checks():
    with threadpool_limits(1):
        results = check_estimator(_small(), expected_failed_checks=EXPECTED_FAILED, on_fail=None)
    status = {r["check_name"]: r["status"] for r in results}
    failed = {name: repr(r["exception"]) for r in results
              if r["status"] == "failed" for name in [r["check_name"]]}
    assert failed == {}
    assert {n for n, s in status.items() if s == "xfail"} == set(EXPECTED_FAILED)
    assert sum(s == "passed" for s in status.values()) >= 40
    # the expected failure is real: a 1-D sample is transformed, not refused
    rng = np.random.default_rng(0)
    model = _small().fit(rng.random((12, 5)))
    assert model.transform(rng.random(5)).shape == (1, model.k_)


def test_parameters_clone_and_repr():
    model = StaNMF(k_range=[3, 4], n_replicates=5, grow=False, client=None)
    assert sorted(model.get_params()) == sorted(PARAMS)
    assert model.get_params()["k_range"] == [3, 4] and model.get_params()["grow"] is False
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    model.set_params(n_replicates=7, solver="compressed")
    assert (model.n_replicates, model.solver) == (7, "compressed")
    assert repr(model) == ("StaNMF(grow=False, k_range=[3, 4], n_replicates=7, "
                           "solver='compressed')")
    with sklearn.config_context(print_changed_only=False):
        text = repr(model)
    assert all(f"{p}=" in text for p in PARAMS)


def test_init_checks_nothing_fit_checks_everything():
    X = np.random.default_rng(1).random((10, 6))
    bad = {"n_replicates": 1, "n_restarts": 0, "max_iter": 0, "tol": -1.0, "perturbation": "x",
           "solver": "mu", "backend": "jax", "block_size": 0, "n_jobs": 0, "random_state": None,
           "k_range": [], "sketch": 3, "device": "cuda", "certify": -1}
    for name, value in bad.items():
        model = StaNMF(**{"k_range": [2], "n_replicates": 2, name: value})  # stored as it is
        assert getattr(model, name) == value
        with pytest.raises(ConfigError):
            model.fit(X)
    with pytest.raises(InputError, match="1 sample"):
        StaNMF(k_range=[1], n_replicates=2).fit(X[:1])
    with pytest.raises(ConfigError, match=r"1 feature\(s\)"):
        StaNMF(k_range=[2], n_replicates=2).fit(X[:, :1])


def test_client_is_a_constructor_parameter():
    class Recorder:  # an executor: anything with map_unordered
        calls = 0

        def map_unordered(self, fn, tasks):
            Recorder.calls += 1
            for i, args in enumerate(tasks):
                yield i, fn(*args)

    X = np.random.default_rng(2).random((15, 8))
    remote = StaNMF(k_range=[2, 3], n_replicates=3, client=Recorder(), random_state=0).fit(X)
    local = StaNMF(k_range=[2, 3], n_replicates=3, random_state=0).fit(X)
    assert Recorder.calls >= 1
    np.testing.assert_allclose(remote.instability_["hungarian"], local.instability_["hungarian"])
    np.testing.assert_array_equal(remote.components_, local.components_)
