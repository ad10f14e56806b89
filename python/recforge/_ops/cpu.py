"""CPU ops: thin routes from the models to the C++ kernels of ``recforge._core``.

The only Python module that imports the kernels (``_backend.py`` aside, for BLAS and thread counts).
Each function converts or routes arrays, calls one binding and returns; it trusts its caller: the
models and the public entries (``recforge.topk``) have validated shapes, dtypes, ranges and thread
counts already, and the bindings re-check what memory safety needs. ``cuda.py`` has the same names.

Conventions: factor matrices are C-contiguous float32 (rows x f) updated in place where the name
says so; ``threads`` is the resolved count (``_backend.resolve_threads``); CSR inputs are canonical
float32 scipy CSR matrices (sorted indices, no duplicates) or the ``KernelCsr`` of ``csr``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import _core
from .._backend import single_threaded_blas

__all__ = [
    "KernelCsr", "als_explicit_half_step", "als_explicit_sse", "als_implicit_half_step", "als_implicit_loss", "csr",
    "gram", "mlp_arch", "mlp_sample_epoch", "mlp_score_all", "mlp_score_pairs", "mlp_train_epoch", "name",
    "sgd_mf_epoch", "sgd_mf_predict", "sgd_positives", "sgd_rank_epoch", "sgd_ratings", "sgd_sample_negatives",
    "topk", "xp",
]  # fmt: skip

name = "cpu"
xp = np


class KernelCsr:
    """A CSR matrix as the kernels take it: int64 indptr, int32 indices, float32 data, shape.

    Built once per matrix (``csr``) and passed to every kernel call of a fit, so the conversion is
    not repeated per half-step or epoch.
    """

    __slots__ = ("indptr", "indices", "data", "shape")

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shape: tuple[int, int]):
        self.indptr, self.indices, self.data, self.shape = indptr, indices, data, shape

    @property
    def nnz(self) -> int:
        return len(self.indices)


def csr(m) -> KernelCsr:
    """The kernel form of a canonical float32 scipy CSR ``m`` (a KernelCsr is returned as it is)."""
    if isinstance(m, KernelCsr):
        return m
    return KernelCsr(
        m.indptr.astype(np.int64, copy=False), m.indices.astype(np.int32, copy=False),
        m.data.astype(np.float32, copy=False), m.shape,
    )  # fmt: skip


# -- ALS --------------------------------------------------------------------------------------
def gram(Y: np.ndarray, threads: int):
    """YᵀY (f, f) float32 for the implicit half-step; None while the half-step computes it itself."""
    return None  # _core.als_gram lands with the C++ half of issue 9


def als_implicit_half_step(m, Y, YtY, X, *, alpha, regularization, alpha0, nu, solver, cg_steps, threads) -> None:
    """Solve ``X`` (rows of ``m`` x f) in place against ``Y`` (columns of ``m`` x f); ``YtY`` = ``gram(Y)``."""
    c = csr(m)
    with single_threaded_blas():  # the kernel calls BLAS from its own threads
        _core.als_implicit_solve(c.indptr, c.indices, c.data, Y, X, alpha, regularization, alpha0, nu, solver,
                                 cg_steps, threads)  # fmt: skip


def als_explicit_half_step(m, Y, other_bias, X, own_bias, *, regularization, global_mean, threads) -> None:
    """Solve ``X`` and ``own_bias`` in place (explicit ALS with biases) against ``Y`` and ``other_bias``."""
    c = csr(m)
    with single_threaded_blas():
        _core.als_explicit_solve(c.indptr, c.indices, c.data, Y, other_bias, X, own_bias, regularization,
                                 global_mean, threads)  # fmt: skip


def als_implicit_loss(m, X, Y, *, alpha, regularization, alpha0, nu, threads) -> float:
    """The rows' share of the implicit objective: data term plus their regularisation."""
    c = csr(m)
    with single_threaded_blas():
        return float(_core.als_implicit_loss(c.indptr, c.indices, c.data, X, Y, alpha, regularization, alpha0, nu,
                                             threads))  # fmt: skip


def als_explicit_sse(m, X, own_bias, Y, other_bias, *, global_mean, threads) -> float:
    """Sum of squared errors of the explicit model over the stored ratings of ``m``."""
    c = csr(m)
    with single_threaded_blas():
        return float(_core.als_explicit_sse(c.indptr, c.indices, c.data, X, own_bias, Y, other_bias, global_mean,
                                            threads))  # fmt: skip


