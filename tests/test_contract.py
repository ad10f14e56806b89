"""The contract every model keeps, run for every model x device (`cpu`; `cuda` skipped with the reason).

One table (``CASES``) lists each model configuration with small, fast parameters; every test below
runs for each of them on one small synthetic data set (``rf.datasets.synthetic``). What each model
does with the data (accuracy, solver numerics, optimiser steps) stays in its own test file; what
every model must do alike is here: parameters (validated at fit, get/set_params, clone, repr),
fit reporting (``history_``, callback), ``recommend`` (shape, -1 / -inf padding, exclusion,
``items=``), ``score`` agreeing with ``recommend``, thread invariance, save/load, ``partial_fit``,
``from_factors``, ``to``, and the errors of an unfitted model or bad input.

On ``cuda``: where a GPU kernel is still missing the library raises NotImplementedError, and
conftest.py reports the test as xfail with that message (it runs for real once the kernel lands).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import pickle
import re
import struct
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import CUDA_MISSING, rewrite_model_file

import recforge as rf
from recforge import models

N_USERS, N_ITEMS = 100, 60  # > 32 rows on both sides: ALS really splits its half-steps over threads


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    cls: type
    params: dict
    hogwild: bool = False  # lock-free multithreaded SGD: only threads=1 runs are repeatable
    lapack: bool = False  # a multithreaded LAPACK solve: its rounding depends on the thread count


CASES = [
    Case("als-cg", rf.ALS, {"factors": 32, "epochs": 2, "alpha0": 0.5, "nu": 0.5}),  # f=32: the tiled CG kernels
    Case("als-cholesky", rf.ALS, {"factors": 5, "epochs": 2, "solver": "cholesky", "calculate_loss": True}),
    Case("als-wr", rf.ALS, {"factors": 8, "epochs": 2, "nu": 1.0, "regularization_scaling": "observed"}),
    Case("als-explicit", rf.ALS, {"factors": 4, "epochs": 2, "feedback": "explicit"}),
    Case("sgdmf", rf.SGDMF, {"factors": 4, "epochs": 3, "lr": 0.02}, hogwild=True),
    Case(
        "sgdmf-nobias",
        rf.SGDMF,
        {"factors": 4, "epochs": 3, "lr": 0.02, "biases": False, "clip": (-20.0, 20.0), "rating_scale": (1.0, 5.0)},
        hogwild=True,
    ),
    Case("bpr", rf.BPR, {"factors": 4, "epochs": 3, "negatives": 2, "item_biases": False}, hogwild=True),
    Case("warp", rf.BPR, {"factors": 4, "epochs": 3, "loss": "warp", "sampling": "popularity"}, hogwild=True),
    Case("mlp", rf.MLPScorer, {"factors": 4, "layers": (6, 3), "epochs": 2, "batch_size": 64}),  # 2 chunks per batch
    Case("mlp-gmf-lazy", rf.MLPScorer, {"factors": 4, "mode": "gmf", "epochs": 2, "optimizer": "lazy_adam"}),
    Case("popular", rf.MostPopular, {}),
    Case("popular-weighted", rf.MostPopular, {"weighted": True}),
    Case("itemknn-cosine", rf.ItemKNN, {"neighbors": 10}),
    Case("itemknn-bm25", rf.ItemKNN, {"neighbors": 70, "similarity": "bm25", "K1": 2.0}),  # more than n_items - 1
    Case("itemknn-tfidf", rf.ItemKNN, {"neighbors": 5, "similarity": "tfidf"}),
    Case("itemknn-tfidf-smooth", rf.ItemKNN, {"neighbors": 5, "similarity": "tfidf", "idf": "smooth"}),
    Case("hybrid-warp", rf.HybridMF, {"factors": 4, "epochs": 3}, hogwild=True),
    Case(
        "hybrid-bpr",
        rf.HybridMF,
        {"factors": 4, "epochs": 3, "loss": "bpr", "regularization": 1e-4, "negatives": "all"},
        hogwild=True,
    ),
    Case("hybrid-logistic", rf.HybridMF, {"factors": 4, "epochs": 2, "loss": "logistic", "lr": 0.1}, hogwild=True),
    Case("ease", rf.EASE, {"regularization": 10.0}, lapack=True),
    Case("ease-float32", rf.EASE, {"regularization": 50.0, "dtype": "float32"}, lapack=True),
]
STORES_ROWS = [c for c in CASES if hasattr(c.cls, "partial_fit_users")]  # every model that folds users in
FOLD_IN = [c for c in STORES_ROWS if issubclass(c.cls, rf.FactorModel)]  # ... by learning their factors
FOLD_IN_ITEMS = [c for c in CASES if hasattr(c.cls, "partial_fit_items")]
FACTOR_MODELS = [c for c in CASES if issubclass(c.cls, rf.FactorModel)]

# Values every parameter must reject at fit, with the error type, by parameter name. A model
# parameter missing here fails test_every_parameter_has_bad_values: add its bad values.
NAN = float("nan")
BAD_VALUES = {
    "factors": [(0, ValueError), (2.5, TypeError)],
    "epochs": [(0, ValueError), ("3", TypeError)],
    "regularization": [(-1.0, ValueError), (NAN, ValueError)],
    "alpha": [(-1.0, ValueError)],
    "solver": [("lu", ValueError)],
    "cg_steps": [(0, ValueError)],
    "alpha0": [(NAN, ValueError)],
    "nu": [(-0.5, ValueError)],
    "regularization_scaling": [("rendle", ValueError)],
    "feedback": [("ratings", ValueError)],
    "device": [("tpu", ValueError)],
    "threads": [(-1, ValueError), (1.5, TypeError)],
    "seed": [(-1, ValueError), ("x", TypeError)],
    "calculate_loss": [("yes", TypeError)],
    "lr": [(0.0, ValueError), (NAN, ValueError)],
    "biases": [("yes", TypeError)],
    "bias_regularization": [(-1.0, ValueError)],
    "lr_schedule": [("cosine", ValueError)],
    "decay": [(1.0, ValueError)],
    "init_std": [(-0.1, ValueError)],
    "rating_scale": [((5, 1), ValueError)],
    "clip": [((1, NAN), ValueError)],
    "negatives": [(0, ValueError)],  # BPR: a count; HybridMF: a choice (0 is not one either)
    "sampling": [("zipf", ValueError)],
    "item_biases": [("no", TypeError)],
    "loss": [("hinge", ValueError)],
    "max_sampled": [(0, ValueError)],
    "layers": [((4, 0), ValueError), (8, TypeError)],
    "mode": [("deep", ValueError)],
    "batch_size": [(0, ValueError)],
    "optimizer": [("rmsprop", ValueError)],
    "weighted": [("yes", TypeError)],
    "neighbors": [(0, ValueError), (2.5, TypeError)],
    "similarity": [("jaccard", ValueError)],
    "idf": [("log", ValueError), (None, ValueError)],
    "K1": [(-1.0, ValueError), (NAN, ValueError)],
    "B": [(1.5, ValueError)],
    "dtype": [("float16", ValueError)],
    "feature_weight": [(-1.0, ValueError), (NAN, ValueError)],
    "positive_sampling": [("some", TypeError), (1.5, ValueError), (NAN, ValueError)],
}


# A parameter to change in a clone, per model: the first of these the model has, and the new value.
RETUNE = {"epochs": lambda _: 1, "weighted": lambda w: not w, "neighbors": lambda k: k + 1,
          "regularization": lambda r: 2 * r}  # fmt: skip


# -- helpers -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data() -> sp.csr_matrix:
    """100 users x 60 items, 800 ratings 1-5 (every user has 3 or more) with planted structure."""
    df = rf.datasets.synthetic(n_users=N_USERS, n_items=N_ITEMS, nnz=800, factors=3, seed=0, timestamps=False)
    return sp.csr_matrix((df["rating"].to_numpy(np.float32), (df["user"], df["item"])), shape=(N_USERS, N_ITEMS))


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request) -> Case:
    return request.param


def only(cases: list[Case]):
    """Run a test for these cases only (direct parametrisation overrides the ``case`` fixture)."""
    return pytest.mark.parametrize("case", cases, ids=lambda c: c.id)


def make(case: Case, device: str = "cpu", **overrides):
    """An unfitted model of ``case`` on ``device`` (one thread unless ``overrides`` says otherwise)."""
    params = {**case.params, "device": device}
    if "threads" in param_names(case.cls):
        params["threads"] = 1
    return case.cls(**{**params, **overrides})


def param_names(cls) -> list[str]:
    """The constructor's named parameters (``**deprecated`` aside), in order."""
    return [p.name for p in inspect.signature(cls).parameters.values() if p.kind != p.VAR_KEYWORD]


