"""The packaged Drosophila images against the raw CSV (../shared, or the identical packaged
copy), read independently."""

import numpy as np
import pandas as pd
from conftest import reference_file

from osnmf import load_drosophila

RAW = reference_file("drosophila/WuExampleExpression.csv.gz", "WuExampleExpression.csv.gz")


def test_load_drosophila_matches_the_raw_csv():
    X, names = load_drosophila()
    assert X.shape == (1640, 405) and X.dtype == np.float32
    assert X.flags.c_contiguous
    raw = pd.read_csv(RAW, index_col=0)  # pixels are rows, images are columns
    assert raw.shape == (405, 1640)
    assert names == list(raw.columns)
    assert np.allclose(X, raw.to_numpy().T, rtol=0, atol=1e-7)
    assert X.min() >= 0 and X.max() <= 1
    assert names[:3] == ["pnr", "Abd.B", "Abd.B.1"]
