"""A run folder never shows two runs and never trusts an altered result (issue 35, items 3, 4, 5, 11),
end to end on a small synthetic-atlas run.

* a rerun with other K killed right after its result files (as ``kill -9``: no ``finally`` runs, two
  atomic writes half done) leaves the folder marked incomplete; the next run removes the killed
  run's patterns, networks and temporaries and equals the first run to the bit;
* an edited ``instability.json`` is named in one warning and recomputed (same K, every later stage
  reused: its result is the same); a forged one with a valid checksum changes K, and every stage
  reading the sweep is recomputed, never reused;
* a resumed sweep (stage cache and final model deleted) and an ``n_jobs=1`` run equal the
  uninterrupted ``n_jobs=2`` run to the bit.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console

from osnmf.config import RunConfig
from osnmf.errors import InputError
from osnmf.pipeline import Pipeline
from osnmf.run.log import RunLog

SMALL = dict(k_min=3, k_max=5, n_replicates=4, phantom_genes=60, phantom_patterns=4, phantom_noise=0.1,
             moran_replicates=3, n_random_models=20, link_sizes=[1, 2], quiet=True)
SAME_BITS = ("patterns.npz", "coefficients.csv", "stability.csv", "markers.csv", "links.csv")


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """An uninterrupted run (n_jobs 2, the default); tests work on copies of it."""
    out = tmp_path_factory.mktemp("first") / "run"
    summary = Pipeline(RunConfig(out=str(out), **SMALL)).run()
    return out, summary


def _copy(first, tmp_path, name="copy"):
    out = tmp_path / name
    shutil.copytree(first[0], out)
    return out


def _files(folder) -> set[str]:
    rels = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return {r.as_posix() for r in rels if r.parts[0] not in (".cache", "sweep")}


def _same_bits(a, b) -> None:
    for name in SAME_BITS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


KILLED = """
import json, os, sys
import osnmf.report.build as build
from osnmf.atomic import atomic_path
from osnmf.config import RunConfig
from osnmf.pipeline import Pipeline

def killed(state, summary):  # the result files are written; killed while two more files are half-written
    a = atomic_path(state.out / "patterns.npz").__enter__()
    a.write_bytes(b"half")
    b = atomic_path(state.out / "figures" / "montage_patterns.svg").__enter__()
    b.write_text("<svg")
    os._exit(9)  # as kill -9: no finally block, no manifest, the lock stays

build.build_report = killed
Pipeline(RunConfig(out=sys.argv[1], **json.loads(sys.argv[2]))).run()
"""


def test_killed_rerun_with_other_k_then_rerun(first, tmp_path):
    from osnmf.atomic import is_temporary
    from osnmf.run.folder import read_journal, read_marker
    from osnmf.run.layout import read_patterns

    used = _copy(first, tmp_path)
    k_first = first[1]["k_selected"]
    other = {**SMALL, "k_min": 5, "k_max": 6}
    proc = subprocess.run([sys.executable, "-c", KILLED, str(used), json.dumps(other)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 9, proc.stderr
    k_killed = json.loads((used / "summary.json").read_text())["k_selected"]  # the killed run's summary
    assert k_killed in (5, 6) and k_killed != k_first
    # between the kill and the rerun: marked incomplete, refused by every reader of a run
    marker = read_marker(used)
    assert marker["complete"] is False
    assert set(marker["files"]) == _files(first[0]) - {"manifest.json"}  # the first run's list, kept
    journal = set(read_journal(used))
    assert {f"patterns/PP{k_killed}.nrrd", "summary.json", "coefficients.csv"} <= journal
    assert any(name.startswith(f"networks/PP{k_killed}.") for name in journal)
    with pytest.raises(InputError, match=f"^{used}: its last run stopped while writing its results"):
        read_patterns(used)
    temporaries = sorted(p.relative_to(used).as_posix() for p in used.rglob("*") if is_temporary(p.name))
    assert [re.sub(r"\.[a-z0-9_]{8}\.part$", "", t) for t in temporaries] == [".patterns.npz",
                                                                              "figures/.montage_patterns.svg"]
    # the rerun with the first run's settings: the lock of the killed run is stale, taken over
    summary = Pipeline(RunConfig(out=str(used), **{**SMALL, "quiet": True})).run()
    assert summary["k_selected"] == k_first
    assert _files(used) == _files(first[0])  # no PP5/PP6 patterns or networks, no journal, no temporaries
    assert not [p for p in used.rglob("*") if is_temporary(p.name)]
    assert not list(used.rglob(f"PP{k_killed}.nrrd")) and not list(used.rglob(f"networks/PP{k_killed}.*"))
    assert read_marker(used)["complete"] and read_journal(used) == [] and not (used / ".lock").exists()
    _same_bits(used, first[0])  # the first run's results, to the bit


def _instability_file(folder, k):
    (path,) = (folder / "sweep").glob(f"*/k{k:03d}/instability.json")
    return path


def _rerun_sweep_cleared(folder):
    """Rerun after deleting the sweep's stage-cache entry (the store keeps the blocks and γ files)."""
    (folder / ".cache" / "sweep.npz").unlink()
    text = io.StringIO()
    log = RunLog(console=Console(file=text, width=400, emoji=False, markup=False, highlight=False))
    summary = Pipeline(RunConfig(out=str(folder), **{**SMALL, "quiet": False}), log=log).run()
    return summary, [line[len("hh:mm:ss warning: "):] for line in text.getvalue().splitlines()
                     if line[9:].startswith("warning: ")]


