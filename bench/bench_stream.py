"""Streaming updates (``recforge.online.StreamingUpdater``): throughput, event-to-visible latency,
recommendation latency under load, and the streamed model's accuracy against a full refit.

Data (``RECFORGE_BENCH_STREAM_SETS``, default all three; ``--quick``: ml-100k only): MovieLens-100K
and MovieLens latest-small, ratings >= 4 as implicit events (weight 1), in timestamp order; Amazon
Video Games (SASRec), every event, which has no clock across users, only each user's sequence: its
"time" is the position in the user's sequence, so the replay is each user's later events, ordered
by position (the first 80% are the early positions of all users). ALS
(64 factors, 15 epochs, CG; ``threads`` = the run's) is fitted on the first 80% of the events; the
rest is replayed. Of the replayed period, each user's last 20% of events (at least one, for
users with two or more) are held out as the test set; the others are the stream, in time order.

Figures:

* ``events/s`` and ``events/cpu-s`` (per second of process CPU time, which the other jobs of a
  shared machine disturb much less than the wall time): the stream applied by ``updater.update``
  in micro-batches of ``BATCH`` events
  (synchronous: validation, id maps, history, exact fold-in of the touched users, new items,
  atomic publication, the automatic sweep's slice), best of ``repeat`` runs on a fresh copy of the
  fitted model; also with ``sweep_every=None`` (the micro-batches alone). Peer: implicit
  (``AlternatingLeastSquares``, same factors / regularisation, ``alpha = 1 + ours`` which is the same
  confidence on binary data): per micro-batch its history rows are updated (by the same merge, timed),
  ``partial_fit_users`` re-solves the touched users over the items it knows, ``partial_fit_items``
  folds the new items in, and the users of new items are re-solved with their full rows: the same
  solves as ours with ``item_updates="new"`` (less than our default, which also re-solves touched
  items), without id maps, validation or concurrency safety.
* ``event-to-visible p50 / p99 ms``: the updater running in the background (``start(max_batch,
  max_delay)``), a producer submitting the stream at ``RATE`` events/s in chunks of ``CHUNK``
  (paced by the clock), while ``READERS`` threads call ``recommend`` (1 user, k=10) at
  ``READ_RATE`` calls/s each. Latency of an event: from its ``submit`` to the publication of the
  batch holding it (the ``Future``'s result), after which every ``recommend`` sees it (checked at
  the end: every streamed event is in the model's history).
* ``served events/s under load``: the stream's size over the time until its last event was visible
  (below the offered rate: a backlog formed, and the latency is the queue's); ``longest batch ms``:
  the longest background batch (validation to publication, its sweep slice included).
* ``recommend p50 / p99 ms``: those readers' calls, under that load; ``recommend idle p50 ms``: the
  same calls with no stream.
* ``ndcg@10``: on the held-out events (users and items the model knows, training items
  excluded), the streamed model against a full refit (same parameters and seed) on the first 80%
  plus the stream, each the mean over ``SEEDS`` (spread: half the range over seeds; a refit's own
  spread is the noise floor of the comparison); the ratio column is streamed / refit (goal >=
  0.98), and ``streamed / refit, same seed`` the mean of the per-seed ratios. The streamed model
  is the updater's default (its automatic sweep, ``sweep_every=0.02``, included); also without
  the sweep (``sweep_every=None``, the micro-batches alone). ``static 80% model``: the fitted
  model without any update, on the test users it knows, against the streamed model on the same
  users.

Goal (issue 16): >= 50,000 events/s on 2 cores with p99 event-to-visible <= 100 ms, and the
streamed model within 2% NDCG of a full refit.
"""

from __future__ import annotations

import copy
import os
import statistics
import threading
import time

import numpy as np
import pandas as pd
from _harness import switch  # bench/ is on sys.path (run.py, load_benchmark)

FACTORS, EPOCHS, REGULARIZATION, ALPHA = 64, 15, 0.05, 1.0
BATCH = 2000  # events per synchronous micro-batch
RATE, CHUNK = 50_000, 250  # offered load (events/s) in the latency run, events per submit
MAX_BATCH, MAX_DELAY = 5000, 0.005  # the background updater's micro-batches
READERS, READ_RATE = 2, 200  # reader threads, recommend calls/s each
K = 10
SEEDS = (42, 1, 2)  # accuracy: streamed vs refit from the same seed, averaged


