"""Where the blocks of a stability sweep run: here, on threads, or on a ``dask.distributed`` cluster.

An executor has one method, ``map_unordered(fn, tasks) -> (index, result)`` in completion order
(:class:`Executor`). :class:`SerialExecutor` runs the tasks one after the other,
:class:`ThreadExecutor` on threads (the numeric kernels release the GIL), and
:class:`DaskExecutor` on a Dask cluster, so a distributed sweep
writes into the same resumable :class:`~osnmf.factorize.sweep.store.SweepStore` as a local one: the
workers only compute, the client writes every block as soon as it arrives. Local and distributed
runs of the same data and parameters are therefore interchangeable, and either can resume the
other.

Data movement: the arguments that every task shares (the matrix ``X``, a sketch) travel to each
worker once, not once per task, either scattered (``data="scatter"``: ``client.scatter(...,
broadcast=True)``; workers that join later fetch it from a peer) or as a memory-mapped ``.npy``
file on a filesystem that the workers share with the client (``data="mmap"``, typical on HPC).
A task then carries only its bootstrap counts (R × n integers) and the parameters.

Fault tolerance is Dask's: tasks of a worker that dies are rescheduled on the others (blocks are
pure functions, so the results are identical). If the client dies, finished blocks are already
in the store and a rerun computes only the missing ones.

Typical use::

    from dask.distributed import Client
    model = StaNMF(k_range=range(8, 31), store="run/sweep", client=Client("tcp://host:8786"))
    model.fit(X)
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import dataclasses
import importlib.metadata
import os
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from osnmf.constraints import refuse
from osnmf.errors import ConfigError, OsnmfError

__all__ = ["DaskExecutor", "Executor", "NpyRef", "SerialExecutor", "ThreadExecutor", "dask_client",
           "as_executor"]

DATA_MODES = ("scatter", "mmap")
_SHARED_MIN_BYTES = 64 * 1024  # shared task arguments at least this big are sent once


class Executor(Protocol):
    """Runs block tasks, yielding ``(index, result)`` as each finishes (any order).

    ``tasks`` may be a generator: the local executors draw a task only when a worker is free,
    so arguments made on demand (a block's K−1 warm start, read from the store) are held for the
    running blocks only.
    """

    def map_unordered(self, fn: Callable[..., Any],
                      tasks: Iterable[tuple]) -> Iterator[tuple[int, Any]]: ...


class SerialExecutor:
    """Runs tasks one after the other in this process."""

    def map_unordered(self, fn, tasks):
        for i, args in enumerate(tasks):
            yield i, fn(*args)


class ThreadExecutor:
    """Runs tasks on ``n_jobs`` threads (the numeric kernels release the GIL)."""

    def __init__(self, n_jobs: int):
        self.n_jobs = int(n_jobs)

    def map_unordered(self, fn, tasks):
        todo = enumerate(tasks)
        with cf.ThreadPoolExecutor(max_workers=self.n_jobs) as pool:
            running: dict[cf.Future, int] = {}

            def submit_next() -> None:
                nxt = next(todo, None)
                if nxt is not None:
                    running[pool.submit(fn, *nxt[1])] = nxt[0]

            for _ in range(self.n_jobs):
                submit_next()
            while running:
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    i = running.pop(fut)
                    submit_next()  # the freed worker starts while the result is handled
                    yield i, fut.result()


@dataclass(frozen=True)
class NpyRef:
    """A reference to a ``.npy`` file that a worker opens memory-mapped (read-only)."""

    path: str

    def load(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r", allow_pickle=False)


def _realign(value: Any) -> Any:
    """``value`` with every numpy array aligned to its item size (copied only when needed).

    Dask deserialises arrays at arbitrary byte addresses; on a misaligned array numpy takes its
    unaligned loops, whose float rounding differs from a local run's. Dataclass fields (e.g. a
    ``Sketch``) are realigned too.
    """
    if isinstance(value, np.ndarray):
        return value if value.flags.aligned else np.require(value, requirements=["A"])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if any(isinstance(v, np.ndarray) and not v.flags.aligned for v in fields.values()):
            new = copy.copy(value)
            for name, v in fields.items():
                if isinstance(v, np.ndarray):
                    object.__setattr__(new, name, _realign(v))
            return new
    return value


class _Shared:
    """Wrapper of a shared argument: realigned once when a worker unpickles it, not per task."""

    def __init__(self, value: Any):
        self.value = value

    def __reduce__(self):
        return (_Shared._rebuild, (self.value,))

    @staticmethod
    def _rebuild(value: Any) -> _Shared:
        return _Shared(_realign(value))

    def __sizeof__(self) -> int:  # dask's memory accounting
        return _nbytes(self.value)


def _resolve(value: Any) -> Any:
    if isinstance(value, NpyRef):
        return value.load()
    if isinstance(value, _Shared):
        return _realign(value.value)  # a no-op after the worker-side rebuild
    return _realign(value)


def _run_task(fn: Callable[..., Any], *args: Any) -> Any:
    """Worker side: unwrap shared and memory-mapped arguments (aligned), call ``fn`` with BLAS on
    one thread (as every local fit: the same bits wherever a block runs)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(*(_resolve(a) for a in args))


