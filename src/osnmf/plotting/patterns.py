"""Pattern volumes: three orthogonal projections per pattern, and a coronal montage."""

from __future__ import annotations

import numpy as np

from osnmf.plotting.common import PATTERN_CMAP, new_figure

VIEWS = (("coronal (AP mean)", 0), ("horizontal (DV mean)", 1), ("sagittal (ML mean)", 2))


def mean_projection(volume: np.ndarray, brain: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the brain voxels along ``axis``; NaN where the ray misses the brain."""
    total = np.where(brain, volume, 0).sum(axis=axis)
    count = brain.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def plot_pattern_projections(volumes: np.ndarray, brain: np.ndarray, names: list[str]):
    """Grid of K rows × 3 orthogonal mean projections.

    volumes: ``(K, AP, DV, ML)``; brain: bool ``(AP, DV, ML)``; names: K labels.
    """
    k = volumes.shape[0]
    fig = new_figure(9, 1.9 * k + 0.5)
    axes = fig.subplots(k, 3, squeeze=False)
    for row in range(k):
        for col, (title, axis) in enumerate(VIEWS):
            image = mean_projection(volumes[row], brain, axis)
            # coronal: DV down, ML across; horizontal: AP down, ML across; sagittal: DV down, AP across
            shown = image.T if axis == 2 else image
            ax = axes[row, col]
            ax.imshow(shown, cmap=PATTERN_CMAP, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
            if col == 0:
                ax.set_ylabel(names[row], fontsize=9)
    return fig


def plot_coronal_montage(volume: np.ndarray, brain: np.ndarray, title: str, n_sections: int = 12):
    """Evenly spaced coronal sections through one pattern volume ``(AP, DV, ML)``."""
    ap_with_brain = np.flatnonzero(brain.any(axis=(1, 2)))
    sections = np.linspace(ap_with_brain[0], ap_with_brain[-1], n_sections).round().astype(int)
    cols = 6
    rows = int(np.ceil(n_sections / cols))
    fig = new_figure(11, 1.9 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    vmax = float(np.nanmax(volume[brain])) if brain.any() else 1.0
    for ax, ap in zip(axes, sections, strict=False):
        image = np.where(brain[ap], volume[ap], np.nan)
        ax.imshow(image, cmap=PATTERN_CMAP, vmin=0, vmax=vmax or 1.0, interpolation="nearest")
        ax.set_title(f"AP {ap}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(sections):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig
