"""The shared model interface, exercised through MostPopular: recommend, exclusion, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import recforge as rf


@pytest.fixture
def train():
    # 4 users x 5 items; item popularity (count): [3, 2, 1, 0, 1]
    rows = [0, 1, 2, 0, 1, 3, 2]
    cols = [0, 0, 0, 1, 1, 2, 4]
    return sp.csr_matrix((np.ones(7, np.float32), (rows, cols)), shape=(4, 5))


def test_most_popular_ranks_by_count_and_excludes_seen(train):
    model = rf.MostPopular().fit(train)
    ids, scores = model.recommend([0, 3], k=3)
    # user 0 saw items 0 and 1; ties (items 2, 4 at count 1) go to the lower id
    np.testing.assert_array_equal(ids[0], [2, 4, 3])
    np.testing.assert_array_equal(scores[0], [1, 1, 0])
    np.testing.assert_array_equal(ids[1], [0, 1, 4])
    ids, _ = model.recommend(0, k=2, exclude_seen=False)
    np.testing.assert_array_equal(ids, [[0, 1]])


def test_recommend_pads_when_k_exceeds_catalogue(train):
    ids, scores = rf.MostPopular().fit(train).recommend([0], k=7)
    assert ids.shape == (1, 7)
    # 5 items, 2 seen: 3 real entries, then -1 / -inf padding
    np.testing.assert_array_equal(ids[0, 3:], [-1] * 4)
    assert np.isneginf(scores[0, 3:]).all()


def test_bad_input_is_rejected(train):
    model = rf.MostPopular()
    with pytest.raises(rf.NotFittedError, match="fit"):
        model.recommend([0])
    model.fit(train)
    with pytest.raises(ValueError, match="users"):
        model.recommend([4])
    with pytest.raises(ValueError, match="k"):
        model.recommend([0], k=0)
    with pytest.raises(TypeError, match="users"):
        model.recommend([0.5])
    with pytest.raises(ValueError, match="empty"):
        rf.MostPopular().fit(sp.csr_matrix((3, 3), dtype=np.float32))
    bad = train.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rf.MostPopular().fit(bad)
    with pytest.raises(TypeError, match="interactions"):
        rf.MostPopular().fit(np.ones((3, 3)))


def test_save_load_round_trip(train, tmp_path):
    model = rf.MostPopular(weighted=True).fit(train)
    path = tmp_path / "pop.rf"
    model.save(path)
    loaded = rf.load(path)
    assert isinstance(loaded, rf.MostPopular) and loaded.weighted
    np.testing.assert_array_equal(loaded.item_popularity, model.item_popularity)
    assert (loaded.seen_ != model.seen_).nnz == 0
    a, b = model.recommend([0, 1, 2, 3], k=3), loaded.recommend([0, 1, 2, 3], k=3)
    np.testing.assert_array_equal(a[0], b[0])


def test_load_rejects_corrupt_files(train, tmp_path):
    path = tmp_path / "pop.rf"
    rf.MostPopular().fit(train).save(path)
    raw = path.read_bytes()
    (tmp_path / "trunc.rf").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt|truncated|not a"):
        rf.load(tmp_path / "trunc.rf")
    (tmp_path / "junk.rf").write_bytes(b"not a model at all")
    with pytest.raises(ValueError):
        rf.load(tmp_path / "junk.rf")
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="__meta__"):
        rf.load(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError):
        rf.load(tmp_path / "missing.rf")
