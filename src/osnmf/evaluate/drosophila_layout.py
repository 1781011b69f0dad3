"""Which pixel layout makes the Drosophila images spatially smooth: evidence for the embryo template order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from osnmf.datasets.drosophila import drosophila_mask
from osnmf.evaluate.metrics import summarize
from osnmf.spatial.moran import morans_i


def drosophila_layout_check(X: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Evidence for the pixel layout: Moran's I of every image under candidate layouts.

    A correct layout makes real in-situ images spatially smooth (high Moran's I); a wrong one
    scrambles them towards the random-permutation level. Returns one row per layout (column-major
    template, row-major template, random pixel order) with the mean, SD and median I of the
    images.
    """
    X = np.asarray(X, dtype=np.float64)
    perm = np.random.default_rng(seed).permutation(X.shape[1])
    rows = []
    for label, mask, data in (("column-major template", drosophila_mask("column"), X),
                              ("row-major template", drosophila_mask("row"), X),
                              ("random pixel order", drosophila_mask("column"), X[:, perm])):
        s = summarize(morans_i(data, mask))
        rows.append({"layout": label, "mean_I": s["mean"], "sd_I": s["sd"],
                     "median_I": s["median"], "n_images": s["n"]})
    return pd.DataFrame(rows)