# -- SGD (SGDMF, BPR/WARP) --------------------------------------------------------------------
def sgd_ratings(m: sp.csr_matrix):
    """The stored ratings of ``m`` (users x items) prepared for ``sgd_mf_epoch`` (validated once)."""
    coo = m.tocoo()
    return _core.SGDRatingData(coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data.astype(np.float32),
                               m.shape[0], m.shape[1])  # fmt: skip


def sgd_positives(m: sp.csr_matrix):
    """The positives (values > 0) of ``m`` prepared for ``sgd_rank_epoch``; ``.nnz`` counts them."""
    pos = m.copy()
    pos.data = (pos.data > 0).astype(np.float32)
    pos.eliminate_zeros()
    return _core.SGDPositiveData(pos.indptr.astype(np.int64), pos.indices.astype(np.int32), m.shape[1])


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
    return _core.sgd_rank_epoch(data, P, Q, item_bias, lr, regularization, negatives, sampling, loss, max_sampled,
                                threads, seed, epoch, freeze_items=freeze_items)  # fmt: skip


def sgd_sample_negatives(data, users, *, sampling, seed) -> np.ndarray:
    """The negatives the rank epochs would draw for ``users`` (-1: none found)."""
    return _core.sgd_sample_negatives(data, users, sampling, seed)


# -- MLP (NCF) --------------------------------------------------------------------------------
_MLP_MODES = {"gmf": 0, "mlp": 1, "neumf": 2}


def mlp_arch(mode: str, dim_gmf: int, dim_mlp: int, layers) -> _core.MLPArch:
    """The NCF architecture (``mode`` "gmf" | "mlp" | "neumf") with its dense-parameter offsets."""
    return _core.MLPArch(_MLP_MODES[mode], dim_gmf, dim_mlp, list(layers))


def mlp_train_epoch(arch, user_emb, item_emb, dense, moments, step, users, items, labels, *, optimizer, lr, beta1,
                    beta2, eps, l2, batch_size, threads) -> tuple[float, int]:  # fmt: skip
    """One epoch over the samples, in place; ``moments`` are the 6 Adam arrays. Returns (mean loss, step)."""
    return _core.mlp_train_epoch(arch, user_emb, item_emb, dense, *moments, step, users, items, labels, optimizer,
                                 lr, beta1, beta2, eps, l2, batch_size, threads)  # fmt: skip


def mlp_sample_epoch(m, *, negatives, stream, threads):
    """(users, items, labels) of one epoch: every stored entry of ``m`` plus ``negatives`` unseen items each."""
    c = csr(m)
    return _core.mlp_sample_epoch(c.indptr, c.indices, c.shape[1], negatives, stream, threads)


def mlp_score_pairs(arch, user_emb, item_emb, dense, users, items, *, threads) -> np.ndarray:
    """(n,) float32 logits of (user, item) pairs."""
    return _core.mlp_score_pairs(arch, user_emb, item_emb, dense, users, items, threads)


def mlp_score_all(arch, user_emb, item_emb, dense, users, *, threads) -> np.ndarray:
    """(n, n_items) float32 logits of ``users`` against every item."""
    return _core.mlp_score_all(arch, user_emb, item_emb, dense, users, threads)


# -- top-K ------------------------------------------------------------------------------------
def topk(queries, items, k, *, exclude=None, subset=None, per_row=None, threads):
    """Best ``k`` items per query by inner product; trusts its arguments (``recforge.topk`` checks them).

    ``queries`` (n, f) and ``items`` (m, f) are finite C-contiguous float32 whose products cannot
    overflow, 1 <= k <= m; ``exclude`` is a canonical CSR (n x m: scipy or KernelCsr) or None;
    ``subset`` (c,) / ``per_row`` (n, c) int64 item ids in range (-1 pads ``per_row``).
    """
    indptr = indices = None
    if exclude is not None:  # the kernel reads int64 row pointers and ids
        indptr = exclude.indptr.astype(np.int64, copy=False)
        indices = exclude.indices.astype(np.int64, copy=False)
    with single_threaded_blas():  # the kernel calls BLAS from its own threads
        return _core.topk_f32(queries, items, k, indptr, indices, subset, per_row, threads)
