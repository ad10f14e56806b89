"""Every ``_core`` argument is converted by name (csrc/bindings/checked.hpp): a value of the wrong type
is a TypeError and one out of range a ValueError, each naming the argument — never pybind11's
"incompatible function arguments" (fuzz finding F3), never a NaN/inf or overflowing scalar passed
on to a kernel (F24).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from targets import core_baseline

from recforge import _core

CORE_FUNCTIONS = [
    "als_gram",
    "als_implicit_solve",
    "als_implicit_loss",
    "als_explicit_solve",
    "als_explicit_sse",
    "sgd_mf_predict",
    "sgd_mf_epoch",
    "sgd_rank_epoch",
    "sgd_sample_negatives",
    "mlp_score_pairs",
    "mlp_score_all",
    "mlp_sample_epoch",
    "mlp_loss_grad",
    "mlp_train_epoch",
    "topk_f32",
    "max_threads",
]
ARGUMENTS = [(fn, arg) for fn in CORE_FUNCTIONS for arg in core_baseline(fn)]
# The float parameters (C++ float or double) of each kernel: finite, and within float32 for a float.
REALS = {
    "als_implicit_solve": ["alpha", "regularization", "alpha0", "nu", "prior_weight"],
    "als_implicit_loss": ["alpha", "regularization", "alpha0", "nu"],
    "als_explicit_solve": ["regularization", "global_mean"],
    "als_explicit_sse": ["global_mean"],
    "sgd_mf_predict": ["global_mean"],
    "sgd_mf_epoch": ["global_mean", "lr", "regularization", "bias_regularization"],
    "sgd_rank_epoch": ["lr", "regularization"],
    "mlp_loss_grad": ["l2"],
    "mlp_train_epoch": ["lr", "beta1", "beta2", "eps", "l2"],
}
REAL_ARGUMENTS = [(fn, arg) for fn, args in REALS.items() for arg in args]
DOUBLES = {("mlp_loss_grad", "l2")}  # the others are float32


def call(fn: str, **changed):
    return getattr(_core, fn)(**dict(core_baseline(fn), **changed))


def names(arg: str) -> str:
    return rf"^{re.escape(arg)}(\[\d+\])? must be"


@pytest.mark.parametrize(("fn", "arg"), ARGUMENTS, ids=[f"{fn}-{arg}" for fn, arg in ARGUMENTS])
def test_an_argument_of_the_wrong_type_is_named(fn, arg):
    with pytest.raises(TypeError, match=names(arg)):
        call(fn, **{arg: object()})


@pytest.mark.parametrize(("fn", "arg"), REAL_ARGUMENTS, ids=[f"{fn}-{arg}" for fn, arg in REAL_ARGUMENTS])
def test_real_arguments_must_be_finite_real_numbers(fn, arg):
    too_large = [10**400] if (fn, arg) in DOUBLES else [1e39, 10**400]
    for value in (math.nan, math.inf, -math.inf, *too_large):
        with pytest.raises(ValueError, match=names(arg) + " a finite number"):
            call(fn, **{arg: value})
    for value in (True, np.bool_(False), "0.1", None, 1j, np.ones(2)):
        with pytest.raises(TypeError, match=names(arg) + " a real number"):
            call(fn, **{arg: value})
    base = call(fn)
    for same in (np.float64, np.float32, float):  # any real type: the same call
        value = core_baseline(fn)[arg]
        if same is not np.float32 or float(np.float32(value)) == value:  # exact in float32
            np.testing.assert_equal(_plain(call(fn, **{arg: same(value)})), _plain(base))


def _plain(result):
    return {k: result[k] for k in ("loss", "pairs")} if isinstance(result, dict) else result


def test_int_arguments_take_integers_in_their_range_only():
    c = core_baseline("mlp_sample_epoch")["interactions"]
    with pytest.raises(ValueError, match=r"^negatives must be an int in \[-2147483648, 2147483647\], got 2147483648"):
        _core.mlp_sample_epoch(c, 2**31, 1, 1)
    with pytest.raises(ValueError, match=r"^seed must be an int in \[0, 18446744073709551615\], got -1"):
        _core.mlp_sample_epoch(c, 2, -1, 1)
    with pytest.raises(ValueError, match=r"got 10000000000000000000\.\.\. \(401 characters\)"):
        _core.mlp_sample_epoch(c, 2, 10**400, 1)  # a huge value is shown shortened
    for value in (1.5, np.float32(2.0), True, np.bool_(True), "2", None):  # no float truncated, no bool as 1
        with pytest.raises(TypeError, match="^negatives must be an int, got"):
            _core.mlp_sample_epoch(c, value, 1, 1)
    expected = _core.mlp_sample_epoch(c, 2, 2**64 - 1, 1)
    for same in (np.uint64(2**64 - 1), 2**64 - 1):
        assert all(np.array_equal(a, b) for a, b in zip(_core.mlp_sample_epoch(c, np.int8(2), same, 1), expected))


def test_bool_and_enum_arguments_take_their_type_only():
    for value in (None, 1, "yes"):
        with pytest.raises(TypeError, match="^freeze_items must be a bool, got"):
            call("sgd_rank_epoch", freeze_items=value)
    call("sgd_rank_epoch", freeze_items=np.True_)
    with pytest.raises(TypeError, match=r"^loss must be a recforge\._core\.Loss, got str"):
        call("sgd_rank_epoch", loss="bpr")
    with pytest.raises(TypeError, match=r"^kernel must be a recforge\._core\.TopkKernel, got NoneType"):
        call("topk_f32", kernel=None)
    with pytest.raises(TypeError, match=r"^exclude must be a recforge\._core\.Csr or None, got csr_matrix"):
        import scipy.sparse as sp

        call("topk_f32", exclude=sp.eye(30, 20, format="csr"))


def test_constructors_and_methods_name_their_arguments():
    with pytest.raises(TypeError, match=r"^mode must be a recforge\._core\.Mode, got str"):
        _core.MLPArch("gmf", 2, 0, [])
    with pytest.raises(ValueError, match=r"^dim_gmf must be an int in"):
        _core.MLPArch(_core.Mode.gmf, 2**63, 0, [])
    with pytest.raises(TypeError, match=r"^layers\[1\] must be an int, got float"):
        _core.MLPArch(_core.Mode.mlp, 0, 2, [3, 1.5])
    with pytest.raises(TypeError, match=r"^layers must be a list of ints, got int"):
        _core.MLPArch(_core.Mode.mlp, 0, 2, 3)
    arch = _core.MLPArch(_core.Mode.mlp, 0, 2, [3])
    with pytest.raises(TypeError, match=r"^l must be an int, got float"):
        arch.layer_in(0.0)
    assert arch.layer_in(np.int64(0)) == arch.layer_in(0) == 4  # both embeddings (2 + 2)
    with pytest.raises(TypeError, match=r"^interactions must be a recforge\._core\.Csr, got NoneType"):
        _core.SGDPositiveData(None)
    with pytest.raises(TypeError, match=r"^name must be a str, got int"):
        _core.Csr([0, 1], [0], [1.0], (1, 2), 3)


def test_signatures_still_name_the_cpp_types():
    """The converting wrapper is invisible in signatures (and so in the generated _core.pyi)."""
    doc = _core.sgd_rank_epoch.__doc__.splitlines()[0]
    assert "lr: typing.SupportsFloat" in doc and "data: recforge._core.SGDPositiveData" in doc
    assert "negatives: typing.SupportsInt" in doc and "freeze_items: bool = False" in doc
