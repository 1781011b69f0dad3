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
    # One draw settles the layout and the tight bounding box, and its pixels are the PNG (cropped to
    # that box); the other formats are drawn once more with both fixed. ``bbox_inches="tight"`` would
    # draw twice per format and solve the layout each time: 4 draws for PNG + SVG instead of 2.
    fig.set_dpi(dpi)
    fig.canvas.draw()
    bbox = fig.get_tightbbox(fig.canvas.get_renderer()).padded(matplotlib.rcParams["savefig.pad_inches"])
    if fig.get_layout_engine() is not None:
        fig.set_layout_engine("none")
    for fmt in formats:
        target = stem.with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            if fmt != "png" or not _write_drawn_png(fig, bbox, dpi, tmp):
                fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches=bbox)
        written.append(target)
    plt.close(fig)
    return written


def _write_drawn_png(fig, bbox, dpi: int, path) -> bool:
    """Write the pixels of the figure's last Agg draw inside ``bbox`` (inches) as a PNG, the part of
    the box beyond the canvas filled with the figure's face colour (as savefig's padding is); False
    (nothing written) when the drawing itself reaches beyond the canvas."""
    import numpy as np
    from matplotlib.colors import to_rgba
    from PIL import Image

    pixels = np.asarray(fig.canvas.buffer_rgba())
    height, width = pixels.shape[:2]
    x0, x1 = int(round(bbox.x0 * dpi)), int(round(bbox.x1 * dpi))
    top, bottom = int(round(height - bbox.y1 * dpi)), int(round(height - bbox.y0 * dpi))
    pad = int(round(matplotlib.rcParams["savefig.pad_inches"] * dpi)) + 1
    if x0 < -pad or top < -pad or x1 > width + pad or bottom > height + pad:
        return False  # something is drawn outside the canvas: let savefig place it
    out = np.empty((bottom - top, x1 - x0, 4), dtype=np.uint8)
    out[...] = np.round(np.array(to_rgba(fig.get_facecolor())) * 255).astype(np.uint8)
    sy, sx = slice(max(top, 0), min(bottom, height)), slice(max(x0, 0), min(x1, width))
    out[sy.start - top:sy.stop - top, sx.start - x0:sx.stop - x0] = pixels[sy, sx]
    Image.fromarray(out).save(path, format="png", dpi=(dpi, dpi))
    return True


def new_figure(width: float, height: float):
    return plt.figure(figsize=(width, height), layout="constrained")
