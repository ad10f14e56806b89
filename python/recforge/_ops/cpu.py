"""CPU ops: thin routes from the models to the C++ kernels of ``recforge._core``.

The only Python module that imports the kernels (``_backend.py`` aside, for BLAS and thread counts).
Each function converts or routes arrays, calls one binding and returns; it trusts its caller: the
models and the public entries (``recforge.topk``) have validated shapes, dtypes, ranges and thread
counts already, and the bindings re-check what memory safety needs. ``cuda.py`` has the same names.

Conventions: factor matrices are C-contiguous float32 (rows x f) updated in place where the name
says so; ``threads`` is the resolved count (``_backend.resolve_threads``); CSR inputs are canonical
float32 scipy CSR matrices (sorted indices, no duplicates) or what ``csr`` returns: a
``_core.Csr``, copied and validated once in C++ (callers cache it and read only ``.shape``,
``.nnz`` and ``.indptr``), which every kernel of a fit then trusts. Enum arguments are passed by
name ("cg", "bpr", ...) and mapped to the ``_core`` enums here.
"""

from __future__ import annotations

import copyreg

import numpy as np

from .. import _core
from .._backend import blas_threads, single_threaded_blas

__all__ = [
    "als_explicit_half_step", "als_explicit_sse", "als_implicit_half_step", "als_implicit_loss", "csr",
    "ease_weights", "gram", "hybrid_epoch", "knn_item_neighbours", "knn_recommend", "mlp_arch", "mlp_sample_epoch",
    "mlp_score_all", "mlp_score_pairs", "mlp_train_epoch", "name", "sgd_mf_epoch", "sgd_mf_predict", "sgd_positives",
    "sgd_rank_epoch", "sgd_ratings", "sgd_sample_negatives", "topk", "xp",
]  # fmt: skip

name = "cpu"
xp = np


def csr(m, name: str = "interactions") -> _core.Csr:
    """The kernel form of a canonical scipy CSR ``m``: a ``_core.Csr`` (one is returned as it is).

    Copied into C++ and validated once (structure, and which of sorted / unique / finite /
    nonnegative hold); kernels check the properties they need in O(1). Errors start with ``name``.
    """
    if isinstance(m, _core.Csr):
        return m
    return _core.Csr(m.indptr, m.indices, m.data, m.shape, name)


def _reduce_csr(m: _core.Csr):
    """Pickling a ``_core.Csr`` (recforge.distributed moves blocks between processes): its arrays,
    rebuilt and validated again when loaded."""
    if m.nnz == 0:  # (the views of empty arrays are not available)
        return _core.Csr, (np.asarray(m.indptr), np.zeros(0, np.int32), np.zeros(0, np.float32), tuple(m.shape))
    data = None if m.data is None else np.asarray(m.data)
    return _core.Csr, (np.asarray(m.indptr), np.asarray(m.indices), data, tuple(m.shape))


copyreg.pickle(_core.Csr, _reduce_csr)


# -- ALS --------------------------------------------------------------------------------------
def gram(Y: np.ndarray, threads: int) -> np.ndarray:
    """YᵀY (f, f) float32: the Gram matrix ``als_implicit_half_step`` takes, once per half-step."""
    with single_threaded_blas():  # one single-threaded SYRK: the same bits whatever the BLAS pool
        return _core.als_gram(Y, threads)


def _reg_scaling(scaling: str):
    """The ``_core.RegScaling`` of ``scaling`` ("all_pairs" | "observed"; ValueError otherwise)."""
    if scaling not in _core.RegScaling.__members__:
        raise ValueError(f"scaling must be one of {tuple(_core.RegScaling.__members__)}, got {scaling!r}")
    return _core.RegScaling.__members__[scaling]


