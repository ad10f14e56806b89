"""rf.Features: one-hot, tags, scaled numbers, identity, normalisation, transform, and the bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import recforge as rf


@pytest.fixture
def items() -> pd.DataFrame:
    return pd.DataFrame({"item": ["b", "a", "c"], "genres": ["Action|Comedy", "Drama", None],
                         "year": [1990, 2000, 2010], "studio": ["x", "y", "x"]})  # fmt: skip


def test_columns_and_values(items):
    f = rf.Features.from_pandas(items, "item", categorical=["studio"], tags={"genres": "|"}, numeric=["year"],
                                normalize=False)  # fmt: skip
    assert f.names == ["year", "studio=x", "studio=y", "genres=Action", "genres=Comedy", "genres=Drama"]
    assert list(f.ids) == ["a", "b", "c"]  # sorted ids: the row order
    np.testing.assert_array_equal(f.matrix.toarray(), [[0.5, 0, 1, 0, 0, 1],
                                                       [0.0, 1, 0, 1, 1, 0],
                                                       [1.0, 1, 0, 0, 0, 0]])  # fmt: skip
    assert f.matrix.dtype == np.float32


def test_identity_and_normalisation_follow_the_id_map(items):
    ids = rf.IdMap(["c", "b", "a", "d"])  # "d" has no row: identity only
    f = rf.Features.from_pandas(items, "item", ids=ids, tags={"genres": "|"}, identity=True)
    assert f.names[-4:] == ["id=c", "id=b", "id=a", "id=d"]
    dense = f.matrix.toarray()
    np.testing.assert_allclose(dense.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(dense[1, :3], [1 / 3, 1 / 3, 0])  # b: Action, Comedy and its identity
    assert dense[3].nonzero()[0].tolist() == [f.names.index("id=d")]


def test_transform_encodes_new_entities_and_ignores_unknown_values(items):
    f = rf.Features.from_pandas(items, "item", tags={"genres": "|"}, numeric=["year"], identity=True)
    new = pd.DataFrame({"item": ["z", "w"], "genres": ["Comedy|Space Opera", None], "year": [2020, 1990]})
    with pytest.warns(UserWarning, match="1 value.*not in the vocabulary.*ignored"):
        rows = f.transform(new)
    assert rows.shape == (2, f.n_features)
    names = f.names
    got = {names[j]: v for j, v in zip(rows[0].indices, rows[0].data)}
    assert set(got) == {"year", "genres=Comedy"} and got["year"] == pytest.approx(got["genres=Comedy"] * 1.5)
    assert not any(n.startswith("id=") for n in names if n in got)
    assert not rows[1].toarray().any()  # no genre, 1990 is the bottom of the range: an item without features
    with pytest.raises(ValueError, match="not in the vocabulary"):
        f.transform(new, unknown="error")
    back = rf.Features.from_spec_array(f.spec_array(), f.ids)
    with pytest.warns(UserWarning):
        assert (back.transform(new) != rows).nnz == 0


def test_bad_input_is_a_clear_error(items):
    with pytest.raises(ValueError, match="not in ids.*must match the id map"):
        rf.Features.from_pandas(items, "item", ids=rf.IdMap(["a", "b"]), tags={"genres": "|"})
    dropped = rf.Features.from_pandas(items, "item", ids=rf.IdMap(["a", "b"]), tags={"genres": "|"},
                                      unknown_ids="drop")  # fmt: skip
    assert dropped.matrix.shape[0] == 2
    with pytest.raises(ValueError, match="more than one row"):
        rf.Features.from_pandas(pd.concat([items, items]), "item", tags={"genres": "|"})
    nan = items.assign(year=[1990, None, 2010])
    with pytest.raises(ValueError, match="numeric column 'year' has 1 NaN"):
        rf.Features.from_pandas(nan, "item", numeric=["year"])
    with pytest.raises(ValueError, match=r"columns \['rating'\] are not in df"):
        rf.Features.from_pandas(items, "item", numeric=["rating"])
    with pytest.raises(TypeError, match="DataFrame"):
        rf.Features.from_pandas(items.to_numpy(), "item")
    with pytest.raises(ValueError, match="corrupt feature vocabulary"):
        rf.Features.from_spec_array(np.frombuffer(b"{not json", np.uint8), None)
