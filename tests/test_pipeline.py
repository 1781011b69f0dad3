"""End to end: the pipeline on a small synthetic atlas, its files, caching/resume, and bad configs."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from osnmf.config import RunConfig, load_config
from osnmf.errors import ConfigError
from osnmf.pipeline import Pipeline

TINY = dict(k_min=3, k_max=5, replicates=4, phantom_genes=60, phantom_patterns=4, phantom_noise=0.1,
            pca_replicates=3, moran_replicates=3, n_random_models=20, link_sizes=[1, 2], quiet=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = Pipeline(RunConfig(out=str(out), **TINY)).run()
    return out, summary


def test_files_written(run_dir):
    out, summary = run_dir
    for name in ("summary.json", "stability.csv", "patterns.npz", "coefficients.csv", "markers.csv", "links.csv",
                 "ontology.json", "ontology.nwk", "results.h5ad", "report.html", "region_correlations.csv"):
        assert (out / name).is_file(), name
    k = summary["k_selected"]
    assert 3 <= k <= 5
    assert len(list((out / "patterns").glob("PP*.nrrd"))) == k
    assert list((out / "networks").glob("*.graphml"))
    assert (out / "figures" / "instability.png").is_file() and (out / "figures" / "instability.svg").is_file()
    assert not list(out.rglob("*.part"))  # no half-written file left behind


def test_outputs_agree_with_each_other(run_dir):
    import anndata

    out, summary = run_dir
    k = summary["k_selected"]
    with np.load(out / "patterns.npz", allow_pickle=False) as npz:
        patterns, coefficients, genes = npz["patterns"], npz["coefficients"], npz["genes"]
    assert patterns.shape == (k, 67, 41, 58) and patterns.dtype == np.float32
    from osnmf import Atlas

    assert not patterns[:, ~Atlas.default().brain_mask].any()  # zero outside the brain
    stab = pd.read_csv(out / "stability.csv")
    assert list(stab["k"]) == [3, 4, 5]
    assert {"hungarian", "hungarian_sd", "amari", "amari_sd", "pca_hungarian"} <= set(stab.columns)
    assert stab.loc[stab["hungarian"].idxmin(), "k"] == k  # K selection = argmin of the curve
    coef = pd.read_csv(out / "coefficients.csv")
    np.testing.assert_allclose(coef[[f"PP{i + 1}" for i in range(k)]].to_numpy(), coefficients, rtol=1e-6)
    assert list(coef["gene_symbol"]) == genes.tolist()
    adata = anndata.read_h5ad(out / "results.h5ad")
    assert adata.obsm["patterns"].shape == (adata.n_obs, k)
    assert adata.varm["coefficients"].shape == (adata.n_vars, k)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["k_selected"] == k and saved["parameters"]["replicates"] == 4
    assert saved["planted_truth"]["planted_k"] == 4


def test_rerun_reuses_every_stage(run_dir):
    out, _ = run_dir
    summary = Pipeline(RunConfig(out=str(out), **TINY)).run()
    assert all(summary["reused_from_cache"][s] for s in ("impute", "sweep", "baselines", "metrics", "linking"))


def test_changed_parameter_recomputes_downstream_only(run_dir):
    out, _ = run_dir
    changed = {**TINY, "n_random_models": 10}
    summary = Pipeline(RunConfig(out=str(out), **changed)).run()
    cached = summary["reused_from_cache"]
    assert cached["impute"] and cached["sweep"] and cached["baselines"] and not cached["linking"]


def test_report_opens_in_browser(chromium, run_dir):
    from browser_check import check_report

    out, _ = run_dir
    result = check_report(out / "report.html")
    assert result["ok"], result["problems"]


def test_config_validation(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('k_min = 8\nreplicate = 10\n')
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(bad)
    bad.write_text('k_min = "eight"\n')
    with pytest.raises(ConfigError, match="k_min"):
        load_config(bad)
    with pytest.raises(ConfigError):
        RunConfig(k_min=10, k_max=5)
    good = tmp_path / "good.toml"
    good.write_text('[run]\nk_min = 4\nk_max = 6\ntol = 1\n')
    cfg = load_config(good)
    assert cfg.k_range == range(4, 7) and cfg.tol == 1.0


def test_cli_bad_config_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    cmd = [sys.executable, "-m", "osnmf.cli", "run", "--config", str(bad), "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown key" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def _real_folder(shared_dir, folder, copies):
    """An ABA grid folder of the two real Allen zips, each listed ``copies`` times under new ids."""
    import shutil

    (folder / "energy").mkdir(parents=True)
    rows = ["section_data_set_id,gene_symbol,plane"]
    for i in range(copies):
        for source, gene in (("74272479", "Nrp1"), ("71717084", "Pdyn")):
            new_id = f"{source[:-1]}{i}"
            shutil.copy(shared_dir / "data/aba/energy" / f"{source}.zip", folder / "energy" / f"{new_id}.zip")
            rows.append(f"{new_id},{gene},coronal")
    (folder / "experiments.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_run_on_real_allen_folder(shared_dir, tmp_path):
    data = _real_folder(shared_dir, tmp_path / "aba", copies=4)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "osnmf.cli", "run", "--data", str(data), "--out", str(out), "--k-min", "2",
           "--k-max", "3", "--replicates", "3", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["n_experiments"] == 8 and summary["data"]["n_genes"] == 2
    # two distinct real images (each repeated): two patterns are exactly stable
    assert summary["k_selected"] == 2
    assert summary["instability_hungarian"] < 0.01
    with np.load(out / "patterns.npz", allow_pickle=False) as npz:
        assert set(npz["genes"].tolist()) == {"Nrp1", "Pdyn"}


def test_too_few_experiments_is_a_one_line_error(shared_dir, tmp_path):
    data = _real_folder(shared_dir, tmp_path / "aba", copies=1)
    cmd = [sys.executable, "-m", "osnmf.cli", "run", "--data", str(data), "--out", str(tmp_path / "o"),
           "--k-min", "2", "--k-max", "4", "--replicates", "3", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "too few" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()  # refused before writing
    with pytest.raises(ConfigError, match="trivially stable"):
        RunConfig(k_min=1, k_max=3)


def test_scheduler_local_gives_the_same_curve(run_dir, tmp_path):
    out, summary = run_dir
    dist = Pipeline(RunConfig(out=str(tmp_path / "dist"), scheduler="local", **TINY)).run()
    assert dist["k_selected"] == summary["k_selected"]
    local = pd.read_csv(out / "stability.csv")
    remote = pd.read_csv(tmp_path / "dist" / "stability.csv")
    np.testing.assert_allclose(remote["hungarian"], local["hungarian"], rtol=1e-6, atol=1e-9)
