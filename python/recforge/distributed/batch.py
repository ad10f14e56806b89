"""Batch jobs over user blocks: top-K for every user written as Parquet shards, and evaluation.

Both cut the users of a fitted factor model into contiguous blocks; one task per block rebuilds the
model's ranking for its users (``from_factors`` of the block's user rows and the shared item side)
and runs the same code as the local model (``recommend_all`` / the metric definitions of
``recforge.evaluation``), so a shard holds exactly the rows of the local result.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import as_csr, check_k, check_positive
from ..data import IdMap
from ..evaluation._common import hit_matrix, relevant_rows
from ..evaluation.beyond import gini, item_popularity, long_tail_items
from ..evaluation.protocols import FULL_DEFAULT
from ..evaluation.ranking import RANKING_METRICS, auc, per_user_metrics
from ..models.base import FactorModel
from ._client import check_workers, submit, wait_all
from .data import DistributedInteractions, block_starts

__all__ = ["evaluate", "recommend_all"]

# The local full protocol's metrics this map-reduce computes (same definitions, same defaults); the
# feature-based ones (diversity, miscalibration) are local only.
_EVAL_METRICS = (*FULL_DEFAULT, "auc")
_EVAL_DEFAULT = FULL_DEFAULT
# Means over lists of a per-item value (recforge.evaluation.beyond's _per_list_mean): novelty averages
# -log2 p(i), popularity (ARP) the item's training users, long_tail whether the item is in the long tail.
_LIST_METRICS = ("novelty", "popularity", "long_tail")


def _check_model(model) -> None:
    if not isinstance(model, FactorModel):
        raise TypeError(f"model must be a fitted recforge factor model (ALS, BPR, SGDMF), got {type(model).__name__}")
    model._check_fitted()


def _item_side(model) -> dict:
    """What every block shares: the item factors and biases, the model's class and parameters."""
    return {"cls": type(model), "params": model.get_params(deep=False), "item_factors": model.item_factors,
            "item_bias": model.item_bias, "global_bias": model.global_bias}  # fmt: skip


def _user_side(model, start: int, stop: int) -> dict:
    ub = model.user_bias
    return {"user_factors": model.user_factors[start:stop], "user_bias": None if ub is None else ub[start:stop],
            "seen": model.seen_[start:stop]}  # fmt: skip


def _block_model(items: dict, users: dict):
    """The model restricted to one block of users (same item side, same ranking code)."""
    return items["cls"].from_factors(users["user_factors"], items["item_factors"], seen=users["seen"],
                                     user_bias=users["user_bias"], item_bias=items["item_bias"],
                                     global_bias=items["global_bias"], **items["params"])  # fmt: skip


def _recommend_block(items, users, item_external, user_external, k, exclude_seen, batch_size, threads, path):
    """Top ``k`` of one block's users written to ``path``: one row per (user, rank) with an item."""
    from ._tasks import worker_threads

    ids, scores = _block_model(items, users).recommend_all(k, exclude_seen=exclude_seen, batch_size=batch_size,
                                                           threads=worker_threads(threads))  # fmt: skip
    rows, ranks = np.nonzero(ids >= 0)  # -1 pads users with fewer than k eligible items
    frame = pd.DataFrame({"user": np.asarray(user_external, dtype=object)[rows] if rows.size else user_external[:0],
                          "rank": (ranks + 1).astype(np.int32),
                          "item": np.asarray(item_external)[ids[rows, ranks]],
                          "score": scores[rows, ranks]})  # fmt: skip
    frame.to_parquet(path, index=False)
    return path


