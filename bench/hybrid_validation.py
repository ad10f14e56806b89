"""Choosing HybridMF's defaults on validation splits (never the test files): ML-100K and
ml-latest-small with the cold-start bench's features, each protocol's *training* part split again
the same way (20% of its users, or of its items, held out as validation-cold; seeds 0-2, 0-1 on
ml-latest-small); mean AUC / NDCG@20 of recforge configurations and
LightFM (lightfm-next, same features, same factors/epochs/lr) on the same validation splits.

Run: ``RECFORGE_DATA=... python bench/hybrid_validation.py [--threads 2]`` (prints a Markdown table).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_coldstart as bc  # noqa: E402

# name -> HybridMF parameters ("mixed_weight": the module's MIXED_WEIGHT for that fit).
CONFIGS = {
    "default (mixed weight 16, positives ~ history^0.5)": {},
    "mixed weight 12": {"mixed_weight": 12},
    "positives per interaction": {"positive_sampling": "interactions"},
    "mixed weight 4": {"mixed_weight": 4},
    "mixed weight 8": {"mixed_weight": 8},
    "mixed weight 16": {"mixed_weight": 16},
    "interacted": {"negatives": "interacted"},
    "all": {"negatives": "all"},
    "interacted, regularization 1e-5": {"negatives": "interacted", "regularization": 1e-5},
    "interacted, regularization 1e-4": {"negatives": "interacted", "regularization": 1e-4},
    "interacted, max_sampled 20": {"negatives": "interacted", "max_sampled": 20},
    "interacted, lr 0.1": {"negatives": "interacted", "lr": 0.1},
    "positives per user": {"positive_sampling": "users"},
    "positives per user ~ history^0.25": {"positive_sampling": 0.25},
    "positives per user ~ history^0.5": {"positive_sampling": 0.5},
    "positives per user ~ history^0.75": {"positive_sampling": 0.75},
}


def parse_config(text: str) -> dict:
    """A configuration not in CONFIGS: ``"key=value,key=value"`` (numbers or strings)."""
    out = {}
    for item in text.split(","):
        key, value = item.split("=")
        try:
            out[key.strip()] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def cell(values) -> str:
    """Mean over the seeds and, with several, the spread of the per-seed values (max - min)."""
    if not values:
        return ""
    return f"{np.mean(values):.4f}" + (f" ±{(max(values) - min(values)) / 2:.4f}" if len(values) > 1 else "")


def main():
    import lightfm

    import recforge as rf
    from recforge.models import hybrid

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default=";".join(CONFIGS))
    parser.add_argument("--protocols", default="user-cold;item-cold;ml-latest-small item-cold")
    parser.add_argument(
        "--seeds", type=int, default=0, help="validation splits per protocol (0: 3, 2 on ml-latest-small)"
    )
    args = parser.parse_args()
    ctx = types.SimpleNamespace(data_dir=None, not_measured={}, threads=args.threads, log=lambda *a: None,
                                dataset=lambda name, fn, *a, **k: fn(*a, **k))  # fmt: skip
    ml100k, latest = bc.movielens_100k(ctx), bc.movielens_latest_small(ctx)
    protocols = {"user-cold": (ml100k, 0, 3), "item-cold": (ml100k, 1, 3), "ml-latest-small item-cold": (latest, 1, 2)}
    protocols = {name: protocols[name] for name in args.protocols.split(";")}
    if args.seeds:
        protocols = {name: (data, axis, args.seeds) for name, (data, axis, _) in protocols.items()}
    results: dict[tuple[str, str], list[float]] = {}
    for protocol, ((inter, fu, fi), axis, seeds) in protocols.items():
        for seed in range(seeds):
            outer_train, _, _ = bc.holdout_entities(inter.csr, axis, 0.2, seed)  # the test part is never read
            train, val, held = bc.holdout_entities(outer_train, axis, 0.2, 100 + seed)
            users = np.flatnonzero(np.diff(val.indptr))
            cold = held if axis == 1 else None
            new_users = axis == 0
            for name in args.configs.split(";"):
                params = dict(factors=bc.FACTORS, epochs=bc.EPOCHS, lr=bc.LR, loss="warp", threads=args.threads,
                              seed=seed) | (CONFIGS[name] if name in CONFIGS else parse_config(name))  # fmt: skip
                default_weight = hybrid.MIXED_WEIGHT
                hybrid.MIXED_WEIGHT = params.pop("mixed_weight", default_weight)
                try:
                    model = rf.HybridMF(**params).fit(train, user_features=fu, item_features=fi, progress=False)
                finally:
                    hybrid.MIXED_WEIGHT = default_weight
                q = fu.matrix[users] @ model.user_embeddings if new_users else model.user_factors[users]
                scores = np.asarray(q) @ model.item_factors.T + model.item_bias[None, :]
                for metric, value in bc.evaluate(scores, train, val, users, cold).items():
                    results.setdefault((protocol, name, metric), []).append(value)
            _, sc = bc.fit_lightfm(ctx, lightfm, train, fu, fi, seed)
            for metric, value in bc.evaluate(sc(users, new_users), train, val, users, cold).items():
                results.setdefault((protocol, "LightFM", metric), []).append(value)
    metrics = ["auc", "ndcg@20", "auc cold-only", "ndcg@20 cold-only"]
    print("| protocol | model | " + " | ".join(metrics) + " |")
    print("|---|---|" + "---:|" * len(metrics))
    for protocol in protocols:
        for name in [*args.configs.split(";"), "LightFM"]:
            cells = [cell(results.get((protocol, name, m))) for m in metrics]
            print(f"| {protocol} | {name} | " + " | ".join(cells) + " |")
    # Paired by split: each configuration minus LightFM on the same split (the splits' own spread cancels).
    print("\n| protocol | model | " + " | ".join(f"{m} - LightFM: mean (min, max)" for m in metrics) + " |")
    print("|---|---|" + "---:|" * len(metrics))
    for protocol in protocols:
        for name in args.configs.split(";"):
            cells = []
            for m in metrics:
                if (protocol, name, m) not in results:
                    cells.append("")
                    continue
                d = np.subtract(results[(protocol, name, m)], results[(protocol, "LightFM", m)])
                cells.append(f"{d.mean():+.4f} ({d.min():+.4f}, {d.max():+.4f})")
            print(f"| {protocol} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
