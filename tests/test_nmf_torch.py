"""Torch backend of the NMF solver: same fits as the numpy backend and scikit-learn.

torch is optional: without it this module is skipped, unless ``OSNMF_REQUIRE_TORCH=1`` (set by
``.ci/run`` once it has installed torch), where a missing torch fails the run instead.
``OSNMF_REQUIRE_CUDA=1`` (a GPU machine) likewise makes the CUDA cases run or fail, never vanish.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("OSNMF_REQUIRE_TORCH") == "1" or os.environ.get("OSNMF_REQUIRE_CUDA") == "1":
    import torch  # required here: an ImportError is a collection error, not a skip
else:
    torch = pytest.importorskip("torch", reason="optional torch backend not installed (pip install torch)")

from test_nmf import matched_r, phantom, sk_fit  # noqa: E402

from osnmf.errors import ConfigError  # noqa: E402
from osnmf.factorize.nmf.fits import fit_nmf, fit_nmf_replicates  # noqa: E402
from osnmf.factorize.sweep.bootstrap import bootstrap_counts  # noqa: E402

REQUIRE_CUDA = os.environ.get("OSNMF_REQUIRE_CUDA") == "1"
DEVICES = ["cpu"] + (["cuda"] if REQUIRE_CUDA or torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: multi-threaded BLAS/torch only thrash on shared cores."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return phantom()[0]


@pytest.mark.parametrize("device", DEVICES)
def test_torch_float64_equals_numpy_and_sklearn(data, device):
    counts = bootstrap_counts(data.shape[0], 3, 5)
    ref = fit_nmf_replicates(data, 6, counts, dtype=np.float64)
    got = fit_nmf_replicates(data, 6, counts, dtype=np.float64, backend="torch", device=device)
    np.testing.assert_array_equal(got.n_iter, ref.n_iter)
    np.testing.assert_allclose(got.D, ref.D, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-8)
    idx = np.repeat(np.arange(data.shape[0]), counts[0])
    _, model = sk_fit(data[idx], 6, random_state=0)
    np.testing.assert_allclose(got.D[0], model.components_, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_float32_single_and_compressed(data, device):
    _, model = sk_fit(data, 6, random_state=0)
    res = fit_nmf(data, 6, backend="torch", device=device)
    assert res.D.dtype == np.float32
    assert matched_r(res.D, model.components_).min() >= 0.999
    comp = fit_nmf(data, 6, backend="torch", device=device, solver="compressed")
    assert matched_r(comp.D, model.components_).min() >= 0.99


def test_torch_bad_device(data):
    with pytest.raises(ConfigError):
        fit_nmf(data, 3, backend="torch", device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            fit_nmf(data, 3, backend="torch", device="cuda")


def test_explicit_start_is_left_alone_on_the_cpu():
    """On the CPU a tensor made from a numpy array shares its memory: the solver must copy it."""
    X, _, _ = phantom(n_genes=40)
    X = X.astype(np.float32)
    counts = bootstrap_counts(X.shape[0], 2, 3)
    rng = np.random.default_rng(2)
    A0 = rng.random((2, X.shape[0], 3)).astype(np.float32)
    D0 = rng.random((2, 3, X.shape[1])).astype(np.float32)
    D_before = D0.copy()
    fits = fit_nmf_replicates(X, 3, counts, init=(A0, D0), backend="torch", device="cpu")
    np.testing.assert_array_equal(D0, D_before)
    ref = fit_nmf_replicates(X, 3, counts, init=(A0, D0))
    assert np.abs(fits.loss / ref.loss - 1).max() < 1e-4
