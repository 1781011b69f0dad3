"""Pattern volumes: three orthogonal projections per pattern, and a coronal montage.

Every panel is drawn in millimetres from the grid's first voxel (its front, top and left edge, not
bregma: :func:`osnmf.atlas.position_label`; as the napari viewer shows them),
with its orientation (A/P, D/V, L/R) at the edges and a colour bar; volumes are ``(AP, DV, ML)``,
index 0 anterior, dorsal and left.
"""

from __future__ import annotations

import numpy as np
from matplotlib import patheffects
from scipy import ndimage

from osnmf.atlas import axis_mm_label, position_label
from osnmf.plotting.common import PATTERN_CMAP, new_figure

VIEWS = (("coronal (AP mean)", 0), ("horizontal (DV mean)", 1), ("sagittal (ML mean)", 2))
# per averaged axis: (image axis names down, across), (left, right, top, bottom) edge letters
LAYOUT = {0: (("DV", "ML"), ("L", "R", "D", "V")),
          1: (("AP", "ML"), ("L", "R", "A", "P")),
          2: (("DV", "AP"), ("A", "P", "D", "V"))}
AXIS_INDEX = {"AP": 0, "DV": 1, "ML": 2}


def mean_projection(volume: np.ndarray, brain: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the brain voxels along ``axis`` (NaN voxels count as 0, the value a pattern has
    outside its support); NaN (drawn white) where the ray misses the brain, except for gaps enclosed
    by the brain's silhouette (a one-voxel ray between the olfactory bulbs), which read 0 instead of
    a white dot inside the brain."""
    total = np.where(brain, np.nan_to_num(volume), 0).sum(axis=axis)
    count = brain.sum(axis=axis)
    inside = ndimage.binary_fill_holes(count > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.where(inside, 0.0, np.nan))


def view_image(image: np.ndarray, axis: int) -> np.ndarray:
    """A projection/section along ``axis`` oriented for display (rows and columns of LAYOUT)."""
    return image.T if axis == 2 else image


def mm_extent(shape: tuple[int, int], axis: int, spacing_um) -> tuple[float, float, float, float]:
    """imshow ``extent`` (left, right, bottom, top) in mm of a displayed view along ``axis``."""
    down, across = (AXIS_INDEX[a] for a in LAYOUT[axis][0])
    width, height = shape[1] * spacing_um[across] / 1000, shape[0] * spacing_um[down] / 1000
    return (0.0, width, height, 0.0)


def label_orientation(ax, axis: int, fontsize: float = 7) -> None:
    """Write the anatomical direction at each edge of a view along ``axis`` (white, dark outline)."""
    left, right, top, bottom = LAYOUT[axis][1]
    outline = [patheffects.withStroke(linewidth=2, foreground="black")]
    for text, (x, y), ha, va in ((left, (0.02, 0.5), "left", "center"), (right, (0.98, 0.5), "right", "center"),
                                 (top, (0.5, 0.98), "center", "top"), (bottom, (0.5, 0.02), "center", "bottom")):
        ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=fontsize, color="white",
                fontweight="bold", path_effects=outline, gid="orientation")


def _mm_axes(ax, axis: int, with_labels: bool) -> None:
    ax.tick_params(labelsize=6, length=2)
    if with_labels:
        down, across = LAYOUT[axis][0]
        ax.set_xlabel(axis_mm_label(across), fontsize=7)


def plot_pattern_projections(volumes: np.ndarray, brain: np.ndarray, names: list[str],
                             spacing_um=(200.0, 200.0, 200.0)):
    """Grid of K rows × 3 orthogonal mean projections, one colour bar per pattern.

    volumes: ``(K, AP, DV, ML)``; brain: bool ``(AP, DV, ML)``; names: K labels.
    """
    k = volumes.shape[0]
    fig = new_figure(10, 2.1 * k + 0.6)
    axes = fig.subplots(k, 3, squeeze=False)
    for row in range(k):
        images = [view_image(mean_projection(volumes[row], brain, axis), axis) for _, axis in VIEWS]
        vmax = max(float(np.nanmax(im)) if np.isfinite(im).any() else 0.0 for im in images) or 1.0
        for col, ((title, axis), image) in enumerate(zip(VIEWS, images, strict=True)):
            ax = axes[row, col]
            im = ax.imshow(image, cmap=PATTERN_CMAP, vmin=0, vmax=vmax, interpolation="nearest",
                           extent=mm_extent(image.shape, axis, spacing_um))
            label_orientation(ax, axis)
            _mm_axes(ax, axis, with_labels=row == k - 1)
            if row == 0:
                ax.set_title(title, fontsize=9)
            if col == 0:
                ax.set_ylabel(names[row], fontsize=9)
        fig.colorbar(im, ax=axes[row, :].tolist(), shrink=0.9, pad=0.01).set_label("mean value", fontsize=7)
    return fig


def mass_sections(volume: np.ndarray, brain: np.ndarray, n: int, floor: float = 0.05) -> np.ndarray:
    """Up to ``n`` coronal (AP) indices where the pattern is, ascending.

    A section's weight is the pattern's positive mass in its brain voxels. The sections are the
    mass quantiles ``(i + ½) / n`` (each tile stands for an equal share of the pattern, so a pattern
    in two far-apart places gets tiles in both and none in the empty stretch between), kept when
    their weight is at least ``floor`` × the heaviest section's and topped up to ``n`` by the
    heaviest remaining sections above that floor; fewer tiles rather than empty ones. A pattern
    without mass spans the brain evenly.
    """
    in_brain = np.flatnonzero(brain.any(axis=(1, 2)))
    if in_brain.size == 0:
        return np.zeros(0, dtype=int)
    mass = np.where(brain, np.clip(np.nan_to_num(volume), 0, None), 0).sum(axis=(1, 2))
    if not mass.sum() > 0:
        return np.unique(np.linspace(in_brain[0], in_brain[-1], n).round().astype(int))
    cum = np.cumsum(mass) / mass.sum()
    heavy = mass >= floor * mass.max()
    chosen = {int(s) for s in np.searchsorted(cum, (np.arange(n) + 0.5) / n) if heavy[s]}
    for s in np.argsort(-mass, kind="stable"):
        if len(chosen) >= n or mass[s] < floor * mass.max():
            break
        chosen.add(int(s))
    return np.array(sorted(chosen), dtype=int)


def plot_coronal_montage(volume: np.ndarray, brain: np.ndarray, title: str, n_sections: int = 12,
                         spacing_um=(200.0, 200.0, 200.0)):
    """Coronal sections through one pattern volume ``(AP, DV, ML)`` where the pattern is
    (:func:`mass_sections`).

    Each tile is titled by its AP position (:func:`osnmf.atlas.position_label`: mm from the grid's
    front edge, not bregma); voxels of the brain outside the support are 0 (the pattern's value
    there), so the brain has no holes.
    """
    sections = mass_sections(volume, brain, n_sections)
    cols = 6
    rows = int(np.ceil(len(sections) / cols))
    fig = new_figure(11.5, 1.9 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    vmax = float(np.nanmax(volume[brain])) if brain.any() else 1.0
    im = None
    for i, (ax, ap) in enumerate(zip(axes, sections, strict=False)):
        image = np.where(brain[ap], np.nan_to_num(volume[ap]), np.nan)
        im = ax.imshow(image, cmap=PATTERN_CMAP, vmin=0, vmax=vmax or 1.0, interpolation="nearest",
                       extent=mm_extent(image.shape, 0, spacing_um))
        ax.set_title(position_label("AP", ap, spacing_um, short=True), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            label_orientation(ax, 0)
    for ax in axes[len(sections):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.tolist(), shrink=0.8, pad=0.01).set_label("pattern value", fontsize=8)
    fig.suptitle(f"{title} (AP: mm from the grid's front edge, not bregma)", fontsize=10)
    return fig
