"""GPU ops: the same names as ``cpu.py``, on CuPy arrays; kernels are ``csrc/cuda/*.cu`` (see ``kernels.py``).

``get_ops("cuda")`` only returns this module once CuPy sees a GPU (``_backend.resolve_device``
explains what is missing otherwise). ``topk`` runs on the GPU; the training kernels (ALS, SGD, MLP)
arrive with issue 13 and raise NotImplementedError naming themselves until then, so a model on
``device="cuda"`` fails clearly at its first missing kernel instead of silently using the CPU.

Conventions: CuPy owns memory and streams, every kernel and cuBLAS call runs on CuPy's current
stream; pointers reach a kernel only after the shapes, dtypes and contiguity were checked here
(device code cannot raise); launch configurations are computed and checked here. The array
module, the kernel launch, the GEMM and the memory budget each go through one function
(``_xp``, ``_launch``, ``_gemm``, ``_memory_budget``), so the orchestration can also run on the
CPU with NumPy and the kernels compiled as C++ (tests/test_cuda_emulation.py).
"""

from __future__ import annotations

import numpy as np

from . import kernels

__all__ = [
    "als_explicit_half_step", "als_explicit_sse", "als_implicit_half_step", "als_implicit_loss", "csr",
    "ease_weights", "gram", "hybrid_epoch", "knn_item_neighbours", "knn_recommend", "mlp_arch", "mlp_sample_epoch",
    "mlp_score_all", "mlp_score_pairs", "mlp_train_epoch", "sgd_mf_epoch", "sgd_mf_predict", "sgd_positives",
    "sgd_rank_epoch", "sgd_ratings", "sgd_sample_negatives", "topk",
]  # fmt: skip

name = "cuda"


def __getattr__(attr: str):
    if attr == "xp":  # imported lazily: importing recforge must not need CuPy
        return _xp()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _xp():
    """The array module of this backend (CuPy; NumPy in the CPU emulation test)."""
    import cupy

    return cupy


def _not_yet(fn_name: str):
    def missing(*args, **kwargs):
        raise NotImplementedError(
            f"recforge has no GPU kernel for {fn_name} yet (the training kernels arrive with issue 13): fit on "
            "device='cpu', then model.to('cuda') for recommend / evaluate on the GPU"
        )

    missing.__name__ = missing.__qualname__ = fn_name
    missing.__doc__ = f"GPU twin of ``cpu.{fn_name}`` (not implemented yet: raises NotImplementedError)."
    return missing


csr = _not_yet("csr")
gram = _not_yet("gram")
als_implicit_half_step = _not_yet("als_implicit_half_step")
als_explicit_half_step = _not_yet("als_explicit_half_step")
als_implicit_loss = _not_yet("als_implicit_loss")
als_explicit_sse = _not_yet("als_explicit_sse")
sgd_ratings = _not_yet("sgd_ratings")
sgd_positives = _not_yet("sgd_positives")
sgd_mf_epoch = _not_yet("sgd_mf_epoch")
sgd_mf_predict = _not_yet("sgd_mf_predict")
sgd_rank_epoch = _not_yet("sgd_rank_epoch")
sgd_sample_negatives = _not_yet("sgd_sample_negatives")
mlp_arch = _not_yet("mlp_arch")
mlp_train_epoch = _not_yet("mlp_train_epoch")
mlp_sample_epoch = _not_yet("mlp_sample_epoch")
mlp_score_pairs = _not_yet("mlp_score_pairs")
mlp_score_all = _not_yet("mlp_score_all")
ease_weights = _not_yet("ease_weights")
hybrid_epoch = _not_yet("hybrid_epoch")
knn_item_neighbours = _not_yet("knn_item_neighbours")
knn_recommend = _not_yet("knn_recommend")


# -- launching ------------------------------------------------------------------------------------
_TOPK_SOURCE = "topk.cu"
BLOCK = 256  # threads per block of every top-K kernel
SMALL_ITEMS = 4  # RF_SMALL_ITEMS in topk.cu: elements per thread per chunk of rf_select_small
SMALL_K_MAX = 256  # rf_select_small up to this k, rf_select_radix above
MAX_GRID = 2**31 - 1  # gridDim.x limit; every kernel loops over what a smaller grid does not cover
MAX_SHARED = 48 * 1024  # dynamic shared memory available without opting in
MAX_ID = 2**31 - 1  # item ids must fit the 32 low bits of the selection keys
MIN_TILE_USERS = 1024  # a catalogue wider than the budget allows for this many users is split into shards
_i64, _i32 = np.int64, np.int32


