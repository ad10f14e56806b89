"""Interactions: construction, duplicate rules, timestamps alignment, k-core filtering, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge._validation import as_csr


def _reference(df, rule, time_col=None):
    """Plain-Python reference: {(user, item): (weight, timestamp)}."""
    groups = {}
    for pos, row in enumerate(df.itertuples(index=False)):
        groups.setdefault((row.user, row.item), []).append((getattr(row, time_col) if time_col else 0, pos, row.w))
    out = {}
    for key, rows in groups.items():
        rows.sort()  # by time, then row order
        ws = [r[2] for r in rows]
        ts = [r[0] for r in rows]
        w = {"sum": sum(ws), "max": max(ws), "mean": sum(ws) / len(ws), "first": ws[0], "last": ws[-1]}[rule]
        t = {"first": ts[0], "last": ts[-1]}.get(rule, max(ts))
        out[key] = (w, t)
    return out


@pytest.mark.parametrize("rule", rf.data.DUPLICATE_RULES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_duplicate_rules_match_reference(rule, data):
    n = data.draw(st.integers(1, 60))
    df = pd.DataFrame(
        {
            "user": data.draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=n, max_size=n)),
            "item": data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)),
            "w": data.draw(st.lists(st.integers(-3, 9), min_size=n, max_size=n)),
            "t": data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)),
        }
    )
    inter = rf.Interactions.from_pandas(df, weight_col="w", time_col="t", duplicates=rule)
    ref = _reference(df, rule, "t")
    csr = inter.csr
    assert csr.dtype == np.float32 and csr.has_sorted_indices and csr.nnz == len(ref)
    got = inter.to_pandas()
    assert len(got) == len(ref)
    for row in got.itertuples(index=False):
        w, t = ref[(row.user, row.item)]
        assert row.weight == pytest.approx(w, rel=1e-6)
        assert row.timestamp == t
    # canonical: indices sorted within rows, no duplicates
    for r in range(csr.shape[0]):
        cols = csr.indices[csr.indptr[r] : csr.indptr[r + 1]]
        assert np.all(np.diff(cols) > 0)


def test_first_last_without_timestamps_use_row_order():
    df = pd.DataFrame({"user": [1, 1, 1], "item": [7, 7, 7], "w": [5.0, 2.0, 9.0]})
    assert rf.Interactions.from_pandas(df, weight_col="w", duplicates="first").csr.data.tolist() == [5.0]
    assert rf.Interactions.from_pandas(df, weight_col="w", duplicates="last").csr.data.tolist() == [9.0]
    # without weights each row weighs 1, so "sum" (the default for such data) counts repeats
    with pytest.warns(UserWarning, match="duplicates='sum'"):
        assert rf.Interactions.from_pandas(df).csr.data.tolist() == [3.0]


def test_ids_and_shape():
    df = pd.DataFrame({"u": ["z", "x", "y", "x"], "i": [10, 30, 20, 10], "r": [1.0, 2, 3, 4]})
    inter = rf.Interactions.from_pandas(df, "u", "i", "r")
    assert inter.shape == (3, 3) and inter.nnz == 4 and len(inter) == 4
    assert inter.user_ids.values.tolist() == ["x", "y", "z"]
    assert inter.item_ids.values.tolist() == [10, 20, 30]
    dense = inter.csr.toarray()
    assert dense[inter.user_ids.to_index("x"), inter.item_ids.to_index(30)] == 2.0
    back = inter.to_pandas("u", "i", "r").sort_values(["u", "i"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, df.sort_values(["u", "i"]).reset_index(drop=True).astype({"r": np.float32}))
    assert as_csr(inter) is inter.csr or (as_csr(inter) != inter.csr).nnz == 0
    assert "3 users x 3 items" in repr(inter)


def test_from_arrays_and_fixed_maps():
    train = rf.Interactions.from_arrays(["a", "b", "c"], [1, 2, 3])
    test = rf.Interactions.from_arrays(["c", "a"], [1, 3], user_ids=train.user_ids, item_ids=train.item_ids)
    assert test.shape == train.shape and test.user_ids is train.user_ids
    assert test.csr[train.user_ids.to_index("c"), train.item_ids.to_index(1)] == 1.0
    with pytest.raises(ValueError, match="not in the given id map.*'zz'"):
        rf.Interactions.from_arrays(["zz"], [1], user_ids=train.user_ids)
    dropped = rf.Interactions.from_arrays(
        ["zz", "a", "b"],
        [1, 99, 2],
        weights=[1.0, 2.0, 3.0],
        user_ids=train.user_ids,
        item_ids=train.item_ids,
        unknown="drop",
    )
    assert dropped.shape == train.shape and dropped.nnz == 1 and dropped.csr[1, 1] == 3.0
    with pytest.raises(ValueError, match="no interactions left"):
        rf.Interactions.from_arrays(["zz"], [1], user_ids=train.user_ids, unknown="drop")
    identity = rf.Interactions.from_arrays([0, 4], [2, 2], user_ids=rf.IdMap.range(6), item_ids=rf.IdMap.range(3))
    assert identity.shape == (6, 3) and identity.csr[4, 2] == 1.0


def test_from_scipy_sums_duplicates_and_keeps_shape():
    coo = sp.coo_matrix((np.array([1.0, 2.0, 5.0]), (np.array([0, 0, 2]), np.array([1, 1, 0]))), shape=(4, 3))
    inter = rf.Interactions.from_scipy(coo)
    assert inter.shape == (4, 3) and inter.nnz == 2
    assert inter.csr[0, 1] == 3.0 and inter.timestamps is None
    assert inter.user_ids.to_index(3) == 3


def test_timestamps_stay_aligned_after_sorting(rng):
    n = 2000
    users, items = rng.integers(0, 50, n), rng.integers(0, 40, n)
    # unique pairs so every row survives; timestamp encodes the pair
    key = np.unique(users * 40 + items)
    users, items = key // 40, key % 40
    perm = rng.permutation(len(key))
    ts = (users * 1000 + items)[perm]
    inter = rf.Interactions.from_arrays(users[perm], items[perm], timestamps=ts)
    rows = inter.user_of_entry()
    expected = inter.user_ids.to_external(rows) * 1000 + inter.item_ids.to_external(inter.csr.indices)
    np.testing.assert_array_equal(inter.timestamps, expected)


def test_datetime_timestamps():
    df = pd.DataFrame({"user": [1, 2], "item": [1, 1], "t": pd.to_datetime(["2020-01-01", "2021-06-01"])})
    inter = rf.Interactions.from_pandas(df, time_col="t")
    assert np.issubdtype(inter.timestamps.dtype, np.datetime64)
    train, test = rf.split.temporal(inter, cutoff="2021-01-01")
    assert train.nnz == 1 and test.nnz == 1


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(users=[1, 2], items=[1]), ValueError, "same length"),
        (dict(users=[], items=[]), ValueError, "empty"),
        (dict(users=[1, 2], items=[1, 2], weights=[1.0, np.nan]), ValueError, "weights contains 1 NaN"),
        (dict(users=[1, 2], items=[1, 2], weights=[1.0, np.inf]), ValueError, "weights contains"),
        (dict(users=[1, 2], items=[1, 2], weights=[1.0]), ValueError, "weights must have one value"),
        (dict(users=[1, 2], items=[1, 2], weights=["a", "b"]), TypeError, "weights must be numeric"),
        (dict(users=[1, 2], items=[1, 2], timestamps=[1.0, np.nan]), ValueError, "timestamps contains NaN"),
        (dict(users=[1, 2], items=[1, 2], timestamps=["x", "y"]), TypeError, "timestamps must be numeric"),
        (dict(users=[1, None], items=[1, 2]), ValueError, "users: .*missing"),
        (dict(users=[1, 2], items=[1, 2], duplicates="median"), ValueError, "duplicates must be one of"),
        (dict(users=np.zeros((2, 2)), items=[1, 2]), ValueError, "users must be 1-D"),
        (dict(users="ab", items=[1, 2]), TypeError, "users must be a 1-D"),
    ],
)
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rf.Interactions.from_arrays(**kwargs)


def test_bad_dataframe_input():
    with pytest.raises(TypeError, match="df must be a pandas DataFrame"):
        rf.Interactions.from_pandas({"user": [1]})
    with pytest.raises(ValueError, match="weight_col='rating' is not a column"):
        rf.Interactions.from_pandas(pd.DataFrame({"user": [1], "item": [2]}), weight_col="rating")
    with pytest.raises(ValueError, match="empty"):
        rf.Interactions.from_scipy(sp.csr_matrix((3, 3)))
    with pytest.raises(ValueError, match="canonical"):
        rf.Interactions(sp.coo_matrix(([1.0, 1.0], ([0, 0], [0, 0])), shape=(1, 1)), timestamps=[1, 2])
    with pytest.raises(ValueError, match="user_ids has 1 ids but csr has 2 rows"):
        rf.Interactions(sp.eye(2, format="csr"), user_ids=["a"])


# ------------------------------------------------------------------------- filtering
def _kcore_reference(pairs, mu, mi):
    pairs = set(pairs)
    while True:
        uc, ic = {}, {}
        for u, i in pairs:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        keep = {(u, i) for u, i in pairs if uc[u] >= mu and ic[i] >= mi}
        if keep == pairs:
            return pairs
        pairs = keep


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=120, unique=True),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_kcore_matches_reference_and_invariants(pairs, mu, mi):
    users, items = zip(*pairs)
    inter = rf.Interactions.from_arrays(list(users), list(items), weights=np.arange(len(pairs), dtype=float))
    out = inter.filter(min_user_interactions=mu, min_item_interactions=mi)
    expected = _kcore_reference(pairs, mu, mi)
    got = set(zip(out.to_pandas()["user"].tolist(), out.to_pandas()["item"].tolist()))
    assert got == expected
    if out.nnz:
        assert np.diff(out.csr.indptr).min() >= mu
        assert np.bincount(out.csr.indices, minlength=out.n_items).min() >= mi
        # weights follow their pairs
        w = dict(zip(pairs, range(len(pairs))))
        df = out.to_pandas()
        assert all(w[(u, i)] == wt for u, i, wt in zip(df.user, df.item, df.weight))


def test_kcore_needs_iteration():
    # user 0: items 0,1 ; user 1: items 0,1 ; user 2: item 2 only. Item 2 (1 user) goes first,
    # which leaves user 2 empty; with min 2 per item and user nothing else changes.
    inter = rf.Interactions.from_arrays([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 2, 0])
    out = inter.filter(min_user_interactions=2, min_item_interactions=2)
    # item 2 removed -> user 2 has 1 interaction -> removed -> item 0 now has 2 users: stable
    assert out.user_ids.values.tolist() == [0, 1] and out.item_ids.values.tolist() == [0, 1]
    assert out.nnz == 4


def test_filter_min_rating_and_timestamps():
    inter = rf.Interactions.from_arrays(
        [0, 0, 1, 1], [0, 1, 0, 2], weights=[5.0, 2.0, 4.0, 1.0], timestamps=[10, 20, 30, 40]
    )
    out = inter.filter(min_rating=4)
    assert out.shape == (2, 1) and out.csr.data.tolist() == [5.0, 4.0]
    assert out.timestamps.tolist() == [10, 30]
    with pytest.raises(TypeError, match="min_user_interactions must be an int"):
        inter.filter(min_user_interactions=2.5)
    with pytest.raises(ValueError, match="min_rating must be finite"):
        inter.filter(min_rating=float("nan"))
    assert inter.filter(min_user_interactions=10).shape == (0, 0)


def test_large_from_pandas_is_vectorised():
    rng = np.random.default_rng(3)
    n = 1_000_000
    df = pd.DataFrame({"user": rng.integers(0, 20_000, n), "item": rng.integers(0, 5_000, n), "rating": rng.random(n)})
    inter = rf.Interactions.from_pandas(df, weight_col="rating", duplicates="max")
    key = df.user.to_numpy() * 5000 + df.item.to_numpy()
    assert inter.nnz == len(np.unique(key))
    ref = df.groupby(["user", "item"]).rating.max()
    np.testing.assert_allclose(np.sort(inter.csr.data), np.sort(ref.to_numpy().astype(np.float32)))


def test_models_and_validation_accept_interactions():
    inter = rf.Interactions.from_arrays(["a", "a", "b", "c"], ["x", "y", "x", "z"], weights=[1.0, 2.0, 3.0, 4.0])
    csr = as_csr(inter)
    assert csr.shape == inter.shape and (csr != inter.csr).nnz == 0
    model = rf.MostPopular().fit(inter)
    ids, _ = model.recommend([inter.user_ids.to_index("c")], k=2)
    # "x" is the most popular item; user "c" has only seen "z"
    assert inter.item_ids.to_external(ids[0][:1]).tolist() == ["x"]


def test_default_duplicate_rule_depends_on_the_kind_of_data_and_warns():
    # Ratings (a weight column): a re-rating replaces the earlier one; 4 and 5 never become 9.
    ratings = pd.DataFrame({"user": [1, 1, 2], "item": [7, 7, 7], "rating": [4.0, 5.0, 3.0], "t": [2, 1, 5]})
    with pytest.warns(UserWarning, match=r"1 rows repeat .* duplicates='last'"):
        inter = rf.Interactions.from_pandas(ratings, weight_col="rating")
    assert inter.csr.toarray().ravel().tolist() == [5.0, 3.0]  # the later row
    with pytest.warns(UserWarning, match="duplicates='last'"):  # "last" by timestamp when there is one
        assert rf.Interactions.from_pandas(ratings, weight_col="rating", time_col="t").csr.data.tolist() == [4.0, 3.0]
    # Events (no weight column): each row is one event, repeats are counted.
    with pytest.warns(UserWarning, match="duplicates='sum'"):
        assert rf.Interactions.from_pandas(ratings).csr.data.tolist() == [2.0, 1.0]
    # A rule chosen explicitly is applied silently; data without duplicates never warns.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rf.Interactions.from_pandas(ratings, weight_col="rating", duplicates="mean").csr.data.tolist() == [
            4.5,
            3.0,
        ]
        rf.Interactions.from_pandas(ratings.iloc[1:], weight_col="rating")
        rf.Interactions.from_arrays([1, 1], [7, 7], weights=[4.0, 5.0], duplicates="sum")
    # The warning points at the caller's line, not into the library.
    with pytest.warns(UserWarning) as record:
        rf.Interactions.from_arrays([1, 1], [7, 7], weights=[4.0, 5.0])
    assert record[0].filename == __file__