def fit(model, data, **kwargs):
    return model.fit(data, progress=False, **kwargs)


def all_scores(model) -> np.ndarray:
    """``score`` of every (user, item) pair, (n_users, n_items)."""
    u, i = np.meshgrid(np.arange(model.n_users), np.arange(model.n_items), indexing="ij")
    return model.score(u.ravel(), i.ravel()).reshape(u.shape)


def assert_same_predictions(a, b) -> None:
    """``a`` and ``b`` recommend and score identically (bit for bit)."""
    users = np.arange(a.n_users)
    for exclude_seen in (True, False):
        got, want = (
            a.recommend(users, k=7, exclude_seen=exclude_seen),
            b.recommend(users, k=7, exclude_seen=exclude_seen),
        )
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(all_scores(a), all_scores(b))


def seen_items(model, user: int) -> np.ndarray:
    return model.seen_.indices[model.seen_.indptr[user] : model.seen_.indptr[user + 1]]


# -- coverage of the table -------------------------------------------------------------------------
def test_every_exported_model_has_a_case():
    exported = {getattr(models, name) for name in models.__all__}
    concrete = {c for c in exported if isinstance(c, type) and issubclass(c, rf.Recommender)
                and c not in (rf.Recommender, rf.FactorModel)}  # fmt: skip
    assert concrete and concrete <= {c.cls for c in CASES}


