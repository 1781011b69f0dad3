"""osnmf project: new experiments onto a run's patterns — planted truth, scipy NNLS, the real grids."""

import json
import sys

import anndata
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import nnls
from sklearn.decomposition import NMF

from osnmf import cli
from osnmf.datasets.phantom import make_phantom
from osnmf.errors import InputError
from osnmf.expression import to_matrix
from osnmf.io.aba_folder import read_aba_folder, write_aba_folder
from osnmf.preprocess import impute_knn
from osnmf.preprocess.hemispheres import mirror_stage
from osnmf.project import project_run

PARAMS = {"hemispheres": "auto", "impute": "knn", "n_neighbors": 6, "random_state": 0}


def _fake_run(folder, patterns_vox, support, spacing=(200.0, 200.0, 200.0)):
    """A run folder as 'osnmf run' writes it (patterns.npz + summary.json), from given patterns."""
    folder.mkdir(parents=True)
    K = patterns_vox.shape[0]
    vol = np.zeros((K, *support.shape), np.float32)
    vol[:, support] = patterns_vox
    np.savez_compressed(folder / "patterns.npz", patterns=vol, pattern_names=np.array([f"PP{i + 1}" for i in range(K)]),
                        spacing_um=np.array(spacing), support=support, coefficients=np.zeros((1, K)),
                        genes=np.array(["x"]), experiment_ids=np.array(["x"]))
    (folder / "summary.json").write_text(json.dumps({"parameters": PARAMS}))
    return folder


def test_planted_coefficients_recovered(tmp_path):
    ph = make_phantom(n_genes=24, n_patterns=4, noise=0.0, missing=0.0, background=0.0, seed=1)
    brain = ph.atlas.brain_mask
    run = _fake_run(tmp_path / "run", ph.patterns, brain)
    data = write_aba_folder(tmp_path / "new", ph.data, plane="coronal")
    summary = project_run(run, data, tmp_path / "out")
    coef = pd.read_csv(tmp_path / "out" / "coefficients.csv", dtype={"experiment_id": str})
    np.testing.assert_allclose(coef[[f"PP{i}" for i in range(1, 5)]].to_numpy(), ph.coefficients, rtol=1e-3,
                               atol=1e-4 * ph.coefficients.max())
    proj = pd.read_csv(tmp_path / "out" / "projection.csv")
    truth_imp = ph.coefficients / ph.coefficients.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(proj["assigned_pattern"], [f"PP{i + 1}" for i in truth_imp.argmax(axis=1)])
    assert proj["reconstruction_r"].min() > 0.999 and summary["n_projected"] == 24


