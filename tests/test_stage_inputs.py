"""Stages declare the configuration they read: the cache key is made of the declared fields, and
reading an undeclared one fails (so no field can be left out of a key again)."""

import numpy as np
import pytest

from osnmf.config import RunConfig
from osnmf.pipeline import STAGE_INPUTS, Pipeline
from osnmf.run.stageinputs import StageInputs, UndeclaredRead

TINY = dict(k_min=3, k_max=4, n_replicates=3, phantom_genes=40, phantom_patterns=3, phantom_noise=0.1,
            moran_replicates=2, n_random_models=5, link_sizes=[1], quiet=True)


def test_a_view_reads_declared_fields_only():
    cfg = RunConfig(**TINY)
    view = StageInputs(key=("k_min", "grow"), runtime=("n_jobs",)).view("demo", cfg, {"grow": "only"})
    assert (view.k_min, view.n_jobs, view.grow) == (3, cfg.n_jobs, "only")  # resolved values win
    assert view.key_values() == {"k_min": 3, "grow": "only"}  # runtime fields are not keyed
    with pytest.raises(UndeclaredRead, match=r"stage 'demo' reads config.moran_replicates without declaring it"):
        view.moran_replicates  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_field"):
        StageInputs(key=("no_such_field",)).view("demo", cfg)


def test_every_keyed_field_is_one_the_config_has():
    """The declarations name RunConfig fields or the recipe's settings, nothing else."""
    cfg = RunConfig(**TINY)
    for stage, inputs in STAGE_INPUTS.items():
        inputs.view(stage, cfg, cfg.settings())  # raises on an unknown name


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    pipe = Pipeline(RunConfig(out=str(out), **TINY))
    pipe.run()
    return out, pipe.state


def test_moran_replicates_change_recomputes_the_stages_that_read_it(first_run):
    """moran_replicates is read by the sweep (replicates kept for Moran's I) and the baselines (PCA
    replicates for it): a rerun with a new value recomputes both (and what reads them), not the
    imputation; the new arrays have the new number of replicates."""
    out, state = first_run
    assert state.sweep.replicates_at_k.shape[0] == 2 and state.baselines.pca_replicates.shape[0] == 2
    again = Pipeline(RunConfig(out=str(out), **{**TINY, "moran_replicates": 3}))
    again.run()
    cached = again.state.cached
    assert cached["impute"] and not cached["sweep"] and not cached["baselines"] and not cached["metrics"]
    assert again.state.sweep.replicates_at_k.shape[0] == 3 and again.state.baselines.pca_replicates.shape[0] == 3
    assert again.state.metrics.moran_boot_nmf.shape[0] == 3
    np.testing.assert_array_equal(again.state.sweep.components, state.sweep.components)  # same fit, resumed


def test_reading_an_undeclared_field_fails_loudly(first_run, monkeypatch, tmp_path):
    """A stage whose declaration lacks a field it reads stops with UndeclaredRead, before any result
    is cached under a key that misses the field."""
    sweep = STAGE_INPUTS["sweep"]
    monkeypatch.setitem(STAGE_INPUTS, "sweep", StageInputs(
        key=tuple(f for f in sweep.key if f != "moran_replicates"), runtime=sweep.runtime))
    with pytest.raises(UndeclaredRead, match="stage 'sweep' reads config.moran_replicates"):
        Pipeline(RunConfig(out=str(tmp_path / "run"), **TINY)).run()
    assert not list((tmp_path / "run" / ".cache").glob("sweep*"))
