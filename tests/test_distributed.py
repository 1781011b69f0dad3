"""Distributed staNMF sweeps on a LocalCluster (127.0.0.1) against the single-machine run.

The reference for every result is the serial in-process sweep of the same data and seeds; a
Dask run must reproduce it exactly (blocks are pure functions), also when a worker is killed
mid-sweep or when the client dies and a rerun resumes from the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from dask.distributed import Client, LocalCluster  # a test dependency: imported plainly, never skipped
from threadpoolctl import threadpool_limits

from osnmf.errors import ConfigError
from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.executors import DaskExecutor, as_executor
from osnmf.factorize.sweep.params import SweepParams, plan_blocks
from osnmf.factorize.sweep.run import run_sweep
from osnmf.factorize.sweep.store import SweepStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # shared 2-core machine; process workers get 1 BLAS thread from their nanny as well
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def client():
    """Two in-process workers, one thread each, talking TCP on 127.0.0.1 (data is serialised)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as cl:
        yield cl


def _data(n=50, m=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.gamma(0.6, size=(n, k)) @ rng.gamma(0.6, size=(k, m))
    return (X * rng.lognormal(0, 0.05, X.shape)).astype(np.float32)


KW = dict(k_range=[2, 3, 4], n_replicates=6, block_size=2, random_state=3, max_iter=150)


def _block_files(root: Path) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime_ns) of every finished block file under ``root``."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("r*-*.npz")}


def test_curve_and_replicates_equal_single_machine(client, tmp_path):
    X = _data()
    ref = StaNMF(**KW).fit(X)
    dist = StaNMF(**KW, client=client, store=tmp_path / "s").fit(X)
    np.testing.assert_array_equal(dist.instability_.to_numpy(), ref.instability_.to_numpy())
    for k in KW["k_range"]:
        np.testing.assert_array_equal(dist.replicates_[k], ref.replicates_[k])
    assert dist.k_ == ref.k_
    np.testing.assert_array_equal(dist.components_, ref.components_)
    # the store is the local one: a local run on it finds every block and computes none
    before = _block_files(tmp_path / "s")
    assert len(before) == len(KW["k_range"]) * 3
    again = StaNMF(**KW, store=tmp_path / "s").fit(X)
    assert _block_files(tmp_path / "s") == before
    np.testing.assert_array_equal(again.instability_.to_numpy(), ref.instability_.to_numpy())


def test_grow_mode_runs_in_waves_and_equals_single_machine(client, tmp_path, monkeypatch):
    # grow: the blocks of K start from those of K-1, so the sweep calls the executor once per K
    X = _data(n=60, m=400, seed=7)  # large enough to be scattered once and reused per wave
    ref = StaNMF(**KW, recipe="fast", grow=True).fit(X)
    ex = DaskExecutor(client)
    calls = {"map": 0, "scatter": 0}
    scatter, map_unordered = client.scatter, ex.map_unordered

    def counting_scatter(*args, **kwargs):
        calls["scatter"] += 1
        return scatter(*args, **kwargs)

    def counting_map(*args, **kwargs):
        calls["map"] += 1
        return map_unordered(*args, **kwargs)

    monkeypatch.setattr(client, "scatter", counting_scatter)
    monkeypatch.setattr(ex, "map_unordered", counting_map)
    dist = StaNMF(**KW, recipe="fast", grow=True, client=ex, store=tmp_path).fit(X)
    assert calls == {"map": len(KW["k_range"]), "scatter": 1}  # X sent once for all waves
    np.testing.assert_array_equal(dist.instability_.to_numpy(), ref.instability_.to_numpy())
    for k in KW["k_range"]:
        np.testing.assert_array_equal(dist.replicates_[k], ref.replicates_[k])
    ex.release()


def test_local_and_distributed_runs_resume_each_other(client, tmp_path):
    X = _data(seed=1)
    StaNMF(**{**KW, "k_range": [2, 3]}, store=tmp_path).fit(X)  # local: K = 2, 3
    ex = DaskExecutor(client)
    model = StaNMF(**KW, client=ex, store=tmp_path).fit(X)  # adds K = 4 on the cluster
    assert ex.n_submitted_ == 3  # only K = 4's three blocks
    ref = StaNMF(**KW).fit(X)
    np.testing.assert_array_equal(model.instability_.to_numpy(), ref.instability_.to_numpy())