def als_implicit_half_step(m, Y, YtY, X, *, alpha, regularization, alpha0, nu, solver, cg_steps, threads,
                           scaling="all_pairs", prior=None, prior_weight=0.0) -> None:  # fmt: skip
    """Solve ``X`` (rows of ``m`` x f) in place against ``Y`` (columns of ``m`` x f); ``YtY`` = ``gram(Y)``.

    ``scaling``: what ``nu`` scales (``als_row_regularization``). ``prior`` (rows of ``m`` x f, optional):
    each row is pulled toward its prior row by a further ``prior_weight`` (``A += prior_weight I``,
    ``b += prior_weight prior``) instead of toward 0; rows without entries are then solved too. A free
    function of its arguments: a driver may call it per partition of the rows of ``m`` (each with its own
    CSR, ``X`` and ``prior`` rows, the same ``Y`` and ``YtY``).
    """
    with single_threaded_blas():  # the kernel calls BLAS from its own threads
        _core.als_implicit_solve(csr(m), Y, YtY, X, alpha, regularization, alpha0, nu, _reg_scaling(scaling),
                                 _core.Solver.__members__[solver], cg_steps, threads, prior, prior_weight)  # fmt: skip


def als_explicit_half_step(m, Y, other_bias, X, own_bias, *, regularization, global_mean, threads) -> None:
    """Solve ``X`` and ``own_bias`` in place (explicit ALS with biases) against ``Y`` and ``other_bias``."""
    with single_threaded_blas():
        _core.als_explicit_solve(csr(m, "ratings"), Y, other_bias, X, own_bias, regularization, global_mean, threads)


def als_implicit_loss(m, X, Y, *, alpha, regularization, alpha0, nu, threads, YtY=None, scaling="all_pairs") -> float:
    """The rows' share of the implicit objective: data term plus their regularisation.

    ``YtY``: the Gram of the whole other side when ``Y`` holds only the rows ``m`` reads (default
    ``gram(Y)``).
    """
    with single_threaded_blas():
        G = _core.als_gram(Y, threads) if YtY is None else YtY
        return float(_core.als_implicit_loss(csr(m), X, Y, G, alpha, regularization, alpha0, nu, _reg_scaling(scaling),
                                             threads))  # fmt: skip


def als_explicit_sse(m, X, own_bias, Y, other_bias, *, global_mean, threads) -> float:
    """Sum of squared errors of the explicit model over the stored ratings of ``m``."""
    with single_threaded_blas():
        return float(_core.als_explicit_sse(csr(m, "ratings"), X, own_bias, Y, other_bias, global_mean, threads))


# -- SGD (SGDMF, BPR/WARP) --------------------------------------------------------------------
def sgd_ratings(m):
    """The stored ratings of ``m`` (users x items) packed for ``sgd_mf_epoch`` (once per fit)."""
    return _core.SGDRatingData(csr(m, "ratings"))


def sgd_positives(m):
    """The positives (values > 0) of ``m`` prepared for ``sgd_rank_epoch``; ``.nnz`` counts them."""
    return _core.SGDPositiveData(csr(m))


def sgd_mf_epoch(data, P, Q, user_bias, item_bias, *, global_mean, lr, regularization, bias_regularization,
                 threads, seed, epoch, freeze_items=False) -> float:  # fmt: skip
    """One Hogwild epoch of biased MF, in place; returns the epoch's training MSE."""
    return _core.sgd_mf_epoch(data, P, Q, user_bias, item_bias, global_mean, lr, regularization, bias_regularization,
                              threads, seed, epoch, freeze_items=freeze_items)  # fmt: skip


def sgd_mf_predict(users, items, P, Q, user_bias, item_bias, *, global_mean, threads) -> np.ndarray:
    """(n,) float32 predictions; ids out of range count as unknown (bias fallback)."""
    return _core.sgd_mf_predict(np.ascontiguousarray(users, np.int64), np.ascontiguousarray(items, np.int64), P, Q,
                                user_bias, item_bias, global_mean, threads)  # fmt: skip


def sgd_rank_epoch(data, P, Q, item_bias, *, lr, regularization, negatives, sampling, loss, max_sampled, threads,
                   seed, epoch, freeze_items=False) -> dict:  # fmt: skip
    """One Hogwild BPR/WARP epoch, in place; returns ``{"loss", "pairs", "updates", "skipped"}``."""
    return _core.sgd_rank_epoch(data, P, Q, item_bias, lr, regularization, negatives,
                                _core.Sampling.__members__[sampling], _core.Loss.__members__[loss], max_sampled,
                                threads, seed, epoch, freeze_items=freeze_items)  # fmt: skip


