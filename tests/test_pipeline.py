"""End to end: the pipeline on a small synthetic atlas, its files, caching/resume, and bad configs."""

import html
import json
import os
import re
import subprocess
import sys
from itertools import combinations, permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from osnmf.config import RunConfig, load_config
from osnmf.errors import ConfigError
from osnmf.pipeline import Pipeline
from osnmf.run.log import RunLog

TINY = dict(k_min=3, k_max=5, n_replicates=4, phantom_genes=60, phantom_patterns=4, phantom_noise=0.1,
            moran_replicates=3, n_random_models=20, link_sizes=[1, 2], quiet=True)  # PCA: the sweep's 4 replicates


STAGES = ("load", "impute", "sweep", "baselines", "metrics", "linking", "markers", "outputs", "report")
STAGE_LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<name>\w+) +(?P<seconds>\d+\.\d) s(?P<rest>.*)$")
LOGS: dict[str, str] = {}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    log_path = tmp_path_factory.mktemp("log") / "run.log"
    with open(log_path, "w") as log_file:  # the run's messages as a log file gets them (not a terminal)
        log = RunLog(console=Console(file=log_file, width=60, emoji=False, markup=False, highlight=False))
        summary = Pipeline(RunConfig(out=str(out), **{**TINY, "quiet": False}), log=log).run()
    LOGS["first"] = log_path.read_text()
    return out, summary


def _median3(stab):
    """The fast recipe's K rule recomputed from stability.csv (indexed by k): the median of the γ argmin and
    the cophenetic and dispersion argmax among the Ks whose γ is at most max(min + SE, 2 min)."""
    g = stab["hungarian"]
    near = stab[g <= max(g.min() + stab["hungarian_se"][g.idxmin()], 2 * g.min())]
    picks = [g.idxmin(), near["cophenetic"].idxmax(), near["dispersion"].idxmax()]
    return int(sorted(picks)[1])


def _stage_lines(text: str) -> dict[str, re.Match]:
    """The log's stage lines by stage; the log must have no blank line, no source path, no escape code."""
    lines = text.splitlines()
    assert lines and all(line.strip() for line in lines), text
    assert ".py:" not in text and "\x1b" not in text, text
    matches = [STAGE_LINE.match(line) for line in lines]
    stages = [m["name"] for m in matches if m]
    assert sorted(stages) == sorted(STAGES), text  # one line per stage
    return {m["name"]: m for m in matches if m}


def test_log_one_line_per_stage_with_seconds(run_dir):
    out, summary = run_dir
    text = LOGS["first"]
    lines = _stage_lines(text)
    for stage in STAGES:  # the seconds printed are the timings written to summary.json
        assert float(lines[stage]["seconds"]) == pytest.approx(summary["timings_s"][stage], abs=0.051), stage
        assert "reused from cache" not in lines[stage]["rest"]
    assert f"K = {summary['k_selected']} selected" in lines["sweep"]["rest"]
    assert text.splitlines()[-1][9:].startswith("done in ")


def test_files_written(run_dir):
    out, summary = run_dir
    for name in ("summary.json", "stability.csv", "patterns.npz", "coefficients.csv", "markers.csv", "links.csv",
                 "ontology.json", "ontology.nwk", "results.h5ad", "report.html", "region_correlations.csv"):
        assert (out / name).is_file(), name
    k = summary["k_selected"]
    assert 3 <= k <= 5
    assert k == summary["planted_truth"]["planted_k"] == TINY["phantom_patterns"]  # 4: strictly inside 3..5
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
    # K selection = the default rule, median3: median of argmin γ, argmax cophenetic, argmax dispersion
    assert _median3(stab.set_index("k")) == k
    coef = pd.read_csv(out / "coefficients.csv")
    with np.load(out / "patterns.npz", allow_pickle=False) as npz:
        names = npz["pattern_names"].tolist()
    assert [n.split(" · ")[0] for n in names] == [f"PP{i + 1}" for i in range(k)]
    np.testing.assert_allclose(coef[names].to_numpy(), coefficients, rtol=1e-6)
    assert list(coef["gene_symbol"]) == genes.tolist()
    adata = anndata.read_h5ad(out / "results.h5ad")
    assert adata.obsm["patterns"].shape == (adata.n_obs, k)
    assert adata.varm["coefficients"].shape == (adata.n_vars, k)
    # each voxel named by its grid indices, with its annotated region; K and its instability in uns
    from osnmf.atlas import Atlas

    atlas = Atlas.default()
    spatial = adata.obsm["spatial"]
    assert list(adata.obs_names[:3]) == [f"AP{a}_DV{d}_ML{m}" for a, d, m in spatial[:3]]
    labels = atlas.annotation[tuple(spatial.T)]
    assert (adata.obs["region_id"].to_numpy() == labels).all()
    assert adata.obs["region_acronym"].iloc[0] == atlas.acronym(int(labels[0]))
    stab = pd.read_csv(out / "stability.csv").set_index("k")
    assert adata.uns["k_selected"] == k and list(adata.uns["k_range"]) == list(stab.index)
    assert adata.uns["instability_at_k"]["hungarian"] == pytest.approx(stab.loc[k, "hungarian"])
    saved = json.loads((out / "summary.json").read_text())
    assert saved["k_selected"] == k and saved["parameters"]["n_replicates"] == 4
    assert saved["planted_truth"]["planted_k"] == 4


