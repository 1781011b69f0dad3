"""The recipes (osnmf.recipes): "paper" is the default and is the seed paper's method.

* Every replicate of a default ``StaNMF`` is scikit-learn's ``NMF(solver="cd", init="nndsvda")``
  of its bootstrap sample (the draw rebuilt from its documented definition), and γ(K) is the
  same whatever K range the sweep starts from (no chaining between K).
* The K of the paper's recipe is the γ argmin; the fast recipe's rule warns when it differs.
* Bad values and a paper recipe contradicted by an explicit setting are one-line errors (exit 2).
* A run's summary states the recipe and every setting it expanded to; its headline Moran's I and
  reconstruction r are the paper's statistics, checked against brute-force references.
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import NMF

import osnmf
from osnmf import cli
from osnmf.config import RunConfig, load_config
from osnmf.errors import ConfigError, OsnmfWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bootstrap_reference import documented_counts, resampled_rows  # noqa: E402


def _data(seed=0, n=40, m=120, k=4):
    rng = np.random.default_rng(seed)
    A = rng.gamma(1.0, size=(n, k))
    D = rng.gamma(0.5, size=(k, m)) * (rng.random((k, m)) < 0.5)
    return (A @ D + 0.05 * rng.random((n, m))).astype(np.float32)


def _matched_r(P, Q):
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    C = Pn @ Qn.T
    rows, cols = linear_sum_assignment(C, maximize=True)
    return C[rows, cols]


def test_default_is_the_paper_recipe_and_each_replicate_is_scikit_learns_fit():
    X = _data()
    model = osnmf.StaNMF(k_range=[3, 4, 5], n_replicates=4, random_state=7).fit(X)
    assert model.recipe_settings_ == {"grow": False, "solver": "exact", "k_rule": "gamma_argmin"}
    assert model.solver_ == "exact"
    counts = documented_counts(X.shape[0], 4, 7)
    for k in (3, 5):
        reps = np.asarray(model.replicates_[k])
        for r in range(4):
            ref = NMF(k, init="nndsvda", solver="cd", max_iter=200, tol=1e-4).fit(X[resampled_rows(counts[r])])
            assert _matched_r(reps[r], ref.components_).min() > 0.999
    # K = the γ argmin (ties to the smaller K)
    gamma = model.instability_.set_index("k")["hungarian"]
    assert model.k_ == int(gamma.idxmin())


def test_paper_gamma_does_not_depend_on_k_min():
    X = _data(seed=1)
    a = osnmf.StaNMF(k_range=range(3, 7), n_replicates=5, random_state=0).fit(X)
    b = osnmf.StaNMF(k_range=range(5, 7), n_replicates=5, random_state=0).fit(X)
    ga, gb = a.instability_.set_index("k"), b.instability_.set_index("k")
    for k in (5, 6):
        assert ga.loc[k, "hungarian"] == gb.loc[k, "hungarian"]
        np.testing.assert_array_equal(np.asarray(a.replicates_[k]), np.asarray(b.replicates_[k]))


def test_fast_recipe_expands_and_explicit_settings_override_it():
    model = osnmf.StaNMF(recipe="fast", solver="exact", k_range=[2, 3], n_replicates=2)
    model._recipe()
    assert not hasattr(model, "recipe_overrides_")  # checking the settings sets no fitted attribute
    model.fit(_data())
    assert model._recipe() == {"grow": "only", "solver": "exact", "k_rule": "median3_near"}
    assert model.recipe_overrides_ == {"solver": "exact"}


@pytest.mark.parametrize("kwargs, words", [
    ({"recipe": "foo"}, "recipe='foo': must be one of paper, fast"),
    ({"grow": "only"}, "grow='only' contradicts recipe='paper'"),
    ({"solver": "compressed"}, "solver='compressed' contradicts recipe='paper'"),
    ({"k_rule": "median3_near"}, "k_rule='median3_near' contradicts recipe='paper'"),
    ({"recipe": "fast", "k_rule": "bogus"}, "k_rule='bogus': must be one of"),
])
def test_bad_recipe_settings_are_one_line_errors(kwargs, words):
    with pytest.raises(ConfigError) as err:
        osnmf.StaNMF(k_range=[2, 3], n_replicates=2, **kwargs).fit(_data())
    assert words in str(err.value) and "\n" not in str(err.value)


def test_chosen_k_warns_when_the_rule_is_not_the_gamma_argmin():
    from osnmf.factorize.stanmf import _chosen_k

    inst = pd.DataFrame({"k": [3, 4, 5], "hungarian": [0.05, 0.01, 0.02]})
    expected = "K = 5 chosen by the rule median3_near; the smallest instability γ is at K = 4"
    with pytest.warns(OsnmfWarning, match=expected):
        assert _chosen_k({"median3_near": 5, "gamma_argmin": 4}, inst, "median3_near") == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _chosen_k({"median3_near": 5, "gamma_argmin": 4}, inst, "gamma_argmin") == 4


def test_run_config_recipe_settings_and_toml(tmp_path):
    cfg = RunConfig(n_replicates=12)
    assert cfg.settings() == {"grow": False, "solver": "exact", "k_rule": "gamma_argmin", "pca_replicates": 12,
                              "moran_headline": "strongest", "recon_headline": "measured"}
    fast = RunConfig(recipe="fast", grow="false")
    assert fast.settings()["grow"] is False and fast.recipe_overrides() == {"grow": False}
    assert fast.settings()["pca_replicates"] == 20
    path = tmp_path / "run.toml"
    path.write_text('[run]\nsolver = "compressed"\n')
    with pytest.raises(ConfigError, match=r"run\.toml: solver='compressed' contradicts recipe='paper'"):
        load_config(path)
    path.write_text('[run]\nrecipe = "fast"\nsolver = "compressed"\n')
    assert load_config(path).settings()["solver"] == "compressed"


@pytest.mark.parametrize("args", [["--recipe", "foo"], ["--recipe", "paper", "--grow", "only"],
                                  ["--solver", "compressed"], ["--recipe", "fast", "--k-rule", "nope"]])
def test_cli_bad_recipe_exits_2_with_one_line(tmp_path, args, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["osnmf", "run", "--out", str(out), *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    stdout, err = capsys.readouterr()
    assert exc.value.code == 2 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert not out.exists()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe_run") / "run"
    cfg = RunConfig(out=str(out), k_min=3, k_max=5, n_replicates=4, phantom_genes=40, phantom_patterns=4,
                    moran_replicates=4, n_random_models=20, link_sizes=[1, 2], quiet=True)
    from osnmf.pipeline import Pipeline

    pipe = Pipeline(cfg)
    summary = pipe.run()
    return pipe, summary


def test_summary_states_the_recipe_and_paper_headlines(small_run):
    pipe, summary = small_run
    on_disk = json.loads((pipe.out / "summary.json").read_text())
    assert on_disk["recipe"] == {"name": "paper", "settings": {
        "grow": False, "solver": "exact", "k_rule": "gamma_argmin", "pca_replicates": 4,
        "moran_headline": "strongest", "recon_headline": "measured"}, "overrides": {}}
    assert on_disk["k_selected"] == on_disk["k_gamma_argmin"]
    mt = pipe.state.metrics
    # headline Moran's I: the strongest-pattern binary maps' values
    assert on_disk["moran_i_stanmf_mean"] == pytest.approx(float(np.mean(mt.moran_strongest_boot_nmf)))
    assert on_disk["moran_i_headline"].startswith("Moran's I of each pattern's strongest-pattern binary map")
    # headline reconstruction: Pearson r over each gene's measured voxels, brute force
    imp, sw, expr = pipe.state.impute, pipe.state.sweep, pipe.state.expr
    recon = sw.coefficients.astype(np.float64) @ sw.components
    r = []
    for row, i in enumerate(imp.kept):
        measured = expr.volumes[i][imp.support].astype(np.float64)
        ok = np.isfinite(measured)
        r.append(np.corrcoef(np.maximum(measured[ok], 0), recon[row, ok])[0, 1])
    np.testing.assert_allclose(mt.recon_nmf_measured, r, atol=1e-5)
    assert on_disk["reconstruction_stanmf_mean"] == pytest.approx(float(np.mean(r)), abs=1e-5)
    # the paper's Fig. 1E count: patterns with a non-zero coefficient, per gene (brute force)
    nonzero = (sw.coefficients != 0).sum(axis=1)
    assert on_disk["patterns_per_gene_nonzero"]["mean"] == pytest.approx(float(nonzero.mean()))
    assert on_disk["patterns_per_gene_nonzero"]["share_all"] == pytest.approx(float((nonzero == sw.k).mean()))
    # the paper's hold-out "mean error" is the signed mean of measured − imputed
    assert abs(on_disk["holdout_mean_error"]) <= on_disk["holdout_mae"]
    html = (pipe.out / "report.html").read_text()
    assert "Recipe: paper (the seed paper&#x27;s method)" in html or "Recipe: paper (the seed paper's method)" in html


def test_fast_recipe_reports_gamma_from_a_later_chain_start():
    """The k_min check's later chain equals an independent fast sweep that starts there."""
    X = _data(seed=2, n=50, m=150, k=4)
    model = osnmf.StaNMF(recipe="fast", k_range=range(2, 7), n_replicates=6, certify=4, random_state=3).fit(X)
    check = model.k_min_check_
    start = int(check["k_min_alt"].iloc[0])
    assert start == max(3, model.k_ - 1) and check["n_replicates"].eq(4).all()
    later = osnmf.StaNMF(recipe="fast", k_range=range(start, 7), n_replicates=4, random_state=3).fit(X)
    ref = later.instability_.set_index("k")["hungarian"]
    for row in check.itertuples():
        assert row.hungarian_subset_alt_start == pytest.approx(ref.loc[row.k], abs=1e-6)
        sub = osnmf.factorize.choose_k.stability.instability(np.asarray(model.replicates_[row.k])[:4])["hungarian"]
        assert row.hungarian_subset == pytest.approx(sub, abs=1e-9)
        assert row.abs_diff == pytest.approx(abs(row.hungarian_subset - row.hungarian_subset_alt_start))
    # the paper's recipe has no chain, hence no check
    assert osnmf.StaNMF(k_range=[2, 3], n_replicates=3).fit(X).k_min_check_ is None
