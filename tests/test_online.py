"""recforge.online.StreamingUpdater: correctness against references, consistency under readers, bad input."""

from __future__ import annotations

import copy
import threading
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge as rf
from recforge.online import StreamingUpdater, merge_rows


def _events(rng, n, users, items, t0=0.0):
    return pd.DataFrame({
        "user": rng.choice(users, n), "item": rng.choice(items, n),
        "weight": rng.integers(1, 4, n).astype(float), "time": t0 + np.arange(n, dtype=float),
    })  # fmt: skip


def _history(seed=0, n=600):
    rng = np.random.default_rng(seed)
    df = _events(rng, n, [f"u{j}" for j in range(40)], [f"i{j}" for j in range(30)])
    return df, rf.Interactions.from_pandas(df, user_col="user", item_col="item", weight_col="weight",
                                           duplicates="sum")  # fmt: skip


def _stream(seed=1, n=300, t0=1e6):
    """Events over known users/items and new ones (u40.., i30..)."""
    rng = np.random.default_rng(seed)
    return _events(rng, n, [f"u{j}" for j in range(50)], [f"i{j}" for j in range(36)], t0)


def _split(df: pd.DataFrame, parts: int) -> list[pd.DataFrame]:
    return [df.iloc[rows] for rows in np.array_split(np.arange(len(df)), parts)]


def _dense_by_ids(model) -> pd.DataFrame:
    """The model's history as a (user id, item id) -> value table (index-free comparison)."""
    coo = model.seen_.tocoo()
    table = pd.DataFrame({"user": model.user_ids_.to_external(coo.row), "item": model.item_ids_.to_external(coo.col),
                          "value": coo.data.astype(np.float64)})  # fmt: skip
    return table.sort_values(["user", "item"]).reset_index(drop=True)


def _aggregated(df, how="sum") -> pd.DataFrame:
    out = df.groupby(["user", "item"], sort=True)["weight"].agg(how).reset_index()
    return out.rename(columns={"weight": "value"}).sort_values(["user", "item"]).reset_index(drop=True)


# -- merge_rows against a dense reference -----------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["sum", "last"]), st.integers(0, 3), st.integers(0, 3))
def test_merge_rows_matches_dense_reference(seed, duplicates, extra_rows, extra_cols):
    rng = np.random.default_rng(seed)
    m = sp.random(6, 5, density=0.4, format="csr", random_state=seed, dtype=np.float32)
    m.sort_indices()
    shape = (6 + extra_rows, 5 + extra_cols)
    keys = np.unique(rng.integers(0, shape[0] * shape[1], rng.integers(0, 12)))
    rows, cols = keys // shape[1], keys % shape[1]
    values = rng.standard_normal(len(keys))
    out, previous, present = merge_rows(m, rows, cols, values, shape, duplicates)
    want = np.zeros(shape, np.float32)
    want[:6, :5] = m.toarray()
    stored = np.zeros(shape, bool)
    stored[:6, :5] = m.toarray() != 0
    np.testing.assert_array_equal(previous, want[rows, cols])
    np.testing.assert_array_equal(present, stored[rows, cols])
    want[rows, cols] = (want[rows, cols] + values if duplicates == "sum" else values).astype(np.float32)
    stored[rows, cols] = True
    assert out.shape == shape and out.has_sorted_indices
    np.testing.assert_allclose(out.toarray(), want, rtol=1e-6)
    assert out.nnz == stored.sum()  # every pair once, explicit zeros kept
    np.testing.assert_array_equal(m.toarray() != 0, stored[:6, :5] & (m.toarray() != 0))  # m untouched


