"""The functions Dask runs on the workers: pure functions of their arguments, importable by name.

Every task returns new objects and never changes its inputs (Dask may hand the same object to
several tasks on one worker, and recomputes a lost result by running its task again), so a
recomputed block is bit for bit the block it replaces.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp


def worker_threads(threads: int) -> int:
    """``threads`` for a kernel on this worker: 0 means the worker's own thread count."""
    if threads > 0:
        return threads
    try:
        from distributed import get_worker

        return max(1, get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):  # not inside a worker (a local test call)
        return 1


def probe_kernels(device: str = "cpu") -> str | None:
    """None when the compiled kernels import on this process (and, ``device="cuda"``, CuPy sees a GPU and
    recforge's CUDA kernels load on it), else the reason (for the client's check)."""
    import importlib

    try:
        importlib.import_module("recforge._core")
    except Exception as exc:  # any failure to load the extension is what the probe reports
        return f"{type(exc).__name__}: {exc}"
    if device == "cuda":
        from .._backend import gpu_available, resolve_device

        try:
            resolve_device("cuda")  # the message says what is missing (CuPy, a device)
        except RuntimeError as exc:
            return f"device='cuda': {exc}"
        if not gpu_available():
            return "device='cuda': recforge's CUDA kernels do not compile or load on this GPU (see the worker's log)"
    return None