def _events(ctx, name):
    import recforge as rf

    df = ctx.dataset(name, rf.datasets.load, name)
    if df is None:
        return None
    if "rating" in df:
        df = df[df.rating >= 4]
    return df.sort_values("timestamp", kind="stable").reset_index(drop=True)[["user", "item", "timestamp"]]


def _split(df):
    """(train, stream, test): the first 80% by time; the rest minus each user's last 20% (held out)."""
    cut = int(0.8 * len(df))
    train, tail = df.iloc[:cut], df.iloc[cut:]
    position = tail.groupby("user").cumcount()
    size = tail.groupby("user")["user"].transform("size")
    held = (size >= 2) & (position >= size - np.maximum(1, (0.2 * size).astype(int)))
    stream = tail[~held].rename(columns={"timestamp": "time"})
    return train, stream[["user", "item", "time"]].reset_index(drop=True), tail[held]


def _fit(rf, train, threads, seed):
    inter = rf.Interactions.from_pandas(train, user_col="user", item_col="item")
    model = rf.ALS(factors=FACTORS, epochs=EPOCHS, regularization=REGULARIZATION, alpha=ALPHA, threads=threads,
                   seed=seed)  # fmt: skip
    return model.fit(inter, progress=False)


def _replay(rf, model, stream, **options):
    """(wall seconds, process CPU seconds, updater) of the synchronous replay (``options``: the updater's)."""
    updater = rf.online.StreamingUpdater(model, **options)
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(stream), BATCH):
        updater.update(stream.iloc[start : start + BATCH])
    return time.perf_counter() - t0, time.process_time() - c0, updater


def _replay_implicit(implicit, train, stream, threads):
    """implicit's ALS fold-ins on the same micro-batches; returns (seconds, model)."""
    import recforge as rf
    from recforge.online import merge_rows

    inter = rf.Interactions.from_pandas(train, user_col="user", item_col="item")
    peer = implicit.cpu.als.AlternatingLeastSquares(
        factors=FACTORS,
        regularization=REGULARIZATION,
        alpha=1 + ALPHA,
        iterations=EPOCHS,
        num_threads=threads,
        random_state=42,
    )
    peer.fit(inter.csr, show_progress=False)
    users, items = inter.user_ids, inter.item_ids
    history = inter.csr
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(stream), BATCH):
        part = stream.iloc[start : start + BATCH]
        users = _grow(users, part["user"])
        items = _grow(items, part["item"])
        u, i = users.to_index(part["user"].to_numpy()), items.to_index(part["item"].to_numpy())
        keys = np.unique(u * len(items) + i)
        n_items_before = history.shape[1]
        history = merge_rows(history, keys // len(items), keys % len(items), np.ones(len(keys)),
                             (len(users), len(items)), "sum")[0]  # fmt: skip
        # Users first over the items it knows (it reads out of bounds on ids it does not know yet),
        # then the new items against all users, then the users of the new items with their full rows.
        touched = np.unique(u)
        peer.partial_fit_users(touched, history[touched][:, :n_items_before])
        new_items = np.arange(n_items_before, len(items))
        if len(new_items):
            peer.partial_fit_items(new_items, history.T.tocsr()[new_items])
            again = np.unique(u[i >= n_items_before])
            peer.partial_fit_users(again, history[again])
    return time.perf_counter() - t0, time.process_time() - c0


def _grow(id_map, ids):
    import recforge as rf

    known = id_map.to_index(ids.to_numpy())
    new = pd.unique(ids.to_numpy()[known < 0])
    return rf.IdMap(np.concatenate([id_map.values, new])) if len(new) else id_map


