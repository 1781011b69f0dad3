"""Shared by the preprocessing steps (kNN imputation, hold-out check): input checks and a
threaded run over chunks of experiments with one progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from osnmf.constraints import POSITIVE
from osnmf.errors import ConfigError, InputError
from osnmf.progress import ProgressBar

__all__ = ["check_spacing", "check_volumes", "chunk_slices", "run_chunks"]


def check_spacing(spacing_um) -> tuple[float, float, float]:
    """Three positive finite voxel sizes (µm) as floats, or :class:`ConfigError`."""
    try:
        spacing = tuple(float(s) for s in spacing_um)
    except (TypeError, ValueError):
        raise ConfigError(
            f"spacing_um={spacing_um!r}: must be three positive numbers (µm)"
        ) from None
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ConfigError(f"spacing_um={spacing_um!r}: must be three positive numbers (µm)")
    return spacing


def chunk_slices(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def check_volumes(volumes, support) -> tuple[np.ndarray, np.ndarray]:
    """Check float ``(n, AP, DV, ML)`` volumes and a bool ``(AP, DV, ML)`` mask on the same grid."""
    volumes = np.asarray(volumes)
    if volumes.ndim != 4:
        raise InputError(f"volumes must be (experiments, AP, DV, ML), got shape {volumes.shape}")
    if not np.issubdtype(volumes.dtype, np.floating):
        raise InputError(
            f"volumes must be floating point with NaN for missing, got dtype {volumes.dtype}"
        )
    support = np.asarray(support)
    if support.shape != volumes.shape[1:]:
        raise InputError(
            f"support of shape {support.shape} does not match the volumes' grid {volumes.shape[1:]}"
        )
    if support.dtype != bool:
        raise InputError(f"support must be a boolean mask, got dtype {support.dtype}")
    return volumes, support


def run_chunks(work, slices: list[slice], n_jobs: int, progress: bool, label: str) -> None:
    """Run ``work(slice)`` over chunks, in ``n_jobs`` threads, with an optional progress bar."""
    n_jobs = POSITIVE.check("n_jobs", n_jobs)
    with ProgressBar(label, len(slices), enabled=progress) as bar:
        if n_jobs == 1:
            for sl in slices:
                work(sl)
                bar.advance()
        else:
            with ThreadPoolExecutor(max_workers=int(n_jobs)) as pool:
                for _ in pool.map(work, slices):
                    bar.advance()