# -- input partitions ---------------------------------------------------------------------------
def check_partition(df: pd.DataFrame, index: int, columns: dict) -> pd.DataFrame:
    """``df`` reduced to the named columns, after the checks that need the whole partition.

    ``columns`` maps a role ("user", "item", "weight", "time") to a column name (None: absent).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"partition {index} is a {type(df).__name__}, expected a pandas DataFrame")
    wanted = {role: col for role, col in columns.items() if col is not None}
    missing = [col for col in wanted.values() if col not in df.columns]
    if missing:
        raise ValueError(f"partition {index} has no column(s) {missing} (its columns: {list(df.columns)})")
    for role in ("user", "item"):
        n_null = int(df[wanted[role]].isna().sum())
        if n_null:
            raise ValueError(f"partition {index}: {role} column {wanted[role]!r} has {n_null} missing ids (None/NaN)")
    if "weight" in wanted:
        w = df[wanted["weight"]].to_numpy()
        if not (np.issubdtype(w.dtype, np.number) or w.dtype == bool) or np.issubdtype(w.dtype, np.complexfloating):
            raise TypeError(f"partition {index}: weight column {wanted['weight']!r} must be numeric, got {w.dtype}")
        bad = int((~np.isfinite(w.astype(np.float64, copy=False))).sum())
        if bad:
            raise ValueError(f"partition {index}: weight column {wanted['weight']!r} has {bad} NaN or infinite values")
    return df[list(wanted.values())].rename(columns={col: role for role, col in wanted.items()})


def distinct(df: pd.DataFrame, role: str) -> pd.Index:
    """The distinct ids of one column of a checked partition."""
    return pd.Index(pd.unique(df[role]), tupleize_cols=False)


def merge_distinct(*parts: pd.Index):
    """IdMap over the union of per-partition distinct ids, sorted as ``IdMap.from_values`` sorts them."""
    from ..data import IdMap

    parts = [p for p in parts if len(p)]
    if not parts:
        return IdMap([])
    return IdMap.from_values(parts[0].append(parts[1:]) if len(parts) > 1 else parts[0])


def encode_split(df: pd.DataFrame, user_map, item_map, user_starts: np.ndarray, unknown: str, index: int) -> list:
    """A checked partition as dense codes, cut into one piece per user block.

    Each piece is ``(users, items, weights, timestamps)`` (weights/timestamps None when absent) in
    the partition's row order, so a block built from the pieces in partition order sees its rows in
    the order of the whole data set.
    """
    u = user_map.to_index(df["user"].to_numpy())
    i = item_map.to_index(df["item"].to_numpy())
    w = df["weight"].to_numpy() if "weight" in df.columns else None
    t = df["time"].to_numpy() if "time" in df.columns else None
    bad = (u < 0) | (i < 0)
    if bad.any():
        if unknown == "error":
            col = "user" if (u < 0).any() else "item"
            example = df[col].to_numpy()[(u if col == "user" else i) < 0][0]
            raise ValueError(
                f"partition {index}: {int(bad.sum())} row(s) have ids not in the given id maps,"
                f" e.g. {col} {example!r} (pass unknown='drop' to drop them)"
            )
        keep = ~bad
        u, i = u[keep], i[keep]
        w = None if w is None else w[keep]
        t = None if t is None else t[keep]
    block = np.searchsorted(user_starts, u, side="right") - 1
    order = np.argsort(block, kind="stable")
    cuts = np.searchsorted(block[order], np.arange(len(user_starts)))
    pieces = []
    for b in range(len(user_starts) - 1):
        sel = order[cuts[b] : cuts[b + 1]]
        pieces.append((u[sel], i[sel], None if w is None else w[sel], None if t is None else t[sel]))
    return pieces


# -- blocks -------------------------------------------------------------------------------------
# A block is held in the kernels' form, a validated ``_core.Csr`` (``ops.csr``): converted once
# when the block is built, not at every half-step; the data steps read it through ``scipy_view``.
def kernel_form(m: sp.csr_matrix):
    from .._ops import get_ops

    return get_ops("cpu").csr(m)


def scipy_view(block) -> sp.csr_matrix:
    """A block as a scipy CSR sharing its arrays (read-only)."""
    if sp.issparse(block):
        return block
    if block.nnz == 0:
        return sp.csr_matrix(block.shape, dtype=np.float32)
    return sp.csr_matrix((block.data, block.indices, block.indptr), shape=block.shape, copy=False)


def user_block(start: int, stop: int, n_items: int, duplicates: str, *pieces):
    """Rows ``start:stop`` of the canonical users x items matrix, built from the pieces of every partition.

    The same construction as ``Interactions.from_arrays`` (weights as it converts them, duplicates
    combined by ``duplicates``), so the block equals the same rows of the local ``Interactions``.
    """
    from ..data import IdMap, Interactions

    n = stop - start
    u = np.concatenate([p[0] for p in pieces]) - start if pieces else np.zeros(0, np.int64)
    i = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int64)
    w = None
    if pieces and pieces[0][2] is not None:
        w = np.concatenate([p[2] for p in pieces])
        if not np.issubdtype(w.dtype, np.floating):  # ints, bools: exact in float64, as from_arrays
            w = w.astype(np.float64)
    t = np.concatenate([p[3] for p in pieces]) if pieces and pieces[0][3] is not None else None
    if u.size == 0:
        return kernel_form(sp.csr_matrix((n, n_items), dtype=np.float32))
    return kernel_form(Interactions._from_codes(u, i, w, t, duplicates, IdMap.range(n), IdMap.range(n_items)).csr)


def column_piece(block, row_offset: int, col_start: int, col_stop: int):
    """Entries of a user block in columns ``col_start:col_stop`` as (local item, global user, value), user-major."""
    block = scipy_view(block)
    rows = np.repeat(np.arange(block.shape[0], dtype=np.int64), np.diff(block.indptr))
    sel = (block.indices >= col_start) & (block.indices < col_stop)
    return block.indices[sel].astype(np.int64) - col_start, rows[sel] + row_offset, block.data[sel]


def item_block(n_rows: int, n_users: int, *pieces):
    """Rows of the items x users transpose from the pieces of every user block, in user-block order.

    Entries arrive sorted by user within each item and without duplicates, so the result is the
    canonical CSR of those rows of ``csr.T``, with the same float32 values.
    """
    items = np.concatenate([p[0] for p in pieces])
    users = np.concatenate([p[1] for p in pieces])
    data = np.concatenate([p[2] for p in pieces]).astype(np.float32, copy=False)
    m = sp.coo_matrix((data, (items, users)), shape=(n_rows, n_users)).tocsr()
    m.sort_indices()
    return kernel_form(m)


def block_stats(block) -> tuple[int, float]:
    """(stored values, their float64 sum) of a block: the reduction behind the explicit global mean."""
    return int(block.nnz), float(scipy_view(block).data.sum(dtype=np.float64))


# -- factors ------------------------------------------------------------------------------------
# A factor block travels as a pair (factors (rows, f) float32, bias (rows,) float32 or None): the
# bias is explicit ALS's, None for implicit.
def random_block(state: dict, rows: int, factors: int, explicit: bool) -> tuple[tuple, dict]:
    """The next ``rows`` initial factor rows of the stream at ``state`` (zero bias when explicit), and
    the state after them.

    Drawing a matrix in consecutive row blocks consumes the generator exactly as one call for the
    whole matrix does (the state carries PCG64's buffered half-word), so the blocks equal
    ``models/als.py``'s initial factors: ``standard_normal((n, f), float32) * 0.1 / sqrt(f)``.
    """
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state
    scale = np.float32(0.1 / np.sqrt(factors))
    x = rng.standard_normal((rows, factors), np.float32) * scale
    return (x, np.zeros(rows, np.float32) if explicit else None), rng.bit_generator.state


def concat_side(*pairs) -> tuple:
    """The whole side (factors, bias) from its blocks in order."""
    x = np.ascontiguousarray(np.concatenate([p[0] for p in pairs]))
    b = None if pairs[0][1] is None else np.concatenate([p[1] for p in pairs])
    return x, b


def gram(pair, threads: int) -> np.ndarray:
    """YᵀY of a side or a block, by the same single SYRK as the local fit (``ops.gram``)."""
    from .._ops import get_ops

    return get_ops("cpu").gram(np.ascontiguousarray(pair[0]), worker_threads(threads))


def sum_grams(*grams) -> np.ndarray:
    """The Gram of stacked blocks from their partial Grams, summed in block order (deterministic)."""
    total = grams[0].copy()
    for g in grams[1:]:
        total += g
    return total


def needed_columns(m) -> np.ndarray:
    """The sorted distinct columns a block reads (the rows of the other side it needs)."""
    return np.unique(scipy_view(m).indices).astype(np.int64)


def localise(m, cols: np.ndarray):
    """``m`` with its columns renumbered to positions in ``cols`` (monotone: rows stay sorted)."""
    m = scipy_view(m)
    local = sp.csr_matrix((m.data, np.searchsorted(cols, m.indices).astype(m.indices.dtype), m.indptr),
                          shape=(m.shape[0], len(cols)))  # fmt: skip
    local.has_sorted_indices = True
    local.has_canonical_format = True
    return kernel_form(local)


def take_rows(pair, cols: np.ndarray, start: int, stop: int) -> tuple:
    """The rows of one block (global rows ``start:stop``) that ``cols`` (global, sorted) asks for."""
    lo, hi = np.searchsorted(cols, [start, stop])
    sel = cols[lo:hi] - start
    return pair[0][sel], None if pair[1] is None else pair[1][sel]


def half_step(m, other, G, own, params: dict) -> tuple:
    """One block's half-step: the new (factors, bias) of its rows, by the local fit's kernel call.

    ``other`` is the (factors, bias) the block's columns index, ``G`` their Gram (implicit),
    ``own`` the block's current pair: CG warm-starts from a copy of it, so the inputs stay
    untouched and a recomputation starts from the same values. ``params["device"]`` "cuda": the
    kernel is the GPU half-step of ``get_ops("cuda")`` on this worker's GPU; the inputs are copied to
    it and the new factors back (blocks and sides stay NumPy between tasks).
    """
    from .._ops import get_ops, to_host

    device = params.get("device", "cpu")
    ops = get_ops(device)
    xp = np if device == "cpu" else ops.xp
    X = xp.array(own[0])  # a copy (on the device for "cuda")
    threads = worker_threads(params["threads"])
    csr = ops.csr(m)
    Y = xp.asarray(other[0])
    if params["feedback"] == "explicit":
        bias = xp.array(own[1])
        ops.als_explicit_half_step(csr, Y, xp.asarray(other[1]), X, bias, regularization=params["regularization"],
                                   global_mean=params["global_bias"], threads=threads)  # fmt: skip
        return to_host(X), to_host(bias)
    ops.als_implicit_half_step(csr, Y, xp.asarray(G), X, alpha=params["alpha"], regularization=params["regularization"],
                               alpha0=params["alpha0"], nu=params["nu"], scaling=params["regularization_scaling"],
                               solver=params["solver"], cg_steps=params["cg_steps"], threads=threads)  # fmt: skip
    return to_host(X), None


def half_step_routed(m_local, G, own, params: dict, *pieces) -> tuple:
    """``half_step`` against only the rows of the other side the block reads (``pieces``, from
    ``take_rows`` in block order) and the block's column-renumbered matrix ``m_local``."""
    return half_step(m_local, _routed_side(own, pieces), G, own, params)


def _routed_side(own, pieces) -> tuple:
    """The routed rows as one (factors, bias); empty for a block without interactions (it reads none)."""
    if pieces:
        return concat_side(*pieces)
    f = own[0].shape[1]
    return np.zeros((0, f), np.float32), None if own[1] is None else np.zeros(0, np.float32)


def half_step_whole(m, own, params: dict, *other_blocks) -> tuple:
    """``half_step`` against the whole other side, concatenated here from its blocks, and (implicit)
    its Gram computed here: the task of a worker holding one block, which so needs no separate
    concatenation and Gram tasks. The same functions on the same values as the separate tasks, so
    the same bits."""
    other = concat_side(*other_blocks)
    return half_step(m, other, _gram_unless_explicit(other, params), own, params)


def user_loss_whole(m, own, params: dict, *other_blocks) -> float:
    """``user_loss`` against the whole other side concatenated here (as ``half_step_whole``)."""
    other = concat_side(*other_blocks)
    return user_loss(m, other, _gram_unless_explicit(other, params), own, params)


def _gram_unless_explicit(other, params: dict):
    return None if params["feedback"] == "explicit" else gram(other, params["threads"])


def user_loss(m, other, G, own, params: dict) -> float:
    """A user block's share of the training objective (times nnz): ``ALS._loss``'s user terms."""
    from .._ops import get_ops

    ops = get_ops("cpu")
    X, bias = own
    threads = worker_threads(params["threads"])
    if params["feedback"] == "explicit":
        sse = ops.als_explicit_sse(m, X, bias, other[0], other[1], global_mean=params["global_bias"], threads=threads)
        n = np.diff(m.indptr).astype(np.float64)
        norms = np.einsum("ij,ij->i", X, X, dtype=np.float64) + bias.astype(np.float64) ** 2
        return float(sse + params["regularization"] * (n @ norms))
    return ops.als_implicit_loss(m, X, other[0], alpha=params["alpha"], regularization=params["regularization"],
                                 alpha0=params["alpha0"], nu=params["nu"], scaling=params["regularization_scaling"],
                                 threads=threads, YtY=G)  # fmt: skip


def user_loss_routed(m_local, G, own, params: dict, *pieces) -> float:
    """``user_loss`` against the rows of the other side the block reads (as ``half_step_routed``)."""
    return user_loss(m_local, _routed_side(own, pieces), G, own, params)


def item_loss(m, own, params: dict, n_users: int) -> float:
    """An item block's regularisation terms of the training objective (times nnz)."""
    Y, bias = own
    n = np.diff(m.indptr).astype(np.float64)
    norms = np.einsum("ij,ij->i", Y, Y, dtype=np.float64)
    reg = params["regularization"]
    if params["feedback"] == "explicit":
        return float(reg * (n @ (norms + bias.astype(np.float64) ** 2)))
    from .._ops import als_row_regularization

    lam = als_row_regularization(n, n_users, regularization=reg, alpha0=params["alpha0"], nu=params["nu"],
                                 scaling=params["regularization_scaling"])  # fmt: skip
    return float(lam @ norms)


def first(pair):
    return pair[0]


def second(pair):
    return pair[1]


# -- checkpoints --------------------------------------------------------------------------------
def save_block(path: str, pair) -> str:
    """Write one factor block (and bias) atomically; returns the path."""
    factors, bias = pair
    p = Path(path)
    tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        if bias is None:
            np.savez(f, factors=factors)
        else:
            np.savez(f, factors=factors, bias=bias)
    os.replace(tmp, p)
    return path


def load_block(path: str, rows: int, factors: int) -> tuple:
    """(factors, bias or None) of a checkpointed block, checked against the expected shape."""
    with np.load(path, allow_pickle=False) as z:
        x = z["factors"]
        b = z["bias"] if "bias" in z.files else None
    if x.shape != (rows, factors) or x.dtype != np.float32:
        raise ValueError(f"checkpoint block {path} holds {x.dtype} {x.shape}, expected float32 ({rows}, {factors})")
    return np.ascontiguousarray(x), b


def write_json(path: str, payload: dict) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, p)
