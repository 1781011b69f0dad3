"""The BDGP *Drosophila* embryo in situ images used by the original staNMF paper (Wu et al. 2016).

The packaged ``WuExampleExpression.csv.gz`` holds 405 pixels (rows) × 1,640 images (columns),
values in [0, 1]; the first column is a row label and the header holds the image names (gene
symbols, made unique by R with ``.1``, ``.2`` … suffixes).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from osnmf.errors import InputError

N_IMAGES, N_PIXELS = 1640, 405


def load_drosophila() -> tuple[np.ndarray, list[str]]:
    """Load the packaged Drosophila expression images.

    Returns
    -------
    X : float32 ``(1640, 405)``: one image per row (pixels as columns), values in [0, 1].
    names : the 1,640 image names (column headers of the file, in file order).
    """
    path = resources.files("osnmf.resources").joinpath("WuExampleExpression.csv.gz")
    with path.open("rb") as fh:
        frame = pd.read_csv(fh, compression="gzip", index_col=0)
    values = frame.to_numpy(dtype=np.float32)
    if values.shape != (N_PIXELS, N_IMAGES) or not np.isfinite(values).all():
        raise InputError(f"{path.name}: expected {N_PIXELS} × {N_IMAGES} finite values, got {values.shape}")
    return np.ascontiguousarray(values.T), [str(c) for c in frame.columns]


# The 16 × 32 embryo template of the original staNMF code (bdgp/staNMF,
# utilities/embryoTemplate.csv): for each of the 16 rows (dorsal→ventral), the first and last
# column (0-based, anterior→posterior) inside the embryo. 405 pixels in all.
_EMBRYO_ROWS = (
    (10, 21), (6, 25), (4, 27), (2, 28), (1, 29), (1, 30), (0, 31), (0, 31),
    (0, 31), (0, 31), (1, 30), (2, 29), (3, 28), (4, 26), (7, 24), (11, 20),
)


def drosophila_template() -> np.ndarray:
    """The 16 × 32 boolean embryo template (405 pixels) of the original staNMF code."""
    t = np.zeros((16, 32), dtype=bool)
    for row, (a, b) in enumerate(_EMBRYO_ROWS):
        t[row, a : b + 1] = True
    return t


def drosophila_mask(order: str = "column") -> np.ndarray:
    """Mask whose C-order pixels are the 405 columns of :func:`osnmf.load_drosophila`'s X.

    The original code places an image column into the template with R's ``which(template == 1)``,
    i.e. in column-major order of the 16 × 32 template; the C order of the transposed template
    (32 × 16, anterior→posterior × dorsal→ventral) is that order. ``order="row"`` gives the
    row-major alternative (16 × 32), kept to check the layout
    (:func:`osnmf.evaluate.drosophila_layout.drosophila_layout_check`).
    """
    t = drosophila_template()
    if order == "column":
        return np.ascontiguousarray(t.T)
    if order == "row":
        return t
    raise InputError(f"order must be 'column' or 'row', got {order!r}")