def sgd_sample_negatives(data, users, *, sampling, seed) -> np.ndarray:
    """The negatives the rank epochs would draw for ``users`` (-1: none found)."""
    return _core.sgd_sample_negatives(data, users, _core.Sampling.__members__[sampling], seed)


# -- MLP (NCF) --------------------------------------------------------------------------------
def mlp_arch(mode: str, dim_gmf: int, dim_mlp: int, layers) -> _core.MLPArch:
    """The NCF architecture (``mode`` "gmf" | "mlp" | "neumf") with its dense-parameter offsets."""
    return _core.MLPArch(_core.Mode.__members__[mode], dim_gmf, dim_mlp, list(layers))


def mlp_train_epoch(arch, user_emb, item_emb, dense, moments, step, users, items, labels, *, optimizer, lr, beta1,
                    beta2, eps, l2, batch_size, threads, user_features=None,
                    item_features=None) -> tuple[float, int]:  # fmt: skip
    """One epoch over the samples, in place; ``moments`` are the 6 Adam arrays. Returns (mean loss, step).

    ``user_features`` / ``item_features`` (``csr`` results, optional): the tables hold one row per
    feature and an entity's embedding is its feature-weighted sum of rows (recforge/mlp.hpp).
    """
    return _core.mlp_train_epoch(arch, user_emb, item_emb, dense, *moments, step, users, items, labels,
                                 _core.Optimizer.__members__[optimizer], lr, beta1, beta2, eps, l2, batch_size,
                                 threads, user_features, item_features)  # fmt: skip


def mlp_sample_epoch(m, *, negatives, stream, threads):
    """(users, items, labels) of one epoch: every stored entry of ``m`` plus ``negatives`` unseen items each."""
    return _core.mlp_sample_epoch(csr(m), negatives, stream, threads)


def mlp_score_pairs(arch, user_emb, item_emb, dense, users, items, *, threads) -> np.ndarray:
    """(n,) float32 logits of (user, item) pairs."""
    return _core.mlp_score_pairs(arch, user_emb, item_emb, dense, users, items, threads)


def mlp_score_all(arch, user_emb, item_emb, dense, users, *, threads) -> np.ndarray:
    """(n, n_items) float32 logits of ``users`` against every item."""
    return _core.mlp_score_all(arch, user_emb, item_emb, dense, users, threads)


# -- EASE -------------------------------------------------------------------------------------
def ease_weights(m, *, regularization: float, dtype: str, threads: int) -> np.ndarray:
    """EASE's item-item weights (Steck 2019) from the users x items CSR ``m``, as ranking vectors.

    ``P = (XᵀX + λI)⁻¹`` in ``dtype`` ("float32" | "float64") by Cholesky (LAPACK potrf/potri, on
    ``threads`` BLAS threads); ``B = I - P / diag(P)`` (column j divided by ``P_jj``), zero diagonal.
    Returns ``Bᵀ`` (n_items, n_items) C-contiguous float32: row j holds the weight of every item in
    item j's score, so scores are ``X @ Bᵀ.T``. Raises ValueError when ``XᵀX + λI`` is not positive
    definite (``regularization`` too small for the data). Peak memory: about one dense n_items² matrix
    of ``dtype`` (worked in place) plus the sparse ``XᵀX``.
    """
    from scipy.linalg import lapack

    x = m.astype(dtype)
    p = (x.T @ x).toarray()  # the Gram matrix, then its inverse, then the weights, in place
    del x
    n = len(p)
    p[np.diag_indices(n)] += regularization
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (p,))
    with blas_threads(threads):
        c, info = potrf(p, lower=False, overwrite_a=True, clean=False)
        if info > 0:
            raise ValueError(f"XᵀX + regularization * I is not positive definite (leading minor {info}): "
                             f"increase regularization (now {regularization})")  # fmt: skip
        p, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(f"LAPACK potri failed (info={info})")
    # potri fills the upper triangle: mirror it into the lower one, a block of rows at a time.
    for start in range(0, n, 1024):
        stop = min(start + 1024, n)
        p[start:stop, :start] = p[:start, start:stop].T
        block = p[start:stop, start:stop]
        block[np.tril_indices(stop - start, -1)] = block.T[np.tril_indices(stop - start, -1)]
    # P is symmetric, so Bᵀ[j, i] = B[i, j] = -P[i, j] / P[j, j] = -P[j, i] / P[j, j]: rows divided.
    p /= -np.diag(p).copy()[:, None]
    p[np.diag_indices(n)] = 0.0
    return np.ascontiguousarray(p, dtype=np.float32)


