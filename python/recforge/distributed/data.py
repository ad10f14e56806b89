"""Interactions held by a Dask cluster: global id maps and the matrix in user blocks and item blocks.

``distribute(client, data)`` turns a Dask DataFrame, a list of Parquet/CSV paths or a local
``Interactions`` into a :class:`DistributedInteractions`:

1. each input partition is checked on its worker (columns present, no missing ids, finite numeric
   weights) and its distinct ids are taken; one task per side merges them into the global
   ``IdMap`` (sorted, as ``IdMap.from_values`` sorts), which the client also receives;
2. each partition is encoded with the maps and cut into one piece per user block (contiguous
   ranges of user indices);
3. one task per user block builds its rows of the canonical CSR with the same code as
   ``Interactions.from_arrays`` (so the blocks stacked equal the local ``Interactions``' matrix);
4. one task per item block gathers its columns from every user block: rows of the transpose.

Everything is a task output with its lineage back to the input, never ``scatter``ed data: when a
worker dies, Dask recomputes exactly the blocks it held.
"""

from __future__ import annotations

import logging
import operator
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data import IdMap, Interactions
from ..data.interactions import DUPLICATE_RULES, default_duplicate_rule
from . import _tasks
from ._client import check_workers, placement, submit, wait_all

__all__ = ["DistributedInteractions", "distribute"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class DistributedInteractions:
    """A users x items matrix held by a Dask cluster in user blocks (CSR) and item blocks (CSR of the transpose).

    Attributes
    ----------
    user_ids, item_ids : IdMap
        The global id maps (external id <-> dense index), also on the client.
    user_starts, item_starts : int64 arrays (n_blocks + 1,)
        Block ``b`` holds users ``user_starts[b]:user_starts[b + 1]`` (items likewise).
    user_blocks : list of Future
        Block users x all items, the rows of the canonical matrix, in the kernels' form (a validated
        ``recforge._core.Csr``; ``_tasks.scipy_view`` reads it as scipy CSR without a copy).
    item_blocks : list of Future
        Block items x all users, the rows of its transpose, in the same form.
    nnz : int
    value_sum : float, the float64 sum of the stored values (explicit ALS's global mean)
    """

    user_ids: IdMap
    item_ids: IdMap
    user_starts: np.ndarray
    item_starts: np.ndarray
    user_blocks: list
    item_blocks: list
    nnz: int
    value_sum: float
    key: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.user_ids), len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        return (f"DistributedInteractions({self.n_users} users x {self.n_items} items, {self.nnz} interactions, "
                f"{len(self.user_blocks)} user blocks, {len(self.item_blocks)} item blocks)")  # fmt: skip

    def to_csr(self, client) -> sp.csr_matrix:
        """The whole matrix on the client (canonical float32 CSR): for tests and small data."""
        blocks = [_tasks.scipy_view(b) for b in client.gather(self.user_blocks)]
        out = sp.vstack(blocks, format="csr", dtype=np.float32)
        out.has_sorted_indices = True
        out.has_canonical_format = True
        return out

    def to_interactions(self, client) -> Interactions:
        return Interactions(self.to_csr(client), self.user_ids, self.item_ids)


def block_starts(n: int, n_blocks: int) -> np.ndarray:
    """Boundaries of ``n_blocks`` contiguous, near-equal ranges of ``0..n`` (fewer when n is small)."""
    n_blocks = max(1, min(n_blocks, n))
    return np.linspace(0, n, n_blocks + 1).round().astype(np.int64)


