"""solver="auto" and the certification of compressed sweeps, against scikit-learn refits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.decomposition import NMF
from threadpoolctl import threadpool_limits

from osnmf.errors import ConfigError
from osnmf.factorize.choose_k.stability import instability
from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.autosolver import resolve_solver, sketch_options
from osnmf.factorize.sweep.run import SweepParams, replicate_counts


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def test_auto_rule():
    assert resolve_solver("auto", (4345, 62529), 30) == "compressed"  # the paper's atlas
    assert resolve_solver("auto", (2000, 62529), 12) == "compressed"
    assert resolve_solver("auto", (1640, 405), 26) == "exact"  # Drosophila
    assert resolve_solver("auto", (300, 1080), 10) == "exact"
    assert resolve_solver("auto", (400, 200_000), 30) == "exact"  # small side below 4 × rank
    assert resolve_solver("exact", (4345, 62529), 30) == "exact"
    assert sketch_options() == {"energy": 0.999, "max_rank": 128}
    assert sketch_options({"rank": 20})["rank"] == 20
    with pytest.raises(ConfigError):
        resolve_solver("fast", (10, 10), 2)


def _data(n=60, m=150, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.gamma(0.6, size=(n, k)) @ rng.gamma(0.6, size=(k, m))
    return (X * rng.lognormal(0, 0.1, X.shape)).astype(np.float32)


def test_small_data_stays_exact_and_equals_sklearn():
    X = _data()
    model = StaNMF(k_range=[3], n_replicates=2, grow=False, random_state=1).fit(X)
    assert model.solver_ == "exact" and model.certificate_ is None
    counts = replicate_counts(X.shape[0], range(2), SweepParams(random_state=1))
    idx = np.repeat(np.arange(X.shape[0]), counts[0])
    sk = NMF(3, solver="cd", init="nndsvda", tol=1e-4, max_iter=200).fit(X[idx].astype(np.float64))
    C = np.corrcoef(model.replicates_[3][0], sk.components_)[:3, 3:]
    assert np.sort(C.max(axis=1)).min() > 0.999


def test_certification_equals_sklearn_refits():
    X = _data()
    ks, R, n_cert = [2, 3, 4, 5, 6], 8, 3
    # blocks of 2 replicates: the certification refits its 3 in two blocks, as the sweep's blocks
    model = StaNMF(k_range=ks, n_replicates=R, recipe="fast", solver="compressed", sketch={"rank": 6}, grow=False,
                   certify=n_cert, random_state=2, block_size=2).fit(X)
    cert = model.certificate_
    assert model.solver_ == "compressed" and cert is not None
    k = model.k_
    assert cert["k"].tolist() == [kk for kk in (k - 1, k, k + 1) if kk in ks]
    counts = replicate_counts(X.shape[0], range(n_cert), SweepParams(random_state=2))
    for _, row in cert.iterrows():
        kk = int(row["k"])
        ref = []
        for r in range(n_cert):  # the paper's loop on the same bootstrap draws (independent code)
            idx = np.repeat(np.arange(X.shape[0]), counts[r])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref.append(NMF(kk, solver="cd", init="nndsvda", tol=1e-4, max_iter=200)
                           .fit(X[idx].astype(np.float64)).components_)
        assert row["hungarian_exact"] == pytest.approx(instability(np.stack(ref))["hungarian"], abs=2e-3)
        comp = model.replicates_[kk][:n_cert]
        assert row["hungarian_compressed_subset"] == pytest.approx(instability(comp)["hungarian"], abs=1e-9)
        assert row["n_certified"] == n_cert
    table = model.instability_.set_index("k")
    assert np.isnan(table["hungarian_exact"]).sum() == len(ks) - len(cert)
    exact_argmin = int(cert["k"].iloc[int(np.argmin(cert["hungarian_exact"]))])
    comp_argmin = int(cert["k"].iloc[int(np.argmin(cert["hungarian_compressed_subset"]))])
    assert model.certified_agrees_ == (exact_argmin == comp_argmin)


def test_certification_in_blocks_equals_one_batch_with_grow():
    """Grown certification refits (warm starts sliced per block) are the same fits in blocks of 2
    as in one batch of 5."""
    from osnmf.factorize.choose_k.certify import certify_sweep
    from osnmf.factorize.nmf.operators import sketch_matrix
    from osnmf.factorize.sweep.params import plan_blocks
    from osnmf.factorize.sweep.run import run_sweep

    X = _data()
    ks, R = [2, 3, 4, 5], 12
    params = SweepParams(solver="compressed", sketch={"rank": 6}, random_state=1)  # grow="only"
    done = run_sweep(X, plan_blocks(ks, R, R), params, sketch=sketch_matrix(X, rank=6, random_state=1))
    sweep = {b.k: r for b, r in done.items()}  # with grow the blocks keep their coefficients
    one, _ = certify_sweep(X, 3, ks, params, sweep.__getitem__, 5, R)
    blocks, _ = certify_sweep(X, 3, ks, params, sweep.__getitem__, 5, R, block_size=2)
    np.testing.assert_allclose(blocks.to_numpy(float), one.to_numpy(float), atol=1e-6)
    assert one["k"].tolist() == [2, 3, 4] and (one["n_certified"] == 5).all()


def test_certification_skipped_when_it_would_redo_the_sweep():
    X = _data()
    model = StaNMF(k_range=[2, 3, 4], n_replicates=4, recipe="fast", solver="compressed", sketch={"rank": 6},
                   certify=10, random_state=0).fit(X)
    assert model.solver_ == "compressed" and model.certificate_ is None
    assert "hungarian_exact" not in model.instability_


def test_certification_disagreement_is_an_osnmf_warning(monkeypatch):
    """`osnmf run` shows OsnmfWarning lines (other warnings only with --verbose): the certification
    warning must be one, or a user never sees it (the paper-size run's log had none)."""
    from osnmf.errors import OsnmfWarning
    from osnmf.factorize.choose_k import certify as certify_module

    real = certify_module.certify_sweep

    def disagreeing(*args, **kwargs):
        table, _ = real(*args, **kwargs)
        return table, False

    monkeypatch.setattr(certify_module, "certify_sweep", disagreeing)
    expected = r"certification: on 3 replicates the exact refits .* \(selected from all 8: K = \d+\)"
    with pytest.warns(OsnmfWarning, match=expected):
        StaNMF(k_range=[2, 3, 4, 5, 6], n_replicates=8, recipe="fast", solver="compressed", sketch={"rank": 6},
               grow=False, certify=3, random_state=2).fit(_data())
