"""Streaming updates: keep a fitted model current from a stream of feedback events, without a refit.

``StreamingUpdater(model)`` ingests events (user, item, weight, time; the data's own ids) in
micro-batches. Each batch

- grows the model's id maps and arrays with the users and items it has not seen (in order of
  first appearance),
- adds the events to the interaction history (the model's ``seen_``, which the updater keeps
  current: repeated (user, item) events are summed, or the latest value kept, see ``duplicates``),
- updates the model: ALS re-solves the touched items whose column grew enough (``item_updates``,
  ``item_refresh``) against the user factors, then every touched user exactly from their full
  history against the item factors (the fold-in of ``partial_fit_users``), then the new items from
  their columns against the updated users and, once more, the users of those new items; so every
  touched user ends as the exact fold-in against the final item factors. Each batch also refines
  a slice of all the rows (``sweep_every``: a full sweep spread over the stream, which keeps the
  model as close to a refit as the batches keep it current). BPR / SGDMF run
  ``epochs`` SGD passes over the batch's events (users and items both learn; new rows start from
  the model's initial distribution); MostPopular adds the batch to its counts (exactly what a
  refit would count),
- publishes the new state atomically.

Consistency under concurrent readers: the updater never edits an array the model holds. It builds
the next state in new arrays (copy-on-write: the factor matrices, the history CSR and the id maps
are replaced, never changed in place), prepares the ranking cache, then swaps every attribute in
under the model's write lock in one ``dict.update``. A ``recommend`` (or any reader) holds the read
lock for its whole call, so it sees the state before or after a batch, never a mix, and waits at
most for the swap itself (microseconds), not for the batch's computation.

Two ways to feed it:

- ``update(events)``: validate and apply one micro-batch now, in the calling thread.
- ``start()`` / ``submit(events)`` / ``stop()``: a background thread gathers submitted events into
  micro-batches (up to ``max_batch`` events, waiting at most ``max_delay`` seconds after the first)
  and applies them; ``submit`` validates at once (bad input is the caller's ValueError) and returns a
  ``concurrent.futures.Future`` that resolves, with the publication time (``time.perf_counter()``),
  once the events are visible to readers.

Events are a pandas DataFrame (or a mapping of equal-length 1-D arrays) with the columns ``user``,
``item`` and optionally ``weight`` (default 1.0; finite, and >= 0 unless the model takes ratings) and
``time`` (numbers or datetimes). Times must not decrease: an event older than the latest one
ingested is an error (``late="error"``), dropped with a logged warning (``late="drop"``) or applied
as it comes (``late="accept"``).
"""

from __future__ import annotations

import collections.abc
import concurrent.futures
import copy
import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._backend import resolve_threads, single_threaded_blas
from .data.idmap import IdMap
from .models.als import ALS
from .models.base import NotFittedError, grow_rows, seen_rows
from .models.popular import MostPopular
from .models.sgd import BPR, SGDMF, _init_factors

__all__ = ["StreamingUpdater", "BatchReport"]

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("user", "item", "weight", "time")
# Rows refined from where they are (the sweep, touched items) take this many CG steps at most: each
# row is refined again at every sweep, so two per visit reach the accuracy of the fit's three
# (Video Games: ndcg@10 0.0319 vs 0.0318) at three quarters of the cost.
REFINE_CG_STEPS = 2
IDLE_SWEEP_ROWS = 4096  # rows a side per idle sweep step: about 4 ms at 64 factors on one core


@dataclass(frozen=True)
class BatchReport:
    """What one applied micro-batch did (``StreamingUpdater.update`` returns it; ``reports_`` keeps the last ones)."""

    events: int  # events applied (after dropping late ones)
    dropped: int  # late events dropped (late="drop")
    pairs: int  # distinct (user, item) pairs among them
    new_users: int
    new_items: int
    touched_users: int
    seconds: float  # from the start of the batch's work to its publication
    published_at: float  # time.perf_counter() at publication


@dataclass
class _Events:
    """Validated events: external ids (object or numeric arrays), float64 weights, times (float64 or None)."""

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    times: np.ndarray | None

    def __len__(self) -> int:
        return len(self.users)

    @staticmethod
    def concat(parts: list[_Events]) -> _Events:
        if len(parts) == 1:
            return parts[0]
        times = None if any(p.times is None for p in parts) else np.concatenate([p.times for p in parts])
        return _Events(*(_concat_ids([getattr(p, name) for p in parts]) for name in ("users", "items")),
                       np.concatenate([p.weights for p in parts]), times)  # fmt: skip