def test_data_goes_to_each_worker_once(client):
    X = _data(n=60, m=400)  # 96 kB: above the size at which shared arguments are scattered

    def where(X, i):
        return X.ctypes.data, X.flags.aligned, threading.get_ident()

    ex = DaskExecutor(client)
    gen = ex.map_unordered(where, [(X, i) for i in range(12)])
    seen = dict([next(gen)])
    assert len(ex.shared_keys_) == 1  # X was scattered once, to both workers
    first = ex.shared_keys_[0]
    assert len(client.who_has()[first]) == 2
    seen.update(gen)
    assert len(seen) == 12
    # one aligned copy per worker thread, whatever the number of tasks
    by_thread: dict[int, set[int]] = {}
    for ptr, aligned, tid in seen.values():
        assert aligned
        by_thread.setdefault(tid, set()).add(ptr)
    assert all(len(p) == 1 for p in by_thread.values())
    assert len({p for ps in by_thread.values() for p in ps}) <= 2
    # a second call with the same X reuses the scattered copy (a sweep calls once per K wave)
    list(ex.map_unordered(where, [(X, i) for i in range(2)]))
    assert ex.shared_keys_ == [first] and first in client.who_has()
    # released on request (or when the executor is garbage-collected after StaNMF.fit)
    ex.release()
    deadline = time.monotonic() + 5
    while set(ex.shared_keys_) & set(client.who_has()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(ex.shared_keys_) & set(client.who_has())


def test_memory_mapped_data_equals_local(client, tmp_path):
    X = _data(n=60, m=400, seed=2)  # 96 kB: shared arguments this big are sent once
    ref = StaNMF(**KW).fit(X)
    ex = DaskExecutor(client, data="mmap", data_dir=tmp_path / "data")
    dist = StaNMF(**KW, client=ex).fit(X)
    assert len(list((tmp_path / "data").glob("data-*.npy"))) == 1
    assert ex.shared_keys_ == []
    np.testing.assert_array_equal(dist.instability_.to_numpy(), ref.instability_.to_numpy())


# fits long enough (tol=0: every fit runs max_iter) that kills land in the middle of a sweep
SLOW_KW = dict(k_range=[3, 4, 5], n_replicates=8, block_size=2, random_state=3, max_iter=300,
               tol=0.0)
N_SLOW_BLOCKS = 12


@pytest.fixture(scope="module")
def slow_ref():
    X = _data(n=60, m=500, seed=4)
    with threadpool_limits(1):
        return X, StaNMF(**SLOW_KW).fit(X)


@pytest.mark.filterwarnings("ignore:Port .* is already in use")  # another cluster on 8787
def test_worker_killed_mid_sweep_gives_identical_results(slow_ref, tmp_path):
    X, ref = slow_ref
    kw = SLOW_KW
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, worker_dashboard_address=None) as cluster, Client(cluster) as cl:
        pids = cl.run(os.getpid)
        out: dict = {}

        def fit():
            try:
                out["model"] = StaNMF(**kw, client=cl, store=tmp_path).fit(X)
            except BaseException as exc:  # surfaced by the assertion below
                out["error"] = exc

        runner = threading.Thread(target=fit)
        runner.start()
        victim = None
        deadline = time.monotonic() + 20
        while victim is None and time.monotonic() < deadline:
            busy = [a for a, keys in cl.processing().items() if keys and a in pids]
            if busy and len(_block_files(tmp_path)) >= 1:
                victim = busy[0]
                os.kill(pids[victim], signal.SIGKILL)  # a hard crash while it runs a block
            time.sleep(0.01)
        n_stored_at_kill = len(_block_files(tmp_path))
        runner.join(60)
        assert victim is not None, "no worker was busy while the sweep ran"
        assert "error" not in out, out.get("error")
        assert n_stored_at_kill < N_SLOW_BLOCKS, "the sweep finished before the kill"
        assert pids[victim] not in cl.run(os.getpid).values()  # the nanny started a new one
    model = out["model"]
    np.testing.assert_array_equal(model.instability_.to_numpy(), ref.instability_.to_numpy())
    for k in kw["k_range"]:
        np.testing.assert_array_equal(model.replicates_[k], ref.replicates_[k])