# -- ALS: the exact fold-in ---------------------------------------------------------------------------
@pytest.mark.parametrize(("item_updates", "sweep_every"), [("new", None), ("touched", None), ("touched", 0.02)])
def test_als_stream_equals_the_fold_in_helper(item_updates, sweep_every):
    df, inter = _history()
    model = rf.ALS(factors=8, epochs=3, alpha=2.0, threads=1).fit(inter)
    before = copy.deepcopy(model)
    updater = StreamingUpdater(model, item_updates=item_updates, sweep_every=sweep_every)
    stream = _stream()
    for start in range(0, len(stream), 100):
        updater.update(stream.iloc[start : start + 100])
    # The history is every event, summed per (user, item), in the data's own ids.
    pd.testing.assert_frame_equal(_dense_by_ids(model), _aggregated(pd.concat([df, stream])), check_dtype=False)
    # New users and items were added, in order of first appearance, and the old indices kept.
    assert model.user_ids_.values[: before.n_users].tolist() == before.user_ids_.values.tolist()
    assert {f"i{j}" for j in range(30, 36)} <= set(model.item_ids_.values)
    assert model.user_factors.shape == (model.n_users, 8) and model.item_factors.shape == (model.n_items, 8)
    # Every user of the last batch is the exact fold-in (partial_fit_users) against the final items.
    last = stream.iloc[200:]
    touched = np.unique(model.user_ids_.to_index(last["user"].to_numpy()))
    reference = copy.deepcopy(model).partial_fit_users(touched, model.seen_[touched])
    np.testing.assert_allclose(model.user_factors[touched], reference.user_factors[touched], rtol=1e-5, atol=1e-6)
    # Without the automatic sweep, users no event touched keep their factors.
    if sweep_every is None:
        untouched = np.setdiff1d(np.arange(before.n_users), model.user_ids_.to_index(stream["user"].to_numpy()))
        np.testing.assert_array_equal(model.user_factors[untouched], before.user_factors[untouched])


