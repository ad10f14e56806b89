"""The benchmark harness (bench/_harness.py): ratios, table, timing, missing peers, outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "_harness.py"
_spec = importlib.util.spec_from_file_location("recforge_bench_harness", _PATH)
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


def _row(library, value, better="lower", case="c", metric="s", spread=None):
    return {"case": case, "library": library, "metric": metric, "value": value, "spread": spread, "better": better}


def test_ratio_is_above_one_when_recforge_is_better_either_way():
    assert harness.ratio(ours=1.0, peer=3.0, better="lower") == pytest.approx(3.0)  # we are 3x faster
    assert harness.ratio(ours=0.9, peer=0.3, better="higher") == pytest.approx(3.0)  # we score 3x higher
    assert harness.ratio(ours=2.0, peer=1.0, better="lower") == pytest.approx(0.5)
    assert harness.ratio(ours=0.0, peer=1.0, better="lower") is None
    with pytest.raises(ValueError, match="better"):
        harness.ratio(1.0, 1.0, "sideways")


def test_add_ratios_pairs_by_case_and_metric():
    rows = [
        _row("recforge", 2.0, case="a"),
        _row("faiss", 4.0, case="a"),
        _row("faiss", 4.0, case="b"),  # no recforge row for case b: no ratio
        _row("recforge", 0.5, better="higher", case="a", metric="ndcg"),
        _row("implicit", 0.25, better="higher", case="a", metric="ndcg"),
    ]
    out = harness.add_ratios(rows)
    assert [r["ratio"] for r in out] == [None, pytest.approx(2.0), None, None, pytest.approx(2.0)]
    assert "ratio" not in rows[0]  # inputs are not modified


def test_markdown_table_puts_recforge_first_and_lists_missing_peers():
    rows = [_row("numpy", 3.0, spread=0.1), _row("recforge", 1.5, spread=0.05)]
    text = harness.markdown_table(rows, {"faiss": "ImportError: no faiss"})
    lines = text.splitlines()
    assert "ratio (>1: recforge better)" in lines[0]
    assert "| recforge |" in lines[2] and "| numpy |" in lines[3]
    assert lines[3].endswith("| 2.00x |")
    assert "`faiss` (ImportError: no faiss)" in text


def test_check_rows_names_the_problem():
    with pytest.raises(ValueError, match="lacks"):
        harness.check_rows([{"case": "x"}])
    with pytest.raises(ValueError, match="better"):
        harness.check_rows([_row("recforge", 1.0, better="up")])
    with pytest.raises(ValueError, match="finite"):
        harness.check_rows([_row("recforge", float("nan"))])
    with pytest.raises(TypeError):
        harness.check_rows("not rows")


def test_timeit_warms_up_then_reports_median_and_half_range():
    ticks = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # three timed runs of 1, 3 and 2 seconds
    calls = []
    ctx = harness.Context(threads=1, repeat=3, clock=lambda: next(ticks), log=lambda m: None)
    t = ctx.timeit(lambda: calls.append(1))
    assert len(calls) == 4  # one warm-up + three timed
    assert t["runs"] == [1.0, 3.0, 2.0]
    assert t["median"] == 2.0 and t["spread"] == 1.0


def test_timeit_many_interleaves_libraries():
    order = []
    ctx = harness.Context(threads=1, repeat=2, log=lambda m: None)
    out = ctx.timeit_many({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=0)
    assert order == ["a", "b", "a", "b"]
    assert set(out) == {"a", "b"} and len(out["a"]["runs"]) == 2


def test_missing_peer_is_recorded_not_raised():
    logged = []
    ctx = harness.Context(threads=1, log=logged.append)
    assert ctx.peer("recforge_no_such_peer_module") is None
    assert "recforge_no_such_peer_module" in ctx.missing_peers
    assert logged and "peer missing" in logged[0]
    assert ctx.peer("json") is json


def test_context_rejects_bad_settings():
    with pytest.raises(ValueError, match="threads"):
        harness.Context(threads=0)
    with pytest.raises(ValueError, match="repeat"):
        harness.Context(repeat=0)


def test_load_benchmark_and_outputs(tmp_path):
    (tmp_path / "bench_toy.py").write_text(
        "def run(ctx):\n"
        "    t = ctx.timeit(lambda: None)\n"
        "    ctx.peer('recforge_absent_peer')\n"
        "    return [dict(case='toy', library='recforge', metric='s', value=1.0, spread=t['spread'], better='lower'),\n"
        "            dict(case='toy', library='other', metric='s', value=2.0, spread=None, better='lower')]\n"
    )
    assert harness.available_benchmarks(tmp_path) == ["toy"]
    with pytest.raises(ValueError, match="known: toy"):
        harness.load_benchmark("nope", tmp_path)
    module = harness.load_benchmark("toy", tmp_path)
    ctx = harness.Context(threads=1, repeat=1, quick=True, log=lambda m: None)
    rows = harness.check_rows(module.run(ctx))
    machine = {"cpu": "test cpu", "usable_cores": 1, "libraries": {"numpy": "1"}, "git_commit": None}
    rec = harness.report("toy", rows, ctx, "python bench/run.py toy --quick", machine=machine)
    paths = harness.write_outputs(rec, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["rows"][1]["ratio"] == pytest.approx(2.0)
    assert list(data["missing_peers"]) == ["recforge_absent_peer"]
    assert "recforge_absent_peer" in paths["md"].read_text()
    assert paths["json"].name == "toy-quick.json"
    assert "2.00x" in paths["md"].read_text()


def test_pin_thread_env_sets_every_pool(monkeypatch):
    for var in harness.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    harness.pin_thread_env(3)
    import os

    assert all(os.environ[var] == "3" for var in harness.THREAD_ENV_VARS)


def test_machine_info_has_the_essentials():
    info = harness.machine_info()
    assert info["cpu"] and info["cores"] >= 1
    assert "numpy" in info["libraries"]


def test_missing_data_set_is_reported_not_raised(tmp_path):
    logged = []
    ctx = harness.Context(threads=1, data_dir=tmp_path, log=logged.append)

    def load(name, data_home):
        raise FileNotFoundError(f"{name} not found. Looked for:\n  {data_home}/{name}")

    assert ctx.dataset("toy set", load, "toy.csv") is None
    assert ctx.not_measured == {"toy set": "toy.csv not found."}
    assert "not measured (toy.csv not found.)" in logged[0]
    assert ctx.dataset("echo", lambda data_home: data_home) == tmp_path  # the loader gets ctx.data_dir
    machine = {"cpu": "test cpu", "usable_cores": 1, "libraries": {}, "git_commit": None}
    rec = harness.report("toy", [], ctx, "cmd", machine=machine)
    assert rec["not_measured"] == {"toy set": "toy.csv not found."}
    assert "Data sets not measured: `toy set` (toy.csv not found.)" in harness.markdown_report(rec)


def _data_file(rel):
    import os

    path = Path(os.environ.get("RECFORGE_DATA") or "/nonexistent") / rel
    if not path.exists():
        pytest.skip(f"{rel} not in $RECFORGE_DATA")
    return path


def test_movielens_100k_fold_is_zero_based_with_the_whole_sets_shape():
    data_home = _data_file("ml-100k/u1.base").parents[1]
    train, test, shape = harness.movielens_100k_fold(1, data_home)
    assert shape == (943, 1682) and (len(train), len(test)) == (80_000, 20_000)
    assert train["user"].min() == 0 and list(train.columns) == ["user", "item", "rating", "timestamp"]


def test_ncf_matrices_line_negatives_up_with_test_pairs():
    data_home = _data_file("deepcf/lastfm.test.negative").parents[1]
    train, test, negatives = harness.ncf_matrices("deepcf/lastfm", data_home)
    assert train.shape == test.shape and set(train.data) == {1.0}
    assert negatives.shape == (test.nnz, 99)


# Smoke sizes for the benchmarks' --quick paths: (module, attribute) -> value.
TINY = {
    ("bench_topk", "QUICK"): (300, 200),
    ("bench_data", "QUICK"): (300, 200, 3_000),
    ("bench_als", "SYNTH_QUICK"): (300, 200, 3_000),
    ("bench_sgd", "THROUGHPUT_QUICK"): (300, 200, 3_000),
    ("bench_recommend", "QUICK_ITEMS"): 2_000,
}


class _NoPeers(harness.Context):
    """A context in which every peer is missing, as on a machine with recforge alone."""

    def peer(self, import_name):
        self.missing_peers[import_name] = "hidden by the test"
        return None


def _run_quick(name, ctx, monkeypatch):
    module = harness.load_benchmark(name)
    for (module_name, attr), value in TINY.items():
        if module_name == module.__name__:
            monkeypatch.setattr(module, attr, value)
    rows = harness.check_rows(module.run(ctx))
    machine = {"cpu": "test cpu", "usable_cores": 1, "libraries": {}, "git_commit": None}
    harness.markdown_report(harness.report(name, rows, ctx, f"bench/run.py {name} --quick", machine=machine))
    return rows


@pytest.mark.parametrize("name", harness.available_benchmarks())
def test_every_benchmark_runs_quick_without_peers_or_data(name, tmp_path, monkeypatch):
    """Each bench module imports and its --quick path runs (at smoke sizes) with no peer and no data
    set: the data-dependent cases are reported as not measured, not raised."""
    monkeypatch.setenv("RECFORGE_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/recforge either
    ctx = _NoPeers(threads=1, repeat=1, quick=True, data_dir=tmp_path / "no-data", log=lambda m: None)
    rows = _run_quick(name, ctx, monkeypatch)
    assert all(r["library"] not in ctx.missing_peers for r in rows)


# The benchmarks whose --quick data cases take a second or two (environment switches to get there).
DATA_SMOKE = {
    "als": {"RECFORGE_BENCH_ALS_CASES": "accuracy,explicit"},
    "mlp_validation": {},
    "sgd": {},
    "sgdmf_fixed": {},
}


@pytest.mark.parametrize("name", sorted(DATA_SMOKE))
def test_benchmarks_read_the_real_data_sets_through_the_loaders(name, monkeypatch):
    data_home = _data_file("deepcf/lastfm.train.rating").parents[1]
    _data_file("ml-100k/u.data")
    for var, value in DATA_SMOKE[name].items():
        monkeypatch.setenv(var, value)
    ctx = _NoPeers(threads=1, repeat=1, quick=True, data_dir=data_home, log=lambda m: None)
    rows = _run_quick(name, ctx, monkeypatch)
    assert rows and not ctx.not_measured
