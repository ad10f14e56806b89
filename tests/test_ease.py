"""EASE: the closed-form weights against NumPy, the memory guard, fold-in, and accuracy on real data.

What every model does alike is in test_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import data_path

import recforge as rf
from recforge._ops import cpu


def binary(rng, n_users, n_items, density) -> sp.csr_matrix:
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


def reference_weights(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """Steck's formula in float64 with a plain inverse: B = I - P / diag(P), P = (XᵀX + λI)⁻¹."""
    g = (x.T @ x).toarray().astype(np.float64)
    p = np.linalg.inv(g + lam * np.eye(len(g)))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-5), ("float32", 2e-3)])
def test_weights_match_the_closed_form(dtype, rtol):
    x = binary(np.random.default_rng(0), 200, 70, 0.1)
    model = rf.EASE(regularization=5.0, dtype=dtype, threads=2).fit(x, progress=False)
    want = reference_weights(x, 5.0)
    assert model.item_weights.dtype == np.float32 and model.item_weights.flags.c_contiguous
    np.testing.assert_allclose(model.item_weights, want.T, rtol=rtol, atol=rtol * np.abs(want).max())
    assert not np.diag(model.item_weights).any()
    # Scores are the row times B.
    np.testing.assert_allclose(model.score(np.repeat(np.arange(200), 70), np.tile(np.arange(70), 200)),
                               (x.toarray() @ want).ravel(), rtol=10 * rtol, atol=1e-4)  # fmt: skip


def test_a_gram_matrix_that_is_not_positive_definite_is_a_clear_error():
    column = np.random.default_rng(1).random((50, 1)) < 0.3
    x = sp.csr_matrix(np.hstack([column, column]).astype(np.float32))  # two identical items: XᵀX singular
    with pytest.raises(ValueError, match="not positive definite.*increase regularization"):
        cpu.ease_weights(x, regularization=1e-30, dtype="float32", threads=1)


def test_a_catalogue_too_large_for_memory_is_refused_naming_the_bytes(monkeypatch):
    x = binary(np.random.default_rng(2), 40, 30, 0.2)
    monkeypatch.setattr(rf._validation, "_physical_memory", lambda: 1000)
    model = rf.EASE(dtype="float32")
    with pytest.raises(ValueError, match=r"EASE on 30 items \(7,200 bytes of dense item x item matrices.*more than"):
        model.fit(x)
    assert not model.is_fitted


@pytest.mark.parametrize("make", [lambda: rf.EASE(regularization=20.0, threads=1),
                                  lambda: rf.ItemKNN(neighbors=10, threads=1)], ids=["ease", "itemknn"])  # fmt: skip
def test_new_users_are_their_rows(make):
    x = binary(np.random.default_rng(3), 90, 40, 0.15)
    model = make().fit(x[:70])
    weights_before = {k: v.copy() for k, v in model._arrays().items()}
    direct = model.recommend_for_rows(x[70:], k=5)
    model.partial_fit_users(np.arange(70, 90), x[70:])
    assert model.n_users == 90 and (model.seen_[70:] != x[70:]).nnz == 0
    stored = model.recommend(np.arange(70, 90), k=5)
    np.testing.assert_array_equal(direct[0], stored[0])
    np.testing.assert_allclose(direct[1], stored[1], rtol=1e-6)
    for name, before in weights_before.items():  # nothing was trained
        np.testing.assert_array_equal(model._arrays()[name], before)
    with pytest.raises(ValueError, match="rows must have 40 columns"):
        model.recommend_for_rows(x[70:, :30])
    with pytest.raises(ValueError, match="negative"):
        model.partial_fit_users([0], -x[:1])


def test_ease_beats_itemknn_on_movielens():
    path = data_path("ml-100k", "u.data")
    df = rf.datasets.load_movielens("100k", data_home=path.parent.parent)
    inter = rf.Interactions.from_pandas(df[df.rating >= 4], user_col="user", item_col="item")
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=1)
    ease = rf.evaluation.evaluate(rf.EASE(regularization=200.0).fit(train), train, test, k=10)["ndcg@10"]
    knn = rf.evaluation.evaluate(rf.ItemKNN(neighbors=50).fit(train), train, test, k=10)["ndcg@10"]
    assert ease > knn, (ease, knn)
