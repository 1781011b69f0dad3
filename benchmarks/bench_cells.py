"""Cells per second and peak memory of the cells reader and of ``osnmf project`` on cells (issue 37).

Writes a synthetic cell atlas (:func:`osnmf.datasets.cells.make_cells`: ``--cells`` cells ×
``--genes`` genes from a clean phantom with ``--patterns`` planted patterns, X dense float32 with
``--compression``) and a run folder whose patterns and gene coefficients are the planted ones, then
measures, each in a fresh process:

- ``bin``: :func:`osnmf.io.cells.read_cells` (what ``osnmf run --data cells.h5ad`` does first):
  cells onto the 200 µm grid, per-voxel means;
- ``project``: :func:`osnmf.project_cells.project_cells` (``osnmf project RUN --data cells.h5ad``).

Per phase: seconds, cells per second, the process's peak resident memory (VmHWM) and its resident
memory after the imports and the packaged atlas (VmRSS), next to the size X would have whole in
memory.

Usage::

    python benchmarks/bench_cells.py --cells 2000000 --genes 100 [--dir /tmp/bench_cells] [--chunk 100000]
        [--phase measure] [--json benchmarks/results/cells_2M.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MiB = 2**20


def _status(field: str) -> float:
    """A /proc/self/status memory field (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MiB
    return float("nan")


def make(args) -> dict:
    import numpy as np

    from osnmf.datasets.cells import make_cells

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    cells = make_cells(folder / "cells.h5ad", n_cells=args.cells, n_genes=args.genes, n_patterns=args.patterns,
                       compression=args.compression, keep=False, seed=0)
    seconds = time.perf_counter() - t
    ph = cells.phantom
    run = folder / "run"
    run.mkdir(exist_ok=True)
    brain = ph.atlas.brain_mask
    vol = np.zeros((ph.n_patterns, *brain.shape), np.float32)
    vol[:, brain] = ph.patterns
    np.savez_compressed(run / "patterns.npz", patterns=vol,
                        pattern_names=np.array([f"PP{i + 1}" for i in range(ph.n_patterns)]),
                        spacing_um=np.array(ph.atlas.spacing_um), support=brain, coefficients=ph.coefficients,
                        genes=ph.data.genes, experiment_ids=ph.data.experiment_ids)
    return {"phase": "make", "seconds": round(seconds, 1),
            "file_mib": round((folder / "cells.h5ad").stat().st_size / MiB, 1)}


def measure(args) -> dict:
    import anndata  # noqa: F401  (the readers' lazy imports and the packaged atlas count as baseline)
    import h5py  # noqa: F401

    from osnmf.atlas import Atlas

    Atlas.default()
    folder = Path(args.dir)
    if args.phase == "bin":
        from osnmf.io.cells import read_cells

        rss = _status("VmRSS")
        t = time.perf_counter()
        expr = read_cells(folder / "cells.h5ad", chunk_cells=args.chunk)
        seconds = time.perf_counter() - t
        note = f"{expr.volumes.nbytes / MiB:.0f} MiB of volumes out"
    else:
        from osnmf.project_cells import project_cells

        rss = _status("VmRSS")
        t = time.perf_counter()
        summary = project_cells(folder / "run", folder / "cells.h5ad", folder / "proj", chunk_cells=args.chunk)
        seconds = time.perf_counter() - t
        note = f"same top pattern for {summary['agreement']['same_top_pattern']} of {summary['n_cell_types']} types"
    return {"phase": args.phase, "seconds": round(seconds, 1), "cells_per_s": round(args.cells / seconds),
            "peak_rss_mib": round(_status("VmHWM")), "rss_after_imports_mib": round(rss),
            "X_whole_mib": round(args.cells * args.genes * 4 / MiB), "note": note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2_000_000)
    parser.add_argument("--genes", type=int, default=100)
    parser.add_argument("--patterns", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--compression", default="lzf")
    parser.add_argument("--dir", default="/tmp/bench_cells")
    parser.add_argument("--phase", choices=("all", "make", "bin", "project", "measure"), default="all",
                        help="all: make then measure; measure: bin and project on an existing --dir")
    parser.add_argument("--json", default=None, help="also write the phases' results to this file")
    args = parser.parse_args()
    if args.phase not in ("all", "measure"):
        print(json.dumps(make(args) if args.phase == "make" else measure(args)))
        return
    results = []
    for phase in ("make", "bin", "project") if args.phase == "all" else ("bin", "project"):
        cmd = [sys.executable, __file__, "--phase", phase, "--cells", str(args.cells), "--genes", str(args.genes),
               "--patterns", str(args.patterns), "--chunk", str(args.chunk), "--compression", args.compression,
               "--dir", args.dir]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        line = result.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        results.append(json.loads(line))
    if args.json:
        load = Path("/proc/loadavg").read_text().split()[:3]
        Path(args.json).write_text(json.dumps({"cells": args.cells, "genes": args.genes, "patterns": args.patterns,
                                               "chunk": args.chunk, "compression": args.compression,
                                               "loadavg_after": load, "phases": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
