"""ItemKNN: the C++ neighbour search and scoring against NumPy references; the model's own behaviour.

What every model does alike (parameters, save/load, recommend's shape and padding, threads) is in
test_contract.py; here: the kernels' results (hypothesis, exact on integer data), the similarity
definitions, fold-in, errors at the C++ boundary, and accuracy on real data.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import data_path, rewrite_model_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge import _core

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_sparse(rng, n_rows, n_cols, density, high=4) -> sp.csr_matrix:
    """Integer values in [0, high): exact float32 arithmetic; stored zeros included on purpose."""
    dense = rng.integers(0, high, size=(n_rows, n_cols)).astype(np.float32)
    mask = rng.random((n_rows, n_cols)) < density
    m = sp.csr_matrix((dense[mask], np.nonzero(mask)), shape=(n_rows, n_cols), dtype=np.float32)
    m.sort_indices()
    return m


def top_by_row(scores: np.ndarray, k: int):
    """Stable selection on -scores: best first, equal scores by lower id; -inf entries become -1 padding."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, 1)
    if order.shape[1] < k:  # fewer columns than k: pad
        pad = k - order.shape[1]
        order = np.hstack([order, np.zeros((len(order), pad), np.int64)])
        top = np.hstack([top, np.full((len(top), pad), -np.inf)])
    return np.where(np.isneginf(top), -1, order), top


def reference_neighbours(items: sp.csr_matrix, cosine: bool, k: int) -> np.ndarray:
    """Dense (n, n) similarities with only each row's best k positive ones kept (others -inf)."""
    w = items.toarray().astype(np.float64)
    sims = w @ w.T
    if cosine:
        norms = np.linalg.norm(w, axis=1)
        scale = np.where(norms > 0, 1 / np.where(norms > 0, norms, 1), 0)
        sims = sims * scale[:, None] * scale[None, :]
    np.fill_diagonal(sims, -np.inf)
    sims[sims <= 0] = -np.inf
    ids, top = top_by_row(sims, k)
    kept = np.full_like(sims, -np.inf)
    for r in range(len(sims)):
        ok = ids[r] >= 0
        kept[r, ids[r][ok]] = top[r][ok]
    return kept


def item_neighbours(items: sp.csr_matrix, cosine: bool, k: int, threads: int):
    """The kernel on the users x items matrix whose columns are the rows of ``items``."""
    users = items.T.tocsr()
    return _core.knn_item_neighbours(_core.Csr(users.indptr, users.indices, users.data, users.shape), cosine, k,
                                     threads)  # fmt: skip


def as_dense(indptr, indices, data, n) -> np.ndarray:
    out = np.full((n, n), -np.inf)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    out[rows, indices] = data
    return out


@given(st.integers(1, 14), st.integers(1, 12), st.floats(0.05, 0.9), st.integers(1, 16), st.integers(1, 3),
       st.integers(0, 2**32 - 1))  # fmt: skip
@SETTINGS
def test_item_neighbours_match_numpy_exactly_without_normalisation(n_items, n_users, density, k, threads, seed):
    items = random_sparse(np.random.default_rng(seed), n_items, n_users, density)
    indptr, indices, data = item_neighbours(items, False, k, threads)
    assert indptr.dtype == np.int64 and indices.dtype == np.int32 and data.dtype == np.float32
    # Integer inner products are exact in float32: the same neighbours, ties to the lower id.
    np.testing.assert_array_equal(as_dense(indptr, indices, data, n_items), reference_neighbours(items, False, k))