def _as_dask_frame(data, columns: dict, blocksize):
    """A Dask DataFrame from a Dask DataFrame, a path, or a list of Parquet/CSV paths."""
    import dask.dataframe as dd

    if isinstance(data, dd.DataFrame):
        return data
    paths = [data] if isinstance(data, (str, Path)) else data
    if not isinstance(paths, (list, tuple)) or not paths or not all(isinstance(p, (str, Path)) for p in paths):
        raise TypeError(
            "data must be a dask DataFrame, a recforge Interactions, a DistributedInteractions, or a list of"
            f" Parquet/CSV paths, got {type(data).__name__}"
        )
    paths = [str(p) for p in paths]
    kinds = {Path(p.split("*")[0] if "*" in p else p).suffix.lower() for p in paths}
    wanted = [c for c in columns.values() if c is not None]
    if kinds <= {".parquet", ".pq"}:
        return dd.read_parquet(paths, columns=wanted)
    if kinds <= {".csv", ".tsv", ".txt"}:
        return dd.read_csv(paths, usecols=wanted, blocksize=blocksize)
    raise ValueError(f"data paths must all be Parquet (.parquet) or all CSV (.csv/.tsv/.txt), got suffixes {kinds}")


def distribute(
    client,
    data,
    user_col: str = "user",
    item_col: str = "item",
    weight_col: str | None = None,
    time_col: str | None = None,
    duplicates: str | None = None,
    user_blocks: int | None = None,
    item_blocks: int | None = None,
    user_ids=None,
    item_ids=None,
    unknown: str = "error",
    retries: int = 2,
    blocksize="64MB",
) -> DistributedInteractions:
    """Interactions on the cluster of ``client``, blocked by users and by items.

    Parameters
    ----------
    client : distributed.Client
    data : dask.dataframe.DataFrame, list of Parquet/CSV paths, Interactions or DistributedInteractions
        One row per event (``user_col``, ``item_col``, optional ``weight_col`` and ``time_col``);
        a local ``Interactions`` keeps its id maps and matrix; a ``DistributedInteractions`` is
        returned as it is.
    user_col, item_col, weight_col, time_col, duplicates, unknown :
        As ``Interactions.from_pandas`` (without ``weight_col`` every row weighs 1.0).
    user_blocks, item_blocks : int, optional
        Number of blocks per side (default: one per worker).
    user_ids, item_ids : IdMap or sequence, optional
        Fixed maps (e.g. the training data's, so a test set lines up with it); default: built on
        the cluster from the distinct ids present.
    retries : int
        Task retries (a worker lost in the middle of a task).
    blocksize : CSV read block size (dask.dataframe.read_csv).
    """
    check_workers(client)
    if isinstance(data, DistributedInteractions):
        return data
    if duplicates is None:  # the local default for this kind of data (no warning: nothing is counted here)
        duplicates = default_duplicate_rule(weighted=weight_col is not None)
    if duplicates not in DUPLICATE_RULES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_RULES}, got {duplicates!r}")
    if unknown not in ("error", "drop"):
        raise ValueError(f"unknown must be 'error' or 'drop', got {unknown!r}")
    key = uuid.uuid4().hex[:8]
    if isinstance(data, Interactions):
        frame, columns = _frame_of_interactions(data, user_blocks or _default_blocks(client))
        user_ids = data.user_ids if user_ids is None else user_ids
        item_ids = data.item_ids if item_ids is None else item_ids
        fixed = (IdMap.range(data.n_users), IdMap.range(data.n_items))
    else:
        columns = {"user": user_col, "item": item_col, "weight": weight_col, "time": time_col}
        frame = _as_dask_frame(data, columns, blocksize)
        fixed = (_as_map(user_ids), _as_map(item_ids))

    parts = client.compute(frame.to_delayed(), retries=retries)
    checked = [submit(client, _tasks.check_partition, p, k, columns, key=f"rf-check-{key}-{k}", retries=retries)
               for k, p in enumerate(parts)]  # fmt: skip
    del parts
    maps = []
    for role, given in zip(("user", "item"), fixed):
        if given is not None:
            maps.append(submit(client, _identity, given, key=f"rf-{role}map-{key}", retries=retries))
            continue
        uniq = [submit(client, _tasks.distinct, c, role, key=f"rf-distinct-{role}-{key}-{k}", retries=retries)
                for k, c in enumerate(checked)]  # fmt: skip
        maps.append(submit(client, _tasks.merge_distinct, *uniq, key=f"rf-{role}map-{key}", retries=retries))
    user_map, item_map = client.gather(maps)
    n_users, n_items = len(user_map), len(item_map)
    if n_users == 0 or n_items == 0:
        raise ValueError("data holds no interactions (every partition is empty)")
    n_default = _default_blocks(client)
    ustarts = block_starts(n_users, user_blocks or n_default)
    istarts = block_starts(n_items, item_blocks or n_default)

    encoded = [submit(client, _tasks.encode_split, c, maps[0], maps[1], ustarts, unknown, k,
                      key=f"rf-encode-{key}-{k}", retries=retries) for k, c in enumerate(checked)]  # fmt: skip
    # Each block is built on the worker its half-steps will run on (``placement``), so the blocks
    # never travel during a fit.
    uhome, ihome = placement(client, len(ustarts) - 1), placement(client, len(istarts) - 1)
    ublocks = []
    for b in range(len(ustarts) - 1):
        pieces = [submit(client, operator.getitem, e, b, key=f"rf-piece-{key}-{k}-{b}", retries=retries)
                  for k, e in enumerate(encoded)]  # fmt: skip
        ublocks.append(submit(client, _tasks.user_block, int(ustarts[b]), int(ustarts[b + 1]), n_items, duplicates,
                              *pieces, key=f"rf-ublock-{key}-{b}", retries=retries, workers=[uhome[b]],
                              allow_other_workers=True))  # fmt: skip
    iblocks = []
    for c in range(len(istarts) - 1):
        pieces = [submit(client, _tasks.column_piece, ub, int(ustarts[b]), int(istarts[c]), int(istarts[c + 1]),
                         key=f"rf-cpiece-{key}-{b}-{c}", retries=retries) for b, ub in enumerate(ublocks)]  # fmt: skip
        iblocks.append(submit(client, _tasks.item_block, int(istarts[c + 1] - istarts[c]), n_users, *pieces,
                              key=f"rf-iblock-{key}-{c}", retries=retries, workers=[ihome[c]],
                              allow_other_workers=True))  # fmt: skip
    stats = [submit(client, _tasks.block_stats, ub, key=f"rf-stats-{key}-{b}", retries=retries)
             for b, ub in enumerate(ublocks)]  # fmt: skip
    wait_all(iblocks + stats)
    counts = client.gather(stats)
    nnz, value_sum = sum(s[0] for s in counts), sum(s[1] for s in counts)
    if nnz == 0:
        raise ValueError("data holds no interactions (every partition is empty)")
    if isinstance(data, Interactions):
        user_map, item_map = user_ids, item_ids
    out = DistributedInteractions(
        user_map, item_map, ustarts, istarts, ublocks, iblocks, int(nnz), float(value_sum), key
    )
    log.info("distributed %r", out)
    return out


def _identity(x):
    return x


def _as_map(ids):
    if ids is None:
        return None
    return ids if isinstance(ids, IdMap) else IdMap(ids)


def _default_blocks(client) -> int:
    """One block per worker: at ``routing="whole"`` a worker's blocks all read its one copy of the other
    side, so more blocks per worker only add tasks (~3 ms of Dask CPU each), and a block task's kernel
    runs on all the worker's threads (``threads=0``)."""
    return max(1, len(client.nthreads()))


def _frame_of_interactions(inter: Interactions, n_parts: int):
    """A Dask DataFrame of an Interactions' canonical entries by dense index (its maps are kept as they are)."""
    import dask.dataframe as dd

    frame = pd.DataFrame({"user": inter.user_of_entry(), "item": inter.csr.indices.astype(np.int64),
                          "weight": inter.csr.data})  # fmt: skip
    return dd.from_pandas(frame, npartitions=max(1, min(n_parts, len(frame))), sort=False), {
        "user": "user", "item": "item", "weight": "weight", "time": None}  # fmt: skip