def _pearson_rows(P, Q):
    """Pearson correlation of every row of P with every row of Q (NaN for a constant row)."""
    Pc = P - P.mean(axis=1, keepdims=True)
    Qc = Q - Q.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (Pc @ Qc.T) / np.outer(np.linalg.norm(Pc, axis=1), np.linalg.norm(Qc, axis=1))


def test_planted_truth_recovered(run_dir):
    """The synthetic atlas's planted patterns (rebuilt here) are what the run found, at the planted K."""
    from osnmf import Atlas, make_phantom

    out, summary = run_dir
    cfg = RunConfig(**TINY)
    truth = summary["planted_truth"]
    assert truth["selected_k"] == truth["planted_k"] == summary["k_selected"] == 4
    assert min(truth["matched_r"]) >= 0.9
    phantom = make_phantom(n_genes=cfg.phantom_genes, n_patterns=cfg.phantom_patterns, noise=cfg.phantom_noise,
                           missing=cfg.phantom_missing, seed=cfg.phantom_seed)
    brain = Atlas.default().brain_mask
    with np.load(out / "patterns.npz", allow_pickle=False) as npz:
        found = npz["patterns"][:, brain].astype(np.float64)
        genes = npz["genes"]
    corr = _pearson_rows(phantom.patterns.astype(np.float64), found)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    assert corr[rows, cols].min() >= 0.9
    np.testing.assert_allclose(np.sort(corr[rows, cols]), np.sort(truth["matched_r"]), atol=1e-5)
    assert set(genes.tolist()) <= set(phantom.data.genes.tolist())


def _brute_hungarian(P, Q):
    """1 - best mean uncentred cosine over all one-to-one matchings (explicit permutations)."""
    P, Q = np.asarray(P, np.float64), np.asarray(Q, np.float64)
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    C = Pn @ Qn.T
    return 1 - max(C[np.arange(len(C)), list(s)].mean() for s in permutations(range(len(C))))