@given(st.integers(1, 14), st.integers(1, 12), st.floats(0.05, 0.9), st.integers(1, 16), st.integers(0, 2**32 - 1))
@SETTINGS
def test_item_neighbours_cosine_match_numpy(n_items, n_users, density, k, seed):
    items = random_sparse(np.random.default_rng(seed), n_items, n_users, density)
    got = as_dense(*item_neighbours(items, True, k, 2), n_items)
    want = reference_neighbours(items, True, k)
    # Rounding may swap near-equal cosines: the kept values agree, and each row keeps a true top k.
    full = items.toarray().astype(np.float64)
    norms = np.linalg.norm(full, axis=1)
    cos = (full @ full.T) / np.maximum(np.outer(norms, norms), 1e-300)
    np.fill_diagonal(cos, -np.inf)
    for r in range(n_items):
        kept = np.isfinite(got[r])
        assert kept.sum() == np.isfinite(want[r]).sum()
        np.testing.assert_allclose(got[r][kept], cos[r][kept], rtol=1e-5)
        if kept.any() and (~kept).any():
            assert cos[r][~kept].max() <= cos[r][kept].min() + 1e-6


@pytest.mark.parametrize("k", [1, 3, 40])
def test_item_neighbours_of_a_long_tail_catalogue(k):
    """Many items, few users each: most items take the kernel's touched-list path, not the dense one."""
    rng = np.random.default_rng(k)
    items = random_sparse(rng, 600, 300, 0.01, high=3)
    got = item_neighbours(items, False, k, 2)
    np.testing.assert_array_equal(as_dense(*got, 600), reference_neighbours(items, False, k))
    again = item_neighbours(items, False, k, 1)
    for a, b in zip(got, again):
        np.testing.assert_array_equal(a, b)  # the same arrays, order included, on any thread count


@pytest.mark.parametrize("high, density", [(2, 0.3), (60, 0.3), (60, 0.02)])
def test_item_neighbours_selection_on_many_candidates(high, density):
    """Hundreds of candidates per item, values all tied (high=2) or nearly all distinct (high=60): the
    selection's search for the k-th best similarity, its early exit and its tie rule, on both paths."""
    rng = np.random.default_rng(high)
    items = random_sparse(rng, 400, 80, density, high=high)  # integer products < 2^24: exact in float32
    for k in (1, 7, 64):
        got = item_neighbours(items, False, k, 2)
        np.testing.assert_array_equal(as_dense(*got, 400), reference_neighbours(items, False, k))


def reference_recommend(history, sims_dense, k, exclude, subset):
    scores = history.toarray().astype(np.float64) @ sims_dense
    if exclude:
        scores[_stored(history)] = -np.inf
    if subset is not None:
        allowed = np.zeros(scores.shape[1], bool)
        allowed[subset] = True
        scores[:, ~allowed] = -np.inf
    return top_by_row(scores, k)


def _stored(m: sp.csr_matrix) -> np.ndarray:
    """Where ``m`` stores an entry (a stored zero included)."""
    out = np.zeros(m.shape, bool)
    out[np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)), m.indices] = True
    return out


@given(st.integers(1, 12), st.integers(1, 10), st.floats(0.05, 0.9), st.integers(1, 15), st.booleans(),
       st.booleans(), st.integers(1, 3), st.integers(0, 2**32 - 1))  # fmt: skip
@SETTINGS
def test_recommend_matches_numpy_exactly(n_items, n_users, density, k, exclude, with_subset, threads, seed):
    rng = np.random.default_rng(seed)
    history = random_sparse(rng, n_users, n_items, density)
    sims = random_sparse(rng, n_items, n_items, 0.4, high=5)  # any finite similarity, not only a kernel result
    subset = rng.choice(n_items, size=rng.integers(1, n_items + 1)) if with_subset else None  # repeats allowed
    ids, scores = _core.knn_recommend(_core.Csr(history.indptr, history.indices, history.data, history.shape),
                                      _core.Csr(sims.indptr, sims.indices, sims.data, sims.shape), k, exclude,
                                      subset, threads)  # fmt: skip
    want_ids, want_scores = reference_recommend(history, sims.toarray().astype(np.float64), k, exclude, subset)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


