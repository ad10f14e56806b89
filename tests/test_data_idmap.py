"""IdMap: round trips for any hashable ids, unknown ids, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf

# Hashable ids of several kinds; bools are left out because Python treats True == 1.
ids_strategy = st.one_of(
    st.integers(-(2**40), 2**40),
    st.text(max_size=6),
    st.tuples(st.integers(0, 5), st.text(max_size=2)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ids_strategy, min_size=1, max_size=40))
def test_round_trip_mixed_types(values):
    m = rf.IdMap.from_values(values)
    distinct = list(dict.fromkeys(values))
    assert len(m) == len(distinct)
    idx = m.to_index(values)
    assert idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < len(m)
    back = m.to_external(idx)
    assert list(back) == list(values)
    # indices are a bijection onto 0..n-1
    assert sorted(m.to_index(distinct).tolist()) == list(range(len(m)))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), min_size=1, max_size=50, unique=True),
    st.lists(st.integers(-1000, 1000), max_size=20),
)
def test_unknown_ids(known, queries):
    m = rf.IdMap(known)
    got = m.to_index(queries, missing=-7)
    expected = [known.index(q) if q in known else -7 for q in queries]
    assert got.tolist() == expected
    if any(q not in known for q in queries):
        with pytest.raises(KeyError, match="unknown id"):
            m.to_index(queries, missing=None)
    else:
        assert m.to_index(queries, missing=None).tolist() == expected


def test_integer_ids_are_sorted_and_order_kept():
    m = rf.IdMap.from_values(np.array([30, 10, 20, 10]))
    assert m.values.tolist() == [10, 20, 30]
    assert m.to_index([20, 30, 10]).tolist() == [1, 2, 0]
    unsorted = rf.IdMap.from_values([30, 10, 20], sort=False)
    assert unsorted.values.tolist() == [30, 10, 20]


def test_mixed_unorderable_types_keep_first_appearance():
    m = rf.IdMap.from_values(["b", 3, ("x", 1), "b", 2.5])
    assert list(m.values) == ["b", 3, ("x", 1), 2.5]
    assert m.to_index([("x", 1), 2.5, "b"]).tolist() == [2, 3, 0]


def test_scalars_and_arrays_and_series():
    m = rf.IdMap(["u1", "u2", "u3"])
    assert m.to_index("u2") == 1
    assert m.to_external(2) == "u3"
    assert m.to_index(pd.Series(["u3", "u1"])).tolist() == [2, 0]
    assert m.to_index(np.array(["u3", "zz"])).tolist() == [2, -1]
    assert "u1" in m and "nope" not in m and [1] not in m
    assert list(m) == ["u1", "u2", "u3"]


def test_factorize_codes_match_to_index():
    values = np.random.default_rng(0).integers(0, 1000, 5000)
    m, codes = rf.IdMap.factorize(values)
    np.testing.assert_array_equal(codes, m.to_index(values))
    np.testing.assert_array_equal(m.to_external(codes), values)


def test_range_is_identity():
    m = rf.IdMap.range(5)
    assert m.to_index([4, 0, 9]).tolist() == [4, 0, -1]
    assert m.to_external([3]).tolist() == [3]
    assert len(m) == 5 and m == rf.IdMap([0, 1, 2, 3, 4])


def test_to_external_out_of_range_and_bad_dtype():
    m = rf.IdMap(["a", "b"])
    with pytest.raises(ValueError, match=r"indices must be in \[0, 2\), got 2"):
        m.to_external([0, 2])
    with pytest.raises(ValueError, match="got -1"):
        m.to_external([-1])
    with pytest.raises(TypeError, match="indices must be integers"):
        m.to_external([0.5])
    with pytest.raises(ValueError, match="pass missing="):  # recommend's padding is never the last id
        m.to_external([[0, -1]])


def test_to_external_keeps_the_shape_and_maps_padding():
    m = rf.IdMap(["a", "b", "c"])
    ids = np.array([[2, 0, 1], [1, -1, -1]])
    out = m.to_external(ids, missing=None)
    assert out.shape == (2, 3) and out.tolist() == [["c", "a", "b"], ["b", None, None]]
    assert m.to_external(ids, missing="").tolist()[1] == ["b", "", ""]
    assert m.to_external(np.zeros((0, 4), np.int64)).shape == (0, 4)
    assert m.to_external(np.int64(1)) == "b" and m.to_external(-1, missing=None) is None
    ints = rf.IdMap([10, 20])
    assert ints.to_external([[1, -1]], missing=-1).tolist() == [[20, -1]]
    assert ints.to_external([[1, -1]], missing=-1).dtype == np.int64
    assert ints.to_external([1, -1], missing=np.nan).dtype == np.float64
    assert ints.to_external([1, -1], missing=None).tolist() == [20, None]
    with pytest.raises(ValueError, match="got -2"):
        m.to_external([-2], missing=None)  # only -1 is padding


def test_bad_construction():
    with pytest.raises(ValueError, match="unique"):
        rf.IdMap(["a", "a"])
    with pytest.raises(ValueError, match="missing"):
        rf.IdMap(["a", None])
    with pytest.raises(ValueError, match="missing"):
        rf.IdMap.from_values([1.0, np.nan])
    with pytest.raises(ValueError, match="n must be"):
        rf.IdMap.range(-1)


def test_equality_and_subset():
    a = rf.IdMap(["x", "y", "z"])
    assert a == rf.IdMap(["x", "y", "z"]) and a != rf.IdMap(["y", "x", "z"])
    assert a.subset([2, 0]).values.tolist() == ["z", "x"]
    assert "n=3" in repr(a)


def test_vectorised_on_a_million_ids():
    ids = np.array([f"user{i}" for i in range(20_000)], dtype=object)
    values = ids[np.random.default_rng(1).integers(0, len(ids), 1_000_000)]
    m, codes = rf.IdMap.factorize(values)
    assert len(m) == len(np.unique(values))
    np.testing.assert_array_equal(m.to_external(codes[:1000]), values[:1000])


@pytest.mark.parametrize(
    "ids,kind",
    [
        (rf.IdMap.range(4), "range"),
        (rf.IdMap([10, 3, 7]), "int64"),
        (rf.IdMap([0.5, 2.25]), "float64"),
        (rf.IdMap(["ann", "bob", "Zoë", "", "日本"]), "str"),
        (rf.IdMap([("a", 1), ("a", 2), "x", 3, 2.5, True]), "json"),
        (rf.IdMap([]), "range"),
    ],
)
def test_to_arrays_round_trip(ids, kind):
    got_kind, arrays = ids.to_arrays()
    assert got_kind == kind
    assert all(a.dtype.kind in "biuf" for a in arrays.values())  # what a no-pickle file holds
    back = rf.IdMap.from_arrays(kind, arrays, len(ids))
    assert back == ids and list(back.values) == list(ids.values)
    if kind == "json":
        assert back.to_index([("a", 2)]).tolist() == [1]  # tuples stay tuples


def test_from_arrays_refuses_inconsistent_input():
    kind, arrays = rf.IdMap(["a", "bb"]).to_arrays()
    with pytest.raises(ValueError, match="offsets"):
        rf.IdMap.from_arrays(kind, {**arrays, "offsets": arrays["offsets"][::-1].copy()}, 2)
    with pytest.raises(ValueError, match="offsets"):
        rf.IdMap.from_arrays(kind, arrays, 3)
    with pytest.raises(ValueError, match="unique"):
        rf.IdMap.from_arrays("int64", {"values": np.array([1, 1])}, 2)
    with pytest.raises(ValueError, match="unknown id map kind"):
        rf.IdMap.from_arrays("pickle", {}, 0)
    with pytest.raises(UnicodeDecodeError):
        rf.IdMap.from_arrays("str", {"utf8": np.array([255], np.uint8), "offsets": np.array([0, 1])}, 1)
    with pytest.raises(ValueError, match="without pickle"):
        rf.IdMap([pd.Timestamp("2020-01-01"), "x"]).to_arrays()
