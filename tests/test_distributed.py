"""recforge.distributed on a LocalCluster (processes, 2 workers, 1 thread each): the same model as the
local fit bit for bit, Parquet shards equal to the local top-K, clear errors for bad input, a lost
worker and a resumed checkpoint changing nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed", reason="recforge.distributed needs the dask extra: pip install 'recforge[dask]'")
pytest.importorskip("dask.dataframe", reason="recforge.distributed needs the dask extra: pip install 'recforge[dask]'")
pytest.importorskip("pyarrow", reason="the Parquet shards need pyarrow (the dask extra)")

import dask  # noqa: E402
import dask.dataframe as dd  # noqa: E402
from conftest import CUDA_MISSING, requires_cuda  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import recforge as rf  # noqa: E402
import recforge.distributed as rfd  # noqa: E402

SOLVERS = {
    "cg": {"solver": "cg"},
    "cholesky": {"solver": "cholesky"},
    "explicit": {"feedback": "explicit", "regularization": 0.1},
    "cg-als-wr": {"solver": "cg", "nu": 1.0, "regularization_scaling": "observed"},  # Spark's lambda * n_u
}
FIT = {"factors": 8, "epochs": 3, "seed": 7}


def _cluster(n_workers: int):
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0")


@pytest.fixture(scope="module")
def client():
    with _cluster(2) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    """Ratings 1..5 (integer sums: the explicit global mean is exact in any order), string item ids,
    repeated (user, item) rows, users and items of every size."""
    rng = np.random.default_rng(3)
    n = 3000
    return pd.DataFrame({
        "user": rng.zipf(1.6, n) % 400 * 7,
        "item": np.char.add("i", (rng.zipf(1.4, n) % 150).astype(str)).astype(object),
        "rating": rng.integers(1, 6, n).astype(np.float64),
    })  # fmt: skip


def _local(events: pd.DataFrame, **params) -> rf.ALS:
    inter = rf.Interactions.from_pandas(events, weight_col="rating")
    return rf.ALS(threads=1, **{**FIT, **params}).fit(inter)


def _assert_same_model(got: rf.ALS, ref: rf.ALS) -> None:
    np.testing.assert_array_equal(got.user_factors, ref.user_factors)
    np.testing.assert_array_equal(got.item_factors, ref.item_factors)
    for name in ("user_bias", "item_bias"):
        a, b = getattr(got, name), getattr(ref, name)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert got.global_bias == ref.global_bias
    assert (got.seen_ != ref.seen_).nnz == 0 and got.seen_.shape == ref.seen_.shape


@pytest.mark.parametrize("config", SOLVERS)
def test_fit_equals_local_bit_for_bit(client, events, config):
    ref = _local(events, **SOLVERS[config])
    ddf = dd.from_pandas(events, npartitions=3)
    model = rfd.ALS(**FIT, **SOLVERS[config], user_blocks=3, item_blocks=2).fit(client, ddf, weight_col="rating")
    assert type(model) is rf.ALS and model.is_fitted
    _assert_same_model(model, ref)
    inter = rf.Interactions.from_pandas(events, weight_col="rating")
    assert list(model.user_ids.values) == list(inter.user_ids.values)
    assert list(model.item_ids.values) == list(inter.item_ids.values)
    assert [h["epoch"] for h in model.history_] == [0, 1, 2]


@pytest.mark.parametrize("config", ["explicit", "cholesky", "cg-als-wr"])
def test_routed_rows(client, events, config):
    """Only the rows a block reads are sent; explicit ALS (no Gram) stays bit for bit, implicit sums
    the Gram from per-block partial Grams (float32 rounding in another order). ALS-WR's lambda counts
    the block's stored entries only, so it routes by rows (nu > 0 with "all_pairs" cannot)."""
    ref = _local(events, **SOLVERS[config])
    est = rfd.ALS(**FIT, **SOLVERS[config], routing="rows", user_blocks=3, item_blocks=3)
    model = est.fit(client, dd.from_pandas(events, npartitions=2), weight_col="rating")
    assert est.routing_ == {"users": "rows", "items": "rows"}
    if config == "explicit":
        _assert_same_model(model, ref)
    else:
        np.testing.assert_allclose(model.item_factors, ref.item_factors, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "config, routing, rel",
    # a float64 sum in another order; implicit "rows": the Gram's float32 sum as well
    [
        ("cg", "whole", 1e-9),
        ("explicit", "whole", 1e-9),
        ("explicit", "rows", 1e-9),
        ("cholesky", "rows", 1e-4),
        ("cg-als-wr", "rows", 1e-4),
    ],
)
@pytest.mark.parametrize("blocks", [(3, 2), (None, None)], ids=["3x2-blocks", "one-block-per-worker"])
def test_training_loss_equals_local(client, events, config, routing, rel, blocks):
    ref = _local(events, calculate_loss=True, **SOLVERS[config])
    est = rfd.ALS(**FIT, **SOLVERS[config], calculate_loss=True, routing=routing, user_blocks=blocks[0],
                  item_blocks=blocks[1])  # fmt: skip
    model = est.fit(client, dd.from_pandas(events, npartitions=2), weight_col="rating")
    got, want = [h["loss"] for h in model.history_], [h["loss"] for h in ref.history_]
    assert got == pytest.approx(want, rel=rel)
    assert want[-1] < want[0]


