"""MLPScorer (NCF GMF / MLP / NeuMF): gradients, training path, optimiser, inference and its own errors
(what every model does alike: test_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import recforge as rf
from recforge import _core

MODES = {
    "gmf": (_core.Mode.gmf, 3, 0, []),
    "mlp": (_core.Mode.mlp, 0, 3, [5, 4]),
    "neumf": (_core.Mode.neumf, 3, 2, [4, 3, 2]),
}


def _random_problem(mode, rng, dtype=np.float64, n_users=5, n_items=6, n=9):
    arch = _core.MLPArch(*MODES[mode])
    e = arch.emb_width
    user_emb = rng.normal(0, 0.5, (n_users, e)).astype(dtype)
    item_emb = rng.normal(0, 0.5, (n_items, e)).astype(dtype)
    dense = rng.normal(0, 0.5, arch.n_dense).astype(dtype)
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    labels = rng.integers(0, 2, n).astype(np.float32)
    return arch, user_emb, item_emb, dense, users, items, labels


def central_differences(loss, x, h=1e-6):
    """The gradient of ``loss()`` (a float of the current values) with respect to the array ``x``, changed
    in place entry by entry and restored: (loss(x + h) - loss(x - h)) / 2h per entry."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for j in range(flat.size):
        old = flat[j]
        flat[j] = old + h
        up = loss()
        flat[j] = old - h
        down = loss()
        flat[j] = old
        gflat[j] = (up - down) / (2 * h)
    return g


def _param_groups(arch, n_layers):
    """(name, slice of the dense vector) for every dense parameter group."""
    groups = []
    for l in range(n_layers):
        groups.append((f"W{l + 1}", slice(arch.w_offset(l), arch.b_offset(l))))
        end = arch.w_offset(l + 1) if l + 1 < n_layers else arch.out_w_offset
        groups.append((f"b{l + 1}", slice(arch.b_offset(l), end)))
    groups.append(("w_out", slice(arch.out_w_offset, arch.out_b_offset)))
    groups.append(("b_out", slice(arch.out_b_offset, arch.n_dense)))
    return groups


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("l2", [0.0, 0.03])
def test_gradients_match_finite_differences(mode, l2, rng):
    arch, ue, ie, dense, users, items, labels = _random_problem(mode, rng)
    loss, gu, gi, gd = _core.mlp_loss_grad(arch, ue, ie, dense, users, items, labels, l2)
    assert np.isfinite(loss)

    def numeric(x):
        return central_differences(lambda: _core.mlp_loss_grad(arch, ue, ie, dense, users, items, labels, l2)[0], x)

    np.testing.assert_allclose(gu, numeric(ue), atol=1e-8, err_msg="user embeddings")
    np.testing.assert_allclose(gi, numeric(ie), atol=1e-8, err_msg="item embeddings")
    gd_num = numeric(dense)
    for name, sl in _param_groups(arch, len(MODES[mode][3])):
        assert gd[sl].size > 0
        np.testing.assert_allclose(gd[sl], gd_num[sl], atol=1e-8, err_msg=name)
    # The planted problem has non-trivial gradients in every group (the check above can fail).
    assert np.abs(gd).max() > 1e-3 and np.abs(gu).max() > 1e-3


