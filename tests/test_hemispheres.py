"""Hemispheres: midline, coverage, mirroring — on the real Allen grids and on planted truth."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from osnmf import cli
from osnmf.datasets.phantom import make_phantom
from osnmf.errors import ConfigError
from osnmf.expression import SpatialExpression
from osnmf.io.aba_folder import read_aba_folder
from osnmf.preprocess import impute_knn
from osnmf.preprocess.hemispheres import (
    check_planes,
    drop_one_sided,
    find_midline,
    hemisphere_coverage,
    mirror_check,
    mirror_fill,
    mirror_stage,
    symmetry_r,
)


@pytest.fixture(scope="module")
def real(shared_dir):
    return read_aba_folder(shared_dir / "data" / "aba_real")


def _agreement(ann, c):
    """Brute force: share of brain voxels whose label equals the label at (ap, dv, c - ml)."""
    brain = ann > 0
    same = total = 0
    for z in range(ann.shape[2]):
        src = c - z
        if not 0 <= src < ann.shape[2]:
            continue
        either = brain[:, :, z] | brain[:, :, src]
        same += int((ann[:, :, z] == ann[:, :, src])[either].sum())
        total += int(either.sum())
    return same / total


def test_midline_of_the_real_grid(atlas):
    assert atlas.shape == (67, 41, 58)
    c = find_midline(atlas.annotation)
    assert c == 57  # midline between ML voxels 28 and 29: z <-> 57 - z
    scores = {cc: _agreement(atlas.annotation, cc) for cc in range(53, 62)}
    assert max(scores, key=scores.get) == c and scores[c] > 0.85
    ml = np.flatnonzero(atlas.brain_mask.any(axis=(0, 1)))
    assert ml[0] + ml[-1] == c  # the brain's left and right edges are mirror images


def test_coverage_of_real_experiments_matches_their_plane(real, atlas, shared_dir):
    c = find_midline(atlas.annotation)
    cov = hemisphere_coverage(real.volumes, atlas.brain_mask, c, real.planes)
    table = pd.read_csv(shared_dir / "data" / "aba_real" / "experiments.csv", dtype=str)
    expected = np.where(table["plane"] == "sagittal", "left", "bilateral")  # sagittal data lie at ML < 29
    np.testing.assert_array_equal(cov["hemisphere"].to_numpy(), expected)
    np.testing.assert_array_equal(cov["plane"].to_numpy(), table["plane"].to_numpy())
    brain = atlas.brain_mask
    for e in range(len(real)):  # brute-force shares
        measured = ~np.isnan(real.volumes[e]) & brain
        assert cov["left_coverage"][e] == pytest.approx(measured[:, :, :29].sum() / brain[:, :, :29].sum())
        assert cov["right_coverage"][e] == pytest.approx(measured[:, :, 29:].sum() / brain[:, :, 29:].sum())


def test_mirroring_real_sagittal_experiments(real, atlas):
    brain = atlas.brain_mask
    cov = hemisphere_coverage(real.volumes, brain, 57)
    sag = (real.planes == "sagittal")
    filled, mirrored = mirror_fill(real.volumes, sag, brain, 57)
    flipped = real.volumes[..., ::-1]  # c = 57 = ML - 1: the mirror is a plain flip
    assert mirrored[~sag].sum() == 0 and mirrored[sag].sum() > 60_000
    np.testing.assert_array_equal(filled[mirrored], flipped[mirrored])
    np.testing.assert_array_equal(filled[~mirrored], real.volumes[~mirrored])  # measured values kept
    for e in np.flatnonzero(sag):
        # symmetric wherever both sides have data and one of them was mirrored
        both = brain & ~np.isnan(filled[e]) & ~np.isnan(filled[e][..., ::-1]) & (
            mirrored[e] | mirrored[e][..., ::-1])
        np.testing.assert_array_equal(filled[e][both], filled[e][..., ::-1][both])
        right = brain.copy()
        right[:, :, :29] = False
        assert (~np.isnan(filled[e]) & right).sum() > 0.7 * right.sum()
    # sagittal vs coronal of the same gene: the mirrored (right) side correlates as the measured (left) side
    for gene in ("Gabra1", "Gabra2", "Gabrb3"):
        cor, sg = (int(np.flatnonzero((real.genes == gene) & (real.planes == p))[0]) for p in ("coronal", "sagittal"))
        rs = {}
        for side, sl in (("left", slice(0, 29)), ("right", slice(29, 58))):
            ok = np.zeros_like(brain)
            ok[:, :, sl] = brain[:, :, sl]
            if side == "right":
                ok &= mirrored[sg]
            ok &= ~np.isnan(filled[cor]) & ~np.isnan(filled[sg])
            rs[side] = np.corrcoef(filled[cor][ok], filled[sg][ok])[0, 1]
        assert abs(rs["right"] - rs["left"]) < 0.1, (gene, rs)
        if gene != "Gabra2":  # Gabra2's two experiments agree poorly on either side (r ≈ 0.4)
            assert rs["right"] > 0.65, (gene, rs)
    # the mirror check: on the bilateral coronal grids a mirror voxel predicts the measured one well
    check = mirror_check(real.volumes, (cov["hemisphere"] == "bilateral").to_numpy(), brain, 57, 500)
    assert check["n_points"] == 500 * 5 and check["pearson_r"] > 0.9


def _symmetric_phantom(n_one_sided=10):
    ph = make_phantom(n_genes=30, n_patterns=4, noise=0.0, missing=0.0, background=0.0, seed=3)
    atlas = ph.atlas
    brain = atlas.brain_mask
    vol = np.zeros((30, *atlas.shape), np.float32)
    vol[:, brain] = ph.clean
    both = brain & brain[..., ::-1]
    truth = np.where(both, 0.5 * (vol + vol[..., ::-1]), 0.0).astype(np.float32)  # a symmetric truth
    data = truth.copy()
    data[:, ~brain] = 0
    data[:n_one_sided, :, :, 29:] = np.nan  # planted left-only experiments
    data[n_one_sided:2 * n_one_sided, :, :, :29] = np.nan  # planted right-only experiments
    return SpatialExpression(data, np.array([f"G{i}" for i in range(30)]), np.arange(30).astype(str), atlas), truth


def test_mirrored_values_equal_planted_symmetric_truth():
    expr, truth = _symmetric_phantom()
    brain = expr.atlas.brain_mask
    volumes, mirrored, arrays = mirror_stage(expr, "auto")
    labels = np.array(["bilateral", "left", "right", "none"])[arrays["hemi_label"]]
    assert (labels[:10] == "left").all() and (labels[10:20] == "right").all() and (labels[20:] == "bilateral").all()
    assert mirrored[:20].any(axis=(1, 2, 3)).all() and not mirrored[20:].any()
    np.testing.assert_allclose(volumes[mirrored], truth[mirrored], rtol=1e-6, atol=1e-7)
    # after mirroring + kNN the one-sided experiments are symmetric; kNN alone invents a lopsided half
    support = brain
    filled = impute_knn(volumes, support, 6)
    hidden = np.isnan(expr.volumes) & brain
    knn_only = impute_knn(expr.volumes, support, 6)
    err_mirror = np.abs(filled[hidden] - truth[hidden]).mean()
    err_knn = np.abs(knn_only[hidden] - truth[hidden]).mean()
    assert err_mirror < 0.1 * err_knn
    sym = symmetry_r(np.nan_to_num(filled[:20]), brain, 57)
    sym_knn = symmetry_r(np.nan_to_num(knn_only[:20]), brain, 57)
    assert sym.min() > 0.99 and sym_knn.max() < 0.9


def test_symmetry_r_against_brute_force(atlas):
    rng = np.random.default_rng(0)
    vol = rng.random((2, *atlas.shape))
    mask = atlas.brain_mask
    both = mask & mask[..., ::-1]
    for k in range(2):
        ref = np.corrcoef(vol[k][both], vol[k][..., ::-1][both])[0, 1]
        assert symmetry_r(vol, mask, 57)[k] == pytest.approx(ref)


def test_drop_and_mixed_planes(real):
    with pytest.raises(ConfigError, match="5 coronal and 3 sagittal"):
        check_planes(real, "off")
    check_planes(real, "auto")
    kept, message = drop_one_sided(real)
    assert len(kept) == 5 and (kept.planes == "coronal").all()
    assert "left out 3" in message and "\n" not in message


def test_cli_mixed_planes_off_exit_2_nothing_written(shared_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["osnmf", "run", "--data", str(shared_dir / "data" / "aba_real"),
                                      "--out", str(out), "--hemispheres", "off", "--quiet"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--hemispheres" in err[0] and "sagittal" in err[0]
    assert not out.exists()


def test_run_on_real_coronal_and_sagittal_grids(shared_dir, tmp_path, real, atlas):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "osnmf.cli", "run", "--data", str(shared_dir / "data" / "aba_real"), "--out", str(out),
           "--k-min", "2", "--k-max", "3", "--n-replicates", "3", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    h = json.loads((out / "summary.json").read_text())["hemispheres"]
    brain = atlas.brain_mask
    sag = real.planes == "sagittal"
    fillable = np.isnan(real.volumes[sag]) & brain & ~np.isnan(real.volumes[sag][..., ::-1])
    assert (h["bilateral"], h["left_only"], h["right_only"]) == (5, 3, 0)
    assert h["mirrored_experiments"] == 3 and h["mirrored_voxels"] == int(fillable.sum())
    assert h["mirror_check"]["pearson_r"] > 0.9
    assert min(h["pattern_symmetry_r"]) > 0.85
    report = (out / "report.html").read_text()
    assert f"{h['mirrored_voxels']} missing voxels of 3 one-hemisphere" in report



def test_imputation_keeps_the_planes(real, shared_dir):
    # the plane of each experiment, as experiments.csv states it, survives kNN imputation
    table = pd.read_csv(shared_dir / "data" / "aba_real" / "experiments.csv").astype({"section_data_set_id": str})
    sub = real.subset(slice(0, 8, 3))
    out = impute_knn(sub, real.atlas.brain_mask)
    expected = table.set_index("section_data_set_id").loc[list(sub.experiment_ids), "plane"].to_numpy()
    assert list(out.planes) == list(expected) and {"coronal", "sagittal"} <= set(real.planes)