def _launch(kernel: str, n_blocks: int, args: tuple, shared: int = 0) -> None:
    """Launch ``kernel`` of topk.cu: ``min(n_blocks, MAX_GRID)`` blocks of ``BLOCK`` threads, current stream."""
    if n_blocks < 1:
        return
    if shared > MAX_SHARED:
        raise ValueError(f"{kernel}: {shared} bytes of shared memory exceed the {MAX_SHARED} available")
    kernels.function(_TOPK_SOURCE, kernel)((min(int(n_blocks), MAX_GRID),), (BLOCK,), args, shared_mem=shared)


# cuBLAS enums (cublas_api.h / library_types.h): CUDA_R_32F, CUBLAS_COMPUTE_32F[_FAST_TF32|_FAST_16BF].
_CUDA_R_32F = 0
_COMPUTE = {"fp32": 68, "tf32": 77, "bf16": 75}
_OP_N, _OP_T = 0, 1
_GEMM_DEFAULT = -1


def _gemm(queries, items, out, precision: str) -> None:
    """``out[:] = queries @ items.T`` (rows x f, width x f -> rows x width, all C-contiguous float32) by cuBLAS.

    fp32 computes in fp32 (exact IEEE products and sums, in cuBLAS's order; the handle's math mode is
    set to the default for the call, so CuPy's CUPY_TF32=1 cannot turn it into TF32); "tf32" / "bf16"
    let cuBLAS round the inputs for the tensor cores (the callers re-score their survivors in fp32).
    """
    from cupy_backends.cuda.libs import cublas

    xp = _xp()
    rows, f = queries.shape
    width = items.shape[0]
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    handle = xp.cuda.device.get_cublas_handle()
    pointer_mode = cublas.getPointerMode(handle)
    math_mode = cublas.getMathMode(handle)
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    cublas.setMathMode(handle, cublas.CUBLAS_DEFAULT_MATH)
    try:  # column-major: out^T (width x rows) = items (width x f) . queries^T (f x rows)
        cublas.gemmEx(handle, _OP_T, _OP_N, width, rows, f, one.ctypes.data, items.data.ptr, _CUDA_R_32F, f,
                      queries.data.ptr, _CUDA_R_32F, f, zero.ctypes.data, out.data.ptr, _CUDA_R_32F, width,
                      _COMPUTE[precision], _GEMM_DEFAULT)  # fmt: skip
    finally:
        cublas.setMathMode(handle, math_mode)
        cublas.setPointerMode(handle, pointer_mode)