CLIENT_SCRIPT = textwrap.dedent("""
    import json
    import sys
    import numpy as np
    from threadpoolctl import threadpool_limits
    from dask.distributed import Client, LocalCluster
    from osnmf.factorize.stanmf import StaNMF

    X = np.load(sys.argv[1])
    kw = json.loads(sys.argv[3])
    if __name__ == "__main__":
        with threadpool_limits(1), LocalCluster(
                n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as cl:
            StaNMF(**kw, client=cl, store=sys.argv[2]).fit(X)
""")


def test_client_killed_mid_sweep_then_rerun_resumes(client, slow_ref, tmp_path):
    X, ref = slow_ref
    np.save(tmp_path / "X.npy", X)
    script = tmp_path / "run.py"
    script.write_text(CLIENT_SCRIPT)
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "X.npy"), str(store),
                             json.dumps(SLOW_KW)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 25
        while len(_block_files(store)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()  # SIGKILL: no cleanup, no chance to finish
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _block_files(store)
    assert 3 <= len(before) < N_SLOW_BLOCKS, err.decode()[-2000:]

    ex = DaskExecutor(client)
    model = StaNMF(**SLOW_KW, client=ex, store=store).fit(X)
    after = _block_files(store)
    # every block exists now and the finished ones were not rewritten (a recomputed block would be
    # replaced atomically: new inode); n_submitted_ counts only the last K's wave under grow
    assert len(after) == N_SLOW_BLOCKS
    assert {name: after[name] for name in before} == before
    np.testing.assert_array_equal(model.instability_.to_numpy(), ref.instability_.to_numpy())


def test_interrupt_cancels_pending_tasks_and_resumes(client, tmp_path):
    X = _data(seed=6)
    params = SweepParams(random_state=3, max_iter=150)
    blocks = plan_blocks([2, 3, 4], 6, 2)
    store = SweepStore.open(tmp_path, X, params)
    ex = DaskExecutor(client)
    seen = []

    def stop_after_two(spec, result):
        seen.append(spec)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(X, blocks, params, store=store, executor=ex, on_result=stop_after_two)
    deadline = time.monotonic() + 5
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(client.processing().values())  # pending tasks were cancelled
    assert sum(store.has(b) for b in blocks) == 2
    done = run_sweep(X, blocks, params, store=store, executor=ex)
    assert ex.n_submitted_ == len(blocks) - 2 and len(done) == len(blocks) - 2
    local = run_sweep(X, blocks, params)
    for b in blocks:
        np.testing.assert_array_equal(store.get(b).components, local[b].components)


def test_bad_configuration_is_a_config_error(client, tmp_path):
    with pytest.raises(ConfigError, match="data=.*: must be one of"):
        DaskExecutor(client, data="ftp")
    with pytest.raises(ConfigError, match="needs data_dir"):
        DaskExecutor(client, data="mmap")
    with pytest.raises(ConfigError, match="dask.distributed.Client"):
        as_executor(object())
    ex = DaskExecutor(client)
    assert as_executor(ex) is ex


def test_thread_executor_draws_a_task_only_for_a_free_worker():
    """Tasks given as a generator are drawn one per free worker (a block's warm start is then
    held only while it runs); every result comes back once."""
    import time

    from osnmf.factorize.sweep.executors import ThreadExecutor

    drawn = []

    def tasks():
        for i in range(9):
            drawn.append(i)
            yield (i,)

    def work(i):
        time.sleep(0.002 * (i % 3))
        return i * i

    got = {}
    for i, result in ThreadExecutor(2).map_unordered(work, tasks()):
        got[i] = result
        assert len(drawn) - len(got) <= 2  # the running ones only
    assert got == {i: i * i for i in range(9)}