def test_per_block_init_is_deterministic(client, events):
    """One stream per block (parallel, for large factors): same seed and layout, same model; not the local one."""
    ddf = dd.from_pandas(events, npartitions=2)
    fits = []
    for _ in range(2):
        est = rfd.ALS(**FIT, init="per_block", user_blocks=3, item_blocks=2)
        fits.append(est.fit(client, ddf, weight_col="rating"))
        assert est.init_ == "per_block"
    _assert_same_model(fits[0], fits[1])
    assert not np.array_equal(fits[0].user_factors, _local(events).user_factors)


def test_blocks_and_solves_stay_on_their_workers(events):
    """Block b is built on, and every half-step of it runs on, ``placement``'s worker b: the work is
    split evenly (the scheduler alone pulled 3 of 4 solves to the worker holding the whole side) and
    no block travels during the fit. The restriction is loose (a lost worker's blocks move), so on a
    loaded machine work stealing may rightly move a solve: this cluster runs without stealing, to
    test the placement itself."""
    from distributed import get_task_stream

    from recforge.distributed._client import placement

    no_stealing = dask.config.set({"distributed.scheduler.work-stealing": False})
    with no_stealing, _cluster(2) as cluster, Client(cluster) as client:
        home = placement(client, 4)
        assert sorted(home) == sorted(list(client.nthreads()) * 2)  # 2 blocks per 1-thread worker
        data = rfd.distribute(client, rf.Interactions.from_pandas(events, weight_col="rating"), user_blocks=4,
                              item_blocks=4)  # fmt: skip
        held = client.who_has(data.user_blocks + data.item_blocks)
        assert all(w in held[f.key] for f, w in zip(data.user_blocks + data.item_blocks, home + home))
        with get_task_stream(client) as ts:
            rfd.ALS(**FIT).fit(client, data)
        ran = {t["key"]: t["worker"] for t in ts.data}
    solves = {k: w for k, w in ran.items() if "-solve-" in k}
    assert len(solves) == 2 * 4 * FIT["epochs"]
    assert all(w == home[int(k.rsplit("-", 1)[1])] for k, w in solves.items())


def test_placement_spreads_blocks_over_workers_first():
    """Blocks go one to every worker before any worker gets a second (a worker's blocks share its one
    copy of the other side, and a block's kernel runs on all the worker's threads), then in
    proportion to the threads."""
    from recforge.distributed._client import placement

    class Threads:  # the one client method placement reads
        def __init__(self, nthreads):
            self._nthreads = nthreads

        def nthreads(self):
            return self._nthreads

    two_by_two = Threads({"tcp://b": 2, "tcp://a": 2})
    assert placement(two_by_two, 2) == ["tcp://a", "tcp://b"]
    assert placement(two_by_two, 5) == ["tcp://a", "tcp://b", "tcp://a", "tcp://b", "tcp://a"]
    uneven = Threads({"tcp://a": 1, "tcp://b": 3})
    assert placement(uneven, 4) == ["tcp://a", "tcp://b", "tcp://b", "tcp://b"]
    assert placement(Threads({}), 3) == []