def _memory_budget() -> int:
    """Bytes the top-K may use for one tile's buffers: a quarter of the free device memory, 64 MiB to 1 GiB."""
    xp = _xp()
    free, _ = xp.cuda.runtime.memGetInfo()
    free += xp.get_default_memory_pool().free_bytes()  # CuPy's cached blocks are free to reuse
    return int(min(1 << 30, max(64 << 20, free // 4)))


# -- top-K ------------------------------------------------------------------------------------------
class _Exclusion:
    """The exclusion rows on the device: int64 ``indptr`` (n + 1), int32 item ids ``indices`` (sorted per row)."""

    def __init__(self, exclude, n_rows: int):
        xp = _xp()
        self.indptr = xp.ascontiguousarray(xp.asarray(exclude.indptr), dtype=_i64)
        self.indices = xp.ascontiguousarray(xp.asarray(exclude.indices), dtype=_i32)  # ids < MAX_ID: checked
        self.nnz = int(self.indices.shape[0])
        if self.indptr.shape != (n_rows + 1,):
            raise ValueError(f"exclude must have {n_rows + 1} row pointers, got {self.indptr.shape[0]}")

    def rows(self, r0: int):
        """``indptr`` from row ``r0`` on: the pointer a kernel gets for a tile starting at row ``r0``."""
        return self.indptr[r0:]


def _small_cap(k: int) -> int:
    """The candidate buffer of rf_select_small: a power of two >= k + one chunk."""
    cap = 1
    while cap < k + BLOCK * SMALL_ITEMS:
        cap <<= 1
    return cap


def _select(scores, k: int, out_ids, out_scores, *, ids=None, id_offset: int = 0) -> None:
    """Best ``k`` per row of ``scores`` (rows x width, C-contiguous; -inf never selected) into ``out_*`` (rows x k).

    Item ids: ``ids`` ((width,) for every row, or (rows, width)) or column + ``id_offset``; ties go
    to the lower id; rows with fewer than k eligible entries end in -1 / -inf.
    """
    xp = _xp()
    rows, width = scores.shape
    if rows == 0:
        return
    if out_ids.shape != (rows, k) or out_scores.shape != (rows, k):
        raise ValueError(f"top-K output must be ({rows}, {k}), got {out_ids.shape} / {out_scores.shape}")
    if ids is None:
        ids_arg, ids_ld, has_ids = xp.zeros(1, _i64), 0, 0
        if width and id_offset + width - 1 > MAX_ID:
            raise ValueError(f"item ids must be < {MAX_ID + 1}")
    else:
        if ids.shape not in ((width,), (rows, width)) or ids.dtype != _i64:
            raise ValueError(f"ids must be int64 of shape ({width},) or ({rows}, {width}), got {ids.shape} {ids.dtype}")
        ids_arg, ids_ld, has_ids = xp.ascontiguousarray(ids), (width if ids.ndim == 2 else 0), 1
    for a in (scores, out_ids, out_scores):
        if not a.flags.c_contiguous:
            raise ValueError("top-K buffers must be C-contiguous")
    common = (scores, _i64(width), _i64(rows), _i64(width), ids_arg, _i64(ids_ld), _i32(has_ids), _i64(id_offset))
    if k <= SMALL_K_MAX:
        cap = _small_cap(k)
        _launch("rf_select_small", rows, (*common, _i32(k), _i32(cap), out_ids, out_scores, _i64(k)), shared=cap * 8)
    else:
        keys = xp.zeros((rows, k), np.uint64)  # 0: padding
        _launch("rf_select_radix", rows, (*common, _i64(k), keys))
        keys.sort(axis=1)  # ascending: the best key last
        _launch("rf_decode_keys", -(-rows * k // BLOCK), (keys, _i64(rows), _i64(k), out_ids, out_scores))


def _mask(scores, ex: _Exclusion, r0: int, *, cols=None, col_offset: int = 0) -> None:
    """-inf at the excluded items of rows ``r0 ..`` of ``ex`` in the tile ``scores``."""
    xp = _xp()
    rows, width = scores.shape
    cols_arg, n_cols = (xp.zeros(1, _i64), 0) if cols is None else (cols, int(cols.shape[0]))
    _launch("rf_mask_excluded", rows, (scores, _i64(width), _i64(rows), _i64(width), ex.rows(r0), ex.indices,
                                       _i64(ex.nnz), cols_arg, _i64(n_cols), _i64(col_offset)))  # fmt: skip


def _score_candidates(queries, items, cand, out, ex: _Exclusion | None = None, r0: int = 0) -> None:
    """``out[r, j]`` = exact fp32 ``queries[r] . items[cand[r, j]]``; -inf for padding, repeats, excluded ids."""
    xp = _xp()
    rows, c = cand.shape
    f = queries.shape[1]
    ex_args = (_i32(0), xp.zeros(2, _i64), xp.zeros(1, _i32), _i64(0)) if ex is None else (
        _i32(1), ex.rows(r0), ex.indices, _i64(ex.nnz))  # fmt: skip
    _launch("rf_score_candidates", -(-rows * c // BLOCK), (queries, items, _i64(rows), _i64(items.shape[0]), _i64(f),
                                                           cand, _i64(c), *ex_args, out))  # fmt: skip


def _device_rows(a, r0: int, r1: int):
    """Rows ``r0:r1`` of ``a`` (host or device) as a C-contiguous float32 device array."""
    xp = _xp()
    return xp.ascontiguousarray(xp.asarray(a[r0:r1]), dtype=np.float32)


def _tile_rows(n: int, bytes_per_row: int) -> int:
    return int(max(1, min(n, _memory_budget() // max(1, bytes_per_row))))


def topk(queries, items, k, *, exclude=None, subset=None, per_row=None, threads=None, precision: str = "fp32"):
    """Best ``k`` items per query by inner product, on the GPU; the arguments as ``cpu.topk`` (checked by the caller).

    ``queries`` / ``items`` may live on the host (copied tile by tile) or the device; ``exclude`` is
    a CSR-like object (``indptr``, ``indices``: SciPy, CuPy sparse or ``CsrRows``) with sorted rows.
    Users are processed in tiles sized to the free device memory, so the full users x items score
    matrix never exists; a catalogue too large for one tile is split into item shards whose
    results are merged. ``threads`` is ignored. Returns CuPy ``ids`` (n, k) int64, ``scores`` (n, k) float32.
    """
    xp = _xp()
    n, f = queries.shape
    m = items.shape[0]
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}], got {k}")
    if m - 1 > MAX_ID:
        raise ValueError(f"the GPU top-K takes at most {MAX_ID + 1} items, got {m}")
    if precision not in _COMPUTE:
        raise ValueError(f"precision must be one of {sorted(_COMPUTE)}, got {precision!r}")
    ids = xp.full((n, k), -1, _i64)
    scores = xp.full((n, k), -np.inf, np.float32)
    if n == 0:
        return ids, scores
    ex = None if exclude is None else _Exclusion(exclude, n)
    if per_row is not None:
        _topk_per_row(queries, items, k, ex, xp.asarray(per_row, dtype=_i64), ids, scores)
        return ids, scores

    if subset is not None:  # one shard: the (sorted, distinct) subset's rows, ids mapped back
        cols = xp.unique(xp.asarray(subset, dtype=_i64))
        shards = [(xp.ascontiguousarray(xp.asarray(items)[cols], dtype=np.float32), cols, 0)]
    else:
        width = int(min(m, max(k, _memory_budget() // (4 * MIN_TILE_USERS))))
        shards = [(None, None, s) for s in range(0, m, width)]  # rows copied shard by shard (below)
    parts = []
    for shard_items, cols, start in shards:
        if shard_items is None:
            shard_items = _device_rows(items, start, min(m, start + width))
        out = (ids, scores) if len(shards) == 1 else (xp.full((n, k), -1, _i64), xp.full((n, k), -np.inf, np.float32))
        _topk_shard(queries, shard_items, k, ex, cols, start, precision, *out)
        parts.append(out)
    if len(parts) > 1:  # merge: the best k of every shard's best k (exact scores, global ids)
        _select(xp.ascontiguousarray(xp.hstack([p[1] for p in parts])), k, ids, scores,
                ids=xp.ascontiguousarray(xp.hstack([p[0] for p in parts])))  # fmt: skip
    return ids, scores


def _topk_shard(queries, shard_items, k, ex, cols, start, precision, out_ids, out_scores) -> None:
    """Best ``k`` of one item shard (item ids ``cols`` or ``start + column``) for every query, tile by tile."""
    xp = _xp()
    n = queries.shape[0]
    width = shard_items.shape[0]
    survivors = k if precision == "fp32" else min(width, k + max(k, 32))
    rows = _tile_rows(n, 4 * width + 24 * survivors)
    tile = xp.empty((rows, width), np.float32)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        q = _device_rows(queries, r0, r1)
        s = tile[: r1 - r0]
        _gemm(q, shard_items, s, precision)
        if ex is not None:
            _mask(s, ex, r0, cols=cols, col_offset=start)
        if precision == "fp32":
            _select(s, k, out_ids[r0:r1], out_scores[r0:r1], ids=cols, id_offset=start)
            continue
        # Low precision: keep `survivors` by the rounded scores (local columns), re-score them exactly.
        local = xp.empty((r1 - r0, survivors), _i64)
        _select(s, survivors, local, xp.empty((r1 - r0, survivors), np.float32))
        exact = xp.empty((r1 - r0, survivors), np.float32)
        _score_candidates(q, shard_items, local, exact)
        safe = xp.maximum(local, 0)
        item_ids = xp.where(local >= 0, safe + start if cols is None else cols[safe], -1)
        _select(exact, k, out_ids[r0:r1], out_scores[r0:r1], ids=xp.ascontiguousarray(item_ids, dtype=_i64))


def _topk_per_row(queries, items, k, ex, cand, out_ids, out_scores) -> None:
    """Per-row candidates (n, c; -1 pads, repeats count once): exact gathered scores, then the best k."""
    xp = _xp()
    n, c = cand.shape
    if c == 0:
        return  # nothing to rank: all padding
    cand = xp.sort(cand, axis=1)  # repeats become neighbours (the kernel keeps the first)
    items_d = xp.ascontiguousarray(xp.asarray(items), dtype=np.float32)
    rows = _tile_rows(n, 12 * c + 4 * queries.shape[1])
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        block = xp.ascontiguousarray(cand[r0:r1])
        exact = xp.empty((r1 - r0, c), np.float32)
        _score_candidates(_device_rows(queries, r0, r1), items_d, block, exact, ex, r0)
        _select(exact, k, out_ids[r0:r1], out_scores[r0:r1], ids=block)
