"""The confidence convention: ALS applies ``c = 1 + alpha * w`` to the stored weights, once.

What the docstrings of ``rf.ALS`` and ``rf.transforms`` (and the README) claim, checked: weights
go to ALS as they are with ``alpha`` as the scale, and the ``*_confidence`` transforms equal what
ALS computes from the raw counts or from ``log_scale``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import recforge as rf


@pytest.fixture
def counts() -> sp.csr_matrix:
    """Integer play counts: every product with an integer alpha is exact in float32."""
    rng = np.random.default_rng(7)
    m = sp.random(60, 40, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    m.data = rng.integers(1, 20, m.nnz).astype(np.float32)
    return m


def _als(alpha: float, solver: str) -> rf.ALS:
    return rf.ALS(factors=8, epochs=3, alpha=alpha, solver=solver, threads=1, seed=3)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_scaling_the_weights_is_scaling_alpha(counts, solver):
    # The documented rule "scaling the weights by s is the same as scaling alpha by s", bit for bit.
    a = _als(8.0, solver).fit(counts, progress=False)
    b = _als(1.0, solver).fit(counts * 8.0, progress=False)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)


def test_linear_confidence_is_what_als_applies_to_raw_counts(counts):
    conf = rf.transforms.linear_confidence(counts, alpha=40.0)
    np.testing.assert_array_equal(conf.data, 1 + 40.0 * counts.data)
    # Fitting ALS on it applies the convention twice: 1 + a * (1 + 40 r), not 1 + 40 r.
    twice = _als(1.0, "cholesky").fit(conf, progress=False)
    once = _als(40.0, "cholesky").fit(counts, progress=False)
    assert not np.allclose(twice.user_factors, once.user_factors)


def test_log_scale_with_alpha_is_log_confidence(counts):
    w = rf.transforms.log_scale(counts, eps=2.0)
    assert w.nnz == counts.nnz and w.dtype == np.float32
    np.testing.assert_allclose(w.data, np.log1p(counts.data / 2.0), rtol=1e-6)
    # ALS(alpha=a) on log_scale(r) uses 1 + a * log(1 + r / eps) = log_confidence(r, a, eps).
    np.testing.assert_allclose(1 + 5.0 * w.data, rf.transforms.log_confidence(counts, 5.0, 2.0).data, rtol=1e-6)


def test_log_scale_rejects_bad_input(counts):
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        rf.transforms.log_scale(counts, eps=0)
    with pytest.raises(ValueError, match="negative"):
        rf.transforms.log_scale(-counts)