def test_default_is_one_block_per_worker(client, events):
    data = rfd.distribute(client, rf.Interactions.from_pandas(events, weight_col="rating"))
    assert len(data.user_blocks) == len(data.item_blocks) == len(client.nthreads()) == 2
    held = client.who_has(data.user_blocks)
    assert sorted(w for f in data.user_blocks for w in held[f.key]) == sorted(client.nthreads())


@pytest.mark.parametrize("config", ["cg", "cholesky", "explicit"])
def test_one_block_per_worker_is_one_task_per_block(client, events, config):
    """With one block per worker (the default) and the other side routed whole, a half-step is one
    task per block, which concatenates the other side and takes its Gram itself (no separate
    concatenation and Gram tasks: Dask spends ~3 ms of CPU per task); the model stays the local one."""
    from distributed import get_task_stream

    inter = rf.Interactions.from_pandas(events, weight_col="rating")
    with get_task_stream(client) as ts:
        model = rfd.ALS(**FIT, **SOLVERS[config]).fit(client, inter)
    iterations = [str(t["key"]) for t in ts.data if re.search(r"-(users|items)-\d+", str(t["key"]))]
    assert len(iterations) == 2 * 2 * FIT["epochs"]  # per iteration: 2 half-steps x 2 blocks
    assert all(re.search(r"-solve-(users|items)-\d+-[01]$", k) for k in iterations), iterations
    _assert_same_model(model, _local(events, **SOLVERS[config]))


def test_inputs_interactions_and_files(client, events, tmp_path):
    """A local Interactions keeps its id maps; Parquet and CSV paths read like the DataFrame."""
    ref = _local(events)
    inter = rf.Interactions.from_pandas(events, weight_col="rating")
    _assert_same_model(rfd.ALS(**FIT).fit(client, inter), ref)
    half = len(events) // 2
    parquet = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    events.iloc[:half].to_parquet(parquet[0])
    events.iloc[half:].to_parquet(parquet[1])
    _assert_same_model(rfd.ALS(**FIT).fit(client, parquet, weight_col="rating"), ref)
    csv = tmp_path / "all.csv"
    events.to_csv(csv, index=False)
    _assert_same_model(rfd.ALS(**FIT).fit(client, [csv], weight_col="rating"), ref)


def test_empty_partition_changes_nothing(client, events):
    ddf = dd.from_pandas(events, npartitions=2)
    empty = dd.from_pandas(events.iloc[:0], npartitions=1)
    with_empty = dd.concat([ddf.partitions[0], empty, ddf.partitions[1]])
    assert with_empty.npartitions == 3
    model = rfd.ALS(**FIT).fit(client, with_empty, weight_col="rating")
    _assert_same_model(model, _local(events))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda df: df.assign(rating=df.rating.where(df.index != 5, np.nan)), "NaN or infinite"),
        (lambda df: df.assign(user=df.user.astype(object).where(df.index != 9, None)), "missing ids"),
        (lambda df: df.assign(rating=df.rating.astype(str)), "must be numeric"),
        (lambda df: df.iloc[:0], "no interactions"),
    ],
    ids=["nan-weight", "missing-id", "text-weight", "empty"],
)
def test_bad_input_is_a_clear_error(client, events, edit, match):
    ddf = dd.from_pandas(edit(events.copy()), npartitions=2)
    with pytest.raises((ValueError, TypeError), match=match):
        rfd.ALS(**FIT, retries=0).fit(client, ddf, weight_col="rating")


def test_ids_missing_from_given_maps(client, events):
    """Fixed id maps (e.g. a training set's): an unknown id is an error naming it, or dropped on request."""
    inter = rf.Interactions.from_pandas(events, weight_col="rating")
    known_items = inter.item_ids.values[1:]  # the first item id is unknown to the map
    ddf = dd.from_pandas(events, npartitions=2)
    with pytest.raises(ValueError, match="not in the given id maps"):
        rfd.distribute(client, ddf, weight_col="rating", item_ids=known_items, retries=0)
    data = rfd.distribute(client, ddf, weight_col="rating", item_ids=known_items, unknown="drop")
    expected = inter.csr[:, 1:]
    expected.eliminate_zeros()
    assert data.shape == (inter.n_users, inter.n_items - 1)
    assert (data.to_csr(client) != expected).nnz == 0