def _nbytes(obj: Any) -> int:
    from dask.sizeof import sizeof

    return int(sizeof(obj))


def _shared_positions(tasks: Sequence[tuple]) -> list[int]:
    """Positions whose argument is the very same (large) object in every task."""
    if not tasks:
        return []
    first = tasks[0]
    out = []
    for j, obj in enumerate(first):
        if obj is None or isinstance(obj, int | float | str | bool | np.generic):
            continue
        if all(len(t) > j and t[j] is obj for t in tasks) and _nbytes(obj) >= _SHARED_MIN_BYTES:
            out.append(j)
    return out


def _save_npy_once(arr: np.ndarray, folder: Path) -> NpyRef:
    """Write ``arr`` to ``folder/<content hash>.npy`` (atomically, only if absent)."""
    from osnmf.atomic import atomic_path
    from osnmf.run.stagecache import digest

    arr = np.ascontiguousarray(arr)
    path = folder / f"data-{digest(arr)}.npy"
    if not path.exists():
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, arr, allow_pickle=False)
    return NpyRef(str(path.resolve()))


class DaskExecutor:
    """Sweep executor on a ``dask.distributed`` client: shared data sent once, results streamed.

    Parameters
    ----------
    client : dask.distributed.Client
        A connected client (``Client("tcp://host:8786")``, ``Client(LocalCluster(...))``,
        ``Client(SLURMCluster(...))``, a Dask Gateway cluster's ``get_client()``, ...).
    data : {"scatter", "mmap"}, default "scatter"
        How arguments shared by all tasks (``X``, a sketch) reach the workers: scattered to every
        worker once, or saved once as ``.npy`` in ``data_dir`` and memory-mapped by the workers
        (``data_dir`` must be on a filesystem the workers see under the same path). Shared
        arguments that are not arrays are always scattered.
    data_dir : path or None
        Folder for the ``.npy`` files of ``data="mmap"`` (e.g. the run directory).
    retries : int, default 0
        Extra attempts for a task that *raised* (worker deaths are retried by Dask anyway, up
        to ``distributed.scheduler.allowed-failures``).
    check_workers : bool, default True
        Before submitting, check that every worker can import osnmf (and warn on a version
        different from this process's).

    Attributes
    ----------
    n_submitted_ : int
        Tasks submitted by the last :meth:`map_unordered` call.
    shared_keys_ : list of str
        Dask keys of the scattered shared arguments of the last call.
    """

    def __init__(self, client: Any, *, data: str = "scatter",
                 data_dir: str | os.PathLike | None = None, retries: int = 0,
                 check_workers: bool = True):
        if data not in DATA_MODES:
            raise refuse("data", data, f"one of {', '.join(DATA_MODES)}")
        if data == "mmap" and data_dir is None:
            raise ConfigError("data='mmap' needs data_dir, a folder that the workers share with "
                              "the client (e.g. the run directory)")
        if not hasattr(client, "submit") or not hasattr(client, "scatter"):
            raise refuse("client", type(client), "a dask.distributed.Client")
        self.client = client
        self.data = data
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.retries = int(retries)
        self.check_workers = bool(check_workers)
        self.n_submitted_ = 0
        self.shared_keys_: list[str] = []
        # id -> (object, its scattered future or NpyRef): kept between calls (a sweep may call
        # map_unordered once per K), dropped when a call no longer uses the object
        self._shared: dict[int, tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r}, data={self.data!r})"

    # ------------------------------------------------------------------------------------
    def _check_workers(self) -> None:
        try:
            mine = importlib.metadata.version("osnmf")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
            mine = None
        found = self.client.run(importlib.metadata.version, "osnmf", on_error="return")
        for addr, ver in found.items():
            if isinstance(ver, BaseException):
                raise ConfigError(f"dask worker {addr} cannot import osnmf ({ver!r}); install "
                                  "osnmf (same version) in the workers' environment")
            if mine is not None and ver != mine:
                warnings.warn(f"dask worker {addr} runs osnmf {ver}, this process {mine}; "
                              "results may differ from a local run", stacklevel=3)

    def _share(self, obj: Any) -> Any:
        hit = self._shared.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        if self.data == "mmap" and isinstance(obj, np.ndarray):
            self.data_dir.mkdir(parents=True, exist_ok=True)
            ref = _save_npy_once(obj, self.data_dir)
        else:
            ref = self.client.scatter(_Shared(obj), broadcast=True, hash=False)
        self._shared[id(obj)] = (obj, ref)
        return ref

    def release(self) -> None:
        """Release the shared data held on the cluster (scattered copies of ``X``)."""
        for _, ref in self._shared.values():
            if hasattr(ref, "release"):
                ref.release()
        self._shared.clear()

    def map_unordered(self, fn: Callable[..., Any],
                      tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """Submit ``fn(*task)`` for every task; yield ``(index, result)`` as each completes.

        Closing the generator early (an exception or Ctrl-C in the consumer) cancels the tasks
        still pending and releases the shared data on the cluster.
        """
        from dask.distributed import as_completed
        from distributed.client import FutureCancelledError

        try:
            from distributed import KilledWorker
        except ImportError:  # pragma: no cover - older distributed
            from distributed.scheduler import KilledWorker

        tasks = list(tasks)
        self.n_submitted_ = 0
        if not tasks:
            return
        if self.check_workers:
            self._check_workers()
        positions = _shared_positions(tasks)
        keep = {id(tasks[0][j]) for j in positions}
        for key in [key for key in self._shared if key not in keep]:  # a previous sweep's data
            ref = self._shared.pop(key)[1]
            if hasattr(ref, "release"):
                ref.release()
        shared = {j: self._share(tasks[0][j]) for j in positions}
        self.shared_keys_ = [ref.key for ref in shared.values() if hasattr(ref, "key")]
        run_id = uuid.uuid4().hex[:8]
        name = getattr(fn, "__name__", "task")
        futures = {}
        try:
            for i, args in enumerate(tasks):
                call = [shared.get(j, a) for j, a in enumerate(args)]
                fut = self.client.submit(_run_task, fn, *call, key=f"{name}-{run_id}-{i:06d}",
                                         pure=False, retries=self.retries)
                futures[fut] = i
            self.n_submitted_ = len(futures)
            for fut, result in as_completed(list(futures), loop=self.client.loop,
                                            with_results=True):
                i = futures.pop(fut)
                fut.release()
                yield i, result
        except KilledWorker as exc:
            task = exc.args[0] if exc.args else "?"
            raise OsnmfError(f"sweep block task {task} killed its dask workers repeatedly (out "
                             "of memory?); lower block_size or give workers more memory, then "
                             "rerun to resume") from None
        except FutureCancelledError:
            raise OsnmfError("the dask cluster cancelled the sweep's tasks (scheduler restarted "
                             "or client disconnected); rerun to resume from the store") from None
        finally:
            if futures:  # interrupted: stop the pending work and drop the shared data
                self.client.cancel(list(futures))
                self.release()


def as_executor(client: Any, **options: Any) -> Any:
    """An executor for ``run_sweep`` from a Dask client (or an executor, returned unchanged).

    Parameters
    ----------
    client : dask.distributed.Client, or anything with ``map_unordered`` (e.g. a configured
        :class:`DaskExecutor`).
    **options : passed to :class:`DaskExecutor`.
    """
    if hasattr(client, "map_unordered"):
        return client
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError("a Dask client needs dask.distributed: pip install 'osnmf[dist]'") \
            from None
    return DaskExecutor(client, **options)


@contextlib.contextmanager
def dask_client(address: str | None) -> Iterator[Any]:
    """A ``dask.distributed`` client for ``--scheduler`` for the length of a ``with`` block: None
    when ``address`` is None; ``"local"`` starts a LocalCluster (one thread per worker: the solver
    holds the GIL between BLAS calls) and closes it afterwards; any other address is a running
    scheduler, left running. :class:`ConfigError` in one line when dask is missing or unreachable."""
    if address is None:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed: pip install 'osnmf[dist]'") from None
    if address == "local":
        client = Client(LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None))
    else:
        try:
            client = Client(address, timeout=30)
        except OSError as exc:
            raise ConfigError(f"--scheduler {address}: cannot reach the Dask scheduler ({exc})") from None
    try:
        yield client
    finally:
        cluster = client.cluster if address == "local" else None  # a LocalCluster we started
        client.close()
        if cluster is not None:
            cluster.close()
