"""Every model's fit is bit-identical to the reference arrays of tests/golden/golden.npz.

The reference was written by tests/golden/make_golden.py from the code before the issue-9 redesign
(device-neutral ops layer, one model skeleton): refactors must not change a single bit of any fit
at fixed seeds with threads=1. The kernels pick their SIMD width at run time, so exact equality
holds on a CPU of the same SIMD level as the one that wrote the file; elsewhere the check is a
tight tolerance.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import recforge as rf

GOLDEN = Path(__file__).with_name("golden") / "golden.npz"
_spec = importlib.util.spec_from_file_location("make_golden", GOLDEN.with_name("make_golden.py"))
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _matrix(g, which):
    shape = tuple(int(s) for s in g["shape"])
    return sp.csr_matrix((g[f"{which}_data"], g[f"{which}_indices"], g[f"{which}_indptr"]), shape=shape)


def _cases():
    with np.load(GOLDEN, allow_pickle=False) as z:
        return json.loads(z["__cases__"].tobytes().decode())


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_fit_matches_reference(golden, case):
    name, cls, params, which = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # old parameter spellings stay accepted
        model = getattr(rf, cls)(**make_golden.params_of(cls, params)).fit(_matrix(golden, which), progress=False)
    exact = golden["__isa__"].tobytes().decode() == make_golden.cpu_isa()
    # A sanitizer build (nox -s sanitize) rounds differently (instrumented code generation) and sampled
    # fits (WARP) then drift past any tight tolerance: there the fits are run for the memory checks only.
    sanitized = bool(os.environ.get("RECFORGE_SANITIZED"))
    keys = [k for k in golden if k.startswith(name + "/")]
    assert keys, f"no reference arrays for {name}"
    for key in keys:
        attr = key.split("/", 1)[1]
        got = getattr(model, attr)
        want = golden[key]
        got = np.asarray([got], np.float64) if attr == "global_bias" else np.asarray(got)
        assert got.shape == want.shape and got.dtype == want.dtype, (key, got.shape, got.dtype)
        if sanitized:
            assert np.isfinite(got).all(), key
        elif exact:
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=key)