def _latency_run(rf, model, stream):
    """The background updater under RATE events/s with READERS reader threads; returns figures in ms."""
    updater = rf.online.StreamingUpdater(model).start(MAX_BATCH, MAX_DELAY)
    n_users = model.n_users
    reads, stop = [], threading.Event()

    def reader(seed):
        rng = np.random.default_rng(seed)
        period, next_call = 1.0 / READ_RATE, time.perf_counter()
        while not stop.is_set():
            t0 = time.perf_counter()
            model.recommend(int(rng.integers(n_users)), k=K, threads=1)
            reads.append(time.perf_counter() - t0)
            next_call += period
            time.sleep(max(0.0, next_call - time.perf_counter()))

    workers = [threading.Thread(target=reader, args=(s,)) for s in range(READERS)]
    for w in workers:
        w.start()
    submitted = []
    t_start = time.perf_counter()
    for start in range(0, len(stream), CHUNK):
        due = t_start + start / RATE  # paced by the clock: a slow producer catches up
        time.sleep(max(0.0, due - time.perf_counter()))
        part = stream.iloc[start : start + CHUNK]
        submitted.append((time.perf_counter(), len(part), updater.submit(part)))
    latencies = np.concatenate([np.full(size, f.result(timeout=120) - t) for t, size, f in submitted])
    elapsed = time.perf_counter() - t_start
    stop.set()
    for w in workers:
        w.join()
    updater.stop()
    return latencies * 1e3, np.asarray(reads) * 1e3, elapsed, updater


def _idle_reads(model, calls=400):
    rng = np.random.default_rng(0)
    times = []
    for _ in range(calls):
        u = int(rng.integers(model.n_users))
        t0 = time.perf_counter()
        model.recommend(u, k=K, threads=1)
        times.append(time.perf_counter() - t0)
    return np.asarray(times) * 1e3


def _ndcg(rf, model, test, users=None):
    """ndcg@K of ``model`` on ``test`` events (restricted to ``users``, external ids, when given)."""
    t = test if users is None else test[test["user"].isin(users)]
    inter = rf.Interactions.from_pandas(t, user_col="user", item_col="item", user_ids=model.user_ids_,
                                        item_ids=model.item_ids_, unknown="drop")  # fmt: skip
    return rf.evaluation.evaluate(model, model.seen_, inter, k=K, metrics=["ndcg"], progress=False)[f"ndcg@{K}"]