def test_stability_csv_is_the_models_curve(run_dir):
    """stability.csv = the sweep's replicates' instability by brute force; patterns = the final model."""
    import anndata

    from osnmf import Atlas, StaNMF

    out, summary = run_dir
    cfg = RunConfig(**TINY)
    X = np.asarray(anndata.read_h5ad(out / "results.h5ad").X).T  # the imputed matrix the sweep saw
    # same parameters and block layout as the pipeline: every block is read back from <out>/sweep
    model = StaNMF(k_range=cfg.k_range, n_replicates=cfg.n_replicates, n_restarts=cfg.n_restarts, solver=cfg.solver,
                   max_iter=cfg.max_iter, tol=cfg.tol, random_state=cfg.random_state, store=out / "sweep",
                   block_size=max(1, -(-cfg.n_replicates // cfg.n_jobs))).fit(X)
    stab = pd.read_csv(out / "stability.csv").set_index("k")
    for k in cfg.k_range:
        reps = model.replicates_[k]
        pairs = [_brute_hungarian(reps[a], reps[b]) for a, b in combinations(range(len(reps)), 2)]
        assert stab.loc[k, "n_pairs"] == len(pairs) == 6
        assert stab.loc[k, "hungarian"] == pytest.approx(np.mean(pairs), abs=1e-6)
        assert stab.loc[k, "hungarian_sd"] == pytest.approx(np.std(pairs), abs=1e-6)
    assert model.k_ == summary["k_selected"] == _median3(stab)
    support = np.asarray(anndata.read_h5ad(out / "results.h5ad").obsm["spatial"])
    with np.load(out / "patterns.npz", allow_pickle=False) as npz:
        patterns, coefficients = npz["patterns"], npz["coefficients"]
    np.testing.assert_allclose(patterns[:, support[:, 0], support[:, 1], support[:, 2]], model.components_,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(coefficients, model.coefficients_, rtol=1e-5, atol=1e-7)
    outside = np.ones(Atlas.default().shape, bool)
    outside[tuple(support.T)] = False
    assert not patterns[:, outside].any()


def test_result_files_content(run_dir):
    """Each file read with an independent reader and checked against numbers recomputed here."""
    import networkx as nx
    import nrrd

    from osnmf import Atlas

    out, summary = run_dir
    atlas = Atlas.default()
    brain = atlas.brain_mask
    k = summary["k_selected"]
    with np.load(out / "patterns.npz", allow_pickle=False) as npz:
        patterns, A, genes, names = npz["patterns"], npz["coefficients"], npz["genes"], npz["pattern_names"]
        assert npz["experiment_ids"].shape == (A.shape[0],) and len(set(npz["experiment_ids"])) == A.shape[0]
        np.testing.assert_array_equal(npz["spacing_um"], [200.0, 200.0, 200.0])
    assert patterns.shape == (k, *atlas.shape) and A.shape == (len(genes), k) and (A >= 0).all()
    assert [re.match(r"PP\d+", str(n)).group() for n in names] == [f"PP{i + 1}" for i in range(k)]
    # patterns/PP*.nrrd (read with pynrrd) = the same volumes
    for i in range(k):
        volume, header = nrrd.read(str(out / "patterns" / f"PP{i + 1}.nrrd"))
        np.testing.assert_array_equal(volume, patterns[i])
    # markers.csv: importance r_gk = a_gk / sum_k a_gk, from the coefficients
    importance = A / A.sum(axis=1, keepdims=True)
    markers = pd.read_csv(out / "markers.csv")
    assert len(markers) == A.size
    np.testing.assert_allclose(markers["importance"], importance[markers["experiment"], markers["pattern"]],
                               rtol=1e-5)
    assert (markers["gene"] == genes[markers["experiment"]]).all()
    # networks: one GraphML per pattern, nodes = the pattern's top genes by importance
    for p in range(k):
        graph = nx.read_graphml(out / "networks" / f"PP{p + 1}.graphml")
        nodes = list(graph.nodes)
        assert len(nodes) >= 2 and set(nodes) <= set(genes.tolist())
        top = genes[np.argsort(-importance[:, p], kind="stable")[: len(nodes)]]
        assert set(nodes) == set(top.tolist())
        for node, data in graph.nodes(data=True):
            assert data["importance"] == pytest.approx(importance[genes.tolist().index(node), p], rel=1e-5)
    # region_correlations.csv: Pearson r of each pattern with each region's mask (masks from the atlas)
    brain_patterns = patterns[:, brain].astype(np.float64)
    table = pd.read_csv(out / "region_correlations.csv")
    ids = sorted(set(table["region_id"]))
    assert set(ids) == set(atlas.region_ids.tolist())
    # a region's mask = voxels whose label is the region or one of its descendants (label → ancestors)
    labels, label_index = np.unique(atlas.annotation[brain], return_inverse=True)
    inside = np.zeros((labels.size, len(ids)), dtype=bool)
    for li, label in enumerate(labels):
        inside[li, [ids.index(n) for n in (int(label), *atlas.ancestors(int(label)))]] = True
    masks = inside[label_index.ravel()].T  # (regions, brain voxels) bool
    # Pearson with a 0/1 mask: r = (Σ_mask p − c·mean p) / (n · sd p · sqrt(c/n · (1 − c/n)))
    n, c = masks.shape[1], masks.sum(axis=1).astype(np.float64)
    sums = (sparse.csr_matrix(masks, dtype=np.float64) @ brain_patterns.T).T  # (k, regions)
    mean, sd = brain_patterns.mean(axis=1, keepdims=True), brain_patterns.std(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sums - c * mean) / (n * sd * np.sqrt(c / n * (1 - c / n)))
    r[:, c == n] = np.nan  # a mask covering the whole brain is constant
    col = {int(i): j for j, i in enumerate(ids)}
    expect = r[table["pattern_index"], [col[int(i)] for i in table["region_id"]]]
    np.testing.assert_allclose(table["r"], expect, atol=1e-6, equal_nan=True)
    # links.csv: every pattern's best link is a set of atlas regions; r = Pearson with their union,
    # at least as high as that pattern's best single region
    links = pd.read_csv(out / "links.csv")
    assert sorted(links["pattern_index"]) == list(range(k))
    for _, row in links.iterrows():
        members = [int(v) for v in row["region_ids"].strip("()").split(",") if v.strip()]
        assert 1 <= len(members) <= 2 and all(m in col for m in members)
        assert row["acronyms"] == "+".join(atlas.acronym(m) for m in members)
        union = masks[[col[m] for m in members]].any(axis=0).astype(np.float64)
        assert row["r"] == pytest.approx(np.corrcoef(brain_patterns[row["pattern_index"]], union)[0, 1], abs=1e-6)
        assert row["r"] >= np.nanmax(r[row["pattern_index"]]) - 1e-9
    # ontology.nwk: a tree over exactly the k patterns
    leaves = re.findall(r"'(PP\d+)[^']*'", (out / "ontology.nwk").read_text())
    assert sorted(leaves) == sorted(f"PP{i + 1}" for i in range(k))


def test_k_selection_panel_in_csv_summary_and_report(run_dir):
    out, summary = run_dir
    k = summary["k_selected"]
    stab = pd.read_csv(out / "stability.csv").set_index("k")
    panel = ["oob_error", "oob_error_se", "cophenetic", "dispersion", "recon_error", "recon_error_se"]
    assert set(panel) <= set(stab.columns) and np.isfinite(stab[panel].to_numpy()).all()
    assert ((stab["dispersion"] >= 0) & (stab["dispersion"] <= 1)).all()
    assert (stab["oob_error"] > 0).all() and (stab["recon_error"] > 0).all()
    ksel = json.loads((out / "summary.json").read_text())["k_selection"]
    # the default recipe (the paper's) selects the γ argmin; median3_near is still in the panel
    assert ksel["rule"] == "gamma_argmin" and ksel["k_by_rule"]["gamma_argmin"] == k == stab["hungarian"].idxmin()
    assert ksel["k_by_rule"]["median3_near"] == _median3(stab)
    # each argmin/argmax rule equals the extreme of its column in stability.csv
    assert ksel["k_by_rule"]["oob_argmin"] == stab["oob_error"].idxmin()
    assert ksel["k_by_rule"]["dispersion_argmax"] == stab["dispersion"].idxmax()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Chosen rule: gamma_argmin" in html and "K-selection panel" in html
    assert (out / "figures" / "k_selection_panel.png").is_file()


def test_pattern_names_are_their_best_anatomical_links(run_dir, atlas):
    """`PP3 · Isocortex`: the named regions are grey matter at the coarse or medium level (no fibre
    tracts, ventricles or layers), and their union is, by a direct Pearson r, at least as good as every
    such single region in region_correlations.csv (up to the tie tolerance, which prefers fewer regions);
    links.csv lists the same regions (one naming scheme), with that r."""
    import anndata

    from osnmf.spatial.linking import TIE_TOLERANCE, readable_regions

    out, summary = run_dir
    k = summary["k_selected"]
    with np.load(out / "patterns.npz", allow_pickle=False) as npz:
        names, patterns = npz["pattern_names"].tolist(), npz["patterns"]
    assert anndata.read_h5ad(out / "results.h5ad").uns["pattern_names"].tolist() == names
    links = pd.read_csv(out / "links.csv")
    corr = pd.read_csv(out / "region_correlations.csv")
    readable = set(readable_regions(atlas))
    outside = {atlas.id_of("fiber tracts"), atlas.id_of("VS")}
    brain = atlas.brain_mask
    report = (out / "report.html").read_text()
    for i, name in enumerate(names):
        pid, link = name.split(" · ")
        assert pid == f"PP{i + 1}"
        row = links[links["pattern_index"] == i].iloc[0]
        assert row["pattern_name"] == name
        assert (corr.loc[corr["pattern_index"] == i, "pattern_name"] == name).all()
        union = np.zeros(atlas.shape, bool)
        for acronym in link.split("+"):
            region = atlas.id_of(acronym)
            assert region in readable and atlas.level(region) in ("coarse", "medium")
            assert not outside & {region, *atlas.ancestors(region)}  # the ontology as the reference
            union |= atlas.mask(acronym)
        r = np.corrcoef(patterns[i][brain], union[brain])[0, 1]  # the name's r, recomputed independently
        mine = corr[(corr["pattern_index"] == i) & corr["region_id"].isin(readable)]
        assert r >= mine["r"].max() - TIE_TOLERANCE - 1e-9
        assert row["acronyms"] == link and row["r"] == pytest.approx(r)  # links.csv: the name's regions
        assert name in report  # figures' captions and tables of the report use the name
    assert len(set(names)) == k


def test_rerun_reuses_every_stage(run_dir, tmp_path):
    """The CLI rerun, its stderr redirected to a file: every cached stage says so on its one line."""
    out, _ = run_dir
    config = tmp_path / "tiny.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in TINY.items() if k != "quiet"))
    with open(tmp_path / "rerun.log", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "osnmf.cli", "run", "--config", str(config), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
    text = (tmp_path / "rerun.log").read_text()
    assert proc.returncode == 0, text
    summary = json.loads((out / "summary.json").read_text())
    assert all(summary["reused_from_cache"][s] for s in ("impute", "sweep", "baselines", "metrics", "linking"))
    lines = _stage_lines(text)
    for stage in ("impute", "sweep", "baselines", "metrics", "linking", "markers"):
        assert lines[stage]["rest"].startswith("  reused from cache"), text
    assert proc.stdout.startswith(f"K = {summary['k_selected']} patterns")


def test_concurrent_run_refused_and_damage_recomputed(run_dir, tmp_path):
    """A copy of the run with a truncated sweep block and a zeroed cache file is rerun (A); a second
    run into the same folder (B) while A works stops at once: one line, exit 2. A names both damaged
    files in one warning line each and ends with the undamaged run's patterns and γ."""
    import shutil
    import time

    out, _ = run_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    block = sorted((copy / "sweep").rglob("r*.npz"))[0]
    block.write_bytes(block.read_bytes()[: block.stat().st_size // 2])  # truncated
    zeroed = copy / ".cache" / "sweep.npz"
    zeroed.write_bytes(bytes(zeroed.stat().st_size))  # zeroed
    config = tmp_path / "tiny.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in TINY.items() if k != "quiet"))
    cmd = [sys.executable, "-m", "osnmf.cli", "run", "--config", str(config), "--out", str(copy)]
    with open(tmp_path / "a.log", "w") as err:
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            deadline = time.monotonic() + 300
            while not (copy / ".lock").exists() and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            assert first.poll() is None, "the first run ended before the second one started"
        finally:
            first.wait(timeout=600)
    assert second.returncode == 2 and second.stdout == ""
    assert second.stderr == (f"error: {copy} is in use by another osnmf run (pid {first.pid} on "
                             f"{__import__('socket').gethostname()}, since ") + second.stderr.split(", since ")[1]
    assert second.stderr.endswith("wait for it to finish or use another --out\n") and second.stderr.count("\n") == 1
    log = (tmp_path / "a.log").read_text()
    assert first.returncode == 0, log
    warned = [line[9:] for line in log.splitlines() if line[9:].startswith("warning:")]
    assert len(warned) == 2, log
    assert warned[0].startswith(f"warning: {zeroed}: damaged cache entry (not an .npz archive")
    assert warned[1].startswith(f"warning: {block}: damaged sweep block (")
    assert all(w.endswith("recomputing it") for w in warned)
    assert not (copy / ".lock").exists()
    with np.load(out / block.relative_to(copy)) as ref, np.load(block) as got:  # the block, recomputed
        np.testing.assert_allclose(got["components"], ref["components"], rtol=1e-6, atol=1e-9)
    for name in ("patterns", "coefficients"):
        with np.load(out / "patterns.npz") as ref, np.load(copy / "patterns.npz") as got:
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-6, atol=1e-9)
    ref, got = pd.read_csv(out / "stability.csv"), pd.read_csv(copy / "stability.csv")
    np.testing.assert_allclose(got[["hungarian", "amari"]], ref[["hungarian", "amari"]], rtol=1e-9)


def test_changed_parameter_recomputes_downstream_only(run_dir):
    out, _ = run_dir
    changed = {**TINY, "n_random_models": 10}
    summary = Pipeline(RunConfig(out=str(out), **changed)).run()
    cached = summary["reused_from_cache"]
    assert cached["impute"] and cached["sweep"] and cached["baselines"] and not cached["linking"]


def _result_files(folder) -> set[str]:
    """The files of a run folder outside its stage cache and sweep store."""
    rels = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return {r.as_posix() for r in rels if r.parts[0] not in (".cache", "sweep")}


def test_rerun_with_fewer_patterns_leaves_only_its_own_files(run_dir, tmp_path):
    """A smaller run into a used folder (a quick demo over a full one): afterwards the folder holds
    the files a fresh run of the same command writes, plus the user's own; no pattern of the old run."""
    import shutil

    out, summary = run_dir
    used, fresh = tmp_path / "used", tmp_path / "fresh"
    shutil.copytree(out, used)
    (used / "notes.txt").write_text("the user's, never removed")
    (used / "figures" / "my_plot.png").write_bytes(b"the user's too")
    fewer = {**TINY, "k_min": 2, "k_max": 3}
    config = tmp_path / "fewer.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in fewer.items() if k != "quiet"))
    proc = subprocess.run([sys.executable, "-m", "osnmf.cli", "run", "--config", str(config), "--out", str(used)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    k = json.loads((used / "summary.json").read_text())["k_selected"]
    assert k < summary["k_selected"]
    Pipeline(RunConfig(out=str(fresh), **fewer)).run()
    assert _result_files(used) == _result_files(fresh) | {"notes.txt", "figures/my_plot.png"}
    assert sorted(p.name for p in (used / "patterns").iterdir()) == [f"PP{i}.nrrd" for i in range(1, k + 1)]
    assert not list(used.rglob(f"*PP{k + 1}*"))  # patterns, montages and networks of PP{k+1} all gone
    listed = json.loads((used / "manifest.json").read_text())["files"]
    assert set(listed) == _result_files(fresh) - {"manifest.json"}
    gone = len(_result_files(out)) - len(_result_files(fresh))
    assert f"removed {gone} files of the previous run in {used} that this run no longer writes (" in proc.stderr


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
           "--k-max", "3", "--n-replicates", "3", "--quiet"]
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
           "--k-min", "2", "--k-max", "4", "--n-replicates", "3", "--quiet"]
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


def test_hemispheres_reported(run_dir):
    out, summary = run_dir
    h = summary["hemispheres"]
    assert h["mode"] == "auto" and h["midline_ml_voxel"] == 28.5
    assert (h["bilateral"], h["left_only"], h["right_only"], h["mirrored_voxels"]) == (60, 0, 0, 0)
    with np.load(out / "patterns.npz", allow_pickle=False) as z:
        patterns, support = z["patterns"], z["support"]
    both = support & support[..., ::-1]  # the 58-voxel-wide grid mirrors as a plain flip
    ref = [np.corrcoef(p[both], p[..., ::-1][both])[0, 1] for p in patterns]
    np.testing.assert_allclose(h["pattern_symmetry_r"], ref, rtol=1e-6)
    assert "Hemispheres (midline at ML voxel 28.5)" in (out / "report.html").read_text()


def _strict(text: str) -> dict:
    """summary.json parsed as a strict parser (JavaScript, jq) does: NaN / Infinity are errors."""
    def refuse(constant):
        raise ValueError(f"summary.json holds the non-JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def _walk_numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk_numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_numbers(v)
    elif isinstance(value, float):
        yield value


def test_summary_json_is_strict_json(run_dir):
    """No NaN / Infinity in summary.json; the headline Moran's I are the finite values' mean and SD
    (recomputed here from the run's Moran values) and K's place in the range is stated."""
    out, _ = run_dir
    summary = _strict((out / "summary.json").read_text())
    assert all(np.isfinite(v) for v in _walk_numbers(summary))
    stab = pd.read_csv(out / "stability.csv")
    k = summary["k_selected"]
    at_edge = k in (stab["k"].min(), stab["k"].max())
    assert (summary["k_range_edge_warning"] is not None) == at_edge
    for method in ("stanmf", "pca"):
        block = summary["moran_i_by_variant"][summary["recipe"]["settings"]["moran_headline"]]
        value = block["staNMF" if method == "stanmf" else "PCA"]
        assert summary[f"moran_i_{method}_mean"] == pytest.approx(value["mean"])
        assert summary[f"moran_i_{method}_n_undefined"] == value["n_undefined"]


def test_undefined_moran_values_are_left_out_and_named():
    """The demo's "PCA nan ± nan": a PCA replicate pattern that is nowhere strongest has no Moran's I.
    The headline is the mean and SD of the defined values (numpy on the finite ones), the count left out
    and the reason are in summary.json, the report shows the number, and the JSON stays strict."""
    from osnmf.report.build import _moran_fmt
    from osnmf.report.files import _moran_headline, strict_json_values

    values = np.array([[0.70, np.nan, 0.80], [0.75, 0.72, np.nan]])
    block = _moran_headline(values, "pca", "strongest")
    finite = values[np.isfinite(values)]
    assert block["moran_i_pca_mean"] == pytest.approx(finite.mean())
    assert block["moran_i_pca_sd"] == pytest.approx(finite.std(ddof=1))
    assert block["moran_i_pca_n"] == 4 and block["moran_i_pca_n_undefined"] == 2
    assert "nowhere the strongest" in block["moran_i_pca_undefined_reason"]
    assert _moran_fmt(block, "pca") == f"{finite.mean():.2f} ± {finite.std(ddof=1):.2f} (2 undefined left out)"
    assert "nan" not in _moran_fmt(block, "pca").lower()
    assert "moran_i_stanmf_undefined_reason" not in _moran_headline(values[:, :1], "stanmf", "strongest")
    nothing = _moran_headline(np.full((2, 2), np.nan), "pca", "continuous")
    assert nothing["moran_i_pca_mean"] is None and _moran_fmt(nothing, "pca").startswith("undefined")
    cleaned = strict_json_values({"a": 1.0, "b": {"c": float("nan"), "d": [0.5, float("inf")]}})
    assert cleaned["b"] == {"c": None, "d": [0.5, None]} and cleaned["a"] == 1.0
    assert set(cleaned["null_values"]) == {"b.c", "b.d[1]"}
    _strict(json.dumps(cleaned, allow_nan=False))


def test_run_on_the_real_grids_writes_strict_json(shared_dir, tmp_path):
    """The 8 real Allen experiments of ../shared/data/aba_real: summary.json parses strictly; K at the
    edge of its range (K 2–3) is warned about in the log line,
    summary.json and the report."""
    config = tmp_path / "run.toml"
    config.write_text("[run]\nk_min = 2\nk_max = 3\nn_replicates = 3\npca_replicates = 3\nmoran_replicates = 3\n"
                      "n_random_models = 50\nlink_sizes = [1, 2]\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "osnmf.cli", "run", "--data", str(shared_dir / "data" / "aba_real"), "--config",
           str(config), "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = _strict((out / "summary.json").read_text())
    assert summary["data"]["n_experiments"] == 8
    assert all(np.isfinite(v) for v in _walk_numbers(summary))
    assert summary["holdout_r_truth"] is None and "no noiseless truth" in summary["holdout_truth_reason"]
    k = summary["k_selected"]  # K 2–3: either K is at an edge of the range
    edge = summary["k_range_edge_warning"]
    assert edge and f"K = {k} is the" in edge and ("lower --k-min" if k == 2 else "higher --k-max") in edge
    assert f"warning: the selected K = {k} is the" in proc.stderr
    assert html.escape(edge) in (out / "report.html").read_text()


def test_k_range_edge_warning():
    from types import SimpleNamespace

    from osnmf.results import k_range_edge

    table = pd.DataFrame({"k": [3, 4, 5, 6]})
    assert k_range_edge(SimpleNamespace(instability=table, k=4)) is None
    low = k_range_edge(SimpleNamespace(instability=table, k=3))
    assert "K = 3 is the smallest K of the range 3–6" in low and "lower --k-min" in low
    assert "higher --k-max" in k_range_edge(SimpleNamespace(instability=table, k=6))


ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def test_report_in_chromium_shows_what_was_computed(chromium, run_dir, tmp_path):
    """The report as a reader sees it: no "nan" anywhere, the overview's Moran's I are summary.json's, the
    instability tables fit without sideways scrolling (recon_error visible), the Parameters table shows
    the recipe's grow / solver / k_rule, the networks section says what an edge is; screenshots saved."""
    from page_driver import open_page

    from osnmf.report.html import cell_text

    out, _ = run_dir
    summary = json.loads((out / "summary.json").read_text())
    with open_page(out / "report.html", width=1280, height=1000) as page:
        text = page.evaluate("document.body.innerText")
        assert not re.search(r"\bnan\b", text, flags=re.IGNORECASE)
        mean, sd = summary["moran_i_pca_mean"], summary["moran_i_pca_sd"]
        shown = re.search(r"vs PCA (\d\.\d+) ± (\d\.\d+)", text)  # the overview's headline Moran's I
        assert shown and float(shown[1]) == pytest.approx(mean, abs=0.6 * 10 ** -len(shown[1].split(".")[1]))
        assert float(shown[2]) == pytest.approx(sd, abs=0.6 * 10 ** -len(shown[2].split(".")[1]))
        wraps = page.evaluate(
            "[...document.querySelectorAll('.table-wrap')].map(w => [w.previousElementSibling.innerText,"
            " w.scrollWidth, w.clientWidth, w.innerText])")
        stability = [w for w in wraps if w[0].startswith(("Instability per K", "The K-selection panel"))]
        assert len(stability) == 2 and any("recon_error" in w[3] for w in stability)
        for caption, scroll, client, _ in stability:
            assert scroll <= client + 1, caption  # no sideways scrolling
        params = dict(line.split("\t", 1) for line in page.text("#parameters ~ .table-wrap").splitlines()[1:])
        settings = summary["recipe"]["settings"]
        for key in ("grow", "solver", "k_rule"):
            assert params[key] == f"{cell_text(settings[key])} (recipe)", (key, params[key])  # not "—"
        assert "An edge joins two of them" in text and "Hub genes per network" in text
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(tmp_path / "report_overview.png")
        page.screenshot(tmp_path / "report_stability.png", selector="#stability-and-the-choice-of-k ~ div.table-wrap")
        assert page.errors() == []
    if os.environ.get("OSNMF_WRITE_ARTIFACTS") == "1":  # refresh the committed screenshots
        ARTIFACTS.mkdir(exist_ok=True)
        for name in ("report_overview.png", "report_stability.png"):
            (ARTIFACTS / name).write_bytes((tmp_path / name).read_bytes())


def test_parameters_show_what_the_recipe_chose():
    from types import SimpleNamespace

    from osnmf.report.build import _parameters
    from osnmf.report.html import cell_text

    cfg = RunConfig()
    shown = _parameters(SimpleNamespace(config=cfg, timings={}))
    for key, value in cfg.settings().items():
        assert shown[key] == f"{cell_text(value)} (recipe)"  # not None ("—" in the table)
    explicit = RunConfig(recipe="fast", solver="exact")
    assert _parameters(SimpleNamespace(config=explicit, timings={}))["solver"] == "exact"


def test_project_on_the_runs_own_data_gives_the_runs_coefficients(run_dir, tmp_path):
    """One preparation for run and projection (osnmf.preprocess.prepare): projecting a run's own
    experiments onto its patterns gives the same matrix, to the bit, and back the run's NMF
    coefficients — the NNLS optimum for the run's final D, which the final model's A is at
    convergence. References: scipy's NNLS of the run's own matrix (results.h5ad) onto its
    patterns, and the run's coefficients.csv."""
    import anndata
    from scipy.optimize import nnls

    from osnmf.datasets.phantom import make_phantom
    from osnmf.io.aba_folder import write_aba_folder
    from osnmf.project import project_run

    out, _ = run_dir
    cfg = RunConfig(**TINY)  # the run's synthetic atlas, written as the files a user would have
    ph = make_phantom(n_genes=cfg.phantom_genes, n_patterns=cfg.phantom_patterns, noise=cfg.phantom_noise,
                      missing=cfg.phantom_missing, seed=cfg.phantom_seed)
    data = write_aba_folder(tmp_path / "data", ph.data, plane="coronal")
    project_run(out, data, tmp_path / "proj")
    ours = pd.read_csv(tmp_path / "proj" / "coefficients.csv", dtype={"experiment_id": str})
    theirs = pd.read_csv(out / "coefficients.csv", dtype={"experiment_id": str})
    assert ours["experiment_id"].tolist() == theirs["experiment_id"].tolist()
    run_h5, proj_h5 = anndata.read_h5ad(out / "results.h5ad"), anndata.read_h5ad(tmp_path / "proj" / "results.h5ad")
    np.testing.assert_array_equal(np.asarray(proj_h5.X), np.asarray(run_h5.X))
    X, D = np.asarray(run_h5.X, dtype=np.float64).T, np.asarray(run_h5.obsm["patterns"], dtype=np.float64).T
    reference = np.stack([nnls(D.T, x)[0] for x in X])
    A_proj = ours.iloc[:, 2:].to_numpy(dtype=np.float64)
    A_run = theirs.iloc[:, 2:].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(A_proj, reference, rtol=1e-6, atol=1e-9 * reference.max())
    np.testing.assert_allclose(A_proj, A_run, rtol=0, atol=2e-3 * A_run.max())
