"""GPU ops: the same names as ``cpu.py``, on CuPy arrays; kernels are ``csrc/cuda/*.cu`` (see ``kernels.py``).

``get_ops("cuda")`` only returns this module once CuPy sees a GPU (``_backend.resolve_device``
explains what is missing otherwise). ``topk`` and the ALS half-steps run on the GPU; the other
training kernels (SGD, MLP, ...) raise NotImplementedError naming themselves, so a model on
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

from . import als_row_regularization, kernels

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
            f"recforge has no GPU kernel for {fn_name} yet (only ALS trains on the GPU so far): fit on "
            "device='cpu', then model.to('cuda') for recommend / evaluate on the GPU"
        )

    missing.__name__ = missing.__qualname__ = fn_name
    missing.__doc__ = f"GPU twin of ``cpu.{fn_name}`` (not implemented yet: raises NotImplementedError)."
    return missing


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
_SOURCE_OF = {kernel: source for source, names in kernels.SOURCES.items() for kernel in names}
BLOCK = 256  # threads per block of every kernel
SMALL_ITEMS = 4  # RF_SMALL_ITEMS in topk.cu: elements per thread per chunk of rf_select_small
SMALL_K_MAX = 256  # rf_select_small up to this k, rf_select_radix above
MAX_GRID = 2**31 - 1  # gridDim.x limit; every kernel loops over what a smaller grid does not cover
MAX_SHARED = 48 * 1024  # dynamic shared memory available without opting in
MAX_ID = 2**31 - 1  # item ids must fit the 32 low bits of the selection keys
MIN_TILE_USERS = 1024  # a catalogue wider than the budget allows for this many users is split into shards
_i64, _i32 = np.int64, np.int32


def _launch(kernel: str, n_blocks: int, args: tuple, shared: int = 0) -> None:
    """Launch ``kernel`` (of its source in ``kernels.SOURCES``): ``min(n_blocks, MAX_GRID)`` blocks of ``BLOCK``
    threads, on the current stream."""
    if n_blocks < 1:
        return
    if shared > _max_shared():
        raise ValueError(f"{kernel}: {shared} bytes of shared memory exceed the {_max_shared()} available")
    fn = kernels.function(_SOURCE_OF[kernel], kernel)
    if shared > MAX_SHARED:  # above the default a kernel must opt in (up to the device's limit, checked above)
        fn.max_dynamic_shared_size_bytes = shared
    fn((min(int(n_blocks), MAX_GRID),), (BLOCK,), args, shared_mem=shared)


def _max_shared() -> int:
    """Dynamic shared memory one block may use on this device with the opt-in (227 KiB on an H100)."""
    attributes = _xp().cuda.Device().attributes
    return int(attributes.get("MaxSharedMemoryPerBlockOptin", MAX_SHARED))


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


def _free_memory() -> int:
    """Free device memory in bytes, counting the blocks CuPy's pool holds but does not use."""
    xp = _xp()
    free, _ = xp.cuda.runtime.memGetInfo()
    return int(free + xp.get_default_memory_pool().free_bytes())