def test_als_new_items_are_solved_and_recommended():
    df, inter = _history()
    model = rf.ALS(factors=8, epochs=5, alpha=5.0, threads=1).fit(inter)
    updater = StreamingUpdater(model)
    # Users who share item i0's audience take up a new item "fresh": it gets a vector, and users of
    # i0 who have not seen it are recommended it high.
    fans = df.loc[df["item"] == "i0", "user"].unique()
    takers = fans[: len(fans) // 2]
    updater.update(pd.DataFrame({"user": takers, "item": ["fresh"] * len(takers),
                                 "weight": 5.0, "time": 1e6}))  # fmt: skip
    fresh = model.item_ids_.to_index(["fresh"])[0]
    assert fresh == len(model.item_ids_) - 1 and np.abs(model.item_factors[fresh]).sum() > 0
    # The new item's factors are the exact solve of its column against the user factors of the update.
    solved, _ = model._solve_rows(model.seen_.T.tocsr()[[fresh]], model.user_factors, None)
    assert np.corrcoef(solved[0], model.item_factors[fresh])[0, 1] > 0.9
    others = [u for u in fans[len(fans) // 2 :]]
    recs = model.recommend_external(others, k=10)
    assert "fresh" in set(recs["item"])


# -- MostPopular: exact counts --------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_most_popular_counts_are_exact(weighted):
    df, inter = _history()
    model = rf.MostPopular(weighted=weighted).fit(inter)
    updater = StreamingUpdater(model)
    stream = _stream()
    for start in range(0, len(stream), 70):
        updater.update(stream.iloc[start : start + 70])
    everything = pd.concat([df, stream])
    refit = rf.MostPopular(weighted=weighted).fit(
        rf.Interactions.from_pandas(everything, user_col="user", item_col="item", weight_col="weight", duplicates="sum")
    )
    mine = pd.Series(model.item_popularity, index=model.item_ids_.values).sort_index()
    want = pd.Series(refit.item_popularity, index=refit.item_ids_.values).sort_index()
    pd.testing.assert_series_equal(mine, want, check_exact=True)


def test_duplicates_last_keeps_the_latest_rating():
    ratings = pd.DataFrame({"user": [1, 1, 2], "item": [10, 11, 10], "weight": [4.0, 2.0, 5.0]})
    inter = rf.Interactions.from_pandas(ratings, user_col="user", item_col="item", weight_col="weight")
    model = rf.ALS(feedback="explicit", factors=4, epochs=2).fit(inter)
    updater = StreamingUpdater(model)  # a rating model: the latest value replaces the stored one
    assert updater.duplicates == "last"
    updater.update({"user": np.array([1, 1, 3]), "item": np.array([10, 10, 11]), "weight": np.array([1.0, 3.0, 2.0])})
    table = _dense_by_ids(model)
    assert table.set_index(["user", "item"])["value"].to_dict() == {(1, 10): 3.0, (1, 11): 2.0, (2, 10): 5.0,
                                                                      (3, 11): 2.0}  # fmt: skip


# -- BPR / SGDMF: incremental epochs on the new events ------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: rf.BPR(factors=8, epochs=5, threads=1),
                                  lambda: rf.SGDMF(factors=8, epochs=5, threads=1)])  # fmt: skip
def test_sgd_models_learn_from_the_new_events(make):
    df, inter = _history()
    model = make().fit(inter)
    before = copy.deepcopy(model)
    updater = StreamingUpdater(model, epochs=3)
    stream = _stream(n=200)
    updater.update(stream)
    touched = model.user_ids_.to_index(stream["user"].to_numpy())
    old_touched = np.unique(touched[touched < before.n_users])
    untouched = np.setdiff1d(np.arange(before.n_users), old_touched)
    assert model.n_users == 50 and model.n_items == 36
    assert np.isfinite(model.user_factors).all() and np.isfinite(model.item_factors).all()
    assert not np.allclose(model.user_factors[old_touched], before.user_factors[old_touched])
    np.testing.assert_array_equal(model.user_factors[untouched], before.user_factors[untouched])
    if getattr(model, "predicts_ratings", False):  # the stream's latest rating replaces the stored one
        want = pd.concat([_aggregated(df), _aggregated(stream, "last")]).drop_duplicates(["user", "item"], keep="last")
        want = want.sort_values(["user", "item"]).reset_index(drop=True)
    else:
        want = _aggregated(pd.concat([df, stream]))
    pd.testing.assert_frame_equal(_dense_by_ids(model), want, check_dtype=False)
    ids, _ = model.recommend(np.arange(model.n_users), k=5)
    assert (ids >= 0).all()


# -- consistency under concurrent readers ---------------------------------------------------------------------
READERS_USERS = np.arange(6)


def _run_with_readers(updater, stream, batches, background=False):
    """Stream ``stream`` in ``batches`` while 2 threads recommend; returns (published states, results, errors).

    ``background``: submitted to the updater's thread (which also publishes idle sweep steps): every
    publication is recorded from inside ``_publish``."""
    model = updater.model
    states = [(model.user_factors, model.item_factors, model.seen_)]
    if background:
        publish = updater._publish

        def recording_publish(state):
            publish(state)
            states.append((model.user_factors, model.item_factors, model.seen_))

        updater._publish = recording_publish
        updater.start(max_batch=60, max_delay=0.001)
    results, errors, done = [], [], threading.Event()

    def read():
        while not done.is_set():
            try:
                ids, scores = model.recommend(READERS_USERS, k=8)
                results.append((ids, scores))
            except Exception as exc:  # a mixed state can fail outright (shapes that disagree)
                errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for part in _split(stream, batches):
            if background:
                updater.submit(part)  # at once: a backlog, so batches leave their sweep to idle time
            else:
                updater.update(part)
                states.append((model.user_factors, model.item_factors, model.seen_))  # copy-on-write: references
                time.sleep(0.002)
        if background:
            updater.stop()
    finally:
        done.set()
        for t in threads:
            t.join()
    return states, results, errors


def _mixed(states, results, errors) -> int:
    """How many reader results match no published state (plus the readers' errors)."""
    expected = set()
    for uf, itf, seen in states:
        ids, scores = rf.topk(uf[READERS_USERS], itf, k=8, exclude=seen[READERS_USERS])
        expected.add((ids.tobytes(), scores.tobytes()))
    return len(errors) + sum((ids.tobytes(), scores.tobytes()) not in expected for ids, scores in results)


def _consistency_setup():
    df, inter = _history()
    model = rf.ALS(factors=8, epochs=3, alpha=2.0, threads=1).fit(inter)
    rng = np.random.default_rng(3)
    # Every batch touches the readers' users, so that every state ranks them differently.
    n = 1200
    stream = pd.DataFrame({"user": rng.choice([f"u{j}" for j in range(50)], n), "item": rng.choice(
        [f"i{j}" for j in range(36)], n), "weight": 1.0, "time": np.arange(n, dtype=float) + 1e6})  # fmt: skip
    readers = model.user_ids_.to_external(READERS_USERS)
    stream.loc[::5, "user"] = np.resize(readers, len(stream.loc[::5]))
    return model, stream


def test_readers_see_old_or_new_state_never_a_mix():
    model, stream = _consistency_setup()
    states, results, errors = _run_with_readers(StreamingUpdater(model), stream, 40)
    assert len(results) > 40  # the readers really ran during the updates
    assert _mixed(states, results, errors) == 0


def test_readers_see_only_published_states_of_the_background_updater_and_its_idle_sweep(monkeypatch):
    model, stream = _consistency_setup()
    monkeypatch.setattr(rf.online, "IDLE_SWEEP_ROWS", 8)  # several idle steps per sweep owed
    updater = StreamingUpdater(model, sweep_every=0.05)
    steps = []
    sweep_step = updater._sweep_step
    monkeypatch.setattr(updater, "_sweep_step", lambda: (steps.append(1), sweep_step())[1])
    states, results, errors = _run_with_readers(updater, stream, 40, background=True)
    assert updater.events_ == len(stream) and updater._sweep_owed == 0
    assert len(steps) > 0 and len(states) > updater.batches_ + 1  # idle steps published states of their own
    assert len(results) > 40
    assert _mixed(states, results, errors) == 0


def test_the_consistency_check_catches_a_non_atomic_swap(monkeypatch):
    """The check above can fail: publishing attribute by attribute, without the lock, is caught."""
    model, stream = _consistency_setup()

    def publish_piecemeal(self, state):
        for name in ("user_factors", "seen_", "user_ids_", "item_ids_", "item_factors", "item_bias", "user_bias"):
            if name in state:
                setattr(self.model, name, state[name])
                time.sleep(0.001)
        self.model._invalidate()

    monkeypatch.setattr(StreamingUpdater, "_publish", publish_piecemeal)
    states, results, errors = _run_with_readers(StreamingUpdater(model), stream, 40)
    assert _mixed(states, results, errors) > 0


# -- background ingestion --------------------------------------------------------------------------------
def test_background_updater_applies_every_submitted_event():
    df, inter = _history()
    model = rf.MostPopular().fit(inter)
    stream = _stream()
    updater = StreamingUpdater(model).start(max_batch=50, max_delay=0.01)
    futures = [updater.submit(part) for part in _split(stream, 30)]
    with pytest.raises(ValueError, match="time"):  # validated at submit: older than what was submitted
        updater.submit(stream.iloc[:3])
    published = [f.result(timeout=30) for f in futures]
    updater.stop()
    assert updater.events_ == len(stream) and all(isinstance(t, float) for t in published)
    assert published == sorted(published) and updater.batches_ <= 30
    reference = StreamingUpdater(rf.MostPopular().fit(inter))
    reference.update(stream)
    np.testing.assert_array_equal(model.item_popularity, reference.model.item_popularity)
    with pytest.raises(RuntimeError, match="start"):
        updater.submit(stream)


# -- bad input ---------------------------------------------------------------------------------------------
@pytest.fixture
def als_updater():
    _, inter = _history()
    return StreamingUpdater(rf.ALS(factors=4, epochs=2, threads=1).fit(inter))


@pytest.mark.parametrize(
    ("events", "error", "match"),
    [
        (pd.DataFrame({"user": ["u1"], "item": ["i1"], "rating": [1.0]}), ValueError, "unknown column.*rating"),
        (pd.DataFrame({"user": ["u1"]}), ValueError, "'item' column"),
        (
            pd.DataFrame({"user": ["u1", "u2"], "item": ["i1", "i2"], "weight": [1.0, np.nan]}),
            ValueError,
            "'weight' holds NaN",
        ),
        (pd.DataFrame({"user": ["u1"], "item": ["i1"], "weight": [-1.0]}), ValueError, "negative"),
        (pd.DataFrame({"user": ["u1"], "item": ["i1"], "weight": ["a lot"]}), TypeError, "'weight' must be numeric"),
        (pd.DataFrame({"user": [None], "item": ["i1"]}), ValueError, "'user' holds missing ids"),
        (
            pd.DataFrame({"user": ["u1", "u2"], "item": ["i1", "i2"], "time": [5.0, 4.0]}),
            ValueError,
            "'time' is out of order: event 1",
        ),
        (pd.DataFrame({"user": ["u1"], "item": ["i1"], "time": [np.nan]}), ValueError, "'time' holds NaN"),
        ({"user": np.array(["u1", "u2"]), "item": np.array(["i1"])}, ValueError, "'item' must be 1-D with 2"),
        ([("u1", "i1")], TypeError, "DataFrame or a mapping"),
        (pd.DataFrame({"user": ["u1"], "item": ["i1"], "weight": [1e35]}), ValueError, "alpha"),
        (pd.DataFrame({"user": ["u1"], "item": ["i1"], "weight": [1e39]}), ValueError, "float32"),
    ],
)
def test_bad_events_are_refused_and_change_nothing(als_updater, events, error, match):
    model = als_updater.model
    before = dict(model.__dict__)
    with pytest.raises(error, match=match):
        als_updater.update(events)
    assert all(model.__dict__[k] is v for k, v in before.items() if k != "_lock")
    assert als_updater.events_ == 0


def test_late_events_error_drop_or_accept():
    _, inter = _history()
    events = pd.DataFrame({"user": ["u1", "u2", "u3"], "item": ["i1", "i2", "i3"], "time": [10.0, 20.0, 30.0]})
    late = pd.DataFrame({"user": ["u4", "u5"], "item": ["i4", "i5"], "time": [15.0, 40.0]})
    strict = StreamingUpdater(rf.MostPopular().fit(inter))
    strict.update(events)
    with pytest.raises(ValueError, match="earlier than 30 already ingested"):
        strict.update(late)
    dropping = StreamingUpdater(rf.MostPopular().fit(inter), late="drop")
    dropping.update(events)
    report = dropping.update(late)
    assert (report.events, report.dropped) == (1, 1) and dropping.last_time_ == 40.0
    accepting = StreamingUpdater(rf.MostPopular().fit(inter), late="accept")
    accepting.update(events)
    assert accepting.update(late).events == 2


def test_updater_arguments_are_checked():
    _, inter = _history()
    with pytest.raises(TypeError, match="ALS, BPR, SGDMF or MostPopular"):
        StreamingUpdater(rf.EASE())
    with pytest.raises(rf.NotFittedError):
        StreamingUpdater(rf.ALS())
    model = rf.MostPopular().fit(inter)
    for kwargs, match in [({"duplicates": "max"}, "duplicates"), ({"item_updates": "all"}, "item_updates"),
                          ({"late": "ignore"}, "late"), ({"epochs": 0}, "epochs")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            StreamingUpdater(model, **kwargs)
    updater = StreamingUpdater(model)
    with pytest.raises(ValueError, match="max_batch"):
        updater.start(max_batch=0)
    with pytest.raises(ValueError, match="max_delay"):
        updater.start(max_delay=float("nan"))


# -- the model lock: a waiting writer is not starved by overlapping readers ----------------------------------
def test_a_writer_gets_in_between_overlapping_readers():
    from recforge.models._locking import ModelLock

    lock, stop, wrote = ModelLock(), threading.Event(), threading.Event()

    def read_forever(offset):
        time.sleep(offset)
        while not stop.is_set():  # two readers, staggered: the reader count alone would never reach 0
            with lock.read():
                time.sleep(0.01)

    def write():
        with lock.write():
            wrote.set()

    readers = [threading.Thread(target=read_forever, args=(d,)) for d in (0.0, 0.005)]
    for t in readers:
        t.start()
    time.sleep(0.05)
    writer = threading.Thread(target=write)
    writer.start()
    writer.join(timeout=10)
    stop.set()
    for t in readers:
        t.join()
    writer.join()
    assert wrote.is_set()


def test_a_nested_read_does_not_wait_for_a_waiting_writer():
    from recforge.models._locking import ModelLock

    lock, events = ModelLock(), []

    def write():
        with lock.write():
            events.append("write")

    with lock.read():
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        deadline = time.monotonic() + 10
        while not lock._writers_waiting and time.monotonic() < deadline:
            time.sleep(0.001)
        assert lock._writers_waiting == 1
        with lock.read():  # a reader calling another reader (recommend_external -> recommend)
            events.append("nested read")
    writer.join(timeout=10)
    assert events == ["nested read", "write"]


def test_single_threaded_blas_holds_in_any_python_thread():
    """The kernels' BLAS limit works from a second thread too (the background updater, readers)."""
    from threadpoolctl import threadpool_info

    from recforge._backend import single_threaded_blas

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    with single_threaded_blas():  # the main thread limits first (threadpoolctl then deems it the owner)
        pass
    seen = {}

    def work():
        with single_threaded_blas():
            seen["inside"] = blas_threads()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen["inside"] == [1] * len(before)
    assert blas_threads() == before


@pytest.mark.parametrize(("item_refresh", "resolved"), [(0.0, True), (0.5, False)])
def test_item_refresh_skips_items_that_barely_changed(item_refresh, resolved):
    df, inter = _history()
    model = rf.ALS(factors=8, epochs=3, alpha=2.0, threads=1).fit(inter)
    popular = df.groupby("item")["user"].nunique().idxmax()  # one more user grows its column by < 50%
    newcomer = next(u for u in (f"u{j}" for j in range(40)) if not ((df.user == u) & (df.item == popular)).any())
    item = model.item_ids_.to_index([popular])[0]
    before = model.item_factors[item].copy()
    updater = StreamingUpdater(model, item_refresh=item_refresh, sweep_every=None)
    updater.update(pd.DataFrame({"user": [newcomer], "item": [popular]}))
    assert (not np.array_equal(model.item_factors[item], before)) == resolved


def test_a_streamed_model_saves_and_loads_with_its_grown_id_maps(tmp_path):
    _, inter = _history()
    model = rf.ALS(factors=4, epochs=2, threads=1).fit(inter)
    StreamingUpdater(model).update(pd.DataFrame({"user": ["newcomer", "u1"], "item": ["i3", "brand new"]}))
    model.save(tmp_path / "streamed.rf")
    loaded = rf.load(tmp_path / "streamed.rf")
    assert loaded.user_ids_ == model.user_ids_ and loaded.item_ids_ == model.item_ids_
    pd.testing.assert_frame_equal(
        loaded.recommend_external(["newcomer"], k=5), model.recommend_external(["newcomer"], k=5)
    )


def test_refresh_is_one_exact_als_sweep_over_the_whole_history():
    _, inter = _history()
    model = rf.ALS(factors=8, epochs=3, alpha=2.0, threads=1).fit(inter)
    updater = StreamingUpdater(model)
    updater.update(_stream())
    users_before, seen = model.user_factors, model.seen_
    updater.refresh()
    items, _ = model._solve_rows(seen.T.tocsr(), users_before, None)
    users, _ = model._solve_rows(seen, items, None)
    np.testing.assert_allclose(model.item_factors, items, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.user_factors, users, rtol=1e-5, atol=1e-6)
    assert model.seen_ is seen  # the history is untouched
    with pytest.raises(ValueError, match="sweeps"):
        updater.refresh(sweeps=0)
    with pytest.raises(TypeError, match="ALS"):
        StreamingUpdater(rf.MostPopular().fit(inter)).refresh()


# -- ALS: the automatic sweep -------------------------------------------------------------------------
def _changed_rows(after, before):
    return np.flatnonzero(np.any(after[: len(before)] != before, axis=1))


def test_the_sweep_refines_a_slice_proportional_to_the_batch_in_turn():
    _, inter = _history()
    model = rf.ALS(factors=8, epochs=3, alpha=2.0, threads=1).fit(inter)
    n_users, n_items = model.n_users, model.n_items
    sweep_every = 0.25  # a full sweep per (history size / 4) events
    updater = StreamingUpdater(model, sweep_every=sweep_every, item_updates="new")
    # Batches of events by one user on items it already has: only the sweep moves other rows.
    own = model.seen_[0].indices
    events = 10
    seen_users, seen_items = set(), set()
    for batch in range(15):
        users_before, items_before = model.user_factors.copy(), model.item_factors.copy()
        nnz_before = model.seen_.nnz
        expected_users, expected_items = (int(np.ceil(n * events / (sweep_every * nnz_before)))
                                          for n in (n_users, n_items))  # fmt: skip
        updater.update(pd.DataFrame({"user": [model.user_ids_.values[0]] * events,
                                     "item": model.item_ids_.to_external(own[np.arange(events) % len(own)]),
                                     "time": 1e6 + batch}))  # fmt: skip
        users = np.setdiff1d(_changed_rows(model.user_factors, users_before), [0])
        items = _changed_rows(model.item_factors, items_before)
        # The slice is bounded by the batch's size (the latency bound) and taken in turn.
        assert 0 < len(users) <= expected_users and 0 < len(items) <= expected_items
        start = (batch * expected_items) % n_items
        assert set(items) <= {(start + j) % n_items for j in range(expected_items)}
        seen_users |= set(users)
        seen_items |= set(items)
    # 150 events are more than 0.25 x the history: every row was refined at least once.
    assert 150 > sweep_every * model.seen_.nnz
    assert seen_items == set(range(n_items)) and seen_users | {0} == set(range(n_users))


def test_the_sweep_brings_the_streamed_model_closer_to_the_optimum():
    """A refit minimises the ALS objective on the whole history; the sweep lowers it where the
    micro-batches alone leave the untouched rows where they were."""
    df, inter = _history()
    stream = _stream(n=600)
    losses = {}
    for sweep_every in (None, 0.05):
        model = rf.ALS(factors=8, epochs=3, alpha=2.0, threads=1).fit(inter)
        updater = StreamingUpdater(model, sweep_every=sweep_every)
        for part in _split(stream, 6):
            updater.update(part)
        seen = model._ops.csr(model.seen_)
        losses[sweep_every] = model._loss(seen, model._ops.csr(model.seen_.T.tocsr()), 1)
    assert losses[0.05] < 0.99 * losses[None]


def test_the_kept_gram_matrices_equal_recomputed_ones():
    _, inter = _history()
    model = rf.ALS(factors=8, epochs=3, alpha=2.0, threads=1).fit(inter)
    updater = StreamingUpdater(model)
    for part in _split(_stream(n=900), 9):
        updater.update(part)
    grams, users, items = updater._grams
    assert users is model.user_factors and items is model.item_factors
    for side, factors in (("user", model.user_factors), ("item", model.item_factors)):
        exact = factors.astype(np.float64).T @ factors.astype(np.float64)
        np.testing.assert_allclose(grams[side], exact, rtol=1e-5, atol=1e-6 * np.abs(exact).max())


def test_under_a_backlog_the_sweep_waits_for_idle_time_in_short_slices(monkeypatch):
    _, inter = _history()
    model = rf.ALS(factors=8, epochs=3, alpha=2.0, threads=1).fit(inter)
    updater = StreamingUpdater(model, item_updates="new")
    users_before = model.user_factors.copy()
    own = model.seen_[0].indices[:3]
    events = pd.DataFrame({"user": [model.user_ids_.values[0]] * 3, "item": model.item_ids_.to_external(own)})
    ev, _ = updater._validate(events, None)
    with updater._apply_lock:
        updater._apply(ev, 0, defer_sweep=True)  # what the background thread does while events wait
    assert len(_changed_rows(model.user_factors, users_before)) == 1  # only the touched user moved
    owed = updater._sweep_owed
    assert owed == pytest.approx(3 / (updater.sweep_every * inter.nnz))
    # Idle time pays it in slices of at most IDLE_SWEEP_ROWS rows a side.
    monkeypatch.setattr(rf.online, "IDLE_SWEEP_ROWS", 5)
    users_before, items_before = model.user_factors.copy(), model.item_factors.copy()
    updater._sweep_step()
    assert 0 < len(_changed_rows(model.user_factors, users_before)) <= 5
    assert 0 < len(_changed_rows(model.item_factors, items_before)) <= 5
    assert updater._sweep_owed == pytest.approx(max(owed - 5 / max(model.n_users, model.n_items), 0))


def test_the_background_updater_pays_the_sweep_it_owes_by_the_time_it_stops():
    _, inter = _history()
    stream = _stream(n=600)
    losses = {}
    for sweep_every in (None, 0.05):
        model = rf.ALS(factors=8, epochs=3, alpha=2.0, threads=1).fit(inter)
        updater = StreamingUpdater(model, sweep_every=sweep_every).start(max_batch=50, max_delay=0.001)
        for part in _split(stream, 30):
            updater.submit(part)
        updater.stop()
        assert updater._sweep_owed == 0 and updater.events_ == len(stream)
        losses[sweep_every] = model._loss(model._ops.csr(model.seen_), model._ops.csr(model.seen_.T.tocsr()), 1)
    assert losses[0.05] < 0.99 * losses[None]
