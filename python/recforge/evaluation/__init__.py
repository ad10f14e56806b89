"""Evaluation: ranking metrics, rating metrics, beyond-accuracy metrics and evaluation protocols.

>>> import numpy as np, recforge as rf
>>> df = rf.datasets.synthetic(n_users=200, n_items=100, nnz=4000, seed=0)
>>> train, test = rf.split.random_holdout(rf.Interactions.from_pandas(df), test_fraction=0.2, seed=0)
>>> model = rf.MostPopular().fit(train)
>>> full = rf.evaluation.evaluate(model, train, test, k=10)  # full-catalogue ranking
>>> sampled = rf.evaluation.evaluate(model, train, test, k=10, protocol="sampled", n_negatives=50)  # NCF protocol
>>> recommended_ids, _ = model.recommend(np.arange(train.n_users), k=10)
>>> rf.evaluation.ndcg_at_k(recommended_ids, test.csr, k=10) == full["ndcg@10"]  # the metric evaluate reports
True
>>> als = rf.ALS(factors=8, epochs=3).fit(train, progress=False)
>>> table = rf.evaluation.compare({"MostPopular": model, "ALS": als}, train, test)  # paired CIs (chart="x.png")
>>> full["gini@10"] > 0.5  # popularity bias: MostPopular shows everyone the same few items
True

Every metric states its exact definition in its docstring; ``recforge.evaluation.ranking``
defines the conventions shared by the ranking metrics (binary relevance, -1 padding, averaging
over users with test items).
"""

from __future__ import annotations

from .beyond import (
    average_popularity,
    coverage,
    genre_distribution,
    gini,
    gini_exposure,
    intra_list_diversity,
    kl_miscalibration,
    long_tail_share,
    miscalibration,
    novelty,
)
from .compare import compare, plot_comparison
from .groups import evaluate_groups
from .protocols import evaluate, sample_negatives, test_pairs
from .ranking import auc, hit_rate_at_k, map_at_k, mrr_at_k, ndcg_at_k, precision_at_k, recall_at_k
from .rating import mae, rmse

__all__ = [
    "auc",
    "average_popularity",
    "compare",
    "coverage",
    "evaluate",
    "evaluate_groups",
    "genre_distribution",
    "gini",
    "gini_exposure",
    "hit_rate_at_k",
    "intra_list_diversity",
    "kl_miscalibration",
    "long_tail_share",
    "mae",
    "map_at_k",
    "miscalibration",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "plot_comparison",
    "precision_at_k",
    "recall_at_k",
    "rmse",
    "sample_negatives",
    "test_pairs",
]