def _concat_ids(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenated id arrays; ids of different kinds (ints and strings) end as one object array."""
    if len({a.dtype.kind for a in arrays}) > 1:
        arrays = [a.astype(object) for a in arrays]
    return np.concatenate(arrays)


class StreamingUpdater:
    """Keeps a fitted ``ALS``, ``BPR``, ``SGDMF`` or ``MostPopular`` current from a stream of events.

    Parameters
    ----------
    model : a fitted ALS, BPR, SGDMF or MostPopular (on the CPU)
        Updated in place (atomically per batch); readers may use it from other threads throughout.
        While the updater feeds it, change it only through the updater: a ``fit`` or ``partial_fit_*``
        between batches is noticed (the next batch starts from it), but one overlapping a batch is
        overwritten by that batch's publication.
    duplicates : {"sum", "last"}, optional
        How an event combines with the stored value of its (user, item): added (counts, the default
        for implicit feedback) or replacing it (ratings: the default for rating models).
    item_updates : {"touched", "new"}
        ALS: re-solve the items whose column the batch changed (subject to ``item_refresh``; closer
        to a refit), or only the items a batch adds (faster).
    item_refresh : float >= 0
        ALS with ``item_updates="touched"``: refine a touched item (from its factors, by the model's
        own solver: warm-started CG steps) only once its column (its users) has grown by this
        fraction since it was last solved (0: at every touch). A popular item gaining one user of
        300 barely moves; the automatic sweep reaches every item in turn anyway.
    sweep_every : float > 0 or None
        ALS: the automatic refresh. Micro-batches move only the rows they touch, while a refit also
        re-balances every other row with the new data; so each batch also refines a slice of all
        the items and all the users (in turn, cyclically) from where they are, by the model's own
        solver (``REFINE_CG_STEPS`` warm-started CG steps, about what an epoch of the fit does to a
        row), sized so that every row is refined once each time the events streamed in reach
        ``sweep_every`` times the history's size (0.02: a full sweep per 2% of growth). The slice
        is proportional to the batch's events, so a batch's time stays bounded by its size
        (``max_batch``): no long stall, no separate call. In the background (``start``), a batch
        formed while more events wait leaves its slice owed (up to one full sweep) and the thread
        refines it when the queue is empty, in steps of at most ``IDLE_SWEEP_ROWS`` rows a side (a
        few ms), so the sweep never holds events back; ``stop()`` pays what is still owed. Touched
        users are still solved exactly. None: off (only ``refresh()``). With the default, ndcg@10
        ends within 2% of a full refit on the bench's replays (bench/RESULTS.md), for 1.6-1.8x
        the CPU time of the batches alone on Amazon Video Games.
    epochs : int >= 1
        BPR / SGDMF: SGD passes over each batch's events.
    late : {"error", "drop", "accept"}
        An event whose time is earlier than the latest time ingested (see the module docstring).
    threads : int >= 0
        Threads of the update's kernels (0 = all cores). A micro-batch's solves are small: on one
        thread they finish in about a millisecond and leave the other cores to the readers, where
        a parallel region waits for every core to be free (tens of ms on a busy machine).

    Attributes
    ----------
    events_ : int, events applied so far
    batches_ : int, batches published so far
    last_time_ : float or None, the latest event time ingested (datetimes as nanoseconds)
    reports_ : collections.deque of the last 1000 BatchReport

    Examples
    --------
    >>> import pandas as pd, recforge as rf
    >>> df = pd.DataFrame({"user": ["ann", "ann", "bob"], "item": ["x", "y", "x"]})
    >>> model = rf.MostPopular().fit(rf.Interactions.from_pandas(df))
    >>> updater = rf.online.StreamingUpdater(model)
    >>> report = updater.update(pd.DataFrame({"user": ["cy", "cy"], "item": ["z", "y"]}))
    >>> model.recommend_external(["bob"], k=2)[["user", "item"]]
      user item
    0  bob    y
    1  bob    z
    """

    def __init__(self, model, *, duplicates: str | None = None, item_updates: str = "touched", epochs: int = 1,
                 item_refresh: float = 0.1, sweep_every: float | None = 0.02, late: str = "error",
                 threads: int = 1):  # fmt: skip
        if not isinstance(model, (ALS, BPR, SGDMF, MostPopular)):
            raise TypeError(f"model must be a fitted ALS, BPR, SGDMF or MostPopular, got {type(model).__name__}")
        if not model.is_fitted:
            raise NotFittedError(f"this {type(model).__name__} is not fitted yet: fit it before streaming updates")
        if model.__dict__.get("device_", "cpu") != "cpu":
            raise ValueError("model must be on the CPU for streaming updates (call model.to('cpu') first)")
        if isinstance(model, ALS) and (model.user_features_ is not None or model.item_features_ is not None):
            raise TypeError("model: an ALS fitted with user_features / item_features is not kept current by streaming "
                            "updates (they solve rows without the features' prior); use its partial_fit_users / "
                            "partial_fit_items, or fit it without features")  # fmt: skip
        ratings = bool(getattr(model, "predicts_ratings", False))
        duplicates = ("last" if ratings else "sum") if duplicates is None else duplicates
        _check_choice(duplicates, "duplicates", ("sum", "last"))
        _check_choice(item_updates, "item_updates", ("new", "touched"))
        _check_choice(late, "late", ("error", "drop", "accept"))
        if isinstance(item_refresh, bool) or not isinstance(item_refresh, (int, float)) or not 0 <= item_refresh < 1e9:
            raise ValueError(f"item_refresh must be a number >= 0 (a fraction), got {item_refresh!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
        if sweep_every is not None and (isinstance(sweep_every, bool) or not isinstance(sweep_every, (int, float))
                                        or not 0 < sweep_every < float("inf")):  # fmt: skip
            raise ValueError(f"sweep_every must be a number > 0 (a share of the history) or None, got {sweep_every!r}")
        self.sweep_every = None if sweep_every is None else float(sweep_every)
        self._sweep_cursor = {"item": 0, "user": 0}  # ALS: where the background sweep's next slice starts
        self._grams = ({}, None, None)  # implicit ALS: (the Gram matrices, of these user / item factors)
        self._sweep_owed = 0.0  # ALS, background: the share of a sweep deferred by batches under a backlog
        self.threads = resolve_threads(threads)
        self.model = model
        self.duplicates, self.item_updates, self.epochs, self.late = duplicates, item_updates, int(epochs), late
        self.item_refresh = float(item_refresh)
        self.events_ = 0
        self.batches_ = 0
        self.last_time_: float | None = None
        self.reports_: collections.deque[BatchReport] = collections.deque(maxlen=1000)
        self._apply_lock = threading.Lock()  # one batch at a time
        self._submitted_time: float | None = None  # the latest time accepted by submit (ordering is checked there)
        self._sgd_epoch = int(getattr(model, "epochs", 0))  # BPR/SGDMF: epoch numbers continue the fit's
        self._item_rows: sp.csr_matrix | None = None  # ALS: items x users, kept in step with seen_
        self._item_rows_of = None  # the seen_ _item_rows was derived from
        self._item_counts = np.zeros(0, np.int64)  # ALS: each item's column size when it was last solved
        if isinstance(model, ALS):  # built now, not in the first batch's latency
            with model._model_lock().read():
                self._index_items(model.seen_)
        self._worker: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue()

    # -- synchronous ingestion -------------------------------------------------------------------
    def update(self, events) -> BatchReport:
        """Validate ``events`` and apply them as one micro-batch now; returns its ``BatchReport``.

        Bad input (unknown or missing columns, ids that are missing, weights that are NaN, infinite
        or negative where the model takes no negative values, times out of order under
        ``late="error"``) is a ValueError / TypeError naming the column, and nothing changes.
        """
        if self._worker is not None:
            raise RuntimeError("the updater is running in the background: use submit(events), or stop() first")
        with self._apply_lock:
            ev, dropped = self._validate(events, self.last_time_)
            return self._apply(ev, dropped)

    def refresh(self, sweeps: int = 1, threads: int | None = None) -> None:
        """ALS: ``sweeps`` full alternating sweeps over the whole history (every item, then every user,
        solved exactly against the other side), published atomically like a batch.

        The automatic sweep (``sweep_every``) does this work in slices during the stream; ``refresh``
        is for a model streamed with ``sweep_every=None``, or to converge further at a quiet moment.
        One exact sweep costs several ALS epochs of CG (Video Games without the automatic sweep:
        ndcg@10 0.0284 streamed, 0.0303 / 0.0310 after one / two sweeps, 0.0317 refit). Batches
        wait while it runs. ``threads``: the model's by default.
        """
        model = self.model
        if not isinstance(model, ALS):
            raise TypeError(f"refresh is for ALS; a {type(model).__name__} learns from every batch already")
        if isinstance(sweeps, bool) or not isinstance(sweeps, (int, np.integer)) or sweeps < 1:
            raise ValueError(f"sweeps must be an int >= 1, got {sweeps!r}")
        threads = resolve_threads(model.threads if threads is None else threads)
        with self._apply_lock:
            with model._model_lock().read():
                base = dict(model.__dict__)
            if self._item_rows_of is not base["seen_"]:
                self._index_items(base["seen_"])
            uf, ub = base["user_factors"], base.get("user_bias")
            for _ in range(int(sweeps)):
                itf, ib = model._solve_rows(self._item_rows, uf, ub, threads)
                uf, ub = model._solve_rows(base["seen_"], itf, ib, threads)
            self._publish({"user_factors": uf, "user_bias": ub, "item_factors": itf, "item_bias": ib})
            self._item_counts = np.diff(self._item_rows.indptr)  # every item solved from its whole column
            log.info("refreshed the model: %d full sweep(s)", sweeps)

    # -- background ingestion --------------------------------------------------------------------
    def start(self, max_batch: int = 5000, max_delay: float = 0.005) -> StreamingUpdater:
        """Apply ``submit``-ted events in a background thread, in micro-batches of at most ``max_batch``
        events gathered for at most ``max_delay`` seconds after the first; returns self."""
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if not isinstance(max_delay, (int, float)) or not 0 <= max_delay < float("inf"):
            raise ValueError(f"max_delay must be a finite number of seconds >= 0, got {max_delay!r}")
        if self._worker is not None:
            raise RuntimeError("the updater is already running")
        self._submitted_time = self.last_time_
        self._queue = queue.Queue()
        self._worker = threading.Thread(target=self._run, args=(int(max_batch), float(max_delay)),
                                        name="recforge-streaming-updater", daemon=True)  # fmt: skip
        self._worker.start()
        log.info("streaming updater started (max_batch=%d, max_delay=%gs)", max_batch, max_delay)
        return self

    def submit(self, events) -> concurrent.futures.Future:
        """Queue ``events`` for the background thread; validated now (bad input raises here).

        Returns a Future whose result is the ``time.perf_counter()`` at which the events became
        visible to readers (or the exception that stopped their batch).
        """
        if self._worker is None:
            raise RuntimeError("the updater is not running: call start() first (or update(events))")
        ev, dropped = self._validate(events, self._submitted_time)
        if ev.times is not None and len(ev.times):
            self._submitted_time = max(self._submitted_time or -np.inf, float(ev.times.max()))
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((ev, dropped, future))
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Apply what was submitted, then end the background thread."""
        if self._worker is None:
            return
        self._queue.put(None)
        self._worker.join(timeout)
        if self._worker.is_alive():
            raise TimeoutError(f"the streaming updater did not finish within {timeout} s")
        self._worker = None
        log.info("streaming updater stopped after %d batches, %d events", self.batches_, self.events_)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _run(self, max_batch: int, max_delay: float) -> None:
        stopping = False
        while not stopping:
            try:  # while the sweep is owed, idle time pays it in short slices between batches
                first = self._queue.get(block=not self._sweep_owed)
            except queue.Empty:
                self._sweep_step()
                continue
            if first is None:
                break
            batch, size, deadline = [first], len(first[0]), time.perf_counter() + max_delay
            while size < max_batch:
                try:
                    item = self._queue.get(timeout=max(deadline - time.perf_counter(), 0.0))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                size += len(item[0])
            futures = [f for _, _, f in batch]
            try:
                with self._apply_lock:  # events still queued: this batch leaves its sweep slice for idle time
                    report = self._apply(_Events.concat([e for e, _, _ in batch]), sum(d for _, d, _ in batch),
                                         defer_sweep=not self._queue.empty())  # fmt: skip
            except BaseException as exc:  # the batch's submitters get the error; the model is unchanged
                log.exception("streaming batch of %d events failed", size)
                for f in futures:
                    f.set_exception(exc)
                continue
            for f in futures:
                f.set_result(report.published_at)
        while self._sweep_owed:  # stop(): the model ends as synchronous updates would leave it
            self._sweep_step()

    # -- validation ------------------------------------------------------------------------------
    def _validate(self, events, after: float | None) -> tuple[_Events, int]:
        """Checked events (late ones dropped under late="drop") and the number dropped."""
        if isinstance(events, pd.DataFrame):
            columns = {c: events[c].to_numpy() for c in events.columns}
        elif isinstance(events, collections.abc.Mapping):
            columns = {c: np.asarray(v) for c, v in events.items()}
        else:
            raise TypeError(f"events must be a pandas DataFrame or a mapping of columns, got {type(events).__name__}")
        unknown = [c for c in columns if c not in EVENT_COLUMNS]
        if unknown:
            raise ValueError(f"events has unknown column(s) {unknown}; expected user, item and optionally weight, time")
        for name in ("user", "item"):
            if name not in columns:
                raise ValueError(f"events must have a {name!r} column")
        n = len(columns["user"])
        for name, col in columns.items():
            if col.ndim != 1 or len(col) != n:
                raise ValueError(
                    f"events column {name!r} must be 1-D with {n} values (as 'user'), got shape {col.shape}"
                )
        for name in ("user", "item"):
            if n and pd.isna(columns[name]).any():
                raise ValueError(f"events column {name!r} holds missing ids (None/NaN)")
        weights = columns.get("weight")
        if weights is None:
            weights = np.ones(n)
        else:
            if weights.dtype.kind not in "biuf":
                raise TypeError(f"events column 'weight' must be numeric, got dtype {weights.dtype}")
            weights = weights.astype(np.float64)
            if not np.isfinite(weights).all():
                raise ValueError("events column 'weight' holds NaN or infinite values")
            if not self.model._rows_allow_negative() and n and weights.min() < 0:
                raise ValueError(f"events column 'weight' holds negative values ({weights.min():g}); "
                                 f"{type(self.model).__name__} takes weights >= 0")  # fmt: skip
        times = columns.get("time")
        if times is not None:
            times = _as_times(times)
        ev = _Events(columns["user"], columns["item"], weights, times)
        return self._order(ev, after)

    def _order(self, ev: _Events, after: float | None) -> tuple[_Events, int]:
        """Apply the ``late`` rule: times must not decrease, within the batch and after ``after``."""
        if ev.times is None or not len(ev.times) or self.late == "accept":
            return ev, 0
        running = np.maximum.accumulate(np.concatenate([[-np.inf if after is None else after], ev.times]))
        late = ev.times < running[:-1]
        if not late.any():
            return ev, 0
        first = int(np.argmax(late))
        if self.late == "error":
            raise ValueError(f"events column 'time' is out of order: event {first} has time {ev.times[first]:g}, "
                             f"earlier than {running[first]:g} already ingested; sort the events by time, or "
                             "pass late='drop' or late='accept'")  # fmt: skip
        keep = ~late
        log.warning("dropped %d late event(s) (time earlier than one already ingested)", int(late.sum()))
        return _Events(ev.users[keep], ev.items[keep], ev.weights[keep], ev.times[keep]), int(late.sum())

    # -- applying a batch --------------------------------------------------------------------------
    def _apply(self, ev: _Events, dropped: int, defer_sweep: bool = False) -> BatchReport:
        start = time.perf_counter()
        model = self.model
        with model._model_lock().read():  # a consistent view of the current state (readers share it)
            base = dict(model.__dict__)
        seen = base["seen_"]
        if not len(ev):
            now = time.perf_counter()
            return BatchReport(0, dropped, 0, 0, 0, 0, now - start, now)
        user_map, new_users = _grown_map(_map_of(base, "user", seen.shape[0]), ev.users)
        item_map, new_items = _grown_map(_map_of(base, "item", seen.shape[1]), ev.items)
        n_users, n_items = len(user_map), len(item_map)
        users, items, values = _combine(user_map.to_index(ev.users), item_map.to_index(ev.items), ev.weights,
                                        n_items, self.duplicates)  # fmt: skip
        new_seen, previous, present = merge_rows(seen, users, items, values, (n_users, n_items), self.duplicates)
        if isinstance(model, ALS):  # confidences (or ratings) that would overflow the solves: refused
            stored = values + previous if self.duplicates == "sum" else values
            model._check_values(sp.csr_matrix(stored[None, :]), "events column 'weight'")
        state = {"seen_": new_seen, "user_ids_": user_map, "item_ids_": item_map}
        shape0 = seen.shape
        touched = np.unique(users)
        if isinstance(model, ALS):
            with single_threaded_blas():  # its Gram updates are small matrix products: one thread each
                state.update(self._als_state(base, new_seen, users, items, values, touched, shape0, len(ev),
                                             defer_sweep))  # fmt: skip
        elif isinstance(model, MostPopular):
            state["item_popularity"] = self._popularity(base, items, values, previous, present, n_items)
        else:
            state.update(self._sgd_state(base, users, items, values, (n_users, n_items), shape0))
        self._publish(state)
        if ev.times is not None and len(ev.times):
            self.last_time_ = max(self.last_time_ if self.last_time_ is not None else -np.inf, float(ev.times.max()))
        now = time.perf_counter()
        report = BatchReport(len(ev), dropped, len(users), new_users, new_items, len(touched), now - start, now)
        self.events_ += len(ev)
        self.batches_ += 1
        self.reports_.append(report)
        log.debug("batch %d: %d events, %d new users, %d new items, %d users updated in %.1f ms", self.batches_,
                  len(ev), new_users, new_items, len(touched), 1e3 * report.seconds)  # fmt: skip
        return report

    def _publish(self, state: dict) -> None:
        """Swap ``state`` into the model atomically, with its ranking cache built beforehand (outside the lock)."""
        model = self.model
        shadow = copy.copy(model)  # shares the arrays; gets its own lock (__getstate__)
        shadow._invalidate()
        shadow.__dict__.update(state)
        shadow._ranking_cache()
        state["_rank_cache"] = shadow.__dict__["_rank_cache"]
        with model._model_lock().write():
            model._invalidate()
            model.__dict__.update(state)

    def _als_state(self, base, seen, users, items, values, touched, shape0, events: int, defer_sweep: bool) -> dict:
        """ALS: touched users re-solved exactly from their full rows; new (or touched) items from their columns."""
        n_users, n_items = seen.shape
        if self._item_rows_of is not base["seen_"]:  # the model was refit (or changed) since the last batch
            self._index_items(base["seen_"])
        item_rows = self._item_rows
        order = np.lexsort((users, items))
        item_rows = merge_rows(item_rows, items[order], users[order], values[order], (n_items, n_users),
                               self.duplicates)[0]  # fmt: skip
        if self.item_updates == "new":
            due, item_counts = np.zeros(0, np.int64), None
        else:
            due, item_counts = self._items_due(item_rows, items)
        share = self._sweep_share(events, base["seen_"].nnz, defer_sweep)
        swept = self._sweep_slice("item", shape0[1], share)
        if item_counts is not None:  # the swept items are solved from their whole column now
            item_counts[swept] = np.diff(item_rows.indptr)[swept]
        due = due[due < shape0[1]]  # known items; new ones come after the users
        new = np.arange(shape0[1], n_items)
        grams = self._grams_of(base)
        uf, ub = grow_rows(base["user_factors"], n_users), base.get("user_bias")
        ub = None if ub is None else grow_rows(ub, n_users)
        itf, ib = base["item_factors"], base.get("item_bias")
        if len(due) or len(swept) or len(new):  # copy-on-write: the published arrays are never edited
            itf, ib = grow_rows(itf, n_items), None if ib is None else grow_rows(ib, n_items)
        solve = functools.partial(self._solve, {"user": (seen, uf, ub), "item": (item_rows, itf, ib)}, grams)
        # Known items first (refined from where they are against the users as they are: the touched
        # ones due and the sweep's slice), then every touched user exactly against those items (and
        # the sweep's slice of the others, refined), then the new items exactly against the updated
        # users, and the users of new items once more: each touched user ends as the exact fold-in of
        # their full history against the final items.
        solve("item", np.union1d(due, swept), exact=False)
        solve("user", touched, exact=True)
        solve("user", np.setdiff1d(self._sweep_slice("user", shape0[0], share), touched, assume_unique=True),
              exact=False)  # fmt: skip
        if len(new):
            solve("item", new, exact=True)
            solve("user", np.unique(users[items >= shape0[1]]), exact=True)
        self._grams = (grams, uf, itf)
        state = {"item_factors": itf, "item_bias": ib} if itf is not base["item_factors"] else {}
        state.update(user_factors=uf, user_bias=ub)
        self._item_rows, self._item_rows_of = item_rows, seen
        if item_counts is not None:
            self._item_counts = item_counts
        return state

    def _solve(self, sides: dict, grams: dict | None, side: str, ids: np.ndarray, exact: bool) -> None:
        """Solve rows ``ids`` of ``side`` ("user" / "item") against the other side, in place in ``sides``
        (side -> (its history CSR, factors, biases)): exactly, or refined from where they are; the
        Gram matrices follow."""
        if not len(ids):
            return
        other_side = "item" if side == "user" else "user"
        rows, own, own_bias = sides[side]
        other, other_bias = sides[other_side][1:]
        start = None if exact else (own[ids], None if own_bias is None else own_bias[ids])
        steps = None if exact else min(self.model.cg_steps, REFINE_CG_STEPS)
        x, b = self.model._solve_rows(_rows_of(rows, ids), other, other_bias, self.threads, start=start,
                                      gram=None if grams is None else grams[other_side].astype(np.float32),
                                      cg_steps=steps)  # fmt: skip
        if grams is not None and 8 * len(ids) < len(own):  # the Gram follows the few rows that changed
            old, x64 = own[ids].astype(np.float64), x.astype(np.float64)
            grams[side] += x64.T @ x64 - old.T @ old
        own[ids] = x
        if grams is not None and 8 * len(ids) >= len(own):  # many rows: one SYRK of all is cheaper
            grams[side] = self.model._ops.gram(own, 1).astype(np.float64)
        if b is not None:
            own_bias[ids] = b

    def _sweep_share(self, events: int, history: int, defer: bool) -> float:
        """The share of a full sweep a batch of ``events`` refines: ``events / (sweep_every x history)``;
        0 when ``defer`` (events are waiting: the share is owed, up to one sweep, to idle time)."""
        if self.sweep_every is None:
            return 0.0
        share = events / (self.sweep_every * max(history, 1))
        if defer:
            self._sweep_owed = min(self._sweep_owed + share, 1.0)
            return 0.0
        return share

    def _sweep_step(self) -> None:
        """ALS, background thread, queue empty: refine the next short slice of the sweep owed
        (at most ``IDLE_SWEEP_ROWS`` rows a side, a few ms), published like a batch."""
        with self._apply_lock, single_threaded_blas():
            try:
                with self.model._model_lock().read():
                    base = dict(self.model.__dict__)
                if self._item_rows_of is not base["seen_"]:
                    self._index_items(base["seen_"])
                n_users, n_items = base["seen_"].shape
                share = min(self._sweep_owed, IDLE_SWEEP_ROWS / max(n_users, n_items, 1))
                self._sweep_owed = 0.0 if share >= self._sweep_owed else self._sweep_owed - share
                grams = self._grams_of(base)
                uf, ub = base["user_factors"].copy(), base.get("user_bias")
                itf, ib = base["item_factors"].copy(), base.get("item_bias")
                ub, ib = None if ub is None else ub.copy(), None if ib is None else ib.copy()
                sides = {"user": (base["seen_"], uf, ub), "item": (self._item_rows, itf, ib)}
                swept = self._sweep_slice("item", n_items, share)
                counted = swept[swept < len(self._item_counts)]  # item_updates="new" counts only the first items
                self._item_counts[counted] = np.diff(self._item_rows.indptr)[counted]
                self._solve(sides, grams, "item", swept, exact=False)
                self._solve(sides, grams, "user", self._sweep_slice("user", n_users, share), exact=False)
                self._grams = (grams, uf, itf)
                self._publish({"user_factors": uf, "user_bias": ub, "item_factors": itf, "item_bias": ib})
            except Exception:  # the model is unchanged; the rest of the sweep is dropped, not retried forever
                log.exception("streaming updater: an idle sweep step failed")
                self._sweep_owed = 0.0

    def _grams_of(self, base: dict) -> dict | None:
        """Implicit ALS: ``{"user": XᵀX, "item": YᵀY}`` (float64) of the state ``base``, kept from the last
        batch when ``base`` is what it published (else computed: a refit, a refresh); None for explicit."""
        if self.model.explicit:
            return None
        grams, uf, itf = self._grams
        if uf is not base["user_factors"] or itf is not base["item_factors"]:
            gram = self.model._ops.gram
            grams = {side: gram(base[f"{side}_factors"], 1).astype(np.float64) for side in ("user", "item")}
        return {side: g.copy() for side, g in grams.items()}  # a failed batch leaves the kept ones as they were

    def _sweep_slice(self, side: str, n: int, share: float) -> np.ndarray:
        """ALS: the sweep's next ``share`` of the first ``n`` rows of ``side`` (cyclically, at least one)."""
        if not share or not n:
            return np.zeros(0, np.int64)
        size = min(n, int(np.ceil(n * share)))
        start = self._sweep_cursor[side] % n
        self._sweep_cursor[side] = (start + size) % n
        return (start + np.arange(size, dtype=np.int64)) % n

    def _index_items(self, seen: sp.csr_matrix) -> None:
        """ALS: the items x users history and the column sizes the items were solved from (fit or refit)."""
        self._item_rows, self._item_rows_of = seen.T.tocsr(), seen
        self._item_counts = np.diff(self._item_rows.indptr)

    def _items_due(self, item_rows: sp.csr_matrix, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batch's items to re-solve (item_updates="touched"), those whose column grew by at least
        ``item_refresh`` (a fraction) since their last solve (new items always), and the column sizes
        at the last solve afterwards."""
        touched = np.unique(items)
        counts = (item_rows.indptr[touched + 1] - item_rows.indptr[touched]).astype(np.int64)
        solved = np.zeros(item_rows.shape[0], np.int64)  # new items: 0, always due
        solved[: len(self._item_counts)] = self._item_counts
        due = counts >= np.ceil((1.0 + self.item_refresh) * solved[touched])
        solved[touched[due]] = counts[due]
        return touched[due], solved

    def _popularity(self, base, items, values, previous, present, n_items) -> np.ndarray:
        """MostPopular: the counts (or weight sums) plus what the batch changed, as a refit would count."""
        pop = grow_rows(base["item_popularity"], n_items)
        if self.model.weighted:
            new = values + previous if self.duplicates == "sum" else values
            delta = new - previous
        else:
            delta = (~present).astype(np.float64)  # a user counts once per item
        with np.errstate(over="ignore"):
            pop = (pop.astype(np.float64) + np.bincount(items, weights=delta, minlength=n_items)).astype(np.float32)
        if not np.isfinite(pop).all():
            raise ValueError("an item's weights sum past float32's range; scale the events' weights down")
        return pop

    def _sgd_state(self, base, users, items, values, shape, shape0) -> dict:
        """BPR / SGDMF: ``epochs`` SGD passes over the batch's events, users and items both learning."""
        model = self.model
        rng = np.random.default_rng([model.seed, self.batches_, shape[0], shape[1]])
        state = {}
        for side, n, n0 in (("user", shape[0], shape0[0]), ("item", shape[1], shape0[1])):
            f = base[f"{side}_factors"]
            grown = np.empty((n, f.shape[1]), np.float32)
            grown[:n0] = f
            grown[n0:] = _init_factors(rng, n - n0, f.shape[1], model.init_std)
            state[f"{side}_factors"] = grown
            bias = base.get(f"{side}_bias")
            state[f"{side}_bias"] = None if bias is None else grow_rows(bias, n)
        batch = sp.csr_matrix((values.astype(np.float32), (users, items)), shape=shape)
        batch.sort_indices()
        shadow = copy.copy(model)
        shadow.__dict__.update(state)  # the kernels write into the copies above, never the published arrays
        data = shadow._fold_in_data(batch)
        if data is not None:
            for _ in range(self.epochs):
                shadow._epoch(data, self._sgd_epoch, self.threads)
                self._sgd_epoch += 1
        for name, a in state.items():
            if a is not None and not np.isfinite(a).all():
                raise ValueError(f"the streaming update diverged ({name} became NaN or inf); lower the model's lr "
                                 "or scale the events' weights down")  # fmt: skip
        return state


# -- helpers -----------------------------------------------------------------------------------------
def _check_choice(value, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _as_times(times: np.ndarray) -> np.ndarray:
    """Event times as float64 (datetimes as nanoseconds since the epoch); ValueError on missing ones."""
    if times.dtype.kind == "M":
        if np.isnat(times).any():
            raise ValueError("events column 'time' holds missing times (NaT)")
        return times.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    if times.dtype.kind not in "biuf":
        raise TypeError(f"events column 'time' must hold numbers or datetimes, got dtype {times.dtype}")
    times = times.astype(np.float64)
    if not np.isfinite(times).all():
        raise ValueError("events column 'time' holds NaN or infinite values")
    return times


def _map_of(state: dict, side: str, n: int) -> IdMap:
    """The ``side`` id map of a model's state (the identity map when it has none)."""
    m = state.get(f"{side}_ids_")
    return IdMap.range(n) if m is None else m


def _grown_map(id_map: IdMap, ids: np.ndarray) -> tuple[IdMap, int]:
    """``id_map`` with the ids it does not know appended in order of first appearance; (map, how many new).

    The index keeps its dtype when the new ids share it (integer ids stay an integer index, whose
    lookups are several times faster than an object index's).
    """
    idx = np.asarray(id_map.to_index(ids), np.int64)
    unknown = idx < 0
    if not unknown.any():
        return id_map, 0
    new = pd.unique(np.asarray(ids)[unknown])
    return IdMap(id_map.index.append(pd.Index(new, tupleize_cols=False))), len(new)


def _combine(users: np.ndarray, items: np.ndarray, weights: np.ndarray, n_items: int, duplicates: str):
    """The batch's distinct (user, item) pairs sorted by (user, item), and their combined weight
    (summed, or the last event's)."""
    keys = users * np.int64(n_items) + items
    if duplicates == "sum":
        unique, inverse = np.unique(keys, return_inverse=True)
        values = np.bincount(inverse, weights=weights, minlength=len(unique))
    else:  # the last occurrence of each key: the first one of the reversed events
        unique, first = np.unique(keys[::-1], return_index=True)
        values = weights[::-1][first]
    return unique // n_items, unique % n_items, values


def _rows_of(m: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """Rows ``rows`` (distinct, sorted) of the canonical CSR ``m`` as a canonical CSR: one gather, no SciPy indexing."""
    picked = seen_rows(m, rows)
    starts = m.indptr[rows].astype(np.int64)
    take = np.arange(picked.nnz, dtype=np.int64) + np.repeat(starts - picked.indptr[:-1], np.diff(picked.indptr))
    out = sp.csr_matrix((m.data[take], picked.indices, picked.indptr), shape=picked.shape)
    out.has_canonical_format = True
    return out


def merge_rows(m: sp.csr_matrix, rows, cols, values, shape: tuple[int, int], duplicates: str):
    """A new canonical CSR: ``m`` grown to ``shape`` with the entries (rows, cols) set to ``values``
    (``duplicates="last"``) or incremented by them ("sum"); ``m`` itself is unchanged.

    ``rows`` / ``cols`` are distinct pairs sorted by (row, col). Returns ``(csr, previous, present)``:
    each pair's value before (0 where absent) and whether it was stored. O(nnz) array copies, no
    Python loop over rows.
    """
    n_rows, n_cols = shape
    values = np.asarray(values, np.float64)
    indptr = np.empty(n_rows + 1, np.int64)
    indptr[: m.shape[0] + 1] = m.indptr
    indptr[m.shape[0] + 1 :] = m.indptr[-1]
    touched = np.unique(rows)
    starts = indptr[touched]
    lengths = indptr[touched + 1] - starts
    offsets = np.zeros(len(touched) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    take = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    old_keys = np.repeat(touched, lengths) * np.int64(n_cols) + m.indices[take]
    old_values = m.data[take]
    new_keys = rows * np.int64(n_cols) + cols
    pos = np.searchsorted(old_keys, new_keys)
    clipped = np.minimum(pos, max(len(old_keys) - 1, 0))
    present = (pos < len(old_keys)) & (old_keys[clipped] == new_keys) if len(old_keys) else np.zeros(len(pos), bool)
    previous = np.where(present, old_values[clipped] if len(old_keys) else 0.0, 0.0)
    with np.errstate(over="ignore"):
        updated = (values + previous if duplicates == "sum" else values).astype(np.float32)
    if not np.isfinite(updated).all():
        raise ValueError("events column 'weight': a stored value would pass float32's range; scale the weights down")
    keep = np.ones(len(old_keys), bool)
    keep[pos[present]] = False
    merged_keys = np.concatenate([old_keys[keep], new_keys])
    order = np.argsort(merged_keys, kind="stable")
    merged_keys = merged_keys[order]
    merged_values = np.concatenate([old_values[keep], updated])[order]
    merged_rows = merged_keys // n_cols
    lengths_new = np.diff(indptr)
    row_start = np.searchsorted(merged_rows, touched)
    lengths_new[touched] = np.diff(np.append(row_start, len(merged_keys)))
    indptr_new = np.zeros(n_rows + 1, np.int64)
    np.cumsum(lengths_new, out=indptr_new[1:])
    # Entry j of the result comes from [m's entries; merged entries] at j + source[r] - indptr_new[r], r its row.
    source = indptr[:-1].copy()
    source[touched] = m.nnz + row_start
    take = np.arange(indptr_new[-1], dtype=np.int64) + np.repeat(source - indptr_new[:-1], lengths_new)
    indices = np.concatenate([m.indices, (merged_keys % n_cols).astype(m.indices.dtype)])[take]
    data = np.concatenate([m.data.astype(np.float32, copy=False), merged_values])[take]
    if indptr_new[-1] <= np.iinfo(np.int32).max and n_cols <= np.iinfo(np.int32).max:
        indices, indptr_new = indices.astype(np.int32), indptr_new.astype(np.int32)
    out = sp.csr_matrix((data, indices, indptr_new), shape=shape)
    out.has_canonical_format = True
    return out, previous, present