def test_every_parameter_has_bad_values():
    for cls in {c.cls for c in CASES}:
        missing = set(param_names(cls)) - BAD_VALUES.keys()
        assert not missing, f"{cls.__name__}: add bad values for {sorted(missing)} to BAD_VALUES"


# -- parameters ------------------------------------------------------------------------------------
def test_bad_parameters_raise_at_fit_naming_the_parameter(case, device, data):
    failures = []
    for name in param_names(case.cls):
        for value, exc in BAD_VALUES[name]:
            model = make(case, device).set_params(**{name: value})  # set, not checked: fit checks
            try:
                model.fit(data, progress=False)
            except exc as err:
                if not re.search(rf"\b{name}\b", str(err)):
                    failures.append(f"{name}={value!r}: message does not name it: {err}")
            except Exception as err:
                failures.append(f"{name}={value!r}: {type(err).__name__} instead of {exc.__name__}: {err}")
            else:
                failures.append(f"{name}={value!r}: accepted")
            if model.is_fitted:
                failures.append(f"{name}={value!r}: the model looks fitted after the failed fit")
    assert not failures, "\n".join(failures)


def test_unknown_parameters_are_rejected(case):
    with pytest.raises(TypeError, match="unexpected keyword argument 'factorz'"):
        case.cls(factorz=3)
    with pytest.raises(ValueError, match="invalid parameter 'factorz'"):
        make(case).set_params(factorz=3)


def test_get_set_params_and_clone(case, device, data):
    model = make(case, device)
    params = model.get_params()
    assert list(params) == param_names(case.cls)
    assert params["device"] == device and all(params[k] == v for k, v in case.params.items())
    fit(model, data)
    clone = type(model)(**model.get_params())
    assert clone is not model and clone.get_params() == params and not clone.is_fitted
    name, value = next((n, v(params[n])) for n, v in RETUNE.items() if n in params)
    assert clone.set_params(**{name: value}) is clone and clone.get_params()[name] == value
    assert model.get_params()[name] == params[name]  # the original is untouched
    clone.set_params(**{name: params[name]})
    assert_same_predictions(fit(clone, data), model)  # a clone refits to the same model


def test_sklearn_clone(case, data):
    base = pytest.importorskip("sklearn.base")
    model = fit(make(case), data)
    clone = base.clone(model)
    assert type(clone) is type(model) and clone.get_params() == model.get_params() and not clone.is_fitted


def test_repr_shows_the_non_default_parameters(case):
    assert repr(case.cls()) == f"{case.cls.__name__}()"
    model = make(case)
    text = repr(model)
    for name, value in {**case.params, "device": "cpu"}.items():
        assert f"{name}={value!r}" in text
    assert eval(text, {case.cls.__name__: case.cls}).get_params() == model.get_params()


# -- fitting ---------------------------------------------------------------------------------------
def test_history_and_callback_once_per_epoch(case, device, data):
    calls = []
    model = fit(make(case, device), data, callback=lambda *args: calls.append(args))
    n_epochs = case.params.get("epochs", 1)
    assert [c[0] for c in calls] == [h["epoch"] for h in model.history_] == list(range(n_epochs))
    for (_, seconds, loss), h in zip(calls, model.history_):
        assert isinstance(seconds, float) and 0 <= seconds == h["seconds"]
        assert loss is None or (isinstance(loss, float) and math.isfinite(loss))
        assert loss == h["loss"]
    if case.params.get("calculate_loss") or case.cls in (rf.SGDMF, rf.BPR, rf.MLPScorer):
        assert all(isinstance(c[2], float) for c in calls)  # these models always report a loss


