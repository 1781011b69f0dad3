"""The reference files the package ships (src/osnmf/resources/PROVENANCE.md) agree with ../shared,
so the tests that read the packaged copy when ../shared is absent check the same bytes."""

import hashlib

import pandas as pd
import pytest
from conftest import PACKAGED


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("shared, packaged", [("aba/P56_Mouse_gridAnnotation.zip", "P56_Mouse_gridAnnotation.zip"),
                                              ("drosophila/WuExampleExpression.csv.gz", "WuExampleExpression.csv.gz")])
def test_unmodified_files_are_identical(shared_dir, shared, packaged):
    assert _sha(shared_dir / "data" / shared) == _sha(PACKAGED / packaged)


def test_packaged_ontology_is_the_shared_one_less_columns_and_void(shared_dir):
    shared = pd.read_csv(shared_dir / "data/aba/structure_tree.csv")
    ours = pd.read_csv(PACKAGED / "structure_tree.csv.gz")
    shared = shared.loc[shared["id"] > 0, list(ours.columns)].reset_index(drop=True)
    assert len(ours) == len(shared) == 1327
    pd.testing.assert_frame_equal(ours, shared, check_dtype=False)
