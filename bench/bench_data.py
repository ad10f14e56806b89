"""Data layer at MovieLens-20M scale: synthetic generation, Interactions construction, splits.

Problem: ``rf.datasets.synthetic(138_000, 27_000, 12_000_000)`` (``--quick``: 10,000 x 5,000,
500,000). Peers are the pandas/scipy idioms people write by hand for the same result:

* construction: ``pd.factorize`` of both id columns + ``scipy.sparse.coo_matrix(...).tocsr()``
  (duplicates summed) vs ``Interactions.from_pandas`` (id maps, validated weights, sorted CSR);
  with timestamps kept aligned with the CSR (no peer) as a second case;
* leave-last-out: ``df.sort_values(["user", "timestamp", "item"])`` + ``groupby.tail`` vs
  ``rf.split.leave_last_out``;
* random holdout: ``groupby("user").sample(frac=0.2)`` vs ``rf.split.random_holdout``
  (recforge's also keeps at least one training item per user).

The generator has no peer; its figure is recorded for reference. Single-threaded code: ``--threads``
does not change it. Metric: seconds (lower is better).
"""

from __future__ import annotations

import numpy as np

FULL = (138_000, 27_000, 12_000_000)
QUICK = (10_000, 5_000, 500_000)


def run(ctx):
    import pandas as pd
    import scipy.sparse as sp

    import recforge as rf

    n_users, n_items, nnz = QUICK if ctx.quick else FULL
    size = f"{n_users:,}x{n_items:,} nnz={nnz:,}"
    rows = []

    def add(case, timings):
        for lib, t in timings.items():
            rows.append(
                {
                    "case": case,
                    "library": lib,
                    "metric": "s",
                    "value": t["median"],
                    "spread": t["spread"],
                    "better": "lower",
                }
            )

    ctx.log(f"data: synthetic {size}")
    add(
        f"synthetic {size}", ctx.timeit_many({"recforge": lambda: rf.datasets.synthetic(n_users, n_items, nnz, seed=0)})
    )

    df = rf.datasets.synthetic(n_users, n_items, nnz, seed=0).sample(frac=1.0, random_state=0)  # file order

    def by_hand():
        u, users = pd.factorize(df["user"], sort=True)
        i, items = pd.factorize(df["item"], sort=True)
        return sp.coo_matrix((df["rating"].to_numpy(np.float32), (u, i)), shape=(len(users), len(items))).tocsr()

    ours = rf.Interactions.from_pandas(df, weight_col="rating", time_col="timestamp")
    assert abs(by_hand() - ours.csr).max() == 0  # same matrix before timing anything
    ctx.log("data: construction")
    add(
        f"from_pandas {size}",
        ctx.timeit_many(
            {
                "recforge": lambda: rf.Interactions.from_pandas(df, weight_col="rating"),
                "pandas+scipy": by_hand,
            }
        ),
    )
    # Keeping timestamps aligned with the CSR has no one-line idiom; recorded for reference.
    add(
        f"from_pandas +timestamps {size}",
        ctx.timeit_many(
            {
                "recforge": lambda: rf.Interactions.from_pandas(df, weight_col="rating", time_col="timestamp"),
            }
        ),
    )

    def last_by_hand():
        return df.sort_values(["user", "timestamp", "item"]).groupby("user").tail(1)

    _, test = rf.split.leave_last_out(ours)
    assert test.nnz == (df.groupby("user").size() >= 2).sum()  # users with one interaction stay in train
    ctx.log("data: leave_last_out")
    add(
        f"leave_last_out {size}",
        ctx.timeit_many(
            {
                "recforge": lambda: rf.split.leave_last_out(ours),
                "pandas": last_by_hand,
            }
        ),
    )
    ctx.log("data: random_holdout")
    add(
        f"random_holdout 20% {size}",
        ctx.timeit_many(
            {
                "recforge": lambda: rf.split.random_holdout(ours, 0.2, seed=0),
                "pandas": lambda: df.groupby("user").sample(frac=0.2, random_state=0),
            }
        ),
    )
    return rows