def run(ctx):
    import recforge as rf

    implicit = ctx.peer("implicit.cpu.als")
    sets = (
        ["ml-100k"] if ctx.quick else switch("RECFORGE_BENCH_STREAM_SETS", "ml-100k,ml-latest-small,sasrec-video-games")
    )
    seeds = SEEDS[:1] if ctx.quick else SEEDS
    rows = []
    for name in sets:
        df = _events(ctx, name)
        if df is None:
            continue
        train, stream, test = _split(df)
        case = f"{name} ALS f={FACTORS}, {len(stream):,} events streamed after {len(train):,}"
        ctx.log(f"stream: {case}")
        fitted = _fit(rf, train, ctx.threads, seeds[0])

        # Throughput: synchronous micro-batches, a fresh copy of the fitted model each run.
        runs = [_replay(rf, copy.deepcopy(fitted), stream) for _ in range(ctx.repeat)]
        updater = runs[-1][2]
        batch_ms = statistics.median(r.seconds for r in updater.reports_) * 1e3
        users = statistics.median(r.touched_users for r in updater.reports_)
        ctx.log(
            f"  {len(stream) / min(r[0] for r in runs):,.0f} events/s; {batch_ms:.1f} ms per batch, {users:.0f} users"
        )
        load = os.getloadavg()[0]
        rows += _throughput_rows(case, "recforge", len(stream), runs, load)
        unswept = [_replay(rf, copy.deepcopy(fitted), stream, sweep_every=None) for _ in range(ctx.repeat)]
        rows += _throughput_rows(case, "recforge, sweep_every=None", len(stream), unswept, load)
        if implicit is not None:
            import implicit as implicit_top

            peer = [_replay_implicit(implicit_top, train, stream, ctx.threads) for _ in range(ctx.repeat)]
            rows += _throughput_rows(case, "implicit", len(stream), peer, load)

        # Latency under an offered load, with concurrent readers.
        idle = _idle_reads(fitted)
        live = copy.deepcopy(fitted)
        latencies, reads, elapsed, updater = _latency_run(rf, live, stream)
        if live.seen_.nnz != updater_nnz(rf, fitted, stream):
            raise AssertionError("the background run lost events")
        ctx.log(f"  offered {RATE:,}/s: {len(stream):,} events in {elapsed:.2f} s, {updater.batches_} batches")
        extra = dict(offered_rate=RATE, readers=READERS, read_rate=READ_RATE, max_batch=MAX_BATCH, max_delay=MAX_DELAY,
                     load_average=os.getloadavg()[0])  # fmt: skip
        for metric, values in (("event-to-visible", latencies), ("recommend", reads)):
            for q in (50, 99):
                value = float(np.percentile(values, q))
                rows.append(dict(case=case, library="recforge", metric=f"{metric} p{q} ms", value=value, spread=None,
                                 better="lower", **extra))  # fmt: skip
        rows.append(dict(case=case, library="recforge", metric="recommend idle p50 ms",
                         value=float(np.percentile(idle, 50)), spread=None, better="lower"))  # fmt: skip
        # Served below offered means a backlog (the latency is then the queue's); the longest batch
        # shows the bound on what one batch (its sweep slice included) holds events back.
        rows.append(dict(case=case, library="recforge", metric="served events/s under load",
                         value=len(stream) / elapsed, spread=None, better="higher", **extra))  # fmt: skip
        rows.append(dict(case=case, library="recforge", metric="longest batch ms under load",
                         value=1e3 * max(r.seconds for r in updater.reports_), spread=None, better="lower",
                         **extra))  # fmt: skip

        # Accuracy: streamed (the default policy, automatic sweep included) vs a full refit, both from
        # the same seed, per seed and averaged over seeds. A refit's own spread over seeds is the noise floor.
        old_users = test["user"][test["user"].isin(train["user"])].unique()
        scores = {"streamed": [], "no sweep": [], "refit": [], "static": [], "streamed old": []}
        for seed in seeds:
            base = fitted if seed == seeds[0] else _fit(rf, train, ctx.threads, seed)
            streamed = _replay(rf, copy.deepcopy(base), stream)[2].model
            unswept = _replay(rf, copy.deepcopy(base), stream, sweep_every=None)[2].model
            refit = _fit(rf, pd.concat([train, stream.rename(columns={"time": "timestamp"})]), ctx.threads, seed)
            scores["streamed"].append(_ndcg(rf, streamed, test))
            scores["no sweep"].append(_ndcg(rf, unswept, test))
            scores["refit"].append(_ndcg(rf, refit, test))
            scores["static"].append(_ndcg(rf, base, test, old_users))
            scores["streamed old"].append(_ndcg(rf, streamed, test, old_users))
            ctx.log(f"  seed {seed}: ndcg@{K} streamed {scores['streamed'][-1]:.4f}, refit {scores['refit'][-1]:.4f} "
                    f"(ratio {scores['streamed'][-1] / scores['refit'][-1]:.3f}), "
                    f"streamed without the sweep {scores['no sweep'][-1]:.4f}")  # fmt: skip
        ndcg_case = f"{case}, {test['user'].nunique()} test users, mean of {len(seeds)} seeds"
        old_case = f"{case}, {len(old_users)} test users known at 80%, mean of {len(seeds)} seeds"
        unswept_case = f"{ndcg_case}, streamed with sweep_every=None"
        pairs = ((ndcg_case, "recforge", "streamed"), (ndcg_case, "full refit", "refit"),
                 (unswept_case, "recforge", "no sweep"), (unswept_case, "full refit", "refit"),
                 (old_case, "recforge", "streamed old"), (old_case, "static 80% model", "static"))  # fmt: skip
        for c, library, key in pairs:
            values = scores[key]
            rows.append(dict(case=c, library=library, metric=f"ndcg@{K}", value=float(np.mean(values)),
                             spread=(max(values) - min(values)) / 2, better="higher", runs=values))  # fmt: skip
        same_seed = [a / b for a, b in zip(scores["streamed"], scores["refit"])]
        rows.append(dict(case=ndcg_case, library="recforge", metric="ndcg@10 streamed / refit, same seed",
                         value=float(np.mean(same_seed)), spread=(max(same_seed) - min(same_seed)) / 2,
                         better="higher", runs=same_seed))  # fmt: skip
    return rows


def _throughput_rows(case, library, n, runs, load) -> list[dict]:
    """events/s (wall: the shared machine's load shows here) and events per CPU-second (steadier), best run."""
    extra = dict(batch=BATCH, load_average=load)
    return [dict(case=case, library=library, metric="events/s", value=n / min(r[0] for r in runs), spread=None,
                 better="higher", **extra),
            dict(case=case, library=library, metric="events/cpu-s", value=n / min(r[1] for r in runs), spread=None,
                 better="higher", **extra)]  # fmt: skip


def updater_nnz(rf, fitted, stream) -> int:
    """The history's size after the stream (synchronously): the background run must reach the same."""
    return _replay(rf, copy.deepcopy(fitted), stream)[2].model.seen_.nnz
