"""A run folder that cannot be spoiled: the run lock (live, stale, other host, reused pid),
damaged stage-cache entries / sweep blocks detected on reuse with one warning each, and the
manifest (a rerun removes the files the previous run wrote and this one does not; ``--out`` into
someone else's folder is refused).

The end-to-end checks (two concurrent runs into one folder; a truncated sweep block and a zeroed
cache file give the undamaged run's patterns and γ) are in tests/test_pipeline.py, on its run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest

from osnmf.errors import OsnmfWarning
from osnmf.factorize.sweep.params import BlockResult, BlockSpec
from osnmf.factorize.sweep.store import SweepStore
from osnmf.run.lock import RunLock, RunLockedError, _start_time
from osnmf.run.stagecache import StageCache


def _write_lock(folder, **info):
    (folder / ".lock").write_text(json.dumps({"host": socket.gethostname(), "since": "then", **info}))


def test_lock_held_refuses_then_released(tmp_path):
    first = RunLock(tmp_path).acquire()
    info = json.loads((tmp_path / ".lock").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    child = subprocess.run([sys.executable, "-c", "import sys; from osnmf.run.lock import RunLock\n"
                            f"RunLock({str(tmp_path)!r}).acquire()"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.returncode != 0 and "RunLockedError" in child.stderr
    assert f"{tmp_path} is in use by another osnmf run (pid {os.getpid()} on {socket.gethostname()}" in child.stderr
    first.release()
    assert not (tmp_path / ".lock").exists()
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").exists()
    assert not (tmp_path / ".lock").exists()


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path, pid=proc.pid, start=_start_time(proc.pid))
        with pytest.raises(RunLockedError, match=f"pid {proc.pid} on .*wait for it to finish or use another --out"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    lock = RunLock(tmp_path).acquire()  # the holder was killed: stale, taken over
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_reused_pid_unreadable_and_foreign_locks(tmp_path):
    _write_lock(tmp_path, pid=os.getpid(), start="1")  # our pid, but a process started at another time
    if _start_time(os.getpid()) is not None:
        RunLock(tmp_path).acquire().release()
    (tmp_path / ".lock").write_text("")  # a half-written lock of a crashed run, old
    os.utime(tmp_path / ".lock", (0, 0))
    RunLock(tmp_path).acquire().release()
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "since": "then"}))
    with pytest.raises(RunLockedError) as exc:
        RunLock(tmp_path).acquire()
    assert str(exc.value) == (f"{tmp_path} is in use by another osnmf run (pid 1 on elsewhere.example, since then); "
                              f"if no run is active there, delete {tmp_path / '.lock'}")


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif how == "flipped":  # one byte inside the stored array: only the zip's CRC-32 can tell
        i = len(data) // 3
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])


@pytest.mark.parametrize("how", ["truncated", "zeroed", "flipped"])
def test_damaged_cache_entry_warns_once_and_recomputes(tmp_path, how):
    cache = StageCache(tmp_path)
    value = np.arange(20000, dtype=np.float64)
    cache.put("stage", "key1", {"x": value})
    np.testing.assert_array_equal(cache.get("stage", "key1")["x"], value)
    assert cache.get("stage", "other") is None  # other inputs: recompute silently
    _damage(cache.path("stage"), how)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.get("stage", "key1") is None
    assert [str(w.message).split(" (")[0] for w in caught] == [f"{cache.path('stage')}: damaged cache entry"]
    assert all(issubclass(w.category, OsnmfWarning) and "\n" not in str(w.message) for w in caught)


def test_cache_entry_of_another_format_is_not_trusted(tmp_path):
    np.savez(tmp_path / "stage.npz", __stage_key__=np.array("key1"), x=np.ones(3))  # an older osnmf's entry
    with pytest.warns(OsnmfWarning, match="from another osnmf version"):
        assert StageCache(tmp_path).get("stage", "key1") is None


@pytest.mark.parametrize("how", ["truncated", "zeroed", "flipped", "other_run", "wrong_shape"])
def test_damaged_sweep_block_is_recomputed(tmp_path, how):
    store = SweepStore(tmp_path, "runA")
    spec = BlockSpec(3, 0, 4)
    rng = np.random.default_rng(0)
    good = BlockResult(rng.random((4, 3, 500)).astype(np.float32), None, np.full(4, 10), rng.random(4),
                       np.zeros(4, int), np.arange(4))
    store.put(spec, good)
    assert store.has(spec)
    path = store.block_path(spec)
    if how == "other_run":
        SweepStore(tmp_path, "runB").put(spec, good)
        (tmp_path / "runB" / f"{spec.name}.npz").replace(path)
    elif how == "wrong_shape":
        store.put(BlockSpec(3, 0, 4), BlockResult(good.components[:2], None, good.n_iter[:2], good.loss[:2],
                                                  good.restart[:2], good.seeds[:2]))
    else:
        _damage(path, how)
    with pytest.warns(OsnmfWarning, match=f"{path}: damaged sweep block"):
        assert not store.has(spec)


# ---- the manifest: a rerun removes the previous run's leftovers, never anything else ---------------

def _files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _fake_run(folder, names, complete=True):
    """What a run does to the folder: write ``names`` atomically while recording, then finish."""
    from osnmf.atomic import recording, write_text
    from osnmf.run.folder import finish

    with recording(folder) as written:
        for name in names:
            write_text(folder / name, f"{name} of this run")
        return finish(folder, written, complete)


def test_rerun_removes_only_listed_leftovers(tmp_path):
    from osnmf.run.folder import MANIFEST, read_manifest

    _fake_run(tmp_path, ["summary.json", "patterns/PP1.nrrd", "patterns/PP2.nrrd", "networks/pattern_1.json",
                         ".cache/sweep.npz", "sweep/k2/r0.npz"])
    assert set(read_manifest(tmp_path)) == {"summary.json", "patterns/PP1.nrrd", "patterns/PP2.nrrd",
                                            "networks/pattern_1.json"}  # the cache and sweep store are not listed
    (tmp_path / "notes.txt").write_text("mine")  # the user's files, in the folder and beside the results
    (tmp_path / "patterns" / "PP9.nrrd").write_text("mine")
    removed = _fake_run(tmp_path, ["summary.json", "patterns/PP1.nrrd"])
    assert removed == ["networks/pattern_1.json", "patterns/PP2.nrrd"]
    assert _files(tmp_path) == {MANIFEST, "summary.json", "patterns/PP1.nrrd", "patterns/PP9.nrrd", "notes.txt",
                                ".cache/sweep.npz", "sweep/k2/r0.npz"}
    assert not (tmp_path / "networks").exists()  # emptied by the cleanup: removed; patterns/ holds a user file
    assert set(read_manifest(tmp_path)) == {"summary.json", "patterns/PP1.nrrd"}


def test_changed_leftover_is_kept_with_a_warning(tmp_path):
    _fake_run(tmp_path, ["a.csv", "b.csv"])
    (tmp_path / "b.csv").write_text("edited by the user after the run")
    with pytest.warns(OsnmfWarning, match=r"b\.csv: kept, a file of the previous run changed since"):
        assert _fake_run(tmp_path, ["a.csv"]) == []
    assert (tmp_path / "b.csv").read_text() == "edited by the user after the run"


def test_run_that_stops_early_lists_both_runs(tmp_path):
    from osnmf.run.folder import read_manifest

    _fake_run(tmp_path, ["a.csv", "old.csv"])
    assert _fake_run(tmp_path, ["a.csv", "new.csv"], complete=False) == []  # interrupted: nothing removed
    assert set(read_manifest(tmp_path)) == {"a.csv", "old.csv", "new.csv"}
    assert _fake_run(tmp_path, ["a.csv"]) == ["new.csv", "old.csv"]  # the next complete run cleans up both


def test_manifest_never_names_files_outside_the_run(tmp_path):
    from osnmf.run.folder import MANIFEST, remove_stale

    out = tmp_path / "run"
    out.mkdir()
    for name in ("outside.txt", "run/.cache/stage.npz", "run/.lock"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    info = {"size": 1, "mtime_ns": 0}
    listed = {"../outside.txt": info, str(tmp_path / "outside.txt"): info, ".cache/stage.npz": info, ".lock": info,
              MANIFEST: info, "missing.csv": info}
    assert remove_stale(out, listed, {}) == []
    assert (tmp_path / "outside.txt").exists() and (out / ".cache/stage.npz").exists() and (out / ".lock").exists()


@pytest.mark.parametrize("case", ["empty", "absent", "run", "unfinished_run", "lock_only"])
def test_out_accepted(tmp_path, case):
    from osnmf.run.folder import check_out, write_manifest

    out = tmp_path / "out"
    if case != "absent":
        out.mkdir()
    if case in ("run", "unfinished_run"):  # osnmf's own marker: a manifest it wrote (finished or not)
        (out / "report.html").write_text("<html>")
        write_manifest(out, {"report.html": {"size": 6, "mtime_ns": 0}}, complete=case == "run")
    elif case == "lock_only":  # a first run that has just created and locked its folder
        (out / ".lock").write_text("{}")
    check_out(out)


@pytest.mark.parametrize("case", ["cache_dir", "sweep_dir", "foreign_manifest", "projection"])
def test_common_names_do_not_make_a_run_folder(tmp_path, case):
    """Only osnmf's manifest proves a run folder: ``.cache/``, ``sweep/`` or someone else's
    ``manifest.json`` do not (the folder is refused in one line, nothing in it touched)."""
    from osnmf.errors import ConfigError
    from osnmf.run.folder import check_out, write_manifest

    out = tmp_path / "out"
    (out / ".cache" / "pip").mkdir(parents=True)  # e.g. a project folder with pip's cache
    (out / "summary.json").write_text("notes")
    if case == "sweep_dir":
        (out / "sweep").mkdir()
    elif case == "foreign_manifest":  # a web app's manifest.json is not osnmf's
        (out / "manifest.json").write_text(json.dumps({"name": "app", "files": {}}))
    elif case == "projection":
        write_manifest(out, {}, kind="projection")
    with pytest.raises(ConfigError) as exc:
        check_out(out)
    if case == "projection":
        assert str(exc.value) == (f"--out {out} is the folder of an osnmf projection, not of a run; choose a new "
                                  "or empty folder, or the --out of an earlier run")
    else:
        assert str(exc.value) == (f"--out {out} is a non-empty folder that is not an osnmf run (no manifest.json); "
                                  "choose a new or empty folder, or the --out of an earlier run")
    assert (out / "summary.json").read_text() == "notes"


def test_cache_folder_is_not_a_run_folder_on_the_command_line(tmp_path):
    """Issue 35 item 2: ``mkdir -p F/.cache/pip; echo notes > F/summary.json; osnmf run --out F``
    is refused (one line, exit 2) and F/summary.json is not overwritten."""
    folder = tmp_path / "F"
    (folder / ".cache" / "pip").mkdir(parents=True)
    (folder / "summary.json").write_text("notes\n")
    proc = subprocess.run([sys.executable, "-c", "from osnmf.cli import main; main()", "run", "--k-min", "2",
                           "--k-max", "3", "--out", str(folder)], capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"error: --out {folder} is a non-empty folder that is not an osnmf run (no manifest.json); "
                           "choose a new or empty folder, or the --out of an earlier run\n")
    assert _files(folder) == {"summary.json"} and (folder / "summary.json").read_text() == "notes\n"


def test_out_not_a_run_folder_is_refused_before_anything_is_written(tmp_path):
    """``--out`` naming someone's non-empty folder, or a file: one line, exit 2, nothing written."""
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("mine")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    expected = {folder: f"error: --out {folder} is a non-empty folder that is not an osnmf run (no manifest.json); "
                        "choose a new or empty folder, or the --out of an earlier run\n",
                afile: f"error: --out {afile} is a file, not a folder: choose a folder for the run\n"}
    for out, message in expected.items():
        for command in (["run", "--k-min", "2", "--k-max", "3"], ["demo", "--quick"]):
            proc = subprocess.run([sys.executable, "-c", "from osnmf.cli import main; main()", *command,
                                   "--out", str(out)], capture_output=True, text=True, timeout=300)
            assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", message)
    assert _files(folder) == {"chapter1.tex"} and afile.read_text() == "mine"