def test_edited_instability_is_recomputed_and_a_forged_one_is_never_reused_downstream(first, tmp_path):
    from osnmf.factorize.sweep.store import _values_crc

    copy = _copy(first, tmp_path)
    k = first[1]["k_selected"]
    path = _instability_file(copy, k)
    info = json.loads(path.read_text())
    info["values"]["hungarian"] = 0.9  # by hand: the checksum no longer matches
    path.write_text(json.dumps(info))
    summary, warned = _rerun_sweep_cleared(copy)
    assert warned == [f"{path}: damaged sweep result (its CRC-32 does not match: edited or damaged since written); "
                      "recomputing it"]
    assert summary["k_selected"] == k
    assert all(summary["reused_from_cache"][s] for s in ("baselines", "metrics", "linking", "markers"))
    _same_bits(copy, first[0])
    # the same edit with a valid checksum (an upstream result that changed for the same inputs)
    info = json.loads(path.read_text())
    info["values"]["hungarian"] = 0.9
    info["crc32"] = _values_crc(info["tag"], info["values"])
    path.write_text(json.dumps(info))
    summary, warned = _rerun_sweep_cleared(copy)
    # a forged γ may move K to the edge of the range: the K-range-edge warning is then due
    assert warned == [] or all("chosen by the rule" in w or "K of the range" in w for w in warned)
    k_new = summary["k_selected"]
    assert k_new != k
    assert not any(summary["reused_from_cache"][s] for s in ("sweep", "baselines", "metrics", "linking", "markers"))
    with np.load(copy / "patterns.npz") as npz:
        assert npz["patterns"].shape[0] == len(npz["pattern_names"]) == k_new
        assert [str(n).split(" · ")[0] for n in npz["pattern_names"]] == [f"PP{i + 1}" for i in range(k_new)]
    assert sorted(p.name for p in (copy / "patterns").iterdir()) == sorted(f"PP{i + 1}.nrrd" for i in range(k_new))


def _sweep_only(out, **settings):
    """The load, impute and sweep stages of the small run into ``out``: (ImputeResult, SweepResult)."""
    p = Pipeline(RunConfig(out=str(out), **{**SMALL, **settings}))
    p.load()
    p.impute()
    return p.state.impute, p.sweep(), p.state.cached["sweep"]


def _assert_same(a, b) -> None:
    (imp_a, sw_a, _), (imp_b, sw_b, _) = a, b
    np.testing.assert_array_equal(imp_a.X, imp_b.X)
    for name in ("components", "coefficients", "replicates_at_k"):
        np.testing.assert_array_equal(getattr(sw_a, name), getattr(sw_b, name), err_msg=name)
    for column in ("hungarian", "hungarian_sd", "amari"):
        np.testing.assert_array_equal(sw_a.instability[column], sw_b.instability[column], err_msg=column)
    assert sw_a.k == sw_b.k


def test_resumed_and_single_job_sweeps_equal_the_uninterrupted_run_to_the_bit(first, tmp_path):
    from threadpoolctl import threadpool_limits

    reference = _sweep_only(_copy(first, tmp_path, "reused"))  # the uninterrupted n_jobs 2 run's result
    assert reference[2]  # read back from its stage cache
    resumed = _copy(first, tmp_path, "resumed")
    (resumed / ".cache" / "sweep.npz").unlink()
    finals = list((resumed / "sweep").glob("*/final_k*.npz"))
    assert finals
    for path in finals:
        path.unlink()
    result = _sweep_only(resumed)
    assert not result[2] and list((resumed / "sweep").glob("*/final_k*.npz"))  # the final model refitted
    _assert_same(result, reference)
    with threadpool_limits(2):  # the caller's BLAS threads do not matter either
        _assert_same(_sweep_only(tmp_path / "one_job", n_jobs=1), reference)