# -- HybridMF -----------------------------------------------------------------------------------
def hybrid_epoch(positives, user_features, item_features, negatives, *, user_emb, item_emb, item_bias, g2, lr,
                 regularization, loss, max_sampled, threads, seed, epoch, user_power=1.0) -> dict:  # fmt: skip
    """One Hogwild Adagrad epoch of the feature-embedding model, in place (``g2``: the three accumulators).

    ``positives`` (users x items, values ignored), ``user_features`` / ``item_features`` (one row per
    user / item) are ``csr`` results; ``negatives`` the int32 ids negatives are drawn from. Returns
    ``{"loss", "samples"}``. ``user_power``: a positive is drawn by drawing a user with probability
    proportional to (their number of positives) ** user_power, then one of theirs (1: uniformly over
    all positives; 0: every user alike).
    """
    return _core.hybrid_epoch(positives, user_features, item_features, negatives, user_emb, item_emb, item_bias, *g2,
                              lr, regularization, regularization, _core.HybridLoss.__members__[loss], max_sampled,
                              threads, seed, epoch, user_power)  # fmt: skip


# -- ItemKNN ----------------------------------------------------------------------------------
def knn_item_neighbours(users, *, cosine: bool, k: int, threads: int):
    """The ``k`` most similar items of every item: (indptr, indices, data) of an items x items CSR.

    ``users`` (users x items, finite values >= 0: the training matrix, weighted or not) is a
    canonical scipy CSR or a ``csr`` result; similarity is the inner product of columns (divided by
    both norms when ``cosine``), only positive ones kept, an item never its own neighbour; ids
    within a row are not sorted.
    """
    return _core.knn_item_neighbours(csr(users, "users"), cosine, k, threads)


def knn_recommend(history, similarity, k, *, exclude_history, subset=None, threads):
    """Best ``k`` items per row of ``history`` (n x items) by ``history @ similarity``: (ids, scores).

    ``similarity`` (items x items) is a ``csr`` result (cached by the caller); ``exclude_history``
    leaves each row's own items out; ``subset`` (int64 ids) restricts the ranking; -1 / -inf pad.
    """
    return _core.knn_recommend(csr(history, "history"), similarity, k, exclude_history, subset, threads)


# -- top-K ------------------------------------------------------------------------------------
def topk(queries, items, k, *, exclude=None, subset=None, per_row=None, threads):
    """Best ``k`` items per query by inner product; trusts its arguments (``recforge.topk`` checks them).

    ``queries`` (n, f) and ``items`` (m, f) are finite C-contiguous float32 whose products cannot
    overflow, 1 <= k <= m; ``exclude`` (n x m, sorted rows) is a canonical scipy CSR or a ``csr``
    result, or None; ``subset`` (c,) / ``per_row`` (n, c) int64 item ids in range (-1 pads ``per_row``).
    """
    if exclude is not None and not isinstance(exclude, _core.Csr):  # only the pattern is read
        exclude = _core.Csr(exclude.indptr, exclude.indices, None, exclude.shape, "exclude")
    with single_threaded_blas():  # the kernel calls BLAS from its own threads
        return _core.topk_f32(queries, items, k, exclude, subset, per_row, threads)