def test_fit_rejects_bad_interactions(case, device, data):
    model = make(case, device)
    with pytest.raises(ValueError, match="empty"):
        model.fit(sp.csr_matrix(data.shape, dtype=np.float32), progress=False)
    nan = data.copy()
    nan.data[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(nan, progress=False)
    with pytest.raises(TypeError, match="interactions"):
        model.fit(data.toarray(), progress=False)
    assert not model.is_fitted


def test_unfitted_model_raises_not_fitted(case, device, tmp_path):
    model = make(case, device)
    assert issubclass(rf.NotFittedError, ValueError)
    calls = [lambda: model.recommend([0]), lambda: model.score([0], [0]), lambda: model.save(tmp_path / "m.rf"),
             lambda: model.recommend_all(), lambda: model.to("cpu"), lambda: model.n_users,
             lambda: model.explain(0, 0), lambda: model.explain_external(0, 0), lambda: model.forget_users([0]),
             lambda: model.forget_items([0])]  # fmt: skip
    if hasattr(model, "partial_fit_users"):
        calls.append(lambda: model.partial_fit_users([0], sp.csr_matrix((1, 3), dtype=np.float32)))
    for call in calls:
        with pytest.raises(rf.NotFittedError, match=rf"this {case.cls.__name__} is not fitted yet: call fit\(\)"):
            call()
    assert not (tmp_path / "m.rf").exists()


@pytest.mark.skipif(CUDA_MISSING is None, reason="CUDA is usable here: device='cuda' is tested, not refused")
def test_cuda_without_cuda_is_a_clear_error(case, data):
    model = make(case, "cuda")
    with pytest.raises(RuntimeError, match="device='cuda' needs"):
        model.fit(data, progress=False)
    assert not model.is_fitted
    with pytest.raises(RuntimeError, match="device='cuda' needs"):
        fit(make(case), data).to("cuda")


# -- recommend and score ---------------------------------------------------------------------------
def test_recommend_shape_order_and_exclusion(case, device, data):
    model = fit(make(case, device), data)
    users = np.arange(N_USERS)
    ids, scores = model.recommend(users, k=5)
    assert ids.shape == scores.shape == (N_USERS, 5) and ids.dtype == np.int64 and scores.dtype == np.float32
    assert ((ids >= 0) & (ids < N_ITEMS)).all() and np.isfinite(scores).all()
    assert (np.diff(scores, axis=1) <= 0).all()  # best first
    for u in users:
        assert len(set(ids[u])) == 5 and not np.isin(ids[u], seen_items(model, u)).any()
    one, _ = model.recommend(3, k=5)
    np.testing.assert_array_equal(one, ids[[3]])
    # Seen items allowed: every user's list is the whole catalogue, seen items included.
    ids, scores = model.recommend(users, k=N_ITEMS, exclude_seen=False)
    assert (np.sort(ids, axis=1) == np.arange(N_ITEMS)).all() and np.isfinite(scores).all()
    every_ids, every_scores = model.recommend_all(k=5, batch_size=16)
    ids, scores = model.recommend(users, k=5)
    np.testing.assert_array_equal(every_ids, ids)
    np.testing.assert_allclose(every_scores, scores, rtol=1e-6)  # other batches: GEMM rounding may differ


def test_recommend_pads_with_minus_one_and_neg_inf(case, device, data):
    model = fit(make(case, device), data)
    users = np.arange(N_USERS)
    ids, scores = model.recommend(users, k=N_ITEMS + 3)  # more than any user has candidates
    assert ids.shape == scores.shape == (N_USERS, N_ITEMS)  # k is clipped to the catalogue
    assert model.recommend([0], k=10**9)[0].shape == (1, N_ITEMS)  # no (n, k) allocation
    for u in users:
        n = N_ITEMS - len(seen_items(model, u))
        assert set(ids[u, :n]) == set(np.arange(N_ITEMS)) - set(seen_items(model, u))
        assert (ids[u, n:] == -1).all() and np.isneginf(scores[u, n:]).all() and np.isfinite(scores[u, :n]).all()
    # items=: only those items, fewer than k, the rest padded.
    subset = np.array([2, 5, 7, 11])
    ids, scores = model.recommend(users, k=6, items=subset, exclude_seen=False)
    assert (np.sort(ids[:, :4], axis=1) == subset).all()
    assert (ids[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()
    ids, _ = model.recommend(users, k=6, items=subset)
    for u in users:
        allowed = np.setdiff1d(subset, seen_items(model, u))
        np.testing.assert_array_equal(np.sort(ids[u, : len(allowed)]), allowed)
        assert (ids[u, len(allowed) :] == -1).all()


def test_score_agrees_with_recommend(case, device, data):
    # Rating models clip score into the rating scale by default, which ties the scores at its ends;
    # recommend ranks the unclipped predictions, so compare with clipping off.
    model = fit(make(case, device, **({"clip": False} if "clip" in param_names(case.cls) else {})), data)
    full = all_scores(model)
    assert full.shape == (N_USERS, N_ITEMS) and full.dtype == np.float32 and np.isfinite(full).all()
    users = np.arange(N_USERS)
    ids, rec_scores = model.recommend(users, k=8)
    tol = 1e-5 * max(1.0, float(np.abs(full).max()))
    for u in users:
        s = full[u, ids[u]]
        assert (np.diff(s) <= tol).all(), (u, s)  # sorted by score, best first
        others = np.setdiff1d(np.setdiff1d(np.arange(N_ITEMS), seen_items(model, u)), ids[u])
        assert full[u, others].max() <= s.min() + tol  # and the best 8 of the eligible items
        # score may add terms constant per user (SGDMF, explicit ALS: mu + b_u); nothing else differs.
        assert np.ptp(rec_scores[u] - s) <= 2 * tol
    np.testing.assert_array_equal(model.score(np.array([4, 4, 9]), np.array([0, 3, 3])), full[[4, 4, 9], [0, 3, 3]])


def test_recommend_and_score_reject_bad_ids(case, device, data):
    model = fit(make(case, device), data)
    with pytest.raises(ValueError, match=rf"users must be in \[0, {N_USERS}\)"):
        model.recommend([0, N_USERS])
    with pytest.raises(TypeError, match="users"):
        model.recommend([0.5])
    with pytest.raises(ValueError, match="k must be"):
        model.recommend([0], k=0)
    with pytest.raises(ValueError, match="items"):
        model.recommend([0], items=[N_ITEMS])
    with pytest.raises(ValueError, match="items"):
        model.score([0], [-1])
    with pytest.raises(ValueError, match="same length"):
        model.score([0, 1], [0])


# -- threads ---------------------------------------------------------------------------------------
def test_thread_count_does_not_change_results(case, device, data):
    if "threads" not in param_names(case.cls):
        a, b = fit(make(case, device), data), fit(make(case, device), data)
    elif case.hogwild or case.lapack:  # results depend on the thread count: a one-thread fit must repeat
        a, b = fit(make(case, device, threads=1), data), fit(make(case, device, threads=1), data)
    else:
        a, b = fit(make(case, device, threads=1), data), fit(make(case, device, threads=2), data)
    assert_same_predictions(a, b)
    if "seed" in param_names(case.cls):  # and the seed does matter
        assert not np.array_equal(all_scores(fit(make(case, device, seed=7), data)), all_scores(a))
    for x, y in zip(a.recommend(np.arange(N_USERS), k=5, threads=1), a.recommend(np.arange(N_USERS), k=5, threads=2)):
        np.testing.assert_array_equal(x, y)


# -- persistence -----------------------------------------------------------------------------------
def test_save_load_round_trip(case, device, data, tmp_path):
    model = fit(make(case, device), data)
    model.save(tmp_path / "m.rf")
    back = rf.load(tmp_path / "m.rf")
    assert type(back) is type(model) and back.get_params() == model.get_params()
    assert back.device_ == "cpu" and back.history_ == []  # loaded on the host; the log is not saved
    assert back.seen_.shape == model.seen_.shape and (back.seen_ != model.seen_).nnz == 0
    assert_same_predictions(back, model)


def test_copy_and_pickle_keep_a_working_model(case, data):
    """The skeleton says fitted models copy and pickle (a lock is not carried; kernel objects are rebuilt)."""
    model = fit(make(case), data)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert type(twin) is type(model) and twin.get_params() == model.get_params()
        assert_same_predictions(twin, model)
        fit(twin, data)  # the copy trains on its own


def test_load_rejects_corrupt_or_truncated_files(case, device, data, tmp_path):
    path = tmp_path / "m.rf"
    fit(make(case, device), data).save(path)
    raw = path.read_bytes()
    flipped = bytearray(raw)
    flipped[first_payload_end(path) - 1] ^= 0xFF  # the last byte of the first array: its CRC no longer matches
    bad = {"half": raw[: len(raw) // 2], "one byte short": raw[:-1], "header only": raw[:40], "empty": b"",
           "junk": b"not a model at all", "flipped payload byte": bytes(flipped)}  # fmt: skip
    for content in bad.values():
        (tmp_path / "bad.rf").write_bytes(content)
        with pytest.raises(ValueError, match="not a valid recforge model file|corrupt|truncated"):
            rf.load(tmp_path / "bad.rf")


def first_payload_end(path) -> int:
    """Offset just past the stored bytes of the archive's first member (its local header has its own
    name and extra-field lengths, which need not match the central directory's)."""
    first = zipfile.ZipFile(path).infolist()[0]
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[first.header_offset + 26 : first.header_offset + 30])
    return first.header_offset + 30 + name_len + extra_len + first.compress_size


def central_directory(raw: bytes) -> int:
    """Offset of the zip central directory (from the end-of-central-directory record; no comment)."""
    signature, *_, offset, comment_len = struct.unpack("<IHHHHIIH", raw[-22:])
    assert signature == 0x06054B50 and comment_len == 0
    return offset


# Field of the first central directory entry (offset in it, bits to set) -> damage zipfile refuses
# with NotImplementedError: a version it cannot extract, "compressed patched data", an unknown method.
ZIP_HEADER_DAMAGE = {"version needed": (6, 0xFF), "flags": (8, 0x20), "compression method": (10, 0x63)}


@pytest.mark.parametrize("field", ZIP_HEADER_DAMAGE)
def test_load_rejects_a_damaged_zip_header(field, data, tmp_path):
    path = tmp_path / "m.rf"
    rf.MostPopular().fit(data).save(path)
    raw = bytearray(path.read_bytes())
    offset, bits = ZIP_HEADER_DAMAGE[field]
    raw[central_directory(raw) + offset] |= bits
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not a valid recforge model file"):
        rf.load(path)


def _first_nan(a: np.ndarray) -> np.ndarray:
    """``a`` with a NaN first value; an integer array (ids, offsets) gets its dtype's minimum, never valid."""
    a = a.copy()
    a.flat[0] = np.iinfo(a.dtype).min if np.issubdtype(a.dtype, np.integer) else np.nan
    return a


DAMAGE = {"a row short": lambda a: a[:-1], "missing": lambda a: None, "NaN": _first_nan}


@pytest.mark.parametrize("damage", DAMAGE)
def test_load_rejects_arrays_inconsistent_with_the_model(case, damage, data, tmp_path):
    fit(make(case), data).save(tmp_path / "m.rf")
    # A model without biases may lack global_bias; files from before the rating range was saved lack
    # rating_range (load derives it from the training ratings: test_rating_range_survives_save_and_load).
    optional = {"global_bias", "rating_range"} if damage == "missing" else set()
    with np.load(tmp_path / "m.rf") as z:  # the model's own arrays
        names = [n for n in z.files if not n.startswith(("train_", "__")) and n not in optional]

    def edit(arrays, meta):
        changed = DAMAGE[damage](arrays.pop(name))
        del meta["arrays"][name]
        if changed is not None:
            arrays[name] = changed
            meta["arrays"][name] = [str(changed.dtype), list(changed.shape)]

    assert names
    for name in names:
        path = tmp_path / f"{name}.rf"
        path.write_bytes((tmp_path / "m.rf").read_bytes())
        rewrite_model_file(path, edit)
        with pytest.raises(ValueError, match=f"inconsistent model file.*{name}"):
            rf.load(path)


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="__meta__"):
        rf.load(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError):
        rf.load(tmp_path / "missing.rf")


# -- fitted-state operations -----------------------------------------------------------------------
def test_to_cpu_returns_a_working_model(case, device, data):
    model = fit(make(case, device), data)
    before = model.recommend(np.arange(N_USERS), k=5), all_scores(model)
    assert model.to("cpu") is model and model.device_ == "cpu"
    np.testing.assert_array_equal(model.recommend(np.arange(N_USERS), k=5)[0], before[0][0])
    np.testing.assert_array_equal(all_scores(model), before[1])
    with pytest.raises(ValueError, match="device must be"):
        model.to("tpu")


@only(STORES_ROWS)  # every model with row fold-in (HybridMF folds new users in from features)
def test_every_model_folds_users_in(case, device, data):
    model = fit(make(case, device), data)
    before = all_scores(model)
    row = data[[0]]
    new = N_USERS + 1  # N_USERS is left as a gap: an empty user
    assert model.partial_fit_users([new], row) is model
    assert model.n_users == N_USERS + 2 and model.user_ids_ == rf.IdMap.range(N_USERS + 2)  # the id map grows too
    assert (model.seen_[new] != row).nnz == 0 and model.seen_[N_USERS].nnz == 0
    assert (model.seen_[:N_USERS] != data).nnz == 0
    ids, _ = model.recommend([new], k=5)
    assert not np.isin(ids, row.indices).any() and (ids >= 0).all()
    assert np.isfinite(model.score([new, N_USERS], [1, 1])).all()
    if not isinstance(model, rf.MostPopular):  # MostPopular recounts popularity with the new user
        np.testing.assert_array_equal(all_scores(model)[:N_USERS], before)  # the other users are unchanged


@only(STORES_ROWS)
def test_recommend_for_rows_is_the_fold_in_without_changing_the_model(case, device, data):
    params = {"epochs": 20} if case.hogwild or case.cls is rf.MLPScorer else {}
    model = fit(make(case, device, **params), data)
    rows = data[[0, 5]]
    ids, scores = model.recommend_for_rows(rows, k=5)
    assert ids.shape == scores.shape == (2, 5) and model.n_users == N_USERS
    for r in range(2):
        assert not np.isin(ids[r], rows[r].indices).any()
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    assert model.recommend_for_rows(rows, k=10**6, exclude_seen=False)[0].shape == (2, N_ITEMS)
    # Exactly what folding the same rows in as new users gives them.
    twin = fit(make(case, device, **params), data).partial_fit_users([N_USERS, N_USERS + 1], rows)
    if isinstance(model, rf.MostPopular):  # the twin's popularity counts the two rows again
        twin = model
    want = twin.recommend([N_USERS, N_USERS + 1] if twin is not model else [0, 5], k=5)
    np.testing.assert_array_equal(ids, want[0])
    np.testing.assert_allclose(scores, want[1], rtol=1e-6)
    with pytest.raises(ValueError, match=f"{N_ITEMS} columns"):
        model.recommend_for_rows(data[[0], :-1])


@only(FOLD_IN)
def test_partial_fit_users_grows_and_keeps_the_rest(case, device, data):
    model = fit(make(case, device), data)
    before = {n: None if getattr(model, n) is None else getattr(model, n).copy()
              for n in ("user_factors", "item_factors", "item_bias", "user_bias")}  # fmt: skip
    row = data[[0]]
    new = N_USERS + 1  # N_USERS is left as a gap: an empty user
    assert model.partial_fit_users([new], row) is model
    assert model.n_users == model.user_factors.shape[0] == N_USERS + 2
    if model.user_bias is not None:
        assert model.user_bias.shape == (N_USERS + 2,)
    np.testing.assert_array_equal(model.user_factors[:N_USERS], before["user_factors"])
    np.testing.assert_array_equal(model.item_factors, before["item_factors"])  # the items stay fixed
    if before["item_bias"] is not None:
        np.testing.assert_array_equal(model.item_bias, before["item_bias"])
    assert not model.user_factors[N_USERS].any() and model.seen_[N_USERS].nnz == 0
    assert (model.seen_[new] != row).nnz == 0 and (model.seen_[:N_USERS] != data).nnz == 0
    ids, _ = model.recommend([new], k=5)
    assert not np.isin(ids, row.indices).any()
    assert np.isfinite(model.score([new, N_USERS], [1, 1])).all()


@only(FOLD_IN)
def test_partial_fit_users_refolds_existing_users_comparably(case, device, data):
    # SGD needs more epochs than 3 before a user's vector follows its row rather than its start.
    params = {"epochs": 20} if case.hogwild or case.cls is rf.MLPScorer else {}
    model, again = fit(make(case, device, **params), data), fit(make(case, device, **params), data)
    before = all_scores(model)
    users = np.arange(N_USERS)
    model.partial_fit_users(users, data)  # every user re-learnt from its own row
    assert model.n_users == N_USERS and (model.seen_ != data).nnz == 0
    after = all_scores(model)
    corr = [np.corrcoef(before[u], after[u])[0, 1] for u in users]
    assert np.median(corr) > 0.8, np.median(corr)
    again.partial_fit_users(users, data)
    assert_same_predictions(model, again)  # fold-in is repeatable


@only(FOLD_IN_ITEMS)
def test_partial_fit_items_grows(case, device, data):
    model = fit(make(case, device), data)
    users_before = model.user_factors.copy()
    column = data[:, [0]].T.tocsr()  # item 0's users, as a row
    model.partial_fit_items([0, N_ITEMS], sp.vstack([column, column]))
    assert model.n_items == model.item_factors.shape[0] == N_ITEMS + 1
    np.testing.assert_array_equal(model.user_factors, users_before)  # the users stay fixed
    np.testing.assert_array_equal(model.item_factors[N_ITEMS], model.item_factors[0])  # same column, same solve
    assert (model.seen_[:, [N_ITEMS]].T != column).nnz == 0 and (model.seen_[:, :N_ITEMS] != data).nnz == 0


@only(STORES_ROWS)
def test_partial_fit_rejects_bad_rows(case, device, data):
    model = fit(make(case, device), data)
    with pytest.raises(ValueError, match="repeat"):
        model.partial_fit_users([1, 1], data[[1, 1]])
    with pytest.raises(ValueError, match="one row per id"):
        model.partial_fit_users([1, 2], data[[1]])
    with pytest.raises(ValueError, match=">= 0"):
        model.partial_fit_users([-1], data[[1]])
    with pytest.raises(ValueError, match=f"{N_ITEMS} columns"):
        model.partial_fit_users([1], data[[1], :-1])
    assert model.n_users == N_USERS


@only(FACTOR_MODELS)
def test_from_factors_rebuilds_the_model(case, device, data):
    model = fit(make(case, device), data)
    arrays = {"user_factors": model.user_factors, "item_factors": model.item_factors, "user_bias": model.user_bias,
              "item_bias": model.item_bias, "global_bias": model.global_bias}  # fmt: skip
    built = case.cls.from_factors(**arrays, seen=model.seen_, **model.get_params())
    assert built.is_fitted and built.history_ == [] and built.get_params() == model.get_params()
    assert_same_predictions(built, model)
    # Without seen_ nothing is excluded; factors defaults to the factors' width.
    bare = case.cls.from_factors(**arrays)
    assert bare.factors == model.factors and bare.seen_.nnz == 0
    np.testing.assert_array_equal(bare.recommend([0, 1], k=5)[0], model.recommend([0, 1], k=5, exclude_seen=False)[0])
    with pytest.raises(ValueError, match="same width"):
        case.cls.from_factors(model.user_factors, model.item_factors[:, :-1])
    with pytest.raises(ValueError, match="seen must have shape"):
        case.cls.from_factors(**arrays, seen=model.seen_[:-1])


# -- explanations and forgetting (recforge.models._explain, Recommender.forget_*) ------------------
def _clipped(model, value: float) -> float:
    """``value`` as ``score`` reports it (rating models clip into their range)."""
    bounds = model._clip_bounds() if getattr(model, "predicts_ratings", False) else None
    return value if bounds is None else float(np.clip(value, *bounds))


def test_explain_decomposes_the_score_over_the_history(case, data):
    model = fit(make(case), data)
    for user, item in ((0, 5), (17, 0), (42, 59)):
        e = model.explain(user, item)
        assert isinstance(e, rf.models.Explanation)
        assert (e.user, e.item) == (user, item)  # identity id maps: the external ids are the indices
        assert sorted(e.contributions["index"]) == sorted(seen_items(model, user))
        assert (e.contributions["item"] == e.contributions["index"]).all()
        total = e.base + e.contributions["contribution"].sum()
        assert total == pytest.approx(e.score, rel=1e-9, abs=1e-9)  # the decomposition adds up
        magnitude = np.abs(e.contributions["contribution"].to_numpy())
        assert (np.diff(magnitude) <= 0).all()  # largest first
        if e.contributions["contribution"].sum() != 0:
            assert e.contributions["share"].sum() == pytest.approx(1.0)
        if case.cls is not rf.ALS:  # ALS explains the exact solve of the user (its own test file)
            assert _clipped(model, e.score) == pytest.approx(e.model_score, rel=1e-4, abs=1e-4)
        assert e.method == {rf.ALS: "exact", rf.ItemKNN: "exact", rf.EASE: "exact",
                            rf.MostPopular: "popularity",
                            rf.MLPScorer: "integrated-gradients"}.get(case.cls, "similarity")  # fmt: skip


def test_explain_rejects_bad_input(case, data):
    with pytest.raises(rf.NotFittedError):
        make(case).explain(0, 0)
    model = fit(make(case), data)
    with pytest.raises(ValueError, match=r"user must be in \[0, 100\)"):
        model.explain(N_USERS, 0)
    with pytest.raises(ValueError, match=r"item must be in \[0, 60\)"):
        model.explain(0, -1)
    with pytest.raises(TypeError, match="item must be one integer index"):
        model.explain(0, 1.5)
    with pytest.raises(TypeError, match="user must be one integer index"):
        model.explain([0, 1], 0)
    with pytest.raises(ValueError, match="unknown to this model"):
        model.explain_external(0, N_ITEMS + 3)


@pytest.mark.parametrize("side", ["user", "item"])
def test_forget_removes_rows_everywhere(case, side, data, tmp_path):
    model = fit(make(case), data)
    gone = [3, 11]
    getattr(model, f"forget_{side}s")(gone)
    n_before = N_USERS if side == "user" else N_ITEMS
    kept = np.setdiff1d(np.arange(n_before), gone)
    want = data[kept] if side == "user" else data[:, kept]
    assert model.seen_.shape == want.shape and (model.seen_ != want).nnz == 0
    assert list(model._id_map(side).values) == list(kept)  # the others keep their external ids
    ids, _ = model.recommend(np.arange(model.n_users), k=5)
    assert ids.max() < model.n_items
    assert np.isfinite(all_scores(model)).all()
    model.save(tmp_path / "m.rf")
    back = rf.load(tmp_path / "m.rf")
    assert back.seen_.shape == want.shape
    assert_same_predictions(back, model)
    with pytest.raises(ValueError, match="unknown to this model"):
        getattr(model, f"forget_{side}s")([gone[0]])  # already gone
    with pytest.raises(ValueError, match="must not repeat"):
        getattr(model, f"forget_{side}s")([0, 0])
    if side == "item":
        with pytest.raises(ValueError, match="forgetting every item"):
            model.forget_items(model.item_ids_.values)
    else:  # every user may go: the model then recommends for nobody
        model.forget_users(model.user_ids_.values)
        assert model.seen_.shape == (0, N_ITEMS) and model.recommend_all(k=3)[0].shape == (0, 3)


@only([c for c in CASES if c.cls in (rf.HybridMF, rf.MLPScorer)])
@pytest.mark.parametrize("side", ["user", "item"])
def test_models_with_features_forget_rows_and_their_own_features(case, side, data, tmp_path):
    n = N_USERS if side == "user" else N_ITEMS
    shared = sp.random(n, 4, density=0.5, format="csr", random_state=0, dtype=np.float32)
    only_theirs = sp.csr_matrix((np.ones(2, np.float32), ([3, 11], [0, 0])), shape=(n, 1))  # rows 3 and 11 only
    features = sp.hstack([shared, only_theirs], format="csr")
    model = fit(make(case), data, **{f"{side}_features": features})
    hybrid = case.cls is rf.HybridMF
    table = f"{side}_embeddings" if hybrid else f"{side}_feature_embedding"  # one row per feature
    rows = "{}_factors" if hybrid else "{}_embedding"  # one row per user / item
    before = getattr(model, table).copy()
    assert np.abs(before[4]).sum() > 0  # their own feature learnt something
    other = "item" if side == "user" else "user"
    other_rows = getattr(model, rows.format(other)).copy()
    getattr(model, f"forget_{side}s")([3, 11])
    kept = np.setdiff1d(np.arange(n), [3, 11])
    assert (getattr(model, f"{side}_features_") != features[kept]).nnz == 0
    after = getattr(model, table)
    np.testing.assert_array_equal(after[:4], before[:4])  # the shared features keep what they learnt
    assert not after[4].any()  # a feature only the forgotten rows had is zeroed
    np.testing.assert_array_equal(getattr(model, rows.format(other)), other_rows)
    np.testing.assert_allclose(getattr(model, rows.format(side)), features[kept] @ before, rtol=1e-5, atol=1e-7)
    model.save(tmp_path / "m.rf")
    assert_same_predictions(rf.load(tmp_path / "m.rf"), model)
