"""The layout of a run folder (``osnmf run --out DIR``) and the one reader of its patterns.

Every name a run writes and a later command reads is here (docs/outputs.md describes the files);
:func:`read_patterns` is what ``osnmf view`` and ``osnmf project`` read a finished run with.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osnmf.errors import InputError

__all__ = [
    "CACHE", "COEFFICIENTS", "FIGURES", "JOURNAL", "LOCK", "MANIFEST", "NETWORKS", "PATTERNS", "PATTERN_FILES",
    "REPORT", "RESULTS", "SUMMARY", "SWEEP", "RunPatterns", "check_finished", "pattern_file", "pattern_ids",
    "read_parameters", "read_patterns",
]

SUMMARY = "summary.json"  # parameters, data, stage keys and timings, headline numbers
PATTERNS = "patterns.npz"  # patterns (K, AP, DV, ML), names, spacing, support, coefficients
PATTERN_FILES = "patterns"  # one NRRD per pattern: patterns/PP1.nrrd …
COEFFICIENTS = "coefficients.csv"
RESULTS = "results.h5ad"
NETWORKS = "networks"
FIGURES = "figures"
REPORT = "report.html"
# the run's machinery: what makes a rerun resume (not results)
CACHE = ".cache"  # one entry per stage (osnmf.run.stagecache)
SWEEP = "sweep"  # the staNMF sweep store (osnmf.factorize.sweep.store)
LOCK = ".lock"  # the run lock (osnmf.run.lock)
MANIFEST = "manifest.json"  # osnmf's marker of the folder: what its last run wrote, complete or not (osnmf.run.folder)
JOURNAL = ".writing"  # the result files a run is writing, one a line, until its manifest commits

_FINISHED = "is it the --out folder of a finished 'osnmf run'?"


def pattern_ids(k: int) -> list[str]:
    """``PP1`` … ``PPK``: the patterns' ids (file names, the ``pattern`` column of links.csv)."""
    return [f"PP{i + 1}" for i in range(k)]


def pattern_file(pattern_id: str) -> str:
    """The NRRD of one pattern, relative to the run folder (``patterns/PP3.nrrd``)."""
    return f"{PATTERN_FILES}/{pattern_id}.nrrd"


@dataclass(frozen=True)
class RunPatterns:
    """The patterns of a finished run, as ``patterns.npz`` holds them."""

    patterns: np.ndarray  # float32 (K, AP, DV, ML), 0 outside the support
    pattern_names: list[str]  # K names, "PP3 · Isocortex"
    spacing_um: tuple[float, float, float]  # voxel size along AP, DV, ML
    support: np.ndarray  # bool (AP, DV, ML): the voxels the patterns live on
    path: Path  # the file read


def check_finished(run_dir: str | os.PathLike) -> None:
    """:class:`InputError` when the manifest of ``run_dir`` says its last run stopped while writing
    its results (the folder may then hold files of two runs)."""
    try:
        info = json.loads((Path(run_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # none (an osnmf before manifests) or unreadable: the files are checked one by one
    if isinstance(info, dict) and info.get("complete") is False:
        raise InputError(f"{run_dir}: its last run stopped while writing its results (the folder may mix two "
                         f"runs); rerun it ('osnmf run --out {run_dir}' with its settings) to finish it")


def read_patterns(run_dir: str | os.PathLike) -> RunPatterns:
    """Read and check ``<run_dir>/patterns.npz``; every problem is one :class:`InputError` line.

    An older run's ``patterns.npz`` without ``support`` gets it from ``results.h5ad``
    (``obsm["spatial"]``, the support voxels' indices); without both, it is refused."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} not found; pass the --out folder of 'osnmf run' or 'osnmf demo'")
    check_finished(run_dir)
    path = run_dir / PATTERNS
    if not path.is_file():
        raise InputError(f"{run_dir} has no {PATTERNS}; {_FINISHED} (rerun 'osnmf run --out {run_dir}')")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("patterns", "pattern_names", "spacing_um", "support") if k not in npz.files]
            if missing == ["support"] and (run_dir / RESULTS).is_file():
                missing = []  # an older run: the support from results.h5ad below
            if missing:
                raise InputError(f"{path} lacks array(s) {', '.join(missing)}"
                                 + (f" (and there is no {RESULTS} to read it from)" if "support" in missing else "")
                                 + "; rerun the pipeline to rewrite it")
            patterns = np.asarray(npz["patterns"])
            names = [str(n) for n in np.asarray(npz["pattern_names"]).ravel()]
            spacing = np.asarray(npz["spacing_um"], dtype=float).ravel()
            support = np.asarray(npz["support"]) if "support" in npz.files else None
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if patterns.ndim != 4 or not np.issubdtype(patterns.dtype, np.number):
        raise InputError(f"{path}: 'patterns' must be numeric K × AP × DV × ML, got {patterns.dtype} {patterns.shape}")
    if len(names) != patterns.shape[0]:
        raise InputError(f"{path}: {len(names)} pattern names for {patterns.shape[0]} patterns")
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise InputError(f"{path}: 'spacing_um' must be 3 positive numbers (AP, DV, ML), got {spacing.tolist()}")
    if support is None:
        support = _support_from_results(run_dir / RESULTS, patterns.shape[1:])
    if support.dtype != bool or support.shape != patterns.shape[1:]:
        raise InputError(f"{path}: 'support' must be a bool AP × DV × ML mask of the patterns' grid "
                         f"{patterns.shape[1:]}, got {support.dtype} {support.shape}")
    return RunPatterns(patterns.astype(np.float32, copy=False), names, tuple(float(s) for s in spacing), support,
                       path)


def _support_from_results(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The support mask of ``shape`` from a run's ``results.h5ad`` (``obsm["spatial"]``: int voxel
    indices (n_support_voxels, 3), each inside the grid); one :class:`InputError` line otherwise."""
    import anndata

    try:
        adata = anndata.read_h5ad(path, backed="r")
        try:
            coords = np.asarray(adata.obsm["spatial"])
        finally:
            adata.file.close()
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: cannot read the support voxels (obsm['spatial']: {type(exc).__name__}); "
                         "rerun the pipeline to rewrite the run's patterns.npz") from None
    if (coords.ndim != 2 or coords.shape[1] != 3 or not np.issubdtype(coords.dtype, np.integer)
            or (coords < 0).any() or (coords >= np.asarray(shape)).any()):
        raise InputError(f"{path}: obsm['spatial'] must be integer voxel indices (n, 3) inside the grid {shape}, "
                         f"got {coords.dtype} {coords.shape}; rerun the pipeline")
    support = np.zeros(shape, dtype=bool)
    support[tuple(coords.T)] = True
    return support


def read_parameters(run_dir: str | os.PathLike) -> dict:
    """The run's settings (``parameters`` of ``<run_dir>/summary.json``)."""
    check_finished(run_dir)
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        raise InputError(f"{path}: not found; {_FINISHED}")
    try:
        parameters = json.loads(path.read_text(encoding="utf-8"))["parameters"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: unreadable ({type(exc).__name__}: {exc}); rerun 'osnmf run'") from None
    if not isinstance(parameters, dict):
        raise InputError(f"{path}: 'parameters' is not a table; rerun 'osnmf run'")
    return parameters
