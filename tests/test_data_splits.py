"""Split invariants: disjoint, complete, aligned, fractions, time order, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf


def _pairs(inter):
    coo = inter.csr.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist()))


def _check_partition(inter, *parts):
    for p in parts:
        assert p.shape == inter.shape
        assert p.user_ids is inter.user_ids and p.item_ids is inter.item_ids
        assert p.csr.has_sorted_indices and p.csr.dtype == np.float32
    total = sum(p.nnz for p in parts)
    assert total == inter.nnz
    union = set().union(*(_pairs(p) for p in parts))
    assert union == _pairs(inter)  # complete and, with the count, disjoint
    # values and timestamps travel with their pair
    summed = sum((p.csr for p in parts[1:]), parts[0].csr)
    assert abs(summed - inter.csr).max() == 0
    if inter.timestamps is not None:
        lookup = dict(zip(zip(inter.user_of_entry().tolist(), inter.csr.indices.tolist()), inter.timestamps.tolist()))
        for p in parts:
            for u, i, t in zip(p.user_of_entry().tolist(), p.csr.indices.tolist(), p.timestamps.tolist()):
                assert lookup[(u, i)] == t


@st.composite
def interactions(draw, with_time=True):
    n_users = draw(st.integers(1, 15))
    n_items = draw(st.integers(1, 15))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)), min_size=1, max_size=120, unique=True
        )
    )
    u, i = map(np.array, zip(*pairs))
    ts = np.array(draw(st.lists(st.integers(0, 5), min_size=len(u), max_size=len(u)))) if with_time else None
    return rf.Interactions.from_arrays(u, i, weights=np.arange(1, len(u) + 1, dtype=float), timestamps=ts)


@settings(max_examples=60, deadline=None)
@given(interactions(), st.floats(0.05, 0.95), st.integers(0, 1000))
def test_random_holdout_invariants(inter, fraction, seed):
    train, test = rf.split.random_holdout(inter, test_fraction=fraction, seed=seed)
    _check_partition(inter, train, test)
    counts = np.diff(inter.csr.indptr)
    tr = np.diff(train.csr.indptr)
    assert np.all(tr[counts >= 1] >= 1)  # every user keeps a training item
    again = rf.split.random_holdout(inter, test_fraction=fraction, seed=seed)
    assert _pairs(again[1]) == _pairs(test)


def test_random_holdout_fraction_and_spread(rng):
    u, i = rng.integers(0, 2000, 100_000), rng.integers(0, 3000, 100_000)
    inter = rf.Interactions.from_arrays(u, i, duplicates="sum")  # random pairs repeat: count them
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=1)
    assert test.nnz / inter.nnz == pytest.approx(0.2, abs=0.005)
    per_user = np.diff(test.csr.indptr) / np.maximum(np.diff(inter.csr.indptr), 1)
    assert np.abs(per_user.mean() - 0.2) < 0.01
    # different seeds differ; same seed is the same
    assert _pairs(rf.split.random_holdout(inter, 0.2, seed=2)[1]) != _pairs(test)
    assert _pairs(rf.split.random_holdout(inter, 0.2, seed=1)[1]) == _pairs(test)


def test_random_holdout_small_users():
    # a user with 1 interaction stays in train; with 2 at most 1 goes to test
    inter = rf.Interactions.from_arrays([0, 1, 1], [0, 0, 1])
    for seed in range(20):
        train, test = rf.split.random_holdout(inter, 0.9, seed=seed)
        assert train.csr[0, 0] == 1 and np.diff(train.csr.indptr)[1] == 1


@settings(max_examples=60, deadline=None)
@given(interactions(), st.integers(1, 3))
def test_leave_last_out_invariants(inter, n):
    train, test = rf.split.leave_last_out(inter, n=n)
    _check_partition(inter, train, test)
    counts = np.diff(inter.csr.indptr)
    assert np.array_equal(np.diff(test.csr.indptr), np.minimum(n, np.maximum(counts - 1, 0)))
    for u in range(inter.n_users):
        tr = train.csr.indptr
        te = test.csr.indptr
        if te[u + 1] == te[u]:
            continue
        # every test entry is later than every train entry of its user: (time, item) order
        tr_keys = list(zip(train.timestamps[tr[u] : tr[u + 1]], train.csr.indices[tr[u] : tr[u + 1]]))
        te_keys = list(zip(test.timestamps[te[u] : te[u + 1]], test.csr.indices[te[u] : te[u + 1]]))
        assert max(tr_keys) < min(te_keys)


def test_leave_last_out_ties_by_item_index():
    # all at the same time: the highest item index counts as the latest
    inter = rf.Interactions.from_arrays([0, 0, 0], [5, 9, 7], timestamps=[1, 1, 1])
    train, test = rf.split.leave_last_out(inter)
    assert test.item_ids.to_external(test.csr.indices).tolist() == [9]
    with pytest.raises(ValueError, match="no timestamps"):
        rf.split.leave_last_out(rf.Interactions.from_arrays([0], [0]))


@settings(max_examples=40, deadline=None)
@given(interactions(), st.integers(0, 6))
def test_temporal_invariants(inter, cutoff):
    train, test = rf.split.temporal(inter, cutoff=cutoff)
    _check_partition(inter, train, test)
    assert (train.timestamps < cutoff).all() and (test.timestamps >= cutoff).all()


def test_temporal_fraction(rng):
    inter = rf.Interactions.from_arrays(
        rng.integers(0, 500, 20_000), rng.integers(0, 500, 20_000), timestamps=rng.permutation(20_000), duplicates="sum"
    )
    train, test = rf.split.temporal(inter, test_fraction=0.25)
    assert test.nnz / inter.nnz == pytest.approx(0.25, abs=0.01)
    assert train.timestamps.max() < test.timestamps.min()
    with pytest.raises(ValueError, match="exactly one"):
        rf.split.temporal(inter)
    with pytest.raises(TypeError, match="cutoff must be a number"):
        rf.split.temporal(inter, cutoff="2020")


@settings(max_examples=40, deadline=None)
@given(interactions(with_time=False), st.floats(0.1, 0.9), st.floats(0.1, 0.9), st.integers(0, 100))
def test_strong_generalization_invariants(inter, users_fraction, fold_in, seed):
    eligible = np.flatnonzero(np.diff(inter.csr.indptr) >= 2)
    if round(users_fraction * len(eligible)) == 0:
        with pytest.raises(ValueError, match="holds out no user"):
            rf.split.strong_generalization(inter, users_fraction, fold_in, seed)
        return
    s = rf.split.strong_generalization(inter, users_fraction, fold_in, seed)
    _check_partition(inter, s.train, s.fold_in, s.test)
    held = set(s.test_users.tolist())
    assert held <= set(eligible.tolist())
    assert set(s.train.user_of_entry().tolist()).isdisjoint(held)
    for part in (s.fold_in, s.test):  # both parts non-empty for every held-out user
        assert set(part.user_of_entry().tolist()) == held


def test_strong_generalization_fractions(rng):
    inter = rf.Interactions.from_arrays(rng.integers(0, 1000, 50_000), rng.integers(0, 2000, 50_000), duplicates="sum")
    s = rf.split.strong_generalization(inter, test_users_fraction=0.1, fold_in_fraction=0.7, seed=3)
    assert len(s.test_users) == 100
    held_nnz = s.fold_in.nnz + s.test.nnz
    assert s.fold_in.nnz / held_nnz == pytest.approx(0.7, abs=0.03)


def test_bad_split_arguments():
    inter = rf.Interactions.from_arrays([0, 0], [0, 1])
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        rf.split.random_holdout(inter, test_fraction=1.0)
    with pytest.raises(TypeError, match="inter must be a recforge.Interactions"):
        rf.split.random_holdout(sp.eye(3, format="csr"))
    with pytest.raises(TypeError, match="n must be an int"):
        rf.split.leave_last_out(rf.Interactions.from_arrays([0], [0], timestamps=[1]), n=1.5)
