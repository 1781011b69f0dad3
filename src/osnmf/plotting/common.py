"""Shared figure helpers: the non-interactive backend and atomic PNG + SVG saving."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from osnmf.atomic import atomic_path  # noqa: E402

PATTERN_CMAP = "magma"


def save_figure(fig, stem: str | os.PathLike, formats=("png", "svg"), dpi: int = 110) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.svg`` (atomically) and close it."""
    stem = Path(stem)
    written = []
    for fmt in formats:
        target = stem.with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        written.append(target)
    plt.close(fig)
    return written


def new_figure(width: float, height: float):
    return plt.figure(figsize=(width, height), layout="constrained")
