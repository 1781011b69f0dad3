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