def test_kernel_boundary_rejects_bad_input():
    x = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 1]], np.float32))
    csr = _core.Csr(x.indptr, x.indices, x.data, x.shape)
    square = _core.Csr(np.array([0, 1, 1, 1]), np.array([2]), np.array([0.5], np.float32), (3, 3))
    with pytest.raises(ValueError, match="k must be >= 1"):
        _core.knn_item_neighbours(csr, True, 0)
    neg = _core.Csr(x.indptr, x.indices, -x.data, x.shape)
    with pytest.raises(ValueError, match="users.*negative|users.*nonnegative"):
        _core.knn_item_neighbours(neg, True, 2)
    pattern = _core.Csr(x.indptr, x.indices, None, x.shape)
    with pytest.raises(ValueError, match="users"):
        _core.knn_item_neighbours(pattern, True, 2)
    with pytest.raises(ValueError, match="similarity must be square"):
        _core.knn_recommend(csr, csr, 2, True)
    with pytest.raises(ValueError, match="history must have 3 columns"):
        _core.knn_recommend(_core.Csr(np.array([0, 0]), np.array([], np.int32), None, (1, 2)), square, 2, True)
    with pytest.raises(ValueError, match="subset"):
        _core.knn_recommend(csr, square, 2, True, np.array([0, 3]))
    with pytest.raises(ValueError, match="k must be >= 1"):
        _core.knn_recommend(csr, square, 0, True)


# -- the model -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def counts() -> sp.csr_matrix:
    return random_sparse(np.random.default_rng(3), 80, 40, 0.15, high=6)


@pytest.mark.parametrize("similarity, idf", [("cosine", "plain"), ("bm25", "plain"), ("tfidf", "plain"),
                                             ("tfidf", "smooth")])  # fmt: skip
def test_similarity_is_the_documented_weighting(counts, similarity, idf):
    model = rf.ItemKNN(neighbors=39, similarity=similarity, K1=1.5, B=0.5, idf=idf, threads=1)
    model.fit(counts, progress=False)
    items = counts.T.tocsr()
    if similarity == "bm25":
        items = rf.transforms.bm25_weight(items, K1=1.5, B=0.5)
    elif similarity == "tfidf":
        items = rf.transforms.tfidf_weight(items.sqrt(), idf=idf)
    w = items.toarray().astype(np.float64)
    want = w @ w.T
    if similarity != "bm25":
        norms = np.linalg.norm(w, axis=1)
        want /= np.maximum(np.outer(norms, norms), 1e-300)
    np.fill_diagonal(want, 0)
    want[want < 0] = 0
    np.testing.assert_allclose(model.similarity_.toarray(), want, rtol=1e-5, atol=1e-6)  # K >= n - 1: all kept


def test_neighbors_keeps_the_best_k_per_item(counts):
    full = rf.ItemKNN(neighbors=39, threads=1).fit(counts).similarity_.toarray()
    model = rf.ItemKNN(neighbors=5, threads=1).fit(counts)
    assert (np.diff(model.similarity_.indptr) <= 5).all()
    ids, sims = model.similar_items(np.arange(40), k=5)
    want_ids, want_sims = top_by_row(np.where(full > 0, full, -np.inf), 5)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(sims, want_sims, rtol=1e-6)
    ids, sims = model.similar_items([0], k=8)  # more than kept: padded
    assert (ids[0, 5:] == -1).all() and np.isneginf(sims[0, 5:]).all()


def test_recommend_scores_are_history_times_similarity(counts):
    model = rf.ItemKNN(neighbors=10, similarity="bm25", threads=2).fit(counts)
    want = counts.toarray() @ model.similarity_.toarray()
    ids, scores = model.recommend(np.arange(80), k=40, exclude_seen=False)
    np.testing.assert_allclose(scores, np.take_along_axis(want, ids, 1), rtol=1e-5)
    np.testing.assert_allclose(model.score(np.repeat(np.arange(80), 40), np.tile(np.arange(40), 80)),
                               want.ravel(), rtol=1e-5)  # fmt: skip