def test_missing_column_in_one_file(client, events, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    events.iloc[:100].to_csv(a, index=False)
    events.iloc[100:200].drop(columns="rating").to_csv(b, index=False)
    with pytest.raises(ValueError, match="rating"):
        rfd.ALS(**FIT, retries=0).fit(client, [a, b], weight_col="rating")


def _hide_kernels():
    sys.modules["_recforge_saved_core"] = sys.modules.get("recforge._core")
    sys.modules["recforge._core"] = None  # the next `import recforge._core` fails, as without the extension


def _restore_kernels():
    sys.modules["recforge._core"] = sys.modules.pop("_recforge_saved_core")


def test_worker_without_extension_is_named(client, events):
    worker = sorted(client.scheduler_info()["workers"])[0]
    client.run(_hide_kernels, workers=[worker])
    try:
        with pytest.raises(RuntimeError, match="cannot load recforge's compiled extension") as err:
            rfd.ALS(**FIT).fit(client, dd.from_pandas(events, npartitions=2), weight_col="rating")
        assert worker in str(err.value)
    finally:
        client.run(_restore_kernels, workers=[worker])


def test_recommend_all_shards_equal_local(client, events, tmp_path):
    model = rfd.ALS(**FIT, **SOLVERS["explicit"]).fit(client, dd.from_pandas(events, npartitions=2),
                                                      weight_col="rating")  # fmt: skip
    paths = rfd.recommend_all(model, client, tmp_path / "recs", k=5, user_blocks=3, batch_size=64)
    assert len(paths) == 3
    shards = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    ids, scores = model.recommend_all(k=5, batch_size=64)
    rows, ranks = np.nonzero(ids >= 0)
    expected = pd.DataFrame({"user": model.user_ids.values[rows], "rank": ranks + 1,
                             "item": model.item_ids.values[ids[rows, ranks]],
                             "score": scores[rows, ranks]})  # fmt: skip
    assert list(shards.columns) == ["user", "rank", "item", "score"]
    assert shards.user.tolist() == expected.user.tolist()
    assert shards["rank"].tolist() == expected["rank"].tolist()
    assert shards.item.tolist() == expected.item.tolist()
    np.testing.assert_array_equal(shards.score.to_numpy(), expected.score.to_numpy(np.float32))


def test_evaluate_equals_local(client, events):
    inter = rf.Interactions.from_pandas(events, weight_col="rating")
    train, test = rf.split.random_holdout(inter, test_fraction=0.3, seed=1)
    model = rfd.ALS(**FIT).fit(client, train)
    every = rfd.batch._EVAL_METRICS  # auc and the beyond-accuracy metrics included
    assert {"novelty", "popularity", "gini", "long_tail", "coverage", "auc"} <= set(every)
    ref = rf.evaluation.evaluate(model, train, test, k=5, metrics=every)
    got = rfd.evaluate(model, client, test, k=5, metrics=every, user_blocks=3)
    assert got["n_users"] == ref["n_users"]
    assert set(got) == set(ref)
    for name in set(ref) - {"protocol", "n_users"}:
        assert got[name] == pytest.approx(ref[name], rel=1e-12), name
    default = rfd.evaluate(model, client, test, k=5, user_blocks=2)  # the local defaults: all but auc
    local_default = rf.evaluation.evaluate(model, train, test, k=5)
    assert set(default) == set(local_default)
    for name in set(local_default) - {"protocol", "n_users"}:
        assert default[name] == pytest.approx(local_default[name], rel=1e-12), name
    # the test set on the cluster, blocked by its own layout, aligned by the model's maps
    held = rfd.distribute(client, test, user_ids=model.user_ids, item_ids=model.item_ids, user_blocks=3)
    on_cluster = rfd.evaluate(model, client, held, k=5, metrics=every)
    for name in set(ref) - {"protocol"}:
        assert on_cluster[name] == pytest.approx(ref[name], rel=1e-12), name
    with pytest.raises(ValueError, match="coverage"):
        rfd.evaluate(model, client, held, k=5, metrics=["coverage", "nope"])


def test_checkpoint_resume_equals_uninterrupted(client, events, tmp_path):
    """A fit stopped after 2 iterations (the scheduler died) resumes from its checkpoint: the same model."""
    ref = _local(events, epochs=4)
    ddf = dd.from_pandas(events, npartitions=2)
    params = {**FIT, "epochs": 4, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 2}
    first = rfd.ALS(**{**params, "epochs": 2}).fit(client, ddf, weight_col="rating")
    assert len(first.history_) == 2
    # A new, smaller cluster (the first one "died"): the block layout comes from the checkpoint.
    with _cluster(1) as cluster, Client(cluster) as other:
        resumed = rfd.ALS(**params).fit(other, ddf, weight_col="rating", resume=True)
    assert [h["epoch"] for h in resumed.history_] == [2, 3]
    _assert_same_model(resumed, ref)
    with pytest.raises(ValueError, match="does not match"):
        rfd.ALS(**{**params, "factors": 4}).fit(client, ddf, weight_col="rating", resume=True)


def test_bad_parameters(client, events):
    with pytest.raises(ValueError, match="routing"):
        rfd.ALS(routing="diagonal").fit(client, events)
    with pytest.raises(ValueError, match="nu=0"):
        rfd.ALS(routing="rows", nu=0.5).fit(client, events)
    with pytest.raises(ValueError, match="regularization_scaling must be one of"):
        rfd.ALS(regularization_scaling="count").fit(client, events)
    with pytest.raises(TypeError, match="data must be"):
        rfd.ALS(**FIT).fit(client, events)  # a pandas DataFrame: wrap it in dask first


@pytest.mark.skipif(CUDA_MISSING is None, reason="checks the error of a cluster without GPUs")
def test_gpu_fit_without_gpus_names_the_workers(client, events):
    with pytest.raises(RuntimeError, match=r"2 of 2 Dask workers .* run its GPU kernels .*device='cuda'"):
        rfd.ALS(**FIT, device="cuda").fit(client, dd.from_pandas(events, npartitions=2), weight_col="rating")


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("config", ["cg", "cholesky", "explicit", "cg-als-wr"])
def test_gpu_workers_fit_the_local_gpu_model(client, events, config):
    """Every block's half-step on its worker's GPU (the workers here share the one GPU): the local GPU
    fit's model up to float32 rounding (its Gram is cuBLAS's, ours the CPU's SYRK)."""
    ref = _local(events, device="cuda", **SOLVERS[config])
    model = rfd.ALS(**FIT, **SOLVERS[config], device="cuda", user_blocks=3, item_blocks=2).fit(
        client, dd.from_pandas(events, npartitions=2), weight_col="rating"
    )
    np.testing.assert_allclose(model.user_factors, ref.user_factors.get(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(model.item_factors, ref.item_factors.get(), rtol=1e-3, atol=1e-4)


def _kill_one_worker(client, victim: int, delay: float) -> threading.Thread:

    def kill():
        time.sleep(delay)
        os.kill(victim, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.parametrize("blocks", [6, None], ids=["2-blocks-per-worker", "one-block-per-worker"])
def test_killed_worker_does_not_change_the_fit(events, blocks):
    """SIGKILL one of three worker processes during a fit: its blocks are recomputed, the model is the
    same (with several blocks per worker, and with one, where a block's task also concatenates the
    other side and takes its Gram)."""
    ref = _local(events, epochs=6)
    killer = []
    with _cluster(3) as cluster, Client(cluster) as c:
        victim = min(c.run(os.getpid).values())

        def callback(epoch, seconds, loss):
            if epoch == 1:  # the kill lands while iteration 2's tasks run
                killer.append(_kill_one_worker(c, victim, delay=0.05))

        est = rfd.ALS(**{**FIT, "epochs": 6}, user_blocks=blocks, item_blocks=blocks)
        model = est.fit(c, dd.from_pandas(events, npartitions=3), weight_col="rating", callback=callback)
        killer[0].join()
        assert victim not in c.run(os.getpid).values()  # the worker really died (its nanny started another)
    _assert_same_model(model, ref)


def test_cluster_config_names_dask_settings():
    """Every key of the recommended settings is one Dask knows (a typo would be silently ignored)."""
    assert rfd.CLUSTER_CONFIG["distributed.worker.profile.enabled"] is False
    for key in rfd.CLUSTER_CONFIG:
        dask.config.get(key)  # KeyError for an unknown setting
    with dask.config.set(rfd.CLUSTER_CONFIG):
        assert dask.config.get("distributed.admin.tick.interval") == "1s"


def test_import_without_dask_names_the_extra():
    code = "import sys; sys.modules['distributed'] = None; import recforge.distributed"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "recforge[dask]" in proc.stderr
