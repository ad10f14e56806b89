"""Choosing ALS's side-information scheme on validation splits (never the test files).

Two schemes, both prototyped with the same exact NumPy iALS solve (Cholesky per row, ``alpha0``
Gram, constant regularisation) so that only the scheme differs:

* ``pseudo-rows``: each item feature is a pseudo-user whose row holds the items having it (value
  ``feature_weight * F[i, k]``), each user feature a pseudo-item; the pseudo-rows' factors are
  solved like any other row, and a cold item's factor is solved from its features' factors.
* ``linear-map``: ``y_i ~ N(W f_i, 1 / feature_weight)`` (likewise users): each half-step adds
  ``feature_weight * I`` to a row's system and ``feature_weight * W f_i`` to its right-hand side;
  ``W`` is re-solved by ridge regression (``ridge``) after every half-step. A cold item's factor is
  its row's solve with only the prior (``~ W f_i``).

Protocols as bench/hybrid_validation.py: each cold-start protocol's *training* part of the
cold-start bench split again (20% of its users or items held out as validation-cold; seeds 0-1);
features without the identity columns (ALS's own factors are the identity part).

``--implementation``: the same splits with the C++ kernels instead (solver "cg", 2 threads): the
linear map is ``rf.ALS(feature_weight=w).fit(..., user_features=, item_features=)``, the pseudo-rows
are plain ``rf.ALS`` on the augmented matrix ``[[R, w Fu], [w Fiᵀ, 0]]`` (they need no other kernel);
fit wall and CPU seconds of each, and the ``feature_weight`` grid.

Run: ``RECFORGE_DATA=... python bench/als_side_validation.py [--implementation]`` (prints a Markdown table).
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
import bench_coldstart as bc  # noqa: E402

FACTORS, EPOCHS, ALPHA, REG, RIDGE = 32, 15, 5.0, 1.0, 1.0


def solve_rows(r: sp.csr_matrix, other: np.ndarray, prior=None, prior_weight=0.0) -> np.ndarray:
    """Exact iALS solve of every row of ``r`` against ``other`` (optionally toward a prior mean), batched:
    A_u = YᵀY + sum_j (c_j - 1) y_j y_jᵀ + (REG + prior_weight) I, b_u = sum_j c_j y_j + prior_weight m_u."""
    n, f = r.shape[0], other.shape[1]
    outer = np.einsum("ij,ik->ijk", other, other).reshape(len(other), f * f)
    extra = sp.csr_matrix((ALPHA * r.data, r.indices, r.indptr), shape=r.shape)  # c - 1 (alpha0 = 1)
    a = (extra @ outer).reshape(n, f, f) + other.T @ other + (REG + prior_weight) * np.eye(f)
    b = sp.csr_matrix((1.0 + ALPHA * r.data, r.indices, r.indptr), shape=r.shape) @ other
    if prior is not None:
        b = b + prior_weight * prior
    return np.linalg.solve(a, b[:, :, None])[:, :, 0]


def ridge_map(features: sp.csr_matrix, factors: np.ndarray) -> np.ndarray:
    ftf = (features.T @ features).toarray() + RIDGE * np.eye(features.shape[1])
    return np.linalg.solve(ftf, features.T @ factors)


def fit(train, fu, fi, scheme, weight, seed):
    """(user factors, item factors) of the users and items of ``train``."""
    n_users, n_items = train.shape
    r = sp.csr_matrix(train, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if scheme == "pseudo-rows":  # [[R, w Fu], [w Fi^T, 0]]
        r = sp.bmat([[r, weight * fu], [weight * fi.T, None]], format="csr")
    rows, cols = r.shape
    x = rng.standard_normal((rows, FACTORS)) * 0.1 / np.sqrt(FACTORS)
    y = rng.standard_normal((cols, FACTORS)) * 0.1 / np.sqrt(FACTORS)
    rt = r.T.tocsr()
    for _ in range(EPOCHS):
        if scheme == "linear-map":
            x = solve_rows(r, y, fu @ ridge_map(fu, x), weight)
            y = solve_rows(rt, x, fi @ ridge_map(fi, y), weight)
        else:
            x, y = solve_rows(r, y), None
            y = solve_rows(rt, x)
    return x[:n_users], y[:n_items]


def fit_implementation(train, fu, fi, scheme, weight, seed):
    """(user factors, item factors, wall s, cpu s) with the C++ kernels."""
    import recforge as rf

    model = rf.ALS(factors=FACTORS, epochs=EPOCHS, alpha=ALPHA, regularization=REG, feature_weight=weight,
                   threads=2, seed=seed)  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    if scheme == "linear-map":
        model.fit(train, user_features=fu if fu.shape[1] else None, item_features=fi, progress=False)
    elif scheme == "pseudo-rows":
        model.fit(
            sp.bmat([[train, weight * fu], [weight * fi.T, None]], format="csr", dtype=np.float32), progress=False
        )
    else:
        model.fit(train, progress=False)
    seconds = time.perf_counter() - t0, time.process_time() - c0
    return model.user_factors[: train.shape[0]], model.item_factors[: train.shape[1]], *seconds


def main():
    import recforge as rf  # noqa: F401 (the bench's loaders)

    implementation = "--implementation" in sys.argv
    weights = {"pseudo-rows": (1.0, 10.0, 100.0), "linear-map": (1.0, 3.0, 10.0, 30.0, 100.0) if implementation
               else (1.0, 10.0, 100.0)}  # fmt: skip

    ctx = types.SimpleNamespace(data_dir=None, not_measured={}, threads=1, log=lambda *a: None,
                                dataset=lambda name, fn, *a, **k: fn(*a, **k))  # fmt: skip
    ml100k, latest = bc.movielens_100k(ctx), bc.movielens_latest_small(ctx)
    protocols = {"user-cold": (ml100k, 0), "item-cold": (ml100k, 1), "ml-latest-small item-cold": (latest, 1)}
    configs = [("plain ALS", None, 0.0)] + [(s, s, w) for s in weights for w in weights[s]]
    configs = [(n if s is None else f"{n} w={w:g}", s, w) for n, s, w in configs]
    results: dict[tuple, list[float]] = {}
    for protocol, ((inter, fu_all, fi_all), axis) in protocols.items():
        fu, fi = (bc.side_part(f) for f in (fu_all, fi_all))
        fu = sp.csr_matrix((fu_all.matrix.shape[0], 0)) if fu is None else fu  # ml-latest-small: no user features
        for seed in range(2):
            outer_train, _, _ = bc.holdout_entities(inter.csr, axis, 0.2, seed)  # the test part is never read
            train, val, held = bc.holdout_entities(outer_train, axis, 0.2, 100 + seed)
            users = np.flatnonzero(np.diff(val.indptr))
            for name, scheme, weight in configs:
                if implementation:
                    x, y, wall, cpu = fit_implementation(train, fu, fi, scheme, weight, seed)
                else:
                    t0 = time.perf_counter(), time.process_time()
                    x, y = fit(train, fu, fi, scheme, weight, seed)
                    wall, cpu = time.perf_counter() - t0[0], time.process_time() - t0[1]
                metrics = bc.evaluate(x[users] @ y.T, train, val, users, held if axis == 1 else None)
                metrics["fit s"], metrics["fit cpu-s"] = wall, cpu
                for metric, value in metrics.items():
                    results.setdefault((protocol, name, metric), []).append(value)
                print(protocol, seed, name, {k: round(v, 4) for k, v in metrics.items()}, file=sys.stderr, flush=True)
    metrics = ["auc", "ndcg@20", "auc cold-only", "ndcg@20 cold-only", "fit s", "fit cpu-s"]
    print("| protocol | scheme | " + " | ".join(metrics) + " |")
    print("|---|---|" + "---:|" * len(metrics))
    for protocol in protocols:
        for name, _, _ in configs:
            cells = [f"{np.mean(results[(protocol, name, m)]):.4f}" if (protocol, name, m) in results else ""
                     for m in metrics]  # fmt: skip
            print(f"| {protocol} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