def _memory_budget() -> int:
    """Bytes one tile's (top-K) or one batch's (ALS) buffers may use: a quarter of the free memory, 64 MiB to 1 GiB."""
    return int(min(1 << 30, max(64 << 20, _free_memory() // 4)))


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


# -- ALS ------------------------------------------------------------------------------------------
# A half-step solves its rows in batches: per batch the dense part of every row's normal equations
# (alpha0 YᵀY + lambda I) is one GEMM for the whole batch (cuBLAS through CuPy's matmul), the part over
# the nonzeros one kernel of als.cu. Batches are sized to ``_memory_budget``; a CSR whose nonzeros do
# not fit the device (``_csr_fits``) stays in pinned host memory and is copied a batch at a time.
class DeviceCsr:
    """A CSR validated once (by ``cpu.csr``, in C++) for the GPU half-steps.

    ``indptr`` (n + 1, int64) lives on the device (and ``host_indptr`` on the host, for batching);
    ``indices`` (int32) and ``data`` (float32) live on the device when ``resident``, else in pinned
    host memory, copied one row block at a time by ``block``. Read-only after construction.
    """

    def __init__(self, indptr, indices, data, shape):
        xp = _xp()
        self.shape = (int(shape[0]), int(shape[1]))
        self.host_indptr = np.ascontiguousarray(indptr, dtype=_i64)
        self.nnz = int(self.host_indptr[-1])
        self.indptr = xp.asarray(self.host_indptr)
        self.resident = _csr_fits(8 * self.nnz)
        place = xp.asarray if self.resident else _pinned
        self.indices = place(np.ascontiguousarray(indices, dtype=_i32))
        self.data = place(np.ascontiguousarray(data, dtype=np.float32))

    def block(self, r0: int, r1: int):
        """Rows ``r0:r1`` on the device: (indptr rebased to 0, int64 (r1 - r0 + 1,); indices; data)."""
        xp = _xp()
        lo, hi = int(self.host_indptr[r0]), int(self.host_indptr[r1])
        indptr = xp.asarray(self.host_indptr[r0 : r1 + 1] - lo)
        if self.resident:
            return indptr, self.indices[lo:hi], self.data[lo:hi]
        return indptr, xp.asarray(self.indices[lo:hi]), xp.asarray(self.data[lo:hi])

    def row_counts(self) -> np.ndarray:
        """Stored entries per row (host, int64)."""
        return np.diff(self.host_indptr)


def _csr_fits(nbytes: int) -> bool:
    """Whether a CSR's ``nbytes`` of nonzeros may stay on the device: at most a quarter of the free memory
    (both orientations of a fit are held, and the batches need room)."""
    return nbytes <= _free_memory() // 4


def _pinned(a: np.ndarray):
    """A copy of ``a`` in page-locked host memory (host-to-device copies at full bus speed)."""
    import cupyx

    out = cupyx.empty_pinned(a.shape, a.dtype)
    out[...] = a
    return out


def csr(m, name: str = "interactions") -> DeviceCsr:
    """The GPU kernels' form of a canonical CSR ``m`` (SciPy, CuPy sparse, or a ``DeviceCsr``, returned as it is).

    Validated once on the host by the C++ check ``cpu.csr`` (structure, ids in range; errors start
    with ``name``), so the kernels get only in-range pointers.
    """
    if isinstance(m, DeviceCsr):
        return m
    if hasattr(m, "get") and hasattr(m, "indptr"):  # CuPy sparse: checked on the host like any other
        m = m.get()
    from . import cpu

    checked = cpu.csr(m, name)
    if checked.nnz == 0:  # (the views of empty arrays are not available)
        return DeviceCsr(np.asarray(checked.indptr), np.zeros(0, _i32), np.zeros(0, np.float32), checked.shape)
    data = np.ones(checked.nnz, np.float32) if checked.data is None else np.asarray(checked.data)
    return DeviceCsr(np.asarray(checked.indptr), np.asarray(checked.indices), data, checked.shape)


def _check_factors(a, rows: int, cols: int, name: str) -> None:
    """``a`` must be a C-contiguous float32 device array of shape (rows, cols) (``cols`` 0: a vector of ``rows``)."""
    xp = _xp()
    shape = (rows,) if cols == 0 else (rows, cols)
    if not isinstance(a, xp.ndarray) or a.dtype != np.float32 or a.shape != shape or not a.flags.c_contiguous:
        what = f"{type(a).__name__} {getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}"
        raise ValueError(f"{name} must be a C-contiguous float32 GPU array of shape {shape}, got {what}")


def _checked(m, name: str, X, Y, own_bias=None, other_bias=None):
    """(``csr(m, name)``, f) once ``X`` (rows of ``m`` x f), ``Y`` (columns of ``m`` x f) and the biases
    given (one per row / column) are checked: what every ALS op does before a launch."""
    m = csr(m, name)
    n, n_cols = m.shape
    f = Y.shape[1] if getattr(Y, "ndim", 0) == 2 else 0
    _check_factors(Y, n_cols, f, "Y")
    _check_factors(X, n, f, "X")
    if own_bias is not None:
        _check_factors(own_bias, n, 0, "own_bias")
    if other_bias is not None:
        _check_factors(other_bias, n_cols, 0, "other_bias")
    return m, f


def _solve_normal_equations(m: DeviceCsr, r0: int, r1: int, Y, A, b, *, explicit: bool, alpha: float = 0.0,
                            alpha0: float = 0.0, global_mean: float = 0.0, other_bias=None) -> None:  # fmt: skip
    """Add the terms of the nonzeros of rows ``r0:r1`` to their normal equations ``A`` (rows x d x d) and
    ``b`` (rows x d) on the device (``rf_als_normal_equations``), then solve them in place (x in ``b``)."""
    xp = _xp()
    rows, d = b.shape
    f = Y.shape[1]
    bias = xp.zeros(1, np.float32) if other_bias is None else other_bias
    indptr, indices, data = m.block(r0, r1)
    _launch("rf_als_normal_equations", -(-rows * d * (d + 1) // BLOCK),
            (indptr, _i64(rows), indices, data, Y, _i64(m.shape[1]), _i32(f), _i32(d), _i32(explicit),
             np.float32(alpha), np.float32(alpha0), np.float32(global_mean), bias, A, b))  # fmt: skip
    _solve_spd(A, b, r0)


def _batches(m: DeviceCsr, bytes_per_row: int, bytes_per_nnz: int):
    """Row ranges (r0, r1) covering ``m`` whose buffers (``bytes_per_row`` per row, ``bytes_per_nnz`` per
    stored entry, plus the copied nonzeros when ``m`` is streamed) fit ``_memory_budget``; >= 1 row each."""
    n = m.shape[0]
    per_nnz = bytes_per_nnz + (0 if m.resident else 8)
    cost = np.arange(n + 1, dtype=np.float64) * bytes_per_row + m.host_indptr * float(per_nnz)  # cumulative
    budget = float(_memory_budget())
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(cost, cost[r0] + budget, side="right")) - 1
        r1 = min(n, max(r1, r0 + 1))
        yield r0, r1
        r0 = r1


def _row_dots(indptr, indices, X, Y, out) -> None:
    """``out[k] = X[row(k)] . Y[indices[k]]`` for the batch's nonzeros (X: the batch's rows)."""
    rows, f = X.shape
    _launch("rf_als_row_dots", -(-int(out.shape[0]) // BLOCK),
            (indptr, _i64(rows), indices, X, Y, _i64(Y.shape[0]), _i32(f), out))  # fmt: skip


def _spmm_add(indptr, indices, coef, Y, out) -> None:
    """``out[u] += sum_k coef[k] Y[indices[k]]`` over the nonzeros k of each batch row u (out: rows x f)."""
    rows, f = out.shape
    _launch("rf_als_spmm", -(-rows * f // BLOCK), (indptr, _i64(rows), indices, coef, Y, _i64(Y.shape[0]), _i32(f),
                                                   out))  # fmt: skip


def _solve_spd(A, b, first_row: int) -> None:
    """Solve every ``A[s] x = b[s]`` in place (x in ``b``) by Cholesky, one block per system.

    Raises ValueError (as the CPU kernel does) naming the first row whose system is not positive definite.
    """
    xp = _xp()
    count, d = b.shape
    if count == 0:
        return
    info = xp.zeros(count, _i32)
    use_shared = 4 * d * d <= _max_shared()  # f <= 110 at the default 48 KiB, f <= 237 on an H100
    _launch("rf_cholesky_solve", count, (A, b, _i64(count), _i32(d), _i32(use_shared), info),
            shared=4 * d * d if use_shared else 0)  # fmt: skip
    if int(info.max()):
        row = first_row + int(xp.argmax(info))
        raise ValueError(f"ALS: the normal equations of row {row} are not positive definite; use regularization > 0")


def _row_lambda(counts: np.ndarray, n_cols: int, regularization: float, alpha0: float, nu: float,
                scaling: str) -> np.ndarray:  # fmt: skip
    """Each row's implicit regularisation (float32, host), as the CPU's ``row_lambda`` (nu = 0: exactly ``reg``)."""
    return als_row_regularization(counts, n_cols, regularization=regularization, alpha0=alpha0, nu=nu,
                                  scaling=scaling).astype(np.float32)  # fmt: skip


def gram(Y, threads: int = 0):
    """YᵀY (f, f) float32 on the device: one cuBLAS GEMM (``threads`` is ignored)."""
    xp = _xp()
    return xp.ascontiguousarray(xp.matmul(Y.T, Y), dtype=np.float32)


def als_implicit_half_step(m, Y, YtY, X, *, alpha, regularization, alpha0, nu, solver, cg_steps, threads,
                           scaling="all_pairs", prior=None, prior_weight=0.0) -> None:  # fmt: skip
    """Solve ``X`` (rows of ``m`` x f, on the device) in place against ``Y``, as ``cpu.als_implicit_half_step``.

    ``solver="cg"``: ``cg_steps`` steps of conjugate gradient warm-started from ``X``, rows in batches (per
    step: one GEMM with ``alpha0 YᵀY`` for the batch, one kernel for the dot products over the nonzeros
    and one that adds their terms). ``"cholesky"``: each batch's normal equations built on the device
    (``rf_als_normal_equations``) and solved by ``rf_cholesky_solve``. ``threads`` is ignored. ``prior``
    / ``prior_weight``: as on the CPU (``lambda + prior_weight`` on the diagonal, ``prior_weight * prior``
    added to the right-hand side).
    """
    xp = _xp()
    m, f = _checked(m, "interactions", X, Y)
    n_cols = m.shape[1]
    _check_factors(YtY, f, f, "YtY")
    if solver not in ("cg", "cholesky"):
        raise ValueError(f"solver must be 'cg' or 'cholesky', got {solver!r}")
    if solver == "cg" and cg_steps < 1:
        raise ValueError(f"cg_steps must be >= 1, got {cg_steps}")
    if not (np.isfinite(prior_weight) and prior_weight >= 0):
        raise ValueError(f"prior_weight must be finite and >= 0, got {prior_weight}")
    if prior is not None:
        prior = xp.asarray(prior, dtype=np.float32)
        if prior.shape != X.shape or not bool(xp.isfinite(prior).all()):
            raise ValueError(f"prior must be finite with shape {X.shape}, got {prior.shape}")
    pw = np.float32(prior_weight if prior is not None else 0.0)
    lam = (_row_lambda(m.row_counts(), n_cols, regularization, alpha0, nu, scaling) + pw).astype(np.float32)
    base = xp.ascontiguousarray(np.float32(alpha0) * YtY, dtype=np.float32)
    if solver == "cg":
        for r0, r1 in _batches(m, 4 * 6 * f + 8, 4 * 4):
            X[r0:r1] = _cg_batch(*m.block(r0, r1), Y, base, xp.asarray(lam[r0:r1]), X[r0:r1], alpha=alpha,
                                 alpha0=alpha0, steps=cg_steps,
                                 prior=None if prior is None else pw * prior[r0:r1])  # fmt: skip
        return
    eye = xp.arange(f)
    for r0, r1 in _batches(m, 4 * (f * f + 2 * f) + 8, 0):
        A = xp.empty((r1 - r0, f, f), np.float32)
        A[...] = base
        A[:, eye, eye] += xp.asarray(lam[r0:r1])[:, None]
        b = xp.zeros((r1 - r0, f), np.float32) if prior is None else xp.ascontiguousarray(pw * prior[r0:r1])
        _solve_normal_equations(m, r0, r1, Y, A, b, explicit=False, alpha=alpha, alpha0=alpha0)
        X[r0:r1] = b
    empty = np.flatnonzero(m.row_counts() == 0)
    if prior is not None and len(empty):  # the kernel sets a row without entries to 0; with a prior it is
        # (alpha0 YᵀY + lambda I) x = pw prior, one matrix for all of them (lambda depends on the count only)
        system = base + xp.asarray(lam[empty[0]]) * xp.eye(f, dtype=np.float32)
        rows = xp.asarray(empty)
        X[rows] = xp.linalg.solve(system, (pw * prior[rows]).T).T.astype(np.float32)


def _cg_batch(indptr, indices, data, Y, base, lam, x0, *, alpha, alpha0, steps, prior=None):
    """``steps`` CG steps on every row of a batch, as the CPU's ``cg_rows`` does per row, from ``x0``.

    A = alpha0 YᵀY + lambda I + sum (c - alpha0) y yᵀ; b = sum c y (+ ``prior``, the prior's share,
    when given); a row stops where the CPU's stops (residual below 1e-20, or a flat direction) and
    keeps its x; rows without entries get x = 0 (without a prior).
    """
    xp = _xp()
    x = xp.array(x0, dtype=np.float32)
    conf = (np.float32(1.0) + np.float32(alpha) * data).astype(np.float32)
    weight = (conf - np.float32(alpha0)).astype(np.float32)
    dots = xp.empty(data.shape[0], np.float32)
    active = xp.diff(indptr) > 0 if prior is None else xp.ones(len(x), bool)
    x *= active[:, None]
    lam = lam[:, None]

    def apply_a(v):  # alpha0 YᵀY v + lambda v (one GEMM), + the nonzeros' part (two kernels)
        out = xp.ascontiguousarray(xp.matmul(v, base) + lam * v, dtype=np.float32)
        _row_dots(indptr, indices, v, Y, dots)
        _spmm_add(indptr, indices, xp.ascontiguousarray(weight * dots), Y, out)
        return out

    r = xp.ascontiguousarray(-(xp.matmul(x, base) + lam * x), dtype=np.float32)  # b - A x
    if prior is not None:
        r += prior
    _row_dots(indptr, indices, x, Y, dots)
    _spmm_add(indptr, indices, xp.ascontiguousarray(conf - weight * dots), Y, r)
    p = r.copy()
    rs = (r * r).sum(axis=1)
    for _ in range(steps):
        active &= rs >= np.float32(1e-20)
        ap = apply_a(p)
        pap = (p * ap).sum(axis=1)
        active &= pap > 0
        a = xp.where(active, rs / xp.where(active, pap, np.float32(1.0)), np.float32(0.0))[:, None]
        x += a * p
        r -= a * ap
        rs_new = (r * r).sum(axis=1)
        beta = xp.where(active, rs_new / xp.where(active, rs, np.float32(1.0)), np.float32(0.0))[:, None]
        p = xp.ascontiguousarray(r + beta * p, dtype=np.float32)
        rs = xp.where(active, rs_new, rs)
    return x


def als_explicit_half_step(m, Y, other_bias, X, own_bias, *, regularization, global_mean, threads) -> None:
    """Solve ``X`` and ``own_bias`` in place (explicit ALS with biases, ALS-WR), as ``cpu.als_explicit_half_step``.

    Each batch's (f + 1)-dimensional normal equations (features ``[y, 1]``, targets ``r - mu - b_i``,
    ``regularization * n_u`` on the diagonal) are built on the device and solved by Cholesky.
    """
    xp = _xp()
    m, f = _checked(m, "ratings", X, Y, own_bias, other_bias)
    d = f + 1
    lam = (np.float32(regularization) * m.row_counts().astype(np.float32)).astype(np.float32)
    eye = xp.arange(d)
    for r0, r1 in _batches(m, 4 * (d * d + 2 * d) + 8, 0):
        A = xp.zeros((r1 - r0, d, d), np.float32)
        A[:, eye, eye] = xp.asarray(lam[r0:r1])[:, None]
        b = xp.zeros((r1 - r0, d), np.float32)
        _solve_normal_equations(m, r0, r1, Y, A, b, explicit=True, global_mean=global_mean, other_bias=other_bias)
        X[r0:r1] = b[:, :f]
        own_bias[r0:r1] = b[:, f]


def als_implicit_loss(m, X, Y, *, alpha, regularization, alpha0, nu, threads, YtY=None, scaling="all_pairs") -> float:
    """The rows' share of the implicit objective, as ``cpu.als_implicit_loss`` (sums in float64)."""
    xp = _xp()
    m, f = _checked(m, "interactions", X, Y)
    n_cols = m.shape[1]
    G = (gram(Y) if YtY is None else YtY).astype(np.float64)
    lam = _row_lambda(m.row_counts(), n_cols, regularization, alpha0, nu, scaling)
    total = 0.0
    for r0, r1 in _batches(m, 8 * 3 * f, 4 * 3):
        indptr, indices, data = m.block(r0, r1)
        s = xp.empty(data.shape[0], np.float32)
        _row_dots(indptr, indices, X[r0:r1], Y, s)
        s = s.astype(np.float64)
        conf = 1.0 + float(alpha) * data.astype(np.float64)
        x = X[r0:r1].astype(np.float64)
        xx = (x * x).sum(axis=1)
        total += float((conf * (1.0 - s) ** 2 - alpha0 * s * s).sum()) + float(alpha0 * (xp.matmul(x, G) * x).sum())
        total += float(xp.asarray(lam[r0:r1].astype(np.float64)) @ xx)
    return total


def als_explicit_sse(m, X, own_bias, Y, other_bias, *, global_mean, threads) -> float:
    """Sum of squared errors of the explicit model over the stored ratings of ``m`` (float64 sums)."""
    xp = _xp()
    m, f = _checked(m, "ratings", X, Y, own_bias, other_bias)
    n_cols = m.shape[1]
    # x_u.y_i + b_u + b_i as one dot product: [x_u, b_u, 1] . [y_i, 1, b_i]
    other = xp.ascontiguousarray(xp.concatenate([Y, xp.ones((n_cols, 1), np.float32), other_bias[:, None]], axis=1))
    total = 0.0
    for r0, r1 in _batches(m, 4 * (f + 2), 4 * 2):
        indptr, indices, data = m.block(r0, r1)
        own = xp.ascontiguousarray(xp.concatenate([X[r0:r1], own_bias[r0:r1, None], xp.ones((r1 - r0, 1), np.float32)],
                                                  axis=1))  # fmt: skip
        pred = xp.empty(data.shape[0], np.float32)
        _row_dots(indptr, indices, own, other, pred)
        err = data.astype(np.float64) - float(global_mean) - pred.astype(np.float64)
        total += float((err * err).sum())
    return total
