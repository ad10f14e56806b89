"""External ids end to end, for every model: a model fitted on Interactions keeps their id maps and
takes and returns the data set's own ids (recommend_external, score_external, rows_from_items,
partial_fit_users_external, the popularity fallback for unknown users)."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import rewrite_model_file
from test_contract import CASES, make

import recforge as rf


@pytest.fixture(scope="module")
def inter() -> rf.Interactions:
    """60 users x 40 items with string ids ("u007", "i013"), planted structure."""
    df = rf.datasets.synthetic(n_users=60, n_items=40, nnz=600, factors=3, seed=1, timestamps=False)
    df = df.assign(user="u" + df["user"].astype(str).str.zfill(3), item="i" + df["item"].astype(str).str.zfill(3))
    return rf.Interactions.from_pandas(df, weight_col="rating", duplicates="last")


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def model(request, inter):
    return make(request.param).fit(inter, progress=False)


@pytest.fixture
def folding(model):
    """``model`` when it folds users in from interaction rows (HybridMF folds in from features instead)."""
    if not hasattr(model, "partial_fit_users"):
        pytest.skip(f"{type(model).__name__} has no row fold-in")
    return model


def test_the_model_keeps_the_id_maps(model, inter):
    assert model.user_ids_ is inter.user_ids and model.item_ids_ is inter.item_ids
    bare = type(model)(**model.get_params()).fit(inter.csr, progress=False)
    assert bare.user_ids_ == rf.IdMap.range(inter.n_users) and bare.item_ids_ == rf.IdMap.range(inter.n_items)


def test_recommend_external_is_recommend_in_external_ids(model, inter):
    users = ["u005", "u000", "u031"]
    got = model.recommend_external(users, k=4)
    assert list(got.columns) == ["user", "rank", "item", "score"]
    ids, scores = model.recommend(inter.user_ids.to_index(users), k=4)
    want = pd.DataFrame({
        "user": np.repeat(users, 4), "rank": np.tile(np.arange(1, 5), 3),
        "item": inter.item_ids.to_external(ids).ravel(), "score": scores.ravel(),
    })  # fmt: skip
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert model.recommend_external("u005", k=2)["item"].tolist() == want["item"][:2].tolist()  # one id
    # items=: external ids too; k is clipped to the catalogue and padding is left out.
    some = model.recommend_external(["u005"], k=100, items=["i001", "i002", "i003"], exclude_seen=False)
    assert sorted(some["item"]) == ["i001", "i002", "i003"]


def test_unknown_users_are_an_error_or_get_the_popular_items(model, inter):
    with pytest.raises(ValueError, match="1 user id.*unknown.*'nobody'"):
        model.recommend_external(["u001", "nobody"])
    got = model.recommend_external(["nobody", "u001"], k=3, fallback="popular")
    counts = np.bincount(inter.csr.indices, minlength=inter.n_items)
    top = inter.item_ids.to_external(np.argsort(-counts, kind="stable")[:3])
    assert got[got.user == "nobody"]["item"].tolist() == top.tolist()
    assert len(got[got.user == "u001"]) == 3
    with pytest.raises(ValueError, match="fallback"):
        model.recommend_external(["u001"], fallback="random")


def test_score_external(model, inter):
    users, items = ["u003", "u010"], ["i005", "i000"]
    np.testing.assert_array_equal(
        model.score_external(users, items),
        model.score(inter.user_ids.to_index(users), inter.item_ids.to_index(items)),
    )
    with pytest.raises(ValueError, match="item id.*'zzz'"):
        model.score_external(users, ["i005", "zzz"])


def test_a_new_user_from_external_item_ids(folding, inter):
    rows = folding.rows_from_items([["i001", "i007", "i030"], ["i002", "i002"]])
    assert rows.shape == (2, inter.n_items) and rows.nnz == 4 and (rows.data == 1).all()
    np.testing.assert_array_equal(rows[0].indices, inter.item_ids.to_index(["i001", "i007", "i030"]))
    ids, _ = folding.recommend_for_rows(rows, k=5)
    assert not np.isin(ids[0], rows[0].indices).any() and folding.n_users == inter.n_users
    with pytest.raises(ValueError, match="'nope'"):
        folding.rows_from_items([["i001", "nope"]])
    assert folding.rows_from_items([["i001", "nope"]], unknown="ignore").nnz == 1
    weighted = folding.rows_from_items([["i001", "i002"]], weights=[[5, 3]])
    assert weighted.toarray()[0, inter.item_ids.to_index(["i001", "i002"])].tolist() == [5, 3]
    with pytest.raises(TypeError, match=r"\[\[...\]\]"):
        folding.rows_from_items(["i001", "i002"])  # a flat list: one user must be [[...]]


def test_partial_fit_users_external_grows_the_id_map(folding, inter):
    n = inter.n_users
    folding.partial_fit_users_external(["new-1", "u004", "new-2"], [["i001", "i002"], ["i003"], ["i004"]])
    assert folding.n_users == len(folding.user_ids_) == n + 2
    assert folding.user_ids_.to_index(["new-1", "new-2", "u004"]).tolist() == [n, n + 1, 4]
    assert folding.seen_[n].indices.tolist() == inter.item_ids.to_index(["i001", "i002"]).tolist()
    assert folding.seen_[4].indices.tolist() == inter.item_ids.to_index(["i003"]).tolist()
    assert inter.user_ids.to_index("new-1") == -1  # the data's own map is not changed
    got = folding.recommend_external(["new-2"], k=3)
    assert len(got) == 3 and "i004" not in got["item"].tolist()


def test_new_internal_ids_need_external_ones(folding, inter):
    """Indices past n_users on a model with string ids would have no id: a clear error, nothing changed."""
    with pytest.raises(ValueError, match="partial_fit_users_external"):
        folding.partial_fit_users([inter.n_users], inter.csr[[0]])
    assert folding.n_users == inter.n_users and len(folding.user_ids_) == inter.n_users
    folding.partial_fit_users([3], inter.csr[[0]])  # an existing user: fine
    with pytest.raises(ValueError, match="unique"):  # a failed external fold-in leaves the map as it was
        folding.partial_fit_users_external(["x", "x"], sp.csr_matrix((2, inter.n_items), dtype=np.float32))
    assert len(folding.user_ids_) == inter.n_users


def test_als_partial_fit_items_external(inter):
    model = rf.ALS(factors=4, epochs=2, solver="cholesky").fit(inter, progress=False)  # fold-in solves exactly
    column = inter.csr[:, [0]].T.tocsr()
    model.partial_fit_items_external(["i-new"], column)
    assert model.n_items == inter.n_items + 1 and model.item_ids_.to_index("i-new") == inter.n_items
    np.testing.assert_allclose(model.item_factors[-1], model.item_factors[0], rtol=1e-5, atol=1e-6)


def test_from_factors_takes_the_id_maps_of_an_interactions(inter):
    model = rf.ALS(factors=4, epochs=2).fit(inter, progress=False)
    built = rf.ALS.from_factors(model.user_factors, model.item_factors, seen=inter)
    assert built.user_ids_ is inter.user_ids and built.item_ids_ is inter.item_ids
    pd.testing.assert_frame_equal(built.recommend_external(["u001"], k=3), model.recommend_external(["u001"], k=3))
    assert rf.ALS.from_factors(model.user_factors, model.item_factors).item_ids_ == rf.IdMap.range(inter.n_items)


def test_empty_rows_can_fall_back_to_the_popular_items(folding, inter):
    rows = folding.rows_from_items([["i001", "i002"], []])
    ids, _ = folding.recommend_for_rows(rows, k=3, fallback="popular")
    counts = np.bincount(inter.csr.indices, minlength=inter.n_items)
    np.testing.assert_array_equal(ids[1], np.argsort(-counts, kind="stable")[:3])
    np.testing.assert_array_equal(ids[0], folding.recommend_for_rows(rows, k=3)[0][0])  # other rows as without
    with pytest.raises(ValueError, match="fallback"):
        folding.recommend_for_rows(rows, fallback="random")


def test_save_and_load_keep_the_id_maps(model, inter, tmp_path):
    path = tmp_path / "m.rf"
    model.save(path)
    back = rf.load(path)
    assert back.user_ids_ == inter.user_ids and back.item_ids_ == inter.item_ids
    pd.testing.assert_frame_equal(
        back.recommend_external(["u002", "u040"], k=4), model.recommend_external(["u002", "u040"], k=4)
    )
    with zipfile.ZipFile(path) as z:  # stored as plain arrays: UTF-8 bytes and offsets, no pickle
        assert {"user_ids_utf8.npy", "user_ids_offsets.npy", "item_ids_utf8.npy"} <= set(z.namelist())


@pytest.mark.parametrize(
    "users",
    [np.arange(60) * 7 + 100, np.arange(60) / 4, [("team", u % 3, u) for u in range(60)], [f"ü{u}" for u in range(60)]],
    ids=["int", "float", "tuple", "unicode"],
)
def test_every_kind_of_id_survives_a_file(users, inter, tmp_path):
    ids = rf.IdMap(users)
    data = rf.Interactions(inter.csr, user_ids=ids, item_ids=inter.item_ids)
    model = rf.MostPopular().fit(data)
    model.save(tmp_path / "m.rf")
    back = rf.load(tmp_path / "m.rf")
    assert back.user_ids_ == ids and list(back.user_ids_.values) == list(ids.values)
    assert back.recommend_external([ids.values[5]], k=2)["user"].tolist() == [ids.values[5]] * 2


def test_a_model_with_ids_pickle_cannot_hold_is_not_saved(inter, tmp_path):
    ids = rf.IdMap([pd.Timestamp("2020-01-01") + pd.Timedelta(days=d) for d in range(inter.n_users)])
    model = rf.MostPopular().fit(rf.Interactions(inter.csr, user_ids=ids, item_ids=inter.item_ids))
    with pytest.raises(ValueError, match="without pickle"):
        model.save(tmp_path / "m.rf")
    assert not (tmp_path / "m.rf").exists()


def test_version_1_files_load_with_identity_maps(inter, tmp_path):
    path = tmp_path / "v1.rf"
    rf.ALS(factors=4, epochs=2).fit(inter, progress=False).save(path)

    def as_version_1(arrays, meta):
        for name in [n for n in arrays if n.startswith(("user_ids_", "item_ids_"))]:
            del arrays[name], meta["arrays"][name]
        del meta["id_maps"]
        meta["format_version"] = 1

    rewrite_model_file(path, as_version_1)
    back = rf.load(path)
    assert back.user_ids_ == rf.IdMap.range(inter.n_users) and back.item_ids_ == rf.IdMap.range(inter.n_items)
    assert back.recommend_external([3], k=2)["item"].tolist() == back.recommend([3], k=2)[0][0].tolist()


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda a, m: m.update(id_maps={"user": "pickle"}), "unknown id map kind"),
        (lambda a, m: m.update(id_maps=["str"]), "id_maps"),
        (lambda a, m: m.update(dataset=7), "dataset"),
        (lambda a, m: a.update(user_ids_offsets=a["user_ids_offsets"][::-1].copy()), "offsets"),
    ],
)
def test_broken_id_maps_are_refused(inter, tmp_path, edit, message):
    path = tmp_path / "m.rf"
    rf.MostPopular().fit(inter).save(path)
    rewrite_model_file(path, edit)
    with pytest.raises(ValueError, match=message):
        rf.load(path)
