"""Confidence weighting: formulas against hand computation; inputs never modified."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf

# 3 users x 3 items:
#   u0: i0=1, i1=3      (len 4)
#   u1: i1=2            (len 2)
#   u2: i0=4, i2=2      (len 6)
ROWS, COLS, VALS = [0, 0, 1, 2, 2], [0, 1, 1, 0, 2], [1.0, 3.0, 2.0, 4.0, 2.0]


@pytest.fixture
def x():
    return sp.csr_matrix((np.array(VALS, dtype=np.float32), (ROWS, COLS)), shape=(3, 3))


def _dense(m):
    return m.toarray().astype(np.float64)


def test_linear_confidence(x):
    out = rf.transforms.linear_confidence(x, alpha=2.0)
    expected = np.zeros((3, 3))
    for r, c, v in zip(ROWS, COLS, VALS):
        expected[r, c] = 1 + 2.0 * v
    np.testing.assert_allclose(_dense(out), expected, rtol=1e-6)
    assert out.dtype == np.float32 and out.nnz == x.nnz


def test_log_confidence(x):
    out = rf.transforms.log_confidence(x, alpha=3.0, eps=0.5)
    assert out[0, 1] == pytest.approx(1 + 3.0 * math.log(1 + 3.0 / 0.5), rel=1e-6)
    assert out[2, 0] == pytest.approx(1 + 3.0 * math.log(1 + 4.0 / 0.5), rel=1e-6)
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        rf.transforms.log_confidence(x, eps=0)
    with pytest.raises(ValueError, match="negative"):
        rf.transforms.log_confidence(-x)


def test_bm25_hand_computed(x):
    K1, B = 1.2, 0.75
    out = rf.transforms.bm25_weight(x, K1=K1, B=B)
    N, df = 3, {0: 2, 1: 2, 2: 1}
    lengths, avg = {0: 4.0, 1: 2.0, 2: 6.0}, 4.0
    for r, c, v in zip(ROWS, COLS, VALS):
        idf = math.log(1 + (N - df[c] + 0.5) / (df[c] + 0.5))
        norm = 1 - B + B * lengths[r] / avg
        assert out[r, c] == pytest.approx(idf * v * (K1 + 1) / (v + K1 * norm), rel=1e-6), (r, c)
    assert (out.data > 0).all()
    with pytest.raises(ValueError, match=r"B must be in \[0, 1\]"):
        rf.transforms.bm25_weight(x, B=1.5)


def test_tfidf_hand_computed(x):
    out = rf.transforms.tfidf_weight(x)
    plain = rf.transforms.tfidf_weight(x, idf="plain")
    N, df = 3, {0: 2, 1: 2, 2: 1}
    for r, c, v in zip(ROWS, COLS, VALS):
        assert out[r, c] == pytest.approx(v * (math.log((1 + N) / (1 + df[c])) + 1), rel=1e-6)
        assert plain[r, c] == pytest.approx(v * math.log(N / df[c]), rel=1e-6)
    with pytest.raises(ValueError, match=r"idf must be one of \('smooth', 'plain'\), got 'log'"):
        rf.transforms.tfidf_weight(x, idf="log")


@given(st.integers(0, 9), st.integers(0, 9), st.floats(0.0, 1.0), st.sampled_from(["smooth", "plain"]),
       st.integers(0, 2**32 - 1))  # fmt: skip
@settings(max_examples=80, deadline=None)
def test_tfidf_matches_numpy_reference(n_users, n_items, density, idf, seed):
    """Every entry ``r * idf(df of its column)``, stored zeros, empty rows and columns and an item
    every user holds (plain idf 0) included; the stored pattern kept."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(0, 5, size=(n_users, n_items)).astype(np.float64)
    mask = rng.random((n_users, n_items)) < density
    if n_users and n_items:
        mask[:, 0] = True  # an item every user holds
    x = sp.csr_matrix((dense[mask].astype(np.float32), np.nonzero(mask)), shape=(n_users, n_items))
    df = mask.sum(axis=0).astype(np.float64)  # stored entries per column, zeros included
    with np.errstate(divide="ignore", invalid="ignore"):  # columns without entries: never read
        weights = np.log((1 + n_users) / (1 + df)) + 1 if idf == "smooth" else np.log(n_users / df)
    weights[df == 0] = 0.0
    out = rf.transforms.tfidf_weight(x, idf=idf)
    np.testing.assert_array_equal(out.indptr, x.indptr)
    np.testing.assert_array_equal(out.indices, x.indices)
    want = (dense * weights[None, :])[mask]  # row-major, as CSR stores them
    np.testing.assert_allclose(out.data, want, rtol=1e-6, atol=0)
    if idf == "plain" and n_users and n_items:
        assert (out.toarray()[:, 0] == 0).all()


