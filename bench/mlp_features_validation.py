"""Choosing the cold-start bench's MLPScorer-with-features settings on validation splits (never the
test files): ML-100K with the cold-start bench's features, each protocol's *training* part split again
the same way (20% of its users, or of its items, held out as validation-cold; seed 0 by default);
AUC / NDCG@20 of MLPScorer configurations beside HybridMF's defaults and LightFM on the same splits.

Run: ``RECFORGE_DATA=... python bench/mlp_features_validation.py [--threads 2] [--seeds 1]`` (prints a
Markdown table with fit seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_coldstart as bc  # noqa: E402

BASE = dict(factors=32, layers=(64, 32, 16), mode="neumf", epochs=20, optimizer="lazy_adam", lr=0.005)
# name -> MLPScorer parameters
CONFIGS = {
    "neumf lr 0.001": BASE | {"lr": 0.001},
    "neumf lr 0.005": BASE,
    "neumf lr 0.005, 10 epochs": BASE | {"epochs": 10},
    "neumf lr 0.005, 8 negatives": BASE | {"negatives": 8},
    "neumf lr 0.005, regularization 1e-4": BASE | {"regularization": 1e-4},
    "neumf 16 factors, layers 32-16": BASE | {"factors": 16, "layers": (32, 16)},
    "neumf lr 0.005, dense adam": BASE | {"optimizer": "adam"},
    "gmf lr 0.005": BASE | {"mode": "gmf", "layers": ()},
}


def main():
    import lightfm

    import recforge as rf

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--configs", default=";".join(CONFIGS))
    args = parser.parse_args()
    ctx = types.SimpleNamespace(data_dir=None, not_measured={}, threads=args.threads, log=lambda *a: None,
                                dataset=lambda name, fn, *a, **k: fn(*a, **k))  # fmt: skip
    inter, fu, fi = bc.movielens_100k(ctx)
    protocols = {"user-cold": 0, "item-cold": 1}
    names = [*args.configs.split(";"), "HybridMF (defaults)", "LightFM"]
    results: dict[tuple[str, str, str], list[float]] = {}
    for protocol, axis in protocols.items():
        for seed in range(args.seeds):
            outer_train, _, _ = bc.holdout_entities(inter.csr, axis, 0.2, seed)  # the test part is never read
            train, val, held = bc.holdout_entities(outer_train, axis, 0.2, 100 + seed)
            users = np.flatnonzero(np.diff(val.indptr))
            cold = held if axis == 1 else None
            for name in names:
                t0 = time.perf_counter()
                if name == "LightFM":
                    _, scores = bc.fit_lightfm(ctx, lightfm, train, fu, fi, seed)
                elif name == "HybridMF (defaults)":
                    _, scores = bc.fit_hybrid(ctx, train, fu, fi, seed)
                else:
                    model = rf.MLPScorer(**CONFIGS[name], threads=args.threads, seed=seed)
                    _, scores = bc.fit_plain(ctx, model, train, user_features=fu, item_features=fi)
                seconds = time.perf_counter() - t0
                metrics = bc.evaluate(scores(users, axis == 0), train, val, users, cold) | {"fit s": seconds}
                for metric, value in metrics.items():
                    results.setdefault((protocol, name, metric), []).append(value)
    metrics = ["auc", "ndcg@20", "auc cold-only", "ndcg@20 cold-only", "fit s"]
    print("| protocol | model | " + " | ".join(metrics) + " |")
    print("|---|---|" + "---:|" * len(metrics))
    for protocol in protocols:
        for name in names:
            cells = [f"{np.mean(results[(protocol, name, m)]):.4f}" if (protocol, name, m) in results else ""
                     for m in metrics]  # fmt: skip
            print(f"| {protocol} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