# ---- a killed run: marked incomplete, its files and temporaries removed by the next run ------------

def _killed_run(folder, names):
    """A run into ``folder`` killed after writing ``names`` (no ``finally`` runs, as under kill -9) and
    while one more file was half-written (its temporary left behind)."""
    from osnmf.atomic import atomic_path, write_text
    from osnmf.run.folder import RunFolder

    run = RunFolder(folder).__enter__()  # never exited: the process died
    run.open()
    for name in names:
        write_text(folder / name, f"{name} of the killed run")
    tmp = atomic_path(folder / "figures" / "montage_patterns.svg").__enter__()
    tmp.write_text("<svg half")
    (folder / ".lock").write_text(json.dumps({"pid": 2 ** 22 + 1, "host": socket.gethostname(), "since": "then"}))
    return tmp


def test_killed_rerun_is_marked_then_cleaned_up(tmp_path):
    """Issue 35 items 3 and 11, on the folder machinery: a K = 4 rerun over a K = 3 run killed while
    writing leaves a folder marked incomplete (read_patterns refuses it); the next complete K = 3 run
    removes PP4 and pattern_3 (listed in no manifest, named by the journal) and the hidden
    temporaries, and lists exactly its own files."""
    from osnmf.atomic import write_text
    from osnmf.errors import InputError
    from osnmf.run.folder import RunFolder, read_journal, read_marker
    from osnmf.run.layout import read_patterns

    k3 = ["summary.json", "patterns/PP1.nrrd", "patterns/PP2.nrrd", "patterns/PP3.nrrd", "networks/pattern_2.json"]
    _fake_run(tmp_path, k3)  # a finished K = 3 run
    assert read_marker(tmp_path)["complete"]
    part = _killed_run(tmp_path, ["summary.json", "patterns/PP4.nrrd", "networks/pattern_3.json"])
    assert part.name.startswith(".montage_patterns.svg.") and part.name.endswith(".part") and part.exists()
    marker = read_marker(tmp_path)
    assert marker["complete"] is False and set(marker["files"]) == set(k3)  # the old list, marked incomplete
    assert read_journal(tmp_path) == ["networks/pattern_3.json", "patterns/PP4.nrrd", "summary.json"]
    with pytest.raises(InputError, match=f"^{tmp_path}: its last run stopped while writing its results"):
        read_patterns(tmp_path)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / ".r0000-0004.npz.abcdefgh.part").write_bytes(b"half a block")
    (tmp_path / ".mine.part").write_text("a user's file of another name pattern")
    with RunFolder(tmp_path) as run:  # the stale lock is taken over
        assert run.open() == ["figures/" + part.name, "sweep/.r0000-0004.npz.abcdefgh.part"]
        for name in k3:
            write_text(tmp_path / name, name)
        run.complete = True
    assert run.removed == ["networks/pattern_3.json", "patterns/PP4.nrrd"]
    assert _files(tmp_path) == {*k3, "manifest.json", ".mine.part"}
    marker = read_marker(tmp_path)
    assert marker["complete"] and set(marker["files"]) == set(k3) and read_journal(tmp_path) == []