def test_float32_gradients_match_float64(rng):
    arch, ue, ie, dense, users, items, labels = _random_problem("neumf", rng, n=40)
    ref = _core.mlp_loss_grad(arch, ue, ie, dense, users, items, labels, 0.01)
    f32 = _core.mlp_loss_grad(arch, ue.astype(np.float32), ie.astype(np.float32), dense.astype(np.float32),
                              users, items, labels, 0.01)  # fmt: skip
    assert f32[0] == pytest.approx(ref[0], rel=1e-5)
    for a, b in zip(f32[1:], ref[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_register_blocked_kernels_match_finite_differences(rng):
    """Widths that are multiples of a 64-byte vector take the blocked GEMM paths (float and double)."""
    arch = _core.MLPArch(_core.Mode.neumf, 16, 16, [48, 32, 16])
    e = arch.emb_width
    ue = rng.normal(0, 0.3, (6, e))
    ie = rng.normal(0, 0.3, (7, e))
    dense = rng.normal(0, 0.3, arch.n_dense)
    users, items = rng.integers(0, 6, 25), rng.integers(0, 7, 25)  # odd count: the 1-row tails too
    labels = rng.integers(0, 2, 25).astype(np.float32)
    loss, gu, gi, gd = _core.mlp_loss_grad(arch, ue, ie, dense, users, items, labels, 0.01)
    for x, g in ((ue, gu), (ie, gi), (dense, gd)):
        flat = x.reshape(-1)
        for j in rng.choice(flat.size, 60, replace=False):
            old = flat[j]
            flat[j] = old + 1e-6
            lp = _core.mlp_loss_grad(arch, ue, ie, dense, users, items, labels, 0.01)[0]
            flat[j] = old - 1e-6
            lm = _core.mlp_loss_grad(arch, ue, ie, dense, users, items, labels, 0.01)[0]
            flat[j] = old
            assert g.reshape(-1)[j] == pytest.approx((lp - lm) / 2e-6, abs=1e-8)
    f32 = _core.mlp_loss_grad(arch, ue.astype(np.float32), ie.astype(np.float32), dense.astype(np.float32),
                              users, items, labels, 0.01)  # fmt: skip
    assert f32[0] == pytest.approx(loss, rel=1e-5)
    for a, b in zip(f32[1:], (gu, gi, gd)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _train(arch, ue, ie, dense, users, items, labels, optimizer, lr, l2, batch_size, threads, step=0, moments=None):
    if moments is None:
        moments = [np.zeros_like(a) for a in (ue, ue, ie, ie, dense, dense)]
    return _core.mlp_train_epoch(arch, ue, ie, dense, *moments, step, users, items, labels,
                                 _core.Optimizer.__members__[optimizer], lr, 0.9, 0.999, 1e-8, l2, batch_size,
                                 threads)  # fmt: skip


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dims", [(2, 3, 2, [4, 3, 2]), (2, 16, 16, [32, 16])])
def test_training_step_applies_the_exact_gradient(threads, dims, rng):
    """One SGD step over a full batch (several chunks) moves every parameter by -lr * gradient."""
    arch = _core.MLPArch(_core.Mode(dims[0]), *dims[1:])
    ue = rng.normal(0, 0.5, (7, arch.emb_width)).astype(np.float32)
    ie = rng.normal(0, 0.5, (8, arch.emb_width)).astype(np.float32)
    dense = rng.normal(0, 0.5, arch.n_dense).astype(np.float32)
    users, items = rng.integers(0, 7, 100), rng.integers(0, 8, 100)
    labels = rng.integers(0, 2, 100).astype(np.float32)
    loss, gu, gi, gd = _core.mlp_loss_grad(arch, ue, ie, dense, users, items, labels, 0.02)
    before = [a.copy() for a in (ue, ie, dense)]
    epoch_loss, step = _train(arch, ue, ie, dense, users, items, labels, "sgd", 0.5, 0.02, 100, threads)
    assert step == 1
    assert epoch_loss == pytest.approx(loss, rel=1e-5)
    for new, old, g in zip((ue, ie, dense), before, (gu, gi, gd)):
        np.testing.assert_allclose(new, old - 0.5 * g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_adam_matches_documented_update(optimizer, threads, rng):
    """Three mini-batches of Adam against a numpy transcription of the documented rules."""
    arch, ue, ie, dense, users, items, labels = _random_problem("neumf", rng, np.float32, 9, 10, 60)
    users[users == 0] = 1
    users[0] = 0  # user 0 only in the first batch: under dense adam its momentum keeps moving it
    ref = [a.astype(np.float64) for a in (ue, ie, dense)]
    m = [np.zeros_like(a) for a in ref]
    v = [np.zeros_like(a) for a in ref]
    lr, b1, b2, eps, l2 = 0.01, 0.9, 0.999, 1e-8, 0.01
    for t, sl in enumerate([slice(0, 20), slice(20, 40), slice(40, 60)], start=1):
        _, gu, gi, gd = _core.mlp_loss_grad(arch, *ref, users[sl], items[sl], labels[sl], l2)
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        for j, g in enumerate((gu, gi, gd)):
            dense_rule = j == 2 or optimizer == "adam"
            touched = slice(None) if dense_rule else np.unique((users if j == 0 else items)[sl])
            m[j][touched] = b1 * m[j][touched] + (1 - b1) * g[touched]
            v[j][touched] = b2 * v[j][touched] + (1 - b2) * g[touched] ** 2
            if dense_rule:  # torch.optim.Adam: every row steps (gradient 0 outside the batch)
                ref[j] -= lr / bc1 * m[j] / (np.sqrt(v[j]) / np.sqrt(bc2) + eps)
            else:  # torch.optim.SparseAdam: rows absent from the batch keep their moments
                ref[j][touched] -= lr * np.sqrt(bc2) / bc1 * m[j][touched] / (np.sqrt(v[j][touched]) + eps)
    after_first = ue.copy()
    _train(arch, after_first, ie.copy(), dense.copy(), users[:20], items[:20], labels[:20], optimizer, lr, l2, 20, 1)
    _, step = _train(arch, ue, ie, dense, users, items, labels, optimizer, lr, l2, 20, threads)
    assert step == 3
    moved = (ue[0] != after_first[0]).all()  # by steps 2 and 3, in which user 0 has no gradient
    assert moved if optimizer == "adam" else not moved
    for got, want in zip((ue, ie, dense), ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def _planted(rng, n_users=300, n_items=400, groups=4, density=0.12):
    gu = rng.integers(0, groups, n_users)
    gi = rng.integers(0, groups, n_items)
    mask = (gu[:, None] == gi[None, :]) & (rng.random((n_users, n_items)) < density)
    mask[np.arange(n_users), np.flatnonzero(gi == gu[0])[0]] = True  # nobody is empty
    return sp.csr_matrix(mask.astype(np.float32)), gu, gi


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
@pytest.mark.parametrize("mode", ["gmf", "mlp", "neumf"])
def test_loss_falls_and_structure_is_learned(mode, optimizer, rng):
    # 12 epochs: the MLP branch alone needs them (with 6 it found the groups for some seeds only).
    train, gu, gi = _planted(rng)
    model = rf.MLPScorer(
        factors=8, layers=(16, 8), mode=mode, epochs=12, lr=1e-2, optimizer=optimizer, threads=2, seed=1
    )
    model.fit(train, progress=False)
    hist = [h["loss"] for h in model.history_]
    assert len(hist) == 12 and hist[-1] < 0.8 * hist[0]
    ids, _ = model.recommend(np.arange(50), k=10)
    assert (gi[ids] == gu[:50, None]).mean() > 0.6  # 4 groups: random ranking gives 0.25


def test_plain_sgd_lowers_the_loss(rng):
    # Plain SGD on a mean loss moves the 0.01-scale embeddings slowly: the loss falls steadily but
    # far less than with Adam in the same epochs (the exact step is checked above).
    train, _, _ = _planted(rng)
    model = rf.MLPScorer(factors=8, layers=(16, 8), epochs=6, lr=2.0, optimizer="sgd", threads=2)
    hist = [h["loss"] for h in model.fit(train, progress=False).history_]
    assert hist[-1] < hist[0] - 0.02 and all(np.isfinite(hist))


def test_sampler_draws_only_unseen_negatives(rng):
    train, _, _ = _planted(rng, 50, 60, density=0.4)
    positives = _core.Csr(train.indptr, train.indices, None, train.shape)
    users, items, labels = _core.mlp_sample_epoch(positives, 3, 7, 2)
    assert len(users) == 4 * train.nnz
    seen = train.toarray() > 0
    assert seen[users[labels == 1], items[labels == 1]].all()
    assert not seen[users[labels == 0], items[labels == 0]].any()
    # Every positive exactly once; same result for any thread count.
    pos = sp.csr_matrix((np.ones(train.nnz), (users[labels == 1], items[labels == 1])), shape=train.shape)
    assert (pos != train).nnz == 0 and pos.max() == 1
    again = _core.mlp_sample_epoch(positives, 3, 7, 1)
    for a, b in zip((users, items, labels), again):
        np.testing.assert_array_equal(a, b)
    other = _core.mlp_sample_epoch(positives, 3, 8, 1)
    assert not np.array_equal(items, other[1])
    unsorted = _core.Csr(np.array([0, 2]), np.array([3, 1]), None, (1, 5))
    with pytest.raises(ValueError, match="sorted and unique"):  # rows are binary-searched
        _core.mlp_sample_epoch(unsorted, 3, 7, 1)
    with pytest.raises(ValueError, match="negatives"):
        _core.mlp_sample_epoch(positives, 0, 7, 1)


def _fitted_gmf(rng):
    train, _, _ = _planted(rng, 60, 70)
    return rf.MLPScorer(factors=5, mode="gmf", epochs=1, threads=1).fit(train, progress=False), train


def test_gmf_with_unit_output_scores_the_dot_product(rng):
    model, train = _fitted_gmf(rng)
    model.output_weights[:] = 1.0
    model.output_bias[:] = 0.0
    users = np.repeat(np.arange(60), 70)
    items = np.tile(np.arange(70), 60)
    dots = np.einsum("ij,ij->i", model.user_embedding[users].astype(np.float64),
                     model.item_embedding[items].astype(np.float64))  # fmt: skip
    scores = model.score(users, items)
    # Float32 sums of 5 products (the summation may use fused multiply-adds): a few ulps.
    np.testing.assert_allclose(scores, dots, rtol=1e-6, atol=1e-9)
    ids, top = model.recommend(np.arange(60), k=7)
    ref_ids, ref_top = rf.topk(model.user_embedding, model.item_embedding, 7, exclude=train)
    np.testing.assert_allclose(top, ref_top, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(ids, ref_ids)


def test_recommend_and_rerank_agree_with_score(rng):
    train, _, _ = _planted(rng, 40, 50)
    model = rf.MLPScorer(factors=4, layers=(6, 3), epochs=1, threads=2).fit(train, progress=False)
    users = np.array([0, 3, 7, 7])
    full = model.score(np.repeat(users, 50), np.tile(np.arange(50), 4)).reshape(4, 50)
    seen = train[users].toarray() > 0
    ids, scores = model.recommend(users, k=5)
    masked = np.where(seen, -np.inf, full)
    for r in range(4):
        want = np.lexsort((np.arange(50), -masked[r]))[:5]
        np.testing.assert_array_equal(ids[r], want)
        # The catalogue path splits the first layer into user and item halves: same value, other rounding.
        np.testing.assert_allclose(scores[r], masked[r, want], rtol=1e-5, atol=1e-6)
    cand = np.array([[5, 1, 2, -1], [9, -1, -1, -1], [0, 1, 2, 3], [3, 2, 1, 0]])
    rr_ids, rr_scores = model.rerank(users, cand, k=3)
    for r in range(4):
        valid = cand[r][cand[r] >= 0]
        order = valid[np.lexsort((valid, -full[r, valid]))][:3]
        np.testing.assert_array_equal(rr_ids[r, : len(order)], order)
        assert (rr_ids[r, len(order) :] == -1).all()
        np.testing.assert_array_equal(rr_scores[r, : len(order)], full[r, order])


def test_load_rejects_arrays_that_do_not_fit_the_architecture(rng, tmp_path):
    train, _, _ = _planted(rng, 30, 40)
    bad = rf.MLPScorer(factors=5, layers=(6, 3), epochs=1, threads=1).fit(train, progress=False)
    bad.factors = 4  # claims 4-dim embeddings but stores 5-dim ones
    bad.save(tmp_path / "bad.rf")
    with pytest.raises(ValueError, match="user_embedding"):
        rf.load(tmp_path / "bad.rf")


class _Factors:
    def __init__(self, u, i):
        self.user_factors, self.item_factors = u, i


def test_warm_start_copies_factors_into_gmf(rng):
    train, _, _ = _planted(rng, 30, 40)
    uf = rng.normal(0, 0.1, (30, 4)).astype(np.float32)
    itf = rng.normal(0, 0.1, (40, 4)).astype(np.float32)
    model = rf.MLPScorer(factors=4, mode="gmf", epochs=1, lr=1e-9, threads=1)
    model.fit(train, progress=False, init_from=_Factors(uf, itf))
    np.testing.assert_allclose(model.user_embedding, uf, atol=1e-6)  # lr ~ 0: barely moved
    np.testing.assert_allclose(model.output_weights, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="shapes"):
        rf.MLPScorer(factors=5, mode="gmf").fit(train, progress=False, init_from=_Factors(uf, itf))
    with pytest.raises(ValueError, match="mode='mlp'"):
        rf.MLPScorer(factors=4, mode="mlp").fit(train, progress=False, init_from=_Factors(uf, itf))
    with pytest.raises(ValueError, match="user_factors"):
        rf.MLPScorer(factors=4, mode="gmf").fit(train, progress=False, init_from=object())


def test_neumf_and_mlp_need_a_hidden_layer():
    for mode in ("neumf", "mlp"):
        with pytest.raises(ValueError, match="hidden layer"):
            rf.MLPScorer(mode=mode, layers=()).fit(sp.csr_matrix(np.eye(3, dtype=np.float32)), progress=False)
    rf.MLPScorer(mode="gmf", layers=(), epochs=1).fit(sp.csr_matrix(np.eye(3, dtype=np.float32)), progress=False)


def test_bad_inputs_after_fit(rng):
    train, _, _ = _planted(rng, 20, 30)
    model = rf.MLPScorer(factors=4, layers=(4,), epochs=1).fit(train, progress=False)
    with pytest.raises(ValueError, match="candidate_ids"):
        model.rerank([0], [[1, 30]])
    with pytest.raises(ValueError, match="candidate_ids"):
        model.rerank([0, 1], [[1, 2]])
    with pytest.raises(TypeError, match="candidate_ids"):
        model.rerank([0], [[1.5, 2.0]])
    # The C++ boundary checks ids itself too.
    with pytest.raises(ValueError, match=r"items: id 30 at position 0 outside \[0, 30\)"):
        _core.mlp_score_pairs(model.arch, model.user_embedding, model.item_embedding, model.dense, [0], [30], 1)
    with pytest.raises(TypeError):  # parameters are updated in place: no silent float64 copies
        _core.mlp_score_all(model.arch, model.user_embedding.astype(np.float64), model.item_embedding,
                            model.dense, [0], 1)  # fmt: skip
    with pytest.raises(ValueError, match="dense"):
        _core.mlp_score_all(model.arch, model.user_embedding, model.item_embedding, model.dense[:-1], [0], 1)


def test_dense_adam_on_a_large_table_points_to_lazy_adam(rng, caplog):
    train, _, _ = _planted(rng, 60, 70)  # 130 rows > 64 rows per sample x batch 2
    with caplog.at_level("WARNING", logger="recforge.models.mlp"):
        rf.MLPScorer(factors=4, layers=(4,), epochs=1, batch_size=2, threads=1).fit(train, progress=False)
    assert "lazy_adam" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="recforge.models.mlp"):
        rf.MLPScorer(factors=4, layers=(4,), epochs=1, batch_size=2, threads=1, optimizer="lazy_adam").fit(
            train, progress=False
        )
        rf.MLPScorer(factors=4, layers=(4,), epochs=1, batch_size=256, threads=1).fit(train, progress=False)
    assert caplog.text == ""


def test_retrieve_then_rank_with_default_arguments():
    # issue 11: MLPScorer's default width is the factor models' (it was 32 against ALS's 64).
    rng = np.random.default_rng(0)
    train = sp.random(60, 40, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    train.data[:] = 1.0
    als = rf.ALS(epochs=2).fit(train, progress=False)
    for retriever in (als, rf.BPR(epochs=2).fit(train, progress=False)):
        neumf = rf.MLPScorer(epochs=1).fit(train, progress=False, init_from=retriever)
        candidates, _ = retriever.recommend([0, 1], k=20)
        ids, _ = neumf.rerank([0, 1], candidates, k=5)
        assert ids.shape == (2, 5) and np.isin(ids, candidates).all()
