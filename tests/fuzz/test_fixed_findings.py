"""Regression tests of the fuzz findings fixed last (h10-rest; F3 and F24: test_core_arguments.py). Each was
an xfail(strict) reproducer in findings.py; the ids match /work/notes/h10-fuzz-findings.md."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from targets import core_baseline, fitted, train

import recforge as rf
from recforge import _core


def test_f6_core_outputs_past_memory_are_refused_naming_the_argument():
    c = core_baseline("mlp_sample_epoch")["interactions"]
    with pytest.raises(ValueError, match=r"^negatives=1000000000 \(an epoch of \d+ samples\) needs .* GiB of memory"):
        _core.mlp_sample_epoch(c, 10**9, 1, 1)
    empty = _core.Csr(np.zeros(21, np.int64), np.zeros(0, np.int32), None, (20, 20))
    with pytest.raises(ValueError, match=r"^k=4611686018427387904 for 30 rows needs .* GiB of memory"):
        _core.knn_recommend(c, empty, 2**62, True)


def test_f9_bool_data_and_empty_matrices_follow_the_csr_contract():
    """Not defects (findings.py): bool values are 0/1; an empty matrix has (no) values."""
    c = _core.Csr([0, 2], [0, 1], np.array([True, False]), (1, 2))
    np.testing.assert_array_equal(c.data, [1.0, 0.0])
    assert _core.Csr([0, 0], [], None, (1, 2)).data.shape == (0,)


def test_f11_ids_that_are_not_ids_are_refused_naming_the_argument():
    maps = dict(user_ids=rf.IdMap.range(7), item_ids=rf.IdMap.range(5))
    for users in ([[0, 1]], [[0, 1], [2]]):
        with pytest.raises(ValueError, match="^users must be a 1-D sequence of ids, got nested sequences"):
            rf.Interactions.from_arrays(users, [0] * len(users), **maps)
    with pytest.raises(TypeError, match="^items: unhashable type"):
        rf.Interactions.from_arrays([0], [{}])
    with pytest.raises(ValueError, match="^users has 1 row.* 4294967297"):
        rf.Interactions.from_arrays([2**32 + 1], [0], **maps)
    tuples = rf.Interactions.from_arrays([(1, 2), (3, 4)], [0, 1])  # tuple ids stay ids
    assert tuples.n_users == 2


def test_f19_absurd_work_is_refused_up_front_saying_why():
    m = train()
    for model, param in ((rf.ALS, "epochs"), (rf.SGDMF, "epochs"), (rf.BPR, "negatives"), (rf.MLPScorer, "negatives")):
        with pytest.raises(ValueError, match=rf"^{param} must be <= 10000, got 2147483647 \(.*would run for days\)"):
            model(**{param: 2**31 - 1}).fit(m)
    with pytest.raises(ValueError, match=r"^epochs must be <= 10000"):
        fitted("sgdmf").partial_fit_users([0], m[:1], epochs=10**6)
    with pytest.raises(ValueError, match=r"^factors=100000 \(the 100000 x 100000 Gram matrix .*\) needs 37.3 GiB"):
        rf.ALS(factors=10**5).fit(m)
    # batch_size past the epoch: one batch, as before, without sizing buffers by it (was std::vector max_size())
    a = rf.MLPScorer(factors=2, layers=(4,), epochs=1, batch_size=2**31 - 1, threads=1, seed=0).fit(m)
    b = rf.MLPScorer(factors=2, layers=(4,), epochs=1, batch_size=10**6, threads=1, seed=0).fit(m)
    np.testing.assert_array_equal(a.user_embedding, b.user_embedding)


def test_f23_topk_names_the_subset_or_candidates_argument():
    q, it = np.ones((1, 2), np.float32), np.ones((30, 2), np.float32)
    with pytest.raises(ValueError, match=r"^topk: subset holds item id 4294967297, outside \[0, 30\)"):
        _core.topk_f32(q, it, 2, subset=np.array([2**32 + 1, 3]))
    with pytest.raises(ValueError, match=r"^topk: candidates holds item id -5, outside \[0, 30\) or -1"):
        _core.topk_f32(q, it, 2, candidates=np.array([[0, -5]]))


def test_f25_no_users_still_checks_k_and_threads():
    for name in ("als", "popular", "mlp"):
        m = fitted(name)
        with pytest.raises(TypeError, match="^threads must be an int"):
            m.recommend([], 3, threads="2")
        with pytest.raises(ValueError, match="^k must be >= 1"):
            m.recommend([], 0)
        assert m.recommend([], 2**63 - 1, threads=1)[0].shape == (0, m.n_items)  # k clipped to the catalogue
    mlp = fitted("mlp")  # documented: threads=None is the model's own
    np.testing.assert_array_equal(mlp.recommend([0, 1], 3, threads=None)[0], mlp.recommend([0, 1], 3, threads=1)[0])


def test_f26_a_singular_row_names_the_argument_it_came_from():
    rows = sp.csr_matrix(np.array([[1e20, 2, 1, 3, 1] + [0] * 15]))
    model = fitted("als")
    with pytest.raises(ValueError, match=r"^interactions_rows: ALS: the normal equations of row 0 are not positive"):
        model.partial_fit_users([0], rows)
    with pytest.raises(ValueError, match=r"^rows: .*not positive definite.*rf\.transforms\.log_scale"):
        model.recalculate_user(rows)


def test_f27_leave_last_out_takes_any_n():
    inter = rf.Interactions.from_arrays([0, 0, 0, 1, 1], [0, 1, 2, 0, 1], timestamps=[1, 2, 3, 4, 5])
    expected = rf.split.leave_last_out(inter, n=2)
    for n in (3, np.uint64(2**64 - 1), 10**30):
        train_part, test_part = rf.split.leave_last_out(inter, n=n)
        assert (train_part.csr != expected[0].csr).nnz == 0 and (test_part.csr != expected[1].csr).nnz == 0
    with pytest.raises(ValueError, match="^seed must be"):
        rf.split.kfold(inter, seed=-1)
    with pytest.raises(ValueError, match=r"^n_folds must be >= 2 and <= 2147483647, got 18446744073709551615"):
        rf.split.kfold(inter, n_folds=2**64 - 1)


def test_topk_exclude_of_another_shape_is_named_before_scipy_reads_it():
    """Found by seed 3 after the fixes above: a broken exclude of the wrong shape reached SciPy's own check."""
    ex = sp.csr_matrix((2, 2), dtype=np.float32)
    ex.indptr = np.array([0, 2], np.int32)  # one row's pointers for a (2, 2) shape
    ex.indices, ex.data = np.array([0, 1], np.int32), np.ones(2, np.float32)
    with pytest.raises(ValueError, match=r"^exclude must have shape \(0, 2\), got \(2, 2\)"):
        rf.topk(np.zeros((0, 4), np.float32), np.ones((2, 4), np.float32), 2, exclude=ex)


def test_f28_the_float64_path_names_user_emb_that_chose_it():
    args = core_baseline("mlp_loss_grad")
    args["user_emb"] = args["user_emb"].astype(np.float64)
    with pytest.raises(TypeError, match=r"^item_emb must be float64 like user_emb"):
        _core.mlp_loss_grad(**args)
