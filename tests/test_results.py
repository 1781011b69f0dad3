"""Typed stage results survive the stage cache unchanged, without pickle."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from osnmf import results as rs
from osnmf.run.stagecache import StageCache, from_arrays, to_arrays


def _example(cls, rng):
    """An instance of ``cls`` with random content of the annotated kinds."""
    import typing

    values = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if hint is np.ndarray:
            values[f.name] = rng.random((3, 4)).astype(np.float32)
        elif hint is pd.DataFrame:
            values[f.name] = pd.DataFrame({"k": [2, 3, 4], "r": rng.random(3), "name": ["a", "b", "c"]})
        elif hint is int:
            values[f.name] = int(rng.integers(100))
        elif hint is float:
            values[f.name] = float(rng.random())
        elif hint is str:
            values[f.name] = '{"tree": [1, 2]}'
        else:
            raise AssertionError(hint)
    return cls(**values)


@pytest.mark.parametrize("cls", [rs.ImputeResult, rs.SweepResult, rs.BaselinesResult, rs.MetricsResult,
                                 rs.LinkingResult, rs.MarkersResult])
def test_stage_result_round_trips_through_the_cache(cls, tmp_path):
    original = _example(cls, np.random.default_rng(0))
    cache = StageCache(tmp_path)
    cache.put("stage", "key1", to_arrays(original))
    back = from_arrays(cls, cache.get("stage", "key1"))  # np.load(allow_pickle=False) inside
    assert type(back) is cls
    for f in dataclasses.fields(cls):
        a, b = getattr(original, f.name), getattr(back, f.name)
        if isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b)
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
        else:
            assert a == b and type(a) is type(b)
    assert cache.get("stage", "another key") is None


def test_a_result_of_another_shape_is_refused():
    arrays = to_arrays(_example(rs.SweepResult, np.random.default_rng(1)))
    del arrays["k"]
    with pytest.raises(KeyError):
        from_arrays(rs.SweepResult, arrays)

    @dataclasses.dataclass
    class Bad:
        items: list

    with pytest.raises(TypeError, match="arrays, DataFrames and scalars"):
        to_arrays(Bad([1]))


def test_stability_table_joins_pca_beside_stanmf():
    panel = pd.DataFrame({"k": [3, 2], "gamma": [0.2, 0.1], "gamma_se": [0.01, 0.01], "oob_error": [0.3, 0.4]})
    sweep = rs.SweepResult(pd.DataFrame({"k": [2, 3], "hungarian": [0.1, 0.2]}), 2, np.zeros((2, 5)),
                           np.zeros((4, 2)), np.zeros((1, 2, 5)), panel, pd.DataFrame(), 2)
    z = np.zeros((2, 5))
    base = rs.BaselinesResult(pd.DataFrame({"k": [3], "hungarian": [0.5]}), z, z, z[0], z[None], z, z, z)
    table = rs.stability_table(sweep, base)
    # the K-selection panel joins by K after PCA, without repeating gamma (= hungarian)
    assert list(table.columns) == ["k", "hungarian", "pca_hungarian", "oob_error"]
    assert table["pca_hungarian"].isna().tolist() == [True, False] and table["pca_hungarian"].iloc[1] == 0.5
    assert table["oob_error"].tolist() == [0.4, 0.3]
