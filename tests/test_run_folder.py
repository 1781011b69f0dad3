"""A run folder that cannot be spoiled: the run lock (live, stale, other host, reused pid) and
damaged stage-cache entries / sweep blocks detected on reuse with one warning each.

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
from osnmf.factorize.params import BlockResult, BlockSpec
from osnmf.factorize.store import SweepStore
from osnmf.runlock import RunLock, RunLockedError, _start_time
from osnmf.stagecache import StageCache


def _write_lock(folder, **info):
    (folder / ".lock").write_text(json.dumps({"host": socket.gethostname(), "since": "then", **info}))


def test_lock_held_refuses_then_released(tmp_path):
    first = RunLock(tmp_path).acquire()
    info = json.loads((tmp_path / ".lock").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    child = subprocess.run([sys.executable, "-c", "import sys; from osnmf.runlock import RunLock\n"
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
