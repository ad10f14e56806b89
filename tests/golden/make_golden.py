"""Write the reference arrays that tests/test_golden.py compares every model's fit against.

Run once from the code whose results are the reference (it was run on the pre-redesign code,
commit 3383715, before the device-neutral layer of issue 9 landed). Re-running it on later
code re-baselines the check: do that only for an intended change of results, and say so in
the CHANGELOG.

    python tests/golden/make_golden.py      # writes tests/golden/golden.npz

The interaction data is generated here and stored in the file, so the test does not depend on
recforge's own synthetic generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import recforge as rf

OUT = Path(__file__).with_name("golden.npz")


def data():
    rng = np.random.default_rng(2024)
    n_users, n_items, nnz = 120, 90, 2400
    u = rng.integers(0, n_users, nnz)
    i = (rng.zipf(1.3, nnz) + rng.integers(0, n_items, nnz)) % n_items
    m = sp.csr_matrix((np.ones(nnz, np.float32), (u, i)), shape=(n_users, n_items))
    m.sum_duplicates()
    ratings = m.copy()
    ratings.data = rng.integers(1, 6, ratings.nnz).astype(np.float32)
    return m, ratings


# (name, class name, constructor params, which matrix to fit on)
CASES = [
    ("als_cg", "ALS", dict(factors=8, iterations=3, solver="cg", threads=1, seed=3), "implicit"),
    (
        "als_cholesky",
        "ALS",
        dict(factors=8, iterations=3, solver="cholesky", alpha=2.0, nu=0.5, threads=1, seed=3),
        "implicit",
    ),
    ("als_explicit", "ALS", dict(factors=6, iterations=3, feedback="explicit", threads=1, seed=3), "ratings"),
    ("sgdmf", "SGDMF", dict(factors=8, epochs=4, lr=0.01, threads=1, seed=5), "ratings"),
    ("bpr", "BPR", dict(factors=8, epochs=4, threads=1, seed=5), "implicit"),
    ("bpr_pop", "BPR", dict(factors=8, epochs=3, negatives=2, sampling="popularity", threads=1, seed=5), "implicit"),
    ("warp", "BPR", dict(factors=8, epochs=4, loss="warp", threads=1, seed=5), "implicit"),
    ("mlp_adam", "MLPScorer", dict(embedding_dim=4, layers=(8, 4), epochs=2, threads=1, seed=7), "implicit"),
    (
        "mlp_lazy_adam",
        "MLPScorer",
        dict(embedding_dim=4, layers=(8, 4), epochs=2, optimizer="lazy_adam", threads=1, seed=7),
        "implicit",
    ),
    (
        "mlp_sgd",
        "MLPScorer",
        dict(embedding_dim=4, layers=(8, 4), epochs=2, optimizer="sgd", lr=0.05, threads=1, seed=7),
        "implicit",
    ),
    ("gmf_adam", "MLPScorer", dict(embedding_dim=4, mode="gmf", epochs=2, threads=1, seed=7), "implicit"),
]

# Defaults that changed after the reference was written (issue 11: SGDMF's and WARP's defaults), at
# the values the reference used. The cases above relied on the defaults of their time; both this
# script and tests/test_golden.py pass these explicitly, so the check still compares the same fits
# (what the file pins is the kernels' arithmetic for given parameters, not the choice of defaults).
REFERENCE_DEFAULTS = {
    "SGDMF": {"regularization": 0.02, "lr_schedule": "constant", "decay": 0.0},
    "BPR": {"lr": 0.05, "regularization": 0.01},
}


def params_of(cls: str, params: dict) -> dict:
    """A case's constructor parameters with the reference-time defaults filled in."""
    return {**REFERENCE_DEFAULTS.get(cls, {}), **params}


ARRAYS = ["user_factors", "item_factors", "user_bias", "item_bias", "user_embedding", "item_embedding", "dense"]


def cpu_isa() -> str:
    """The widest SIMD level the kernels dispatch to on this CPU (results are bitwise per level)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return "avx512f" if " avx512f" in flags else "avx2" if " avx2" in flags else "baseline"


def main() -> None:
    implicit, ratings = data()
    out = {
        "implicit_indptr": implicit.indptr,
        "implicit_indices": implicit.indices,
        "implicit_data": implicit.data,
        "ratings_indptr": ratings.indptr,
        "ratings_indices": ratings.indices,
        "ratings_data": ratings.data,
        "shape": np.asarray(implicit.shape),
    }
    for name, cls, params, which in CASES:
        model = getattr(rf, cls)(**params_of(cls, params)).fit(
            implicit if which == "implicit" else ratings, progress=False
        )
        for attr in ARRAYS:
            value = getattr(model, attr, None)
            if isinstance(value, np.ndarray):
                out[f"{name}/{attr}"] = value
        if getattr(model, "global_bias", None) is not None and cls != "MLPScorer":
            out[f"{name}/global_bias"] = np.asarray([model.global_bias], np.float64)
    out["__cases__"] = np.frombuffer(json.dumps(CASES).encode(), np.uint8)
    out["__isa__"] = np.frombuffer(cpu_isa().encode(), np.uint8)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({len(out)} arrays)")


if __name__ == "__main__":
    main()
