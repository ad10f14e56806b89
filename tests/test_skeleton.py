"""The model skeleton's pieces the contract suite does not cover: deprecated aliases, the progress switch."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import rewrite_model_file

import recforge as rf

# (class, old name, new name, a valid value)
ALIASES = [
    (rf.ALS, "iterations", "epochs", 2),
    (rf.SGDMF, "reg", "regularization", 0.1),
    (rf.SGDMF, "bias_reg", "bias_regularization", 0.2),
    (rf.BPR, "reg", "regularization", 0.1),
    (rf.MLPScorer, "embedding_dim", "factors", 3),
    (rf.MLPScorer, "l2", "regularization", 0.01),
]


@pytest.fixture
def train():
    rng = np.random.default_rng(0)
    m = sp.random(12, 9, density=0.4, format="csr", dtype=np.float32, random_state=rng)
    m.data[:] = rng.integers(1, 6, m.nnz)
    return m


@pytest.mark.parametrize("cls, old, new, value", ALIASES, ids=lambda x: getattr(x, "__name__", str(x)))
def test_deprecated_names_warn_and_map(cls, old, new, value):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated, use '{new}'"):
        model = cls(**{old: value})
    assert getattr(model, new) == value and old not in model.get_params()
    with pytest.warns(DeprecationWarning, match=f"use '{new}'"):
        assert getattr(model, old) == value  # reading the old attribute
    with pytest.warns(DeprecationWarning, match=f"use '{new}'"):
        model.set_params(**{old: value})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        cls(**{new: value})  # the new name is silent


def test_mlp_loss_history_is_a_deprecated_view_of_history(train):
    model = rf.MLPScorer(factors=2, layers=(2,), epochs=2, threads=1).fit(train, progress=False)
    with pytest.warns(DeprecationWarning, match="history_"):
        assert model.loss_history == [h["loss"] for h in model.history_]


@pytest.mark.parametrize("model, rename", [
    (rf.ALS(factors=3, epochs=1), {"epochs": "iterations"}),
    (
        rf.SGDMF(factors=3, epochs=1, bias_regularization=0.3),
        {"regularization": "reg", "bias_regularization": "bias_reg"},
    ),
    (rf.BPR(factors=3, epochs=1), {"regularization": "reg"}),
    (rf.MLPScorer(factors=3, layers=(4,), epochs=1), {"factors": "embedding_dim", "regularization": "l2"}),
], ids=lambda x: type(x).__name__ if isinstance(x, rf.Recommender) else "")  # fmt: skip
def test_files_saved_with_old_parameter_names_still_load(model, rename, train, tmp_path):
    model.set_params(threads=1).fit(train, progress=False)
    path = tmp_path / "old.rf"
    model.save(path)

    def old_names(arrays, meta):  # a file from before the renames: old parameter names in its metadata
        meta["params"] = {rename.get(k, k): v for k, v in meta["params"].items()}

    rewrite_model_file(path, old_names)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the reader is not warned about the writer's names
        back = rf.load(path)
    assert back.get_params() == model.get_params()
    np.testing.assert_array_equal(back.recommend([0, 1], k=3)[0], model.recommend([0, 1], k=3)[0])


def test_progress_switch(train, capsys):
    assert rf.get_config()["progress"] in (True, False)
    before = rf.get_config()
    try:
        rf.set_config(progress=False)
        assert rf.get_config() == {"progress": False}
        rf.ALS(factors=2, epochs=3).fit(train)  # progress=None: the switch decides
        assert "ALS" not in capsys.readouterr().err
        rf.ALS(factors=2, epochs=3).fit(train, progress=True)  # an explicit argument wins
        assert "ALS" in capsys.readouterr().err
        rf.set_config(progress=True)
        rf.BPR(factors=2, epochs=2).fit(train)
        assert "BPR" in capsys.readouterr().err
        with pytest.raises(TypeError, match="progress must be a bool"):
            rf.set_config(progress="no")
    finally:
        rf.set_config(**before)


def test_progress_switch_reads_the_environment():
    code = "import recforge as rf; print(rf.get_config()['progress'])"
    env = {**os.environ, "RECFORGE_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