@pytest.mark.parametrize("fn", ["linear_confidence", "log_confidence", "bm25_weight", "tfidf_weight"])
def test_inputs_untouched_and_interactions_accepted(fn, x):
    before = x.copy()
    out = getattr(rf.transforms, fn)(x)
    assert (x != before).nnz == 0 and x.dtype == before.dtype
    assert out.data is not x.data and not np.shares_memory(out.indices, x.indices)
    assert np.array_equal(out.indices, x.indices) and np.array_equal(out.indptr, x.indptr)
    out.data[:] = 0  # writing to the result must not reach the input
    assert (x != before).nnz == 0
    inter = rf.Interactions.from_scipy(x)
    np.testing.assert_allclose(
        getattr(rf.transforms, fn)(inter).toarray(), getattr(rf.transforms, fn)(before).toarray()
    )


def test_bad_arguments(x):
    with pytest.raises(ValueError, match="alpha must be finite and >= 0"):
        rf.transforms.linear_confidence(x, alpha=-1)
    with pytest.raises(TypeError, match="scipy.sparse"):
        rf.transforms.tfidf_weight(np.ones((2, 2)))
    bad = x.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rf.transforms.bm25_weight(bad)


def test_weight_by_name_keeps_the_kind_of_data():
    import pandas as pd

    df = pd.DataFrame({"user": ["a", "a", "b"], "item": [1, 2, 1], "plays": [3.0, 300.0, 1.0], "t": [5, 6, 7]})
    inter = rf.Interactions.from_pandas(df, weight_col="plays", time_col="t")
    assert rf.transforms.weight(inter, "none") is inter
    for name, fn in [("log", rf.transforms.log_scale), ("bm25", rf.transforms.bm25_weight),
                     ("tfidf", rf.transforms.tfidf_weight)]:  # fmt: skip
        out = rf.transforms.weight(inter, name)
        assert isinstance(out, rf.Interactions) and out.user_ids is inter.user_ids and out.item_ids is inter.item_ids
        np.testing.assert_array_equal(out.timestamps, inter.timestamps)
        np.testing.assert_array_equal(out.csr.toarray(), fn(inter.csr).toarray())
        np.testing.assert_array_equal(rf.transforms.weight(inter.csr, name).toarray(), fn(inter.csr).toarray())
    assert rf.transforms.weight(inter, "binary").csr.data.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="weighting must be one of"):
        rf.transforms.weight(inter, "sqrt")


@pytest.mark.parametrize("K1,B", [(1.2, 0.75), (0.0, 0.75), (2.0, 1.0), (0.5, 0.0)])
def test_bm25_is_the_formula_bit_for_bit_with_zero_values_and_rows(K1, B):
    # The in-place computation (no mask when no denominator can be 0) against the plain formula:
    # equal to the last bit, including stored zeros, an all-zero row and an empty row (0/0 -> 0).
    rng = np.random.default_rng(7)
    dense = np.where(rng.random((30, 12)) < 0.4, rng.integers(0, 5, (30, 12)), 0).astype(np.float32)
    dense[3] = 0  # an empty row
    x = sp.csr_matrix(dense)
    x.data[:4] = 0.0  # stored zeros (the first row's; with K1 = 0 their denominators are 0)
    x.data[x.indptr[5] : x.indptr[6]] = 0.0  # an all-zero stored row
    out = rf.transforms.bm25_weight(x, K1=K1, B=B)
    r = x.data.astype(np.float64)
    df = np.bincount(x.indices, minlength=12).astype(np.float64)
    idf = np.log1p((30 - df + 0.5) / (df + 0.5))
    length = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    norm = (1.0 - B) + B * length / length.mean()
    denom = r + K1 * norm[np.repeat(np.arange(30), np.diff(x.indptr))]
    with np.errstate(invalid="ignore", divide="ignore"):
        want = (np.where(denom > 0, r * (K1 + 1.0) / denom, 0.0) * idf[x.indices]).astype(np.float32)
    np.testing.assert_array_equal(out.indices, x.indices)
    assert out.data.tobytes() == want.tobytes()