def test_bad_rows_and_values_are_clear_errors(counts):
    model = rf.ItemKNN(threads=1).fit(counts)
    with pytest.raises(ValueError, match="rows must have 40 columns"):
        model.recommend_for_rows(counts[:2, :30])
    with pytest.raises(ValueError, match="negative"):
        model.recommend_for_rows(-counts[:2])
    with pytest.raises(ValueError, match="negative"):
        rf.ItemKNN().fit(-counts)
    with pytest.raises(ValueError, match="negative"):
        model.partial_fit_users([0], -counts[:1])
    with pytest.raises(ValueError, match=r"items must be in \[0, 40\)"):
        model.similar_items([40])


def test_empty_history_ranks_by_id_with_zero_scores(counts):
    model = rf.ItemKNN(threads=1).fit(counts)
    ids, scores = model.recommend_for_rows(sp.csr_matrix((1, 40), dtype=np.float32), k=3)
    np.testing.assert_array_equal(ids, [[0, 1, 2]])
    assert (scores == 0).all()


def test_itemknn_beats_popularity_on_movielens():
    path = data_path("ml-100k", "u.data")
    df = rf.datasets.load_movielens("100k", data_home=path.parent.parent)
    inter = rf.Interactions.from_pandas(df[df.rating >= 4], user_col="user", item_col="item")
    train, test = rf.split.random_holdout(inter, test_fraction=0.2, seed=1)
    pop = rf.evaluation.evaluate(rf.MostPopular().fit(train), train, test, k=10)["ndcg@10"]
    for similarity in ("cosine", "bm25", "tfidf"):
        knn = rf.evaluation.evaluate(rf.ItemKNN(neighbors=50, similarity=similarity).fit(train), train, test, k=10)
        assert knn["ndcg@10"] > 1.15 * pop, (similarity, knn["ndcg@10"], pop)


@pytest.mark.parametrize("similarity, idf", [("bm25", "plain"), ("tfidf", "plain"), ("tfidf", "smooth")])
def test_weights_are_rf_transforms_bit_for_bit(counts, similarity, idf, monkeypatch):
    # ItemKNN computes the weights without rf.transforms' checks and copies (document frequencies from
    # the train rows): the matrix its kernel gets must be rf.transforms' own, to the last bit.
    model = rf.ItemKNN(neighbors=5, similarity=similarity, K1=1.5, B=0.5, idf=idf, threads=1)
    seen = {}
    real = model._ops.knn_item_neighbours

    def spy(users, **kw):
        seen["users"] = users.copy()
        return real(users, **kw)

    monkeypatch.setattr(model._ops, "knn_item_neighbours", spy)
    x = counts.copy()
    x.data[x.indptr[0] : x.indptr[1]] = 0  # an empty user (document frequency 0 for the items x users columns)
    x.eliminate_zeros()
    model.fit(x, progress=False)
    items = x.T.tocsr()
    if similarity == "bm25":
        want = rf.transforms.bm25_weight(items, K1=1.5, B=0.5)
    else:
        want = rf.transforms.tfidf_weight(items.sqrt(), idf=idf)
    got = seen["users"].T.tocsr()  # the kernel takes users x items; rf.transforms weighs items x users
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    assert got.data.tobytes() == want.data.tobytes()
    np.testing.assert_array_equal(x.toarray(), model.seen_.toarray())  # the train values untouched


def test_a_file_saved_before_idf_existed_loads_with_the_formula_it_was_fitted_with(tmp_path):
    """`idf` came with the plain formula as default; older files (no `idf` in their parameters) were fitted
    with the smooth one, and a refit or forget after loading must keep using it."""
    m = random_sparse(np.random.default_rng(3), 30, 25, 0.3)
    model = rf.ItemKNN(neighbors=5, similarity="tfidf", idf="smooth", threads=1).fit(m)
    model.save(tmp_path / "old.rfm")
    old = tmp_path / "old.rfm"
    rewrite_model_file(old, lambda arrays, meta: meta["params"].pop("idf"))
    loaded = rf.load(old)
    assert loaded.idf == "smooth"
    refit = loaded.fit(m)
    assert (refit.similarity_ != model.similarity_).nnz == 0
