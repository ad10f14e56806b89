"""MostPopular's ranking (the interface every model shares is checked in test_contract.py)."""

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