def recommend_all(model, client, path, k: int = 10, exclude_seen: bool = True, user_blocks: int | None = None,
                  batch_size: int = 4096, user_ids=None, item_ids=None, threads: int = 0,
                  retries: int = 2) -> list[str]:  # fmt: skip
    """Top ``k`` items for every user of ``model``, computed by user blocks, written as Parquet shards.

    Parameters
    ----------
    model : fitted factor model (e.g. what ``recforge.distributed.ALS().fit`` returns)
    client : distributed.Client
    path : folder (created; seen by every worker) for ``part-00000.parquet``, ...
        One shard per user block, in user order; columns ``user`` (external id), ``rank`` (1 =
        best), ``item`` (external id), ``score`` (float32). A user with fewer than ``k`` eligible
        items has fewer rows.
    k, exclude_seen, batch_size : as ``model.recommend_all``
        Blocks start at multiples of ``batch_size``, so every block ranks the batches the local
        ``model.recommend_all(k, batch_size=batch_size)`` ranks (the top-K kernel picks its code
        path by batch size, and the scores' last bit can depend on it): the shards hold exactly
        its rows.
    user_blocks : int, optional, default 2 per worker thread (fewer when there are fewer batches)
    user_ids, item_ids : IdMap or sequence, optional
        External ids; default the model's ``user_ids`` / ``item_ids`` (set by the distributed fit),
        else the dense indices.
    threads : int, kernel threads per task (0: the worker's thread count)
    retries : int, task retries

    Returns
    -------
    list of str: the shard paths, in user order.
    """
    _check_model(model)
    k = check_k(k)
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    check_workers(client)
    user_map = _id_map(user_ids, getattr(model, "user_ids", None), model.n_users, "user_ids")
    item_map = _id_map(item_ids, getattr(model, "item_ids", None), model.n_items, "item_ids")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"rf-recs-{uuid.uuid4().hex[:8]}"
    n_batches = -(-model.n_users // batch_size)
    blocks = user_blocks or 2 * sum(client.nthreads().values())
    starts = np.minimum(block_starts(n_batches, blocks) * batch_size, model.n_users)
    items = submit(client, _identity, _item_side(model), key=f"{tag}-items", retries=retries)
    item_external = submit(client, _identity, item_map.values, key=f"{tag}-item-ids", retries=retries)
    shards = []
    for b in range(len(starts) - 1):
        s, e = int(starts[b]), int(starts[b + 1])
        shard = str(out / f"part-{b:05d}.parquet")
        shards.append(submit(client, _recommend_block, items, _user_side(model, s, e), item_external,
                             user_map.values[s:e], k, exclude_seen, batch_size, threads, shard,
                             key=f"{tag}-shard-{b}", retries=retries))  # fmt: skip
    wait_all(shards)
    return client.gather(shards)


def _evaluate_block(items, users, test_rows, k, names, threads, item_values):
    """One block of users: (per-metric sums, per-metric counts, exposure, evaluated users).

    Ranking metrics are summed over the block's users with a test item (their count: the
    evaluated users); the list metrics (``_LIST_METRICS``: ``item_values[name]`` is the per-item
    value, from the training matrix) over their lists with an item; auc over the users it is
    defined for. ``exposure`` = (distinct recommended items, how often each was recommended): the
    client sums them into the catalogue's exposure counts (coverage, Gini). The client divides the
    totals, which gives the local means (up to the order of a float64 sum).
    """
    from ._tasks import scipy_view, worker_threads

    test_rows = scipy_view(test_rows)  # a block of a DistributedInteractions is in the kernels' form
    rel = relevant_rows(test_rows, test_rows.shape[0])
    eval_users = np.flatnonzero(np.diff(rel.indptr) > 0)
    if eval_users.size == 0:
        return {}, {}, (np.zeros(0, np.int64), np.zeros(0, np.int64)), 0
    block = _block_model(items, users)
    ids, _ = block.recommend(eval_users, k=k, exclude_seen=True, threads=worker_threads(threads))
    rel = rel[eval_users]
    ranking = [n for n in names if n in RANKING_METRICS]
    values = per_user_metrics(hit_matrix(ids, rel), np.diff(rel.indptr), ranking)
    sums = {n: float(v.sum()) for n, v in values.items()}
    counts = dict.fromkeys(values, int(eval_users.size))
    valid = ids >= 0
    m = valid.sum(axis=1)
    for name in (n for n in names if n in _LIST_METRICS):  # the mean over lists with at least one item
        per_list = np.where(valid, item_values[name][np.where(valid, ids, 0)], 0.0).sum(axis=1)
        sums[name], counts[name] = float((per_list[m > 0] / m[m > 0]).sum()), int((m > 0).sum())
    if "auc" in names:  # recforge.evaluation.auc per user: NaN where it is undefined (skipped)
        per_user = auc(block, test_rows, users["seen"], users=eval_users, per_user=True)
        defined = ~np.isnan(per_user)
        sums["auc"], counts["auc"] = float(per_user[defined].sum()), int(defined.sum())
    return sums, counts, np.unique(ids[valid], return_counts=True), int(eval_users.size)


def _list_item_values(model, names) -> dict:
    """The per-item values of the list metrics in ``names``, from the model's training matrix (``seen_``)."""
    popularity = item_popularity(model.seen_)
    out = {}
    if "novelty" in names:  # recforge.evaluation.novelty: p(i) = max(users with i in train, 1) / n_users
        out["novelty"] = np.log2(model.n_users) - np.log2(np.maximum(popularity, 1))
    if "popularity" in names:  # average_popularity
        out["popularity"] = popularity.astype(np.float64)
    if "long_tail" in names:  # long_tail_share: all but the 20% most popular items
        out["long_tail"] = long_tail_items(model.seen_).astype(np.float64)
    return out


def evaluate(model, client, test, k: int = 10, metrics=None, user_blocks: int | None = None, threads: int = 0,
             retries: int = 2) -> dict:  # fmt: skip
    """The full-catalogue evaluation of ``recforge.evaluation.evaluate``, map-reduced over user blocks.

    Each block ranks the whole catalogue for its users with a test item (> 0), leaving out the
    model's training items (``seen_``), and sums the per-user metrics (the definitions of
    ``recforge.evaluation``); the client adds the sums up. The means equal the local
    ``evaluate(model, train, test, k)`` (up to the order of a float64 sum).

    Parameters
    ----------
    model : fitted factor model
    client : distributed.Client
    test : scipy.sparse matrix, Interactions or DistributedInteractions (n_users, n_items)
        Held-out interactions. A ``DistributedInteractions`` stays on the cluster (its user blocks
        are the evaluation's blocks); build it with the model's maps, e.g.
        ``distribute(client, frame, user_ids=model.user_ids, item_ids=model.item_ids, unknown="drop")``.
    k : cut-off
    metrics : sequence of names from precision, recall, ndcg, map, hit_rate, mrr, auc, coverage,
        novelty, popularity, gini, long_tail (default: all but auc, as the local default without
        features); the item popularity of novelty, popularity and long_tail comes from the model's
        training matrix (``seen_``), gini is that of the exposure counts summed over the blocks
    user_blocks, threads, retries : as ``recommend_all`` (a ``DistributedInteractions`` test brings its blocks)

    Returns
    -------
    dict: ``"<metric>@<k>"`` -> float ("auc" without ``@k``), ``"n_users"`` -> int, ``"protocol"`` -> "full".
    """
    _check_model(model)
    k = check_k(k)
    if metrics is None:
        names = _EVAL_DEFAULT
    else:
        names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
        bad = [m for m in names if m not in _EVAL_METRICS]
        if bad or not names:
            raise ValueError(f"metrics must be names from {_EVAL_METRICS}, got {list(names)}")
    on_cluster = isinstance(test, DistributedInteractions)
    shape = test.shape if on_cluster else None
    if not on_cluster:
        t = as_csr(test, "test", allow_empty=True)
        shape = t.shape
    if shape != (model.n_users, model.n_items):
        raise ValueError(f"test must have shape ({model.n_users}, {model.n_items}) (the model's), got {shape}")
    if on_cluster:
        for side in ("user_ids", "item_ids"):
            mine = getattr(model, side, None)
            if mine is not None and mine != getattr(test, side):
                raise ValueError(f"test's {side} differ from the model's: distribute the test data with "
                                 f"{side}=model.{side}")  # fmt: skip
    check_workers(client)
    tag = f"rf-eval-{uuid.uuid4().hex[:8]}"
    if on_cluster:
        starts, test_blocks = test.user_starts, test.user_blocks
    else:
        starts = block_starts(model.n_users, user_blocks or 2 * sum(client.nthreads().values()))
        test_blocks = [t[int(starts[b]) : int(starts[b + 1])] for b in range(len(starts) - 1)]
    items = submit(client, _identity, _item_side(model), key=f"{tag}-items", retries=retries)
    item_values = submit(client, _identity, _list_item_values(model, names), key=f"{tag}-item-values",
                         retries=retries)  # fmt: skip
    parts = []
    for b in range(len(starts) - 1):
        s, e = int(starts[b]), int(starts[b + 1])
        parts.append(submit(client, _evaluate_block, items, _user_side(model, s, e), test_blocks[b], k, names,
                            threads, item_values, key=f"{tag}-block-{b}", retries=retries))  # fmt: skip
    wait_all(parts)
    results = client.gather(parts)
    n_users = sum(r[3] for r in results)
    if n_users == 0:
        raise ValueError("no user has a test item (value > 0)")
    exposure = np.zeros(model.n_items, np.int64)  # how often each item was recommended, over every block
    for recommended, times in (r[2] for r in results):
        exposure[recommended] += times
    out: dict = {"protocol": "full"}
    for name in names:
        if name == "coverage":
            out[f"coverage@{k}"] = np.count_nonzero(exposure) / model.n_items
            continue
        if name == "gini":  # recforge.evaluation.gini_exposure
            out[f"gini@{k}"] = gini(exposure) if exposure.any() else float("nan")
            continue
        total, count = sum(r[0].get(name, 0.0) for r in results), sum(r[1].get(name, 0) for r in results)
        out[name if name == "auc" else f"{name}@{k}"] = total / count if count else float("nan")
    out["n_users"] = int(n_users)
    return out


def _identity(x):
    return x


def _id_map(given, from_model, n: int, name: str) -> IdMap:
    ids = given if given is not None else from_model
    if ids is None:
        return IdMap.range(n)
    ids = ids if isinstance(ids, IdMap) else IdMap(ids)
    if len(ids) != n:
        raise ValueError(f"{name} has {len(ids)} ids but the model has {n}")
    return ids