def test_real_grids_end_to_end_against_scipy(shared_dir, tmp_path, monkeypatch, capsys):
    real = read_aba_folder(shared_dir / "data" / "aba_real")
    brain = real.atlas.brain_mask
    coronal = real.planes == "coronal"
    # patterns learned on the coronal experiments (scikit-learn NMF on the kNN-imputed brain voxels)
    X_cor = np.nan_to_num(to_matrix(impute_knn(real.volumes[coronal], brain, 6), brain))
    D = NMF(2, init="nndsvda", max_iter=500, random_state=0).fit(X_cor).components_
    run = _fake_run(tmp_path / "run", D, brain)
    out = tmp_path / "proj"
    monkeypatch.setattr(sys, "argv", ["osnmf", "project", str(run), "--data", str(shared_dir / "data" / "aba_real"),
                                      "--out", str(out), "--quiet"])
    try:
        cli.main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    assert "8 experiments projected onto 2 patterns" in capsys.readouterr().out
    # reference: the same preparation (mirror, kNN) then scipy's NNLS row by row
    volumes, mirrored, _ = mirror_stage(real, "auto")
    X = np.nan_to_num(to_matrix(impute_knn(volumes, brain, 6), brain))
    ref = np.stack([nnls(D.T, x.astype(float))[0] for x in X])
    coef = pd.read_csv(out / "coefficients.csv", dtype={"experiment_id": str})
    assert list(coef["experiment_id"]) == list(real.experiment_ids)
    np.testing.assert_allclose(coef[["PP1", "PP2"]].to_numpy(), ref, rtol=1e-4, atol=1e-6 * ref.max())
    proj = pd.read_csv(out / "projection.csv", dtype={"experiment_id": str})
    measured = to_matrix(real.volumes, brain)
    for i in range(len(real)):  # reconstruction r over measured voxels, recomputed
        ok = ~np.isnan(measured[i])
        r = np.corrcoef(measured[i][ok], (ref[i] @ D)[ok])[0, 1]
        assert proj["reconstruction_r"][i] == pytest.approx(r, abs=1e-4)
    assert (proj.loc[~coronal, "hemisphere"] == "left").all() and (proj.loc[~coronal, "mirrored_voxels"] > 0).all()
    # a sagittal experiment lands on the pattern of its gene's coronal experiment
    for gene in ("Gabra1", "Gabra2", "Gabrb3"):
        assigned = proj.loc[proj["gene_symbol"] == gene, "assigned_pattern"]
        assert assigned.nunique() == 1, proj
    adata = anndata.read_h5ad(out / "results.h5ad")
    assert adata.shape == (int(brain.sum()), 8)
    np.testing.assert_allclose(adata.varm["coefficients"], ref, rtol=1e-4, atol=1e-6 * ref.max())
    assert "Projection onto the run" in (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hemispheres"]["left_only"] == 3 and summary["hemispheres"]["mirrored_experiments"] == 3


def test_bad_inputs_write_nothing(shared_dir, tmp_path):
    brain = np.zeros((67, 41, 58), bool)
    brain[10:20, 10:20, 10:20] = True
    run = _fake_run(tmp_path / "run", np.ones((2, int(brain.sum()))), brain, spacing=(100.0, 100.0, 100.0))
    with pytest.raises(InputError, match="spacing"):
        project_run(run, shared_dir / "data" / "aba_real", tmp_path / "out")
    with pytest.raises(InputError, match="not found"):
        project_run(tmp_path / "nothing", shared_dir / "data" / "aba_real", tmp_path / "out")
    small = np.zeros((60, 41, 58), bool)
    small[10:20, 10:20, 10:20] = True
    run2 = _fake_run(tmp_path / "run2", np.ones((2, int(small.sum()))), small)
    with pytest.raises(InputError, match=r"\(60, 41, 58\)"):
        project_run(run2, shared_dir / "data" / "aba_real", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_runs_settings_are_read_not_assumed(tmp_path):
    """Project prepares the data with the run's own settings: a summary.json without one of them is
    one line naming it (no default stands in for it), as is patterns.npz without the support."""
    brain = np.zeros((4, 3, 5), bool)
    brain[1:3, 1:, 1:4] = True
    run = _fake_run(tmp_path / "run", np.ones((2, int(brain.sum()))), brain)
    (run / "summary.json").write_text(json.dumps({"parameters": {"hemispheres": "auto", "impute": "knn"}}))
    with pytest.raises(InputError, match="lacks the run's setting.s. n_neighbors, random_state"):
        project_run(run, tmp_path / "unused", tmp_path / "out")
    with np.load(run / "patterns.npz") as z:
        np.savez(run / "patterns.npz", **{k: z[k] for k in z.files if k != "support"})
    with pytest.raises(InputError, match="lacks array.s. support"):
        project_run(run, tmp_path / "unused", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, words", [
    ("nan", ["pattern PP2 has 1 NaN or infinite values"]),
    ("negative", ["pattern PP2 has negative values (min -0.5)", "non-negative"]),
    ("zero", ["pattern PP2 is zero on every support voxel"]),
])
def test_patterns_no_run_writes_are_refused(damage, words, tmp_path, monkeypatch, capsys):
    """NaN, negative or all-zero patterns: one line naming the file and the pattern, exit 2, no output."""
    ph = make_phantom(n_genes=6, n_patterns=3, noise=0.0, missing=0.0, background=0.0, seed=2)
    patterns = ph.patterns.astype(np.float32)
    patterns[1, 5] = {"nan": np.nan, "negative": -0.5, "zero": 0.0}[damage]
    if damage == "zero":
        patterns[1] = 0.0
    run = _fake_run(tmp_path / "run", patterns, ph.atlas.brain_mask)
    data = write_aba_folder(tmp_path / "new", ph.data, plane="coronal")
    with pytest.raises(InputError) as err:
        project_run(run, data, tmp_path / "out")
    assert str(run / "patterns.npz") in str(err.value) and all(w in str(err.value) for w in words), err.value
    monkeypatch.setattr(sys, "argv", ["osnmf", "project", str(run), "--data", str(data), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err_text = capsys.readouterr().err
    assert exc.value.code == 2 and err_text.count("\n") == 1 and words[0] in err_text, err_text
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_a_run_without_support_in_patterns_npz_reads_it_from_results_h5ad(tmp_path):
    """docs/outputs.md: older runs' patterns.npz lack 'support'; it comes from results.h5ad's
    obsm['spatial'] (the support voxels), and the projection equals the one with the support given."""
    ph = make_phantom(n_genes=10, n_patterns=3, noise=0.0, missing=0.0, background=0.0, seed=3)
    support = ph.atlas.brain_mask.copy()
    support[:30] = False  # a support smaller than the brain: the fallback must not guess the brain
    patterns = ph.patterns[:, support[ph.atlas.brain_mask]]
    data = write_aba_folder(tmp_path / "new", ph.data, plane="coronal")
    full = _fake_run(tmp_path / "full", patterns, support)
    old = _fake_run(tmp_path / "old", patterns, support)
    with np.load(old / "patterns.npz") as z:
        np.savez(old / "patterns.npz", **{k: z[k] for k in z.files if k != "support"})
    adata = anndata.AnnData(X=np.zeros((int(support.sum()), 1), np.float32))
    adata.obsm["spatial"] = np.argwhere(support).astype(np.int64)
    adata.write_h5ad(old / "results.h5ad")
    project_run(full, data, tmp_path / "p_full")
    project_run(old, data, tmp_path / "p_old")
    a = pd.read_csv(tmp_path / "p_full" / "coefficients.csv")
    b = pd.read_csv(tmp_path / "p_old" / "coefficients.csv")
    pd.testing.assert_frame_equal(a, b)
    assert json.loads((tmp_path / "p_old" / "summary.json").read_text())["n_support_voxels"] == int(support.sum())
    adata.obsm["spatial"] = np.argwhere(support).astype(np.int64) + 100  # outside the grid: one line
    adata.write_h5ad(old / "results.h5ad")
    with pytest.raises(InputError, match=r"obsm\['spatial'\] must be integer voxel indices"):
        project_run(old, data, tmp_path / "p_bad")


def test_warns_when_the_run_is_synthetic_or_explains_little(shared_dir, tmp_path, monkeypatch, capsys):
    """Real experiments onto a synthetic demo's patterns: one warning line saying so, and one when
    the mean reconstruction r (recomputed from projection.csv) is more than 0.2 below the run's own;
    neither for a real-data run whose patterns explain the experiments as well as its own genes."""
    ph = make_phantom(n_genes=12, n_patterns=3, seed=0)
    run = _fake_run(tmp_path / "demo", ph.patterns, ph.atlas.brain_mask)
    (run / "summary.json").write_text(json.dumps({
        "parameters": {**PARAMS, "data": None}, "data": {"source": "synthetic atlas (make_phantom)"},
        "reconstruction_stanmf_mean": 0.98}))
    real = shared_dir / "data" / "aba_real"
    monkeypatch.setattr(sys, "argv", ["osnmf", "project", str(run), "--data", str(real), "--out",
                                      str(tmp_path / "p1")])
    try:
        cli.main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning:" in line]
    mean_r = pd.read_csv(tmp_path / "p1" / "projection.csv")["reconstruction_r"].mean()
    assert mean_r < 0.98 - 0.2
    assert len(warnings) == 2 and "synthetic atlas, not on real data" in warnings[0]
    assert f"mean reconstruction r {mean_r:.2f} is far below the run's own 0.98" in warnings[1]
    summary = json.loads((tmp_path / "p1" / "summary.json").read_text())
    assert len(summary["warnings"]) == 2
    # the same patterns as a real run whose own r is that of the projection: no warning
    (run / "summary.json").write_text(json.dumps({
        "parameters": {**PARAMS, "data": str(real)}, "data": {"source": str(real)},
        "reconstruction_stanmf_mean": float(mean_r)}))
    assert project_run(run, real, tmp_path / "p2")["warnings"] == []


def _tree(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_is_a_projection_folder_of_its_own(tmp_path, monkeypatch, capsys):
    """Issue 35 item 1: ``osnmf project R --data D --out R`` is refused (one line, exit 2) and R is
    unchanged; so are another run's folder and someone's non-empty folder. A new folder becomes a
    projection folder (its manifest, kind projection), which a later projection may reuse."""
    from osnmf.run.folder import read_marker, write_manifest

    ph = make_phantom(n_genes=12, n_patterns=3, noise=0.0, missing=0.0, background=0.0, seed=2)
    run = _fake_run(tmp_path / "run", ph.patterns, ph.atlas.brain_mask)
    write_manifest(run, {"patterns.npz": {}, "summary.json": {}})  # as 'osnmf run' marks its folder
    other = _fake_run(tmp_path / "other_run", ph.patterns, ph.atlas.brain_mask)
    write_manifest(other, {})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "coefficients.csv").write_text("my own table")
    data = write_aba_folder(tmp_path / "new", ph.data, plane="coronal")
    before = {f: _tree(f) for f in (run, other, mine)}
    expected = {
        run: f"--out {run} is the run folder being projected onto: choose a new folder for the projection",
        other: f"--out {other} is the folder of an osnmf run, not of a projection; choose a new or empty folder, "
               "or the --out of an earlier projection",
        mine: f"--out {mine} is a non-empty folder that is not an osnmf projection (no manifest.json); choose a "
              "new or empty folder, or the --out of an earlier projection",
    }
    for out, message in expected.items():
        monkeypatch.setattr(sys, "argv", ["osnmf", "project", str(run), "--data", str(data), "--out", str(out)])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        captured = capsys.readouterr()
        assert (exc.value.code, captured.out, captured.err) == (2, "", f"error: {message}\n")
    assert {f: _tree(f) for f in (run, other, mine)} == before  # nothing written, nothing overwritten
    out = tmp_path / "proj"
    project_run(run, data, out)
    marker = read_marker(out)
    assert marker["kind"] == "projection" and marker["complete"]
    assert set(marker["files"]) == {"coefficients.csv", "importance.csv", "projection.csv", "results.h5ad",
                                    "summary.json", "report.html"}
    project_run(run, data, out)  # an earlier projection's folder: accepted
    assert sorted(p.name for p in out.iterdir()) == sorted([*marker["files"], "manifest.json"])


def test_project_respects_the_runs_lock_and_an_unfinished_run(tmp_path):
    """A run folder in use by a live run, or whose last run stopped while writing its results, is
    not read (one line each); nothing is written."""
    from osnmf.errors import OsnmfError
    from osnmf.run.folder import write_manifest
    from osnmf.run.lock import RunLock

    brain = np.zeros((4, 3, 5), bool)
    brain[1:3, 1:, 1:4] = True
    run = _fake_run(tmp_path / "run", np.ones((2, int(brain.sum()))), brain)
    with RunLock(run):  # this process: alive, so the lock is not stale
        with pytest.raises(OsnmfError, match=f"^{run} is in use by another osnmf run .*wait for it to finish"):
            project_run(run, tmp_path / "unused", tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    with RunLock(busy):  # an OUT in use by another projection: refused at once, before any data is read
        with pytest.raises(OsnmfError, match=f"^{busy} is in use by another osnmf run .*wait for it to finish"):
            project_run(run, tmp_path / "unused", busy)
    write_manifest(run, {"patterns.npz": {}}, complete=False)
    with pytest.raises(InputError, match=f"^{run}: its last run stopped while writing its results"):
        project_run(run, tmp_path / "unused", tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(busy.iterdir()) == []