def test_run_failing_before_its_results_leaves_the_folder_as_it_was(tmp_path):
    from osnmf.run.folder import RunFolder, read_marker

    _fake_run(tmp_path, ["a.csv"])
    before = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError), RunFolder(tmp_path) as run:
        run.open()
        raise RuntimeError("the sweep failed")
    assert (tmp_path / "manifest.json").read_bytes() == before and read_marker(tmp_path)["complete"]
    assert not (tmp_path / ".lock").exists()


def test_temporary_names():
    from osnmf.atomic import is_temporary

    assert all(is_temporary(n) for n in (".patterns.npz.k3j9x_2a.part", ".montage_a.svg.abcdefgh.part",
                                         ".PP1.nrrd.0abcdefg.nrrd", ".results.h5ad.ab_defgh.h5ad"))
    assert not any(is_temporary(n) for n in ("notes.part", ".bashrc", ".x.abcdefgh.h5ad", ".a.part",
                                             "patterns.npz.abcdefgh.part"))


@pytest.mark.parametrize("how", ["edited", "old_format", "other_run", "not_json"])
def test_edited_sweep_values_are_recomputed(tmp_path, how):
    """Issue 35 item 4, on the store: γ values edited by hand (or of another format or run, or
    unreadable) are named in one warning and recomputed, never trusted."""
    store = SweepStore(tmp_path, "runA")
    tag = {"centered": False, "n_replicates": 4, "block_size": 4}
    values = {"hungarian": 0.0123, "hungarian_sd": 0.004, "amari": 0.1}
    store.put_values("k003/instability.json", tag, values)
    assert store.get_values("k003/instability.json", tag) == values
    assert store.get_values("k003/instability.json", {**tag, "n_replicates": 5}) is None  # other settings: silent
    path = tmp_path / "runA" / "k003" / "instability.json"
    info = json.loads(path.read_text())
    if how == "edited":
        info["values"]["hungarian"] = 0.9
    elif how == "old_format":
        info = {"tag": tag, "values": values}
    elif how == "other_run":
        info["run_key"] = "runB"
    path.write_text("{not json" if how == "not_json" else json.dumps(info))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.get_values("k003/instability.json", tag) is None
    assert [str(w.message).split(" (")[0] for w in caught] == [f"{path}: damaged sweep result"]
    assert str(caught[0].message).endswith("; recomputing it")
